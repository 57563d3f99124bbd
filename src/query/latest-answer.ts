/**
 * Answers from the latest rows the cache keeps (latest-cache.ts), for POST /datasets/:slug/latest
 * and for the downsample that asks each group's latest values over one bucket (the "lastpoint"
 * form: `last` of columns and `max`/`last` of the timestamp, grouped by series columns).
 *
 * Each answer is exactly what the file scan would give:
 * - a group's latest row is the latest of its series' latest rows (the order is total, so the
 *   latest of a union is the latest of the latests), which is why `by`/`groupBy` may name any
 *   subset of the series key;
 * - filters hold or fail for a whole series only when they test series-key columns;
 * - a series whose latest row is before the time range has no row in it; one whose latest row is
 *   at or past the range's end may have older rows in it, which the cache does not keep: null;
 * - `last` of a column skips NULLs: when a group's latest row has a NULL there, the answer is an
 *   older row's value, which the cache does not keep: null.
 * A null answer means "read the files".
 */
import type { QueryRow } from '../engine/query.ts';
import type { FieldType } from '../model/field-types.ts';
import { FIXED_INTERVAL_MICROS, type QueryFilter, ROWS } from '../model/query.ts';
import type { SchemaField } from '../model/records.ts';
import { fixedMicros, isoFromMicrosTrimmed } from '../model/timestamps.ts';
import { compareValues, keyComparator, type LatestTable } from './latest-cache.ts';
import type { LatestPlan, QueryPlan } from './request.ts';

export interface CachedAnswer {
  rows: QueryRow[];
  truncated: boolean;
  /** The rows as a JSON array, once a JSON answer has encoded them (the answer may be asked again). */
  json?: Uint8Array;
}

/** Filter types the cache compares exactly as DuckDB does. */
const KEY_FILTER_TYPES: ReadonlySet<FieldType> = new Set(['string', 'integer', 'double', 'boolean']);

function answerable(plan: { partitionKey: Record<string, string[]>; filters: QueryFilter[] }, groups: readonly string[], key: readonly string[], fields: readonly SchemaField[]): boolean {
  if (Object.keys(plan.partitionKey).length > 0) return false; // files, not rows, have partition keys
  const types = new Map(fields.map((f) => [f.name, f.type]));
  return (
    groups.every((c) => key.includes(c)) &&
    plan.filters.every((f) => key.includes(f.column) && KEY_FILTER_TYPES.has(types.get(f.column) ?? 'timestamp'))
  );
}

/** Whether a latest request can be answered from the series' latest rows at all. */
export function latestFromCache(plan: LatestPlan, key: readonly string[], fields: readonly SchemaField[]): boolean {
  return answerable(plan, plan.mode.by, key, fields);
}

export function answerLatest(table: LatestTable, plan: LatestPlan, fields: readonly SchemaField[]): CachedAnswer | null {
  const { mode } = plan;
  const rows = latestPerGroup(table, plan, mode.by, fields, mode.order);
  if (!rows) return null;
  const columns = [plan.timestampColumn, ...mode.by, ...mode.columns];
  return limited(
    rows.map((row) => {
      const out: QueryRow = {};
      for (const c of columns) out[c] = row[c] ?? null;
      return out;
    }),
    mode.limit,
  );
}

/** A downsample in the lastpoint form, with its one bucket's label. */
export interface LastpointForm {
  label: string;
}

/** The bucket label when the downsample is the lastpoint form over one bucket, else null. */
export function lastpointForm(plan: QueryPlan, key: readonly string[], fields: readonly SchemaField[]): LastpointForm | null {
  const { mode } = plan;
  // A gap-filled answer has a row for its bucket even without rows in it, which the cache cannot tell.
  if (mode.kind !== 'downsample' || mode.intervalUnit === 'month' || mode.fillGaps) return null;
  if (!answerable(plan, mode.groupBy, key, fields)) return null;
  const ts = plan.timestampColumn;
  const picksLatest = mode.aggregations.every((a) => (a.column === ts ? a.fn === 'max' || a.fn === 'last' : a.fn === 'last' && a.column !== ROWS));
  if (!picksLatest) return null;
  const width = FIXED_INTERVAL_MICROS[mode.intervalUnit] * BigInt(mode.intervalSize);
  const first = floorDivide(BigInt(plan.from.getTime()) * 1000n, width);
  if (first !== floorDivide(BigInt(plan.to.getTime()) * 1000n - 1n, width)) return null;
  return { label: isoFromMicrosTrimmed(first * width) };
}

export function answerLastpoint(table: LatestTable, plan: QueryPlan, form: LastpointForm, fields: readonly SchemaField[]): CachedAnswer | null {
  const { mode } = plan;
  if (mode.kind !== 'downsample') return null;
  const rows = latestPerGroup(table, plan, mode.groupBy, fields, 'asc');
  if (!rows) return null;
  const ts = plan.timestampColumn;
  if (rows.some((row) => mode.aggregations.some((a) => a.column !== ts && (row[a.column] ?? null) === null))) return null;
  return limited(
    rows.map((row) => {
      const out: QueryRow = { [ts]: form.label };
      for (const c of mode.groupBy) out[c] = row[c] ?? null;
      for (const a of mode.aggregations) out[a.alias] = row[a.column] ?? null;
      return out;
    }),
    mode.limit,
  );
}

/**
 * The latest row of each `groups` combination among the series that pass the filters and have
 * their latest row in the plan's range, ordered by `groups`; null when a series' latest row is at
 * or past the range's end. Grouping by the whole key keeps every series as it is; by the key in
 * its own order, ascending, the table's sorted rows need no sorting either (lastpoint).
 */
function latestPerGroup(
  table: LatestTable,
  plan: { from: Date | null; to: Date | null; timestampColumn: string; filters: QueryFilter[] },
  groups: readonly string[],
  fields: readonly SchemaField[],
  order: 'asc' | 'desc',
): QueryRow[] | null {
  const types = new Map(fields.map((f) => [f.name, f.type]));
  const from = plan.from ? fixedMicros(plan.from.toISOString()) : null;
  const to = plan.to ? fixedMicros(plan.to.toISOString()) : null;
  const perSeries = groups.length === table.key.length && groups.every((c) => table.key.includes(c));
  const sorted = perSeries && order === 'asc' && groups.every((c, i) => table.key[i] === c);
  const kept: QueryRow[] = [];
  const latest = new Map<string, QueryRow>();
  for (const row of sorted ? table.sorted() : table.rows.values()) {
    if (!plan.filters.every((f) => matches(row[f.column] ?? null, f, types.get(f.column)!))) continue;
    const time = fixedMicros(row[plan.timestampColumn] as string);
    if (to !== null && time >= to) return null;
    if (from !== null && time < from) continue;
    if (perSeries) {
      kept.push(row);
      continue;
    }
    const id = JSON.stringify(groups.map((c) => row[c] ?? null));
    const current = latest.get(id);
    if (!current || table.compare.rows(row, current) > 0) latest.set(id, row);
  }
  const rows = perSeries ? kept : [...latest.values()];
  if (!sorted) rows.sort(keyComparator(groups, fields, order));
  return rows;
}

/** Whether a value passes a filter, as the statement's WHERE decides (NULL passes only `neq` and `eq null`). */
function matches(value: QueryRow[string], filter: QueryFilter, type: FieldType): boolean {
  if (filter.op === 'eq' && filter.value === null) return value === null;
  if (filter.op === 'neq' && filter.value === null) return value !== null;
  if (filter.op === 'neq') return value === null || compareValues(value, filter.value!, type) !== 0;
  if (value === null) return false;
  if (filter.op === 'in') return filter.values!.some((v) => compareValues(value, v, type) === 0);
  const c = compareValues(value, filter.value!, type);
  switch (filter.op) {
    case 'eq':
      return c === 0;
    case 'gt':
      return c > 0;
    case 'gte':
      return c >= 0;
    case 'lt':
      return c < 0;
    case 'lte':
      return c <= 0;
  }
}

function limited(rows: QueryRow[], limit: number): CachedAnswer {
  return rows.length > limit ? { rows: rows.slice(0, limit), truncated: true } : { rows, truncated: false };
}

function floorDivide(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n ? q - 1n : q;
}
