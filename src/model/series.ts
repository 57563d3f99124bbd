/**
 * Series: what tells one series of a dataset (one host, one sensor) from another, and which row of
 * a series is its latest. The query service's latest-value cache and the engine's latest-row
 * statement both take their definitions from here, so the two answer alike.
 */
import type { Dataset, SchemaField } from './records.ts';

/**
 * The dataset's series key: the admin's `sortColumns` when set (rows are stored in that order),
 * else every string field (the tags), in schema order. Never the timestamp column. A partition
 * key is a property of files, not of rows: it is part of the series key only where the rows also
 * carry it as a field.
 *
 * @example seriesKey({ sortColumns: [], timestampColumn: 'ts' }, [ts, host:string, usage:double]) // ['host']
 */
export function seriesKey(dataset: Pick<Dataset, 'sortColumns' | 'timestampColumn'>, fields: readonly SchemaField[]): string[] {
  const names = new Set(fields.map((f) => f.name));
  const sorted = dataset.sortColumns.filter((c) => c !== dataset.timestampColumn && names.has(c));
  if (sorted.length > 0) return sorted;
  return fields.filter((f) => f.type === 'string' && f.name !== dataset.timestampColumn).map((f) => f.name);
}

/**
 * The order that makes one row of a series its latest: the greatest timestamp, and among rows of
 * equal timestamps the one whose other fields, compared one after the other in schema order, are
 * greatest (NULL lowest; strings by their UTF-8 bytes, booleans false before true). A total order
 * on rows that depends on values only, never on files or the order rows arrived in, so the answer
 * stays the same whatever compaction does to the files. Returns the fields in comparison order,
 * the timestamp first; each is compared descending.
 */
export function latestRowOrder<F extends Pick<SchemaField, 'name' | 'type'>>(fields: readonly F[], timestampColumn: string): F[] {
  const ts = fields.filter((f) => f.name === timestampColumn);
  return [...ts, ...fields.filter((f) => f.name !== timestampColumn)];
}
