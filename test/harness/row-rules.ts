/** What the row-check tests share: random schemas to check rows against, and a check's outcome as a value. */
import fc from 'fast-check';
import type { RowRules } from '../../src/ingest/validation.ts';
import { AppError } from '../../src/model/errors.ts';
import type { FieldType } from '../../src/model/field-types.ts';

export const FIELD_TYPES: FieldType[] = ['string', 'double', 'integer', 'boolean', 'timestamp'];

/** Rules with a required `ts` timestamp and up to five more fields named from `names`, strict or not, with or without a one-minute time range. */
export function rowRules(names: string[]): fc.Arbitrary<RowRules> {
  return fc
    .record({
      fields: fc.uniqueArray(
        fc.record({ name: fc.constantFrom(...names), type: fc.constantFrom(...FIELD_TYPES), nullable: fc.constantFrom(true, false, undefined) }),
        { selector: (f) => f.name, maxLength: 5 },
      ),
      strict: fc.boolean(),
      timeRange: fc.option(fc.constant({ start: Date.parse('2026-01-01T00:00:00Z'), end: Date.parse('2026-01-01T00:01:00Z') }), { nil: undefined }),
    })
    .map(({ fields, strict, timeRange }) => ({
      fields: [{ name: 'ts', type: 'timestamp' as const, nullable: false }, ...fields],
      timestampColumn: 'ts',
      strict,
      ...(timeRange ? { timeRange } : {}),
    }));
}

/** `{ ok: result }`, or the refusal's code, message and details (anything else is thrown on). */
export async function outcome(run: () => unknown): Promise<unknown> {
  try {
    return { ok: await run() };
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return { code: err.code, message: err.message, details: err.details };
  }
}
