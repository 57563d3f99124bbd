/**
 * Column statistics of written partition files: min, max and null count per column, as the catalog
 * keeps them for pruning. They come from what DuckDB's Parquet writer returns (COPY … RETURN_STATS)
 * where that is the exact value, else from SQL over the rows (the staging table or the written file).
 *
 * Loaded by the worker only (see partition-writer.ts).
 */
import type { DuckDBRunner } from './own-thread.ts';
import type { FieldType } from '../model/field-types.ts';
import type { SchemaField } from '../model/records.ts';
import { isoFromMicrosFixed, parseTimestamp } from '../model/timestamps.ts';
import { quoteIdent, sqlString } from './sql.ts';

export type ColumnStatisticValue = string | number | boolean | null;

/**
 * Statistics of one column in one file. `min`/`max` are null when every value is null; timestamps
 * are ISO-8601 UTC strings with microseconds; strings longer than {@link MAX_STRING_STATISTIC}
 * characters give a truncated `min` (still a lower bound) and no `max`.
 */
export interface PartitionColumnStatistics {
  min: ColumnStatisticValue;
  max?: ColumnStatisticValue;
  nulls: number;
}

/** Longest string kept verbatim in column statistics. */
export const MAX_STRING_STATISTIC = 256;

/** The `column_statistics` of COPY … RETURN_STATS: column name (unquoted) → statistic name → value. */
export function returnedStatistics(value: unknown): Map<string, Record<string, string>> {
  const columns = new Map<string, Record<string, string>>();
  for (const { key, value: entries } of value as { key: string; value: { key: string; value: string }[] }[]) {
    const name = key.startsWith('"') && key.endsWith('"') ? key.slice(1, -1).replaceAll('""', '"') : key;
    columns.set(name, Object.fromEntries(entries.map((e) => [e.key, e.value])));
  }
  return columns;
}

/**
 * A column's statistic from what the Parquet writer recorded; null when it must be computed from
 * the data instead: long strings (the writer cuts them near 256 bytes, at a character, and
 * raises the max's last character, so neither is the value itself) or none recorded, and anything
 * in a form not recognised.
 */
export function fromReturnedStatistic(type: FieldType, s: Record<string, string>, rowCount: number): PartitionColumnStatistics | null {
  const nulls = Number(s.null_count);
  if (!Number.isSafeInteger(nulls)) return null;
  if (nulls === rowCount) return statistic(type, null, null, nulls);
  if (s.min === undefined || s.max === undefined) return null;
  switch (type) {
    case 'timestamp': {
      const [min, max] = [microsFromStatistic(s.min), microsFromStatistic(s.max)];
      return min === null || max === null ? null : statistic(type, String(min), String(max), nulls);
    }
    case 'string':
      return Buffer.byteLength(s.min) >= EXACT_STRING_STATISTIC_BYTES || Buffer.byteLength(s.max) >= EXACT_STRING_STATISTIC_BYTES
        ? null
        : statistic(type, s.min, s.max, nulls);
    case 'integer':
      return /^-?\d+$/.test(s.min) && /^-?\d+$/.test(s.max) ? statistic(type, BigInt(s.min), BigInt(s.max), nulls) : null;
    case 'double': {
      const [min, max] = [Number(s.min), Number(s.max)];
      return Number.isNaN(min) || Number.isNaN(max) || s.has_nan === 'true' ? null : statistic(type, min, max, nulls);
    }
    case 'boolean':
      return statistic(type, s.min === '1' || s.min === 'true', s.max === '1' || s.max === 'true', nulls);
  }
}

/** Strings shorter than this are recorded whole by DuckDB's Parquet writer (it cuts them near 256 bytes). */
const EXACT_STRING_STATISTIC_BYTES = 240;

const RETURNED_TIMESTAMP = /^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?\+00$/;

/** Microseconds since the epoch of a TIMESTAMPTZ statistic as DuckDB prints it in UTC; null for another form. */
export function microsFromStatistic(text: string): bigint | null {
  const m = RETURNED_TIMESTAMP.exec(text);
  const millis = m ? parseTimestamp(`${m[1]}Z`) : Number.NaN;
  if (!m || Number.isNaN(millis)) return null;
  return BigInt(millis) * 1000n + BigInt((m[2] ?? '').padEnd(6, '0'));
}

/** Statistics of some columns computed from a written file. */
export async function statisticsOfFile(db: DuckDBRunner, path: string, fields: SchemaField[]): Promise<Record<string, PartitionColumnStatistics>> {
  const row = (await db.runAndReadAll(`SELECT count(*)::BIGINT, ${fields.map(statisticSql).join(', ')} FROM read_parquet(${sqlString(path)})`)).getRows()[0]!;
  return Object.fromEntries(fields.map((f, i) => [f.name, statistic(f.type, row[1 + i * 3], row[2 + i * 3], Number(row[3 + i * 3] as bigint))]));
}

/** min, max and null count of a field, timestamps as epoch microseconds in text. */
export function statisticSql(f: SchemaField): string {
  const c = quoteIdent(f.name);
  const [min, max] = f.type === 'timestamp' ? [`epoch_us(min(${c}))::VARCHAR`, `epoch_us(max(${c}))::VARCHAR`] : [`min(${c})`, `max(${c})`];
  return `${min}, ${max}, (count(*) - count(${c}))::BIGINT`;
}

export function statistic(type: FieldType, min: unknown, max: unknown, nulls: number): PartitionColumnStatistics {
  switch (type) {
    case 'timestamp':
      return { min: min === null ? null : isoFromMicrosFixed(BigInt(min as string)), max: max === null ? null : isoFromMicrosFixed(BigInt(max as string)), nulls };
    case 'integer':
      return { min: min === null ? null : Number(min as bigint), max: max === null ? null : Number(max as bigint), nulls };
    case 'string': {
      const minimum = min === null ? null : truncate(min as string);
      if (max !== null && (max as string).length > MAX_STRING_STATISTIC) return { min: minimum, nulls };
      return { min: minimum, max: max as string | null, nulls };
    }
    default:
      return { min: min as number | boolean | null, max: max as number | boolean | null, nulls };
  }
}

/** A prefix of at most MAX_STRING_STATISTIC UTF-16 units that does not split a surrogate pair. */
function truncate(value: string): string {
  if (value.length <= MAX_STRING_STATISTIC) return value;
  const end = MAX_STRING_STATISTIC;
  const code = value.charCodeAt(end - 1);
  return value.slice(0, code >= 0xd800 && code <= 0xdbff ? end - 1 : end);
}
