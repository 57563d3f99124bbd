/**
 * text/csv: RFC 4180 (the grammar is model/csv.ts) with a header line naming the columns (any
 * order). An empty unquoted field is null; `""` is the empty string. Blank lines are skipped when
 * the header has more than one column (as DuckDB's reader does). A record with another number of
 * fields than the header is a 400, as is any syntax error.
 *
 * Values are text, converted per the dataset schema: integer and double as decimal numbers
 * (`12`, `-1.5`, `2.5e3`; NaN and Infinity are refused with `non_finite_number`), boolean as
 * `true`/`false` (any case), timestamps with the JSON grammar (timestamps.ts), strings as they are.
 * The rules are the JSON batch's (validation.ts), with the same codes, and errors name the row
 * index (0 = first record after the header), the field and the line. Rows are checked from the
 * parsed field array; no row object is built. The body is staged as it arrived.
 */
import type { FieldType } from '../../model/field-types.ts';
import { type ConstraintId, refuse } from '../../model/constraints.ts';
import { csvError, parseCsv } from '../../model/csv.ts';
import { isStorableTime, parseIngestTimestamp, STORABLE_TIME_RANGE } from '../../model/timestamps.ts';
import {
  type BatchSummary, caseVariantOf, type RowRules, rowError, TIMESTAMP_GRAMMAR, unstorableTime,
} from '../validation.ts';
import { atLine, type BatchParams, type DecodedBatch, decodeUtf8, hashRequest } from './batch.ts';

const NON_FINITE = /^[+-]?(?:nan|inf|infinity)$/i;

/**
 * The value of a decimal number (`12`, `-1.5`, `.5`, `2.5e3`), or NaN for anything else. Number()
 * alone would also take surrounding whitespace and `0x`/`0b`/`0o` literals, which the first and
 * last characters rule out; it refuses everything else that is not a decimal number.
 */
function decimal(text: string): number {
  const first = text.charCodeAt(0);
  const last = text.charCodeAt(text.length - 1);
  if (!((first >= 0x30 && first <= 0x39) || first === 0x2b || first === 0x2d || first === 0x2e)) return Number.NaN;
  if (!((last >= 0x30 && last <= 0x39) || last === 0x2e)) return Number.NaN;
  if (first === 0x30 && text.length > 1) {
    const second = text.charCodeAt(1) | 0x20;
    if (second === 0x78 || second === 0x62 || second === 0x6f) return Number.NaN; // 0x, 0b, 0o
  }
  return Number(text);
}

/** Outcome of converting one text value: `undefined` when it is acceptable, else why not. */
type Conversion = (text: string) => { code: ConstraintId; expected: string; details?: Record<string, unknown> } | undefined;

const INVALID = (expected: string) => ({ code: 'invalid_type' as const, expected });
const NOT_FINITE = { code: 'non_finite_number' as const, expected: 'finite (NaN and Infinity cannot be stored)' };
const UNSTORABLE = {
  code: 'timestamp_out_of_storable_range' as const,
  expected: `within the range timestore stores (${STORABLE_TIME_RANGE.min} to ${STORABLE_TIME_RANGE.max}, after applying its offset)`,
  details: { min: STORABLE_TIME_RANGE.min, max: STORABLE_TIME_RANGE.max },
};
const NUL = { code: 'nul_character' as const, expected: 'without U+0000, which the catalog cannot store' };

const CONVERSIONS: Record<FieldType, Conversion> = {
  string: (text) => (text.includes('\0') ? NUL : undefined),
  timestamp: (text) => {
    const time = parseIngestTimestamp(text);
    if (Number.isNaN(time)) return INVALID(`an ISO-8601 timestamp (${TIMESTAMP_GRAMMAR})`);
    return isStorableTime(time) ? undefined : UNSTORABLE;
  },
  boolean: (text) => {
    const lower = text.length <= 5 ? text.toLowerCase() : '';
    return lower === 'true' || lower === 'false' ? undefined : INVALID('true or false');
  },
  double: (text) => {
    const value = decimal(text);
    if (Number.isFinite(value)) return undefined;
    if (Number.isNaN(value) && !NON_FINITE.test(text)) return INVALID('a number');
    return NOT_FINITE;
  },
  integer: (text) => {
    const value = decimal(text);
    if (!Number.isInteger(value)) return INVALID('an integer');
    return Number.isSafeInteger(value) ? undefined : { code: 'integer_out_of_range' as const, expected: 'within ±(2^53-1) to survive JSON' };
  },
};

interface ColumnCheck {
  name: string;
  position: number;
  nullable: boolean;
  convert: Conversion;
}

export function validateCsv(text: string, rules: RowRules): BatchSummary {
  const ts = rules.timestampColumn;
  let header: string[] | undefined;
  let tsPosition = -1;
  let checks: ColumnCheck[] = [];
  let unknown: string | undefined;
  let rowCount = 0;
  let minTime = Number.POSITIVE_INFINITY;
  let maxTime = Number.NEGATIVE_INFINITY;
  const range = rules.timeRange;

  parseCsv(text, (values, count, line) => {
    if (header === undefined) {
      if (count === 1 && values[0] === null) throw csvError('the first line is blank: it must be the header naming the columns', line);
      header = values.slice(0, count).map((name) => name ?? '');
      const positions = new Map<string, number>();
      header.forEach((name, position) => {
        if (positions.has(name)) throw csvError(`the header names column "${name}" twice`, line, { field: name });
        positions.set(name, position);
      });
      tsPosition = positions.get(ts) ?? -1;
      checks = rules.fields
        .filter((f) => f.name !== ts)
        .map((f) => ({ name: f.name, position: positions.get(f.name) ?? -1, nullable: f.nullable !== false, convert: CONVERSIONS[f.type] }));
      const known = new Set(rules.fields.map((f) => f.name));
      const folded = new Map(rules.fields.map((f) => [f.name.toLowerCase(), f.name]));
      for (const name of header) {
        const field = known.has(name) ? undefined : caseVariantOf(name, folded);
        if (field !== undefined) {
          throw refuse(
            'key_case_conflict',
            `column "${name}" of the header differs only in case from the field "${field}": field names are case-insensitive, so name the column "${field}"`,
            { field: name, conflictsWith: field, line },
          );
        }
      }
      if (rules.strict) unknown = header.find((name) => !known.has(name));
      return;
    }
    if (count === 1 && values[0] === null && header.length > 1) return; // a blank line
    const index = rowCount;
    if (count !== header.length) {
      throw csvError(`row ${index} (line ${line}) has ${count} field(s) but the header has ${header.length}`, line, { index });
    }

    if (tsPosition < 0) throw atLine(rowError('missing_timestamp', `has no "${ts}" timestamp: the header names no "${ts}" column`, index, ts), line);
    const raw = values[tsPosition]!;
    if (raw === null) throw atLine(rowError('missing_timestamp', `has no "${ts}" timestamp`, index, ts), line);
    const time = parseIngestTimestamp(raw);
    if (Number.isNaN(time)) {
      throw atLine(rowError('invalid_timestamp', `"${ts}" is not a valid timestamp (use ${TIMESTAMP_GRAMMAR})`, index, ts, raw), line);
    }
    if (!isStorableTime(time)) throw atLine(unstorableTime(index, ts, raw), line);
    if (range && (time < range.start || time >= range.end)) {
      throw atLine(rowError('timestamp_outside_time_range', `"${ts}" is outside partition.timeRange [start, end)`, index, ts, raw), line);
    }
    if (time < minTime) minTime = time;
    if (time > maxTime) maxTime = time;

    for (let c = 0; c < checks.length; c++) {
      const check = checks[c]!;
      const value = check.position < 0 ? null : values[check.position]!;
      if (value === null) {
        if (!check.nullable) throw atLine(rowError('missing_field', `"${check.name}" is required and missing or null`, index, check.name), line);
        continue;
      }
      const problem = check.convert(value);
      if (problem) throw atLine(rowError(problem.code, `"${check.name}" must be ${problem.expected}`, index, check.name, value, problem.details), line);
    }
    if (unknown !== undefined) {
      throw atLine(rowError('unknown_field', `column "${unknown}" is not a field of the dataset schema`, index, unknown), line);
    }
    rowCount++;
  });

  if (header === undefined) throw csvError('the body has no header line (the first line names the columns)', 1);
  if (rowCount === 0) throw refuse('empty_batch', 'the batch has no rows; send at least one');
  return { rowCount, minTime, maxTime };
}

export function csvBatch(raw: Uint8Array, params: BatchParams): DecodedBatch {
  const text = decodeUtf8(raw, 'CSV');
  return {
    format: 'csv',
    ...params,
    declare: () => null,
    validate: (rules) => validateCsv(text, rules),
    stagesBodyAsReceived: true,
    staged: () => ({ bytes: raw, format: 'csv', extension: 'csv' }),
    requestHash: () => hashRequest(raw, 'csv', params),
  };
}
