/**
 * Partition pruning by the per-column statistics the writer recorded: a
 * partition whose min/max show that no row can pass a filter is never opened.
 * Every rule errs towards keeping a partition: missing or truncated
 * statistics keep it.
 */
import type { FieldType } from '../model/field-types.ts';
import type { ColumnStatistics, Partition, SchemaField } from '../model/records.ts';
import { parseTimestamp } from '../model/timestamps.ts';
import type { FilterValue, QueryFilter } from '../model/query.ts';

type Comparable = number | Buffer;

/** Compares as DuckDB does: numbers numerically, strings by their UTF-8 bytes, timestamps by instant. */
function toComparable(value: FilterValue | null | undefined, type: FieldType, bound: 'low' | 'high'): Comparable | null {
  if (value === null || value === undefined) return null;
  if (type === 'string') return Buffer.from(String(value), 'utf8');
  if (type === 'timestamp') {
    const ms = parseTimestamp(String(value));
    if (Number.isNaN(ms)) return null;
    // Statistics carry microseconds; milliseconds widened outward keep the bound safe.
    return bound === 'high' && /\.\d{4,}/.test(String(value)) ? ms + 1 : ms;
  }
  if (type === 'boolean') return value === true ? 1 : 0;
  return typeof value === 'number' ? value : Number(value);
}

function compare(a: Comparable, b: Comparable): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return Buffer.compare(a as Buffer, b as Buffer);
}

/** False when the statistics prove that no row of the partition passes the filter. */
export function mayMatch(filter: QueryFilter, stats: ColumnStatistics | undefined, type: FieldType): boolean {
  if (!stats) return true;
  const allNull = stats.min === null && (stats.max === null || stats.max === undefined);
  if (filter.value === null) {
    // eq null: rows that are null; neq null: rows that are not.
    if (filter.op === 'eq') return stats.nulls === undefined || stats.nulls > 0;
    return !allNull;
  }
  if (allNull) return false; // comparisons with NULL pass no row
  const min = toComparable(stats.min, type, 'low');
  const max = stats.max === undefined ? null : toComparable(stats.max, type, 'high');
  // Each comparison uses the bound of the value that keeps the partition when in doubt.
  const low = toComparable(filter.value, type, 'low');
  const high = toComparable(filter.value, type, 'high');
  switch (filter.op) {
    case 'eq':
      return !((high !== null && min !== null && compare(high, min) < 0) || (low !== null && max !== null && compare(low, max) > 0));
    case 'in':
      return (filter.values ?? []).some((v) => mayMatch({ column: filter.column, op: 'eq', value: v }, stats, type));
    case 'neq':
      return !(low !== null && high !== null && min !== null && max !== null && compare(min, high) === 0 && compare(max, low) === 0 && compare(low, high) === 0);
    case 'gt':
      return !(low !== null && max !== null && compare(max, low) <= 0);
    case 'gte':
      return !(low !== null && max !== null && compare(max, low) < 0);
    case 'lt':
      return !(high !== null && min !== null && compare(min, high) >= 0);
    case 'lte':
      return !(high !== null && min !== null && compare(min, high) > 0);
  }
}

/** The partitions that may hold rows passing every filter. */
export function prunePartitions(partitions: Partition[], filters: QueryFilter[], fields: SchemaField[]): Partition[] {
  if (filters.length === 0) return partitions;
  const types = new Map(fields.map((f) => [f.name, f.type]));
  return partitions.filter((p) =>
    filters.every((f) => mayMatch(f, p.columnStatistics[f.column], types.get(f.column) ?? 'string')),
  );
}

/** The fields that no partition holds a NULL of (by the writer's null counts; a partition without a count may). */
export function columnsWithoutNulls(partitions: Partition[], fields: SchemaField[]): string[] {
  return fields.filter((f) => partitions.every((p) => p.columnStatistics[f.name]?.nulls === 0)).map((f) => f.name);
}

/** The fields that at least one partition's file holds (the writer records statistics for every column it writes). */
export function fieldsInFiles(partitions: Partition[], fields: SchemaField[]): string[] {
  return fields.filter((f) => partitions.some((p) => p.columnStatistics[f.name] !== undefined)).map((f) => f.name);
}
