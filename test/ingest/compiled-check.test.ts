/**
 * Rows are checked first by code compiled for their schema, and only what it does not pass is
 * checked rule by rule: whatever the schema and the rows, the outcome (the summary, or the refusal
 * with its code, message and details) must be the rule-by-rule check's.
 */
import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { checkRows, compiledCheck, type RowRules, validateRows } from '../../src/ingest/validation.ts';
import { AppError } from '../../src/model/errors.ts';
import type { FieldType } from '../../src/model/field-types.ts';
import { FIELD_TYPES, rowRules } from '../harness/row-rules.ts';

function outcome(run: () => unknown): unknown {
  try {
    return { ok: run() };
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return { code: err.code, message: err.message, details: err.details };
  }
}

const rules = rowRules(['host', 'v', 'n', 'flag', 'at', 'constructor', 'Region']);

/** Values of every kind a decoded body can hold (JSON, and Arrow's or remote write's rows). */
const value = fc.constantFrom<unknown>(
  null,
  'text',
  'a\0b',
  '',
  1.5,
  3,
  -0,
  2 ** 53,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  true,
  false,
  '2026-01-01T00:00:30Z',
  '2026-01-01T00:02:00Z',
  '2026-01-01',
  '2026-01-01T00:00+01:00',
  '0000-12-31T23:59:59Z',
  '+010000-01-01T00:00:00Z',
  'not a time',
  {},
  [1],
);

/** A value that fits a field of this type. */
const fitting: Record<FieldType, fc.Arbitrary<unknown>> = {
  string: fc.constantFrom('a', 'host_1', ''),
  double: fc.constantFrom(0, 2.5, -1e300),
  integer: fc.constantFrom(0, 7, -(2 ** 53 - 1)),
  boolean: fc.boolean(),
  timestamp: fc.constantFrom('2026-01-01T00:00:10Z', '2026-01-01T00:00:20.5+00:00', '2026-01-01'),
};

/** Rows as clients send them for a schema: mostly fitting values, now and then anything, another key, or no object at all. */
const rowsFor = (r: RowRules): fc.Arbitrary<unknown[]> => {
  const keys: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of r.fields) keys[f.name] = fc.oneof({ weight: 12, arbitrary: fitting[f.type] }, value);
  for (const other of ['extra', 'HOST', 'region', 'constructor']) if (!(other in keys)) keys[other] = value;
  const row = fc.oneof({ weight: 40, arbitrary: fc.record(keys, { requiredKeys: [] }) }, fc.constantFrom<unknown>(null, 7, 'row', [1, 2]));
  return fc.array(row, { maxLength: 3 });
};

describe('the compiled row check', () => {
  test('any schema and rows: the same summary or the same refusal as the rule-by-rule check', () => {
    let passed = 0;
    fc.assert(
      fc.property(rules.chain((r) => fc.tuple(fc.constant(r), rowsFor(r))), ([r, rows]) => {
        if (compiledCheck(r)(rows, r.timeRange) !== null) passed++;
        expect(outcome(() => validateRows(rows, r))).toEqual(outcome(() => checkRows(rows, r)));
      }),
      { numRuns: 5000 },
    );
    // The compiled check passed batches of its own, not only leaving every batch to the other.
    expect(passed).toBeGreaterThan(100);
  });

  test('every value against every type, required or not, and every timestamp against the time range: the same outcome', () => {
    const values = [...new Set(fc.sample(value, { numRuns: 2000 }))];
    const timeRange = { start: Date.parse('2026-01-01T00:00:00Z'), end: Date.parse('2026-01-01T00:01:00Z') };
    let cases = 0;
    for (const type of FIELD_TYPES) {
      for (const nullable of [true, false]) {
        const r: RowRules = { fields: [{ name: 'ts', type: 'timestamp', nullable: false }, { name: 'f', type, nullable }], timestampColumn: 'ts', strict: true };
        for (const rows of [[{ ts: '2026-01-01T00:00:10Z' }], ...values.map((v) => [{ ts: '2026-01-01T00:00:10Z', f: v }])]) {
          expect(outcome(() => validateRows(rows, r))).toEqual(outcome(() => checkRows(rows, r)));
          cases++;
        }
      }
    }
    for (const ts of values) {
      const onlyTs: RowRules = { fields: [{ name: 'ts', type: 'timestamp', nullable: false }], timestampColumn: 'ts', strict: true };
      for (const r of [onlyTs, { ...onlyTs, timeRange }]) {
        expect(outcome(() => validateRows([{ ts }], r))).toEqual(outcome(() => checkRows([{ ts }], r)));
        cases++;
      }
    }
    expect(cases).toBeGreaterThan(200);
  });

  test('passes good batches itself, unknown keys included where the dataset ignores them', () => {
    const fields = [
      { name: 'ts', type: 'timestamp' as const, nullable: false },
      { name: 'host', type: 'string' as const },
      { name: 'v', type: 'double' as const },
    ];
    const rows = [
      { ts: '2026-01-01T00:00:10Z', host: 'a', v: 1, other: 'x' },
      { ts: '2026-01-01T00:00:05Z', host: null },
    ];
    const summary = { rowCount: 2, minTime: Date.parse('2026-01-01T00:00:05Z'), maxTime: Date.parse('2026-01-01T00:00:10Z') };
    expect(compiledCheck({ fields, timestampColumn: 'ts', strict: false })(rows, undefined)).toEqual(summary);
    // Strict: the unknown key is left to the rule-by-rule check, which names it.
    expect(compiledCheck({ fields, timestampColumn: 'ts', strict: true })(rows, undefined)).toBeNull();
    expect(() => validateRows(rows, { fields, timestampColumn: 'ts', strict: true })).toThrow('row 0: "other" is not a field of the dataset schema');
  });

  test('a field named like a property every object inherits is missing when the row has no such key', () => {
    const r: RowRules = {
      fields: [
        { name: 'ts', type: 'timestamp', nullable: false },
        { name: 'constructor', type: 'string' },
        { name: 'toString', type: 'double', nullable: false },
      ],
      timestampColumn: 'ts',
      strict: true,
    };
    const rows = JSON.parse('[{"ts":"2026-01-01T00:00:10Z","toString":1},{"ts":"2026-01-01T00:00:20Z","constructor":"c","toString":2}]');
    const summary = { rowCount: 2, minTime: Date.parse('2026-01-01T00:00:10Z'), maxTime: Date.parse('2026-01-01T00:00:20Z') };
    expect(compiledCheck(r)(rows, undefined)).toEqual(summary);
    expect(checkRows(rows, r)).toEqual(summary);
    expect(() => checkRows([{ ts: '2026-01-01T00:00:10Z' }], r)).toThrow('row 0: "toString" is required and missing or null');
  });
});
