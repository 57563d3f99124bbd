/**
 * Checks every row of a batch against the dataset's schema before anything is
 * stored. The first bad row stops the check with a 400 that names the row's
 * index, the field and what was expected, so a client can fix its data; a
 * refused batch is never staged.
 */
import type { FieldType, SchemaField } from '../catalog/types.ts';
import { AppError } from '../errors.ts';
import { parseTimestamp } from './timestamps.ts';

export const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export interface RowRules {
  /** The schema rows must match (the dataset's, merged with the batch's additions). */
  fields: SchemaField[];
  timestampColumn: string;
  /** Refuse keys that are not fields (else they are ignored). */
  strict: boolean;
  /** Every row's timestamp must fall in [start, end) (milliseconds since the epoch). */
  timeRange?: { start: number; end: number };
}

export interface BatchSummary {
  rowCount: number;
  /** Earliest and latest timestamp in the batch, milliseconds since the epoch. */
  minTime: number;
  maxTime: number;
}

export function rowError(code: string, message: string, index: number, field?: string, value?: unknown): AppError {
  const details: Record<string, unknown> = { index };
  if (field !== undefined) details.field = field;
  if (value !== undefined) details.value = describe(value);
  return new AppError(400, code, `row ${index}: ${message}`, details);
}

function describe(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : String(JSON.stringify(value) ?? value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

type Check = (value: unknown) => boolean;

const TYPE_CHECKS: Record<Exclude<FieldType, 'timestamp'>, Check> = {
  string: (v) => typeof v === 'string',
  double: (v) => typeof v === 'number',
  integer: (v) => typeof v === 'number' && Number.isInteger(v),
  boolean: (v) => typeof v === 'boolean',
};

const TYPE_NAMES: Record<FieldType, string> = {
  timestamp: 'an ISO-8601 timestamp string',
  string: 'a string',
  double: 'a number',
  integer: 'an integer',
  boolean: 'true or false',
};

export function validateRows(rows: unknown[], rules: RowRules): BatchSummary {
  if (rows.length === 0) throw new AppError(400, 'empty_batch', 'the batch has no rows; send at least one');
  const fields = rules.fields.filter((f) => f.name !== rules.timestampColumn);
  const known = new Set(rules.fields.map((f) => f.name));
  const ts = rules.timestampColumn;
  let minTime = Number.POSITIVE_INFINITY;
  let maxTime = Number.NEGATIVE_INFINITY;
  // Rows of a batch often share a timestamp (one per host per interval): parse each distinct string once.
  let lastRaw = '';
  let lastTime = Number.NaN;

  for (let index = 0; index < rows.length; index++) {
    const row = rows[index];
    if (row === null || typeof row !== 'object' || Array.isArray(row)) {
      throw rowError('invalid_row', 'is not a JSON object', index, undefined, row);
    }
    const record = row as Record<string, unknown>;

    const raw = record[ts];
    if (raw === undefined || raw === null) throw rowError('missing_timestamp', `has no "${ts}" timestamp`, index, ts);
    if (typeof raw !== 'string') throw rowError('invalid_timestamp', `"${ts}" must be ${TYPE_NAMES.timestamp}`, index, ts, raw);
    const time = raw === lastRaw ? lastTime : parseTimestamp(raw);
    lastRaw = raw;
    lastTime = time;
    if (Number.isNaN(time)) {
      throw rowError('invalid_timestamp', `"${ts}" is not a valid timestamp (use YYYY-MM-DDThh:mm:ss[.fff][Z|±hh:mm])`, index, ts, raw);
    }
    if (rules.timeRange && (time < rules.timeRange.start || time >= rules.timeRange.end)) {
      throw rowError('timestamp_out_of_range', `"${ts}" is outside partition.timeRange [start, end)`, index, ts, raw);
    }
    if (time < minTime) minTime = time;
    if (time > maxTime) maxTime = time;

    for (const field of fields) {
      const value = record[field.name];
      if (value === undefined || value === null) {
        if (field.nullable === false) throw rowError('missing_field', `"${field.name}" is required and missing or null`, index, field.name);
        continue;
      }
      if (field.type === 'timestamp') {
        if (typeof value !== 'string' || Number.isNaN(parseTimestamp(value))) {
          throw rowError('invalid_type', `"${field.name}" must be ${TYPE_NAMES.timestamp}`, index, field.name, value);
        }
      } else if (!TYPE_CHECKS[field.type](value)) {
        throw rowError('invalid_type', `"${field.name}" must be ${TYPE_NAMES[field.type]}`, index, field.name, value);
      } else if (typeof value === 'number' && !Number.isFinite(value)) {
        throw rowError('non_finite_number', `"${field.name}" must be finite (NaN and Infinity cannot be stored)`, index, field.name, value);
      } else if (field.type === 'integer' && !Number.isSafeInteger(value)) {
        throw rowError('integer_out_of_range', `"${field.name}" must be within ±(2^53-1) to survive JSON`, index, field.name, value);
      }
    }

    if (rules.strict) {
      for (const key in record) {
        if (!known.has(key)) throw rowError('unknown_field', `"${key}" is not a field of the dataset schema`, index, key);
      }
    }
  }
  return { rowCount: rows.length, minTime, maxTime };
}
