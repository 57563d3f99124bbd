/**
 * A query request checked against the dataset's schema and turned into the
 * plan the engine runs. Every identifier is a known column and every value has
 * its column's type, so nothing a client sends can change the shape of the
 * SQL; anything that does not fit is a 400 that says what to change.
 */
import type { FieldType } from '../model/field-types.ts';
import type { Dataset, SchemaField } from '../model/records.ts';
import { errors } from '../model/errors.ts';
import {
  type AggregationFn,
  aggregationType,
  type ColumnComparisons,
  type DownsampleMode,
  type Fill,
  type FilterOp,
  type FilterValue,
  type IntervalUnit,
  type LatestMode,
  type LatestRequest,
  type PlannedFill,
  type QueryFilter,
  type QueryRequest,
  type RawMode,
  ROWS,
} from '../model/query.ts';
import { seriesKey } from '../model/series.ts';
import { parseTimestamp } from '../model/timestamps.ts';

export interface QueryLimits {
  maxRows: number;
  defaultRows: number;
  maxBuckets: number;
}

export interface QueryPlan {
  from: Date;
  to: Date;
  timestampColumn: string;
  partitionKey: Record<string, string[]>;
  filters: QueryFilter[];
  mode: RawMode | DownsampleMode;
}

/** A planned latest-per-series request; `from` and `to` are null when it reads every row. */
export interface LatestPlan extends Omit<QueryPlan, 'from' | 'to' | 'mode'> {
  from: Date | null;
  to: Date | null;
  mode: LatestMode;
}

/** What the scan of either reads. */
export type ScanPlan = QueryPlan | LatestPlan;

const NUMERIC: FieldType[] = ['double', 'integer'];
const ORDERED: FieldType[] = ['double', 'integer', 'timestamp', 'string'];
const FN_TYPES: Record<AggregationFn, FieldType[] | 'any'> = {
  avg: NUMERIC,
  sum: NUMERIC,
  median: NUMERIC,
  percentile: NUMERIC,
  min: ORDERED,
  max: ORDERED,
  count: 'any',
  count_distinct: 'any',
  first: 'any',
  last: 'any',
};
const UNIT_MS: Record<Exclude<IntervalUnit, 'month'>, number> = {
  second: 1_000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  week: 604_800_000,
};

/** The start, in epoch milliseconds, of the fixed-width bucket of `size` × `unit` that holds the instant `at` (aligned to the epoch, as the engine aligns it). */
export function bucketStart(at: number, unit: Exclude<IntervalUnit, 'month'>, size: number): number {
  const width = UNIT_MS[unit] * size;
  return Math.floor(at / width) * width;
}

/**
 * How many buckets of `size` × `unit` (aligned as the engine aligns them: to the epoch, months to
 * UTC calendar months from 1970-01) the range `[from, to)` of epoch milliseconds touches: with a
 * fill, exactly the buckets the answer has per groupBy combination.
 */
export function bucketCount(from: number, to: number, unit: IntervalUnit, size: number): number {
  if (unit === 'month') {
    const month = (ms: number) => {
      const d = new Date(ms);
      return (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
    };
    return Math.floor(month(to - 1) / size) - Math.floor(month(from) / size) + 1;
  }
  const width = UNIT_MS[unit] * size;
  return Math.floor((to - 1) / width) - Math.floor(from / width) + 1;
}

/**
 * A fill checked against its aggregation's output type: `linear` and numbers need a numeric
 * output, a number an integer for an integer output; `null` (or none) is no replacement.
 */
function plannedFill(fill: Fill | undefined, outputType: string, where: string, index: number): PlannedFill | undefined {
  if (fill === undefined || fill === null || fill === 'none' || fill === 'null') return undefined;
  const numeric = outputType === 'double' || outputType === 'integer';
  if (fill === 'previous') return fill;
  if (!numeric) {
    throw errors.invalid_fill(`${where}: fill ${JSON.stringify(fill)} needs a numeric aggregation; this one answers ${outputType} values (use "previous" or "null")`, {
      index,
    });
  }
  if (fill === 'linear') return fill;
  if (!Number.isFinite(fill) || (outputType === 'integer' && !Number.isSafeInteger(fill))) {
    throw errors.invalid_fill(`${where}: fill ${fill} is not ${outputType === 'integer' ? 'an integer' : 'a finite number'}, as this aggregation's values are`, {
      index,
    });
  }
  return { value: fill };
}

/** Looks a column up by name; an unknown one is a 400 that lists the dataset's columns. */
function columnLookup(fields: SchemaField[]): (name: string, where: string) => SchemaField {
  const byName = new Map(fields.map((f) => [f.name, f]));
  return (name, where) => {
    const field = byName.get(name);
    if (!field) {
      throw errors.unknown_column(`${where}: "${name}" is not a column of this dataset (columns: ${fields.map((f) => f.name).join(', ')})`, {
        column: name,
      });
    }
    return field;
  };
}

function timeRange(range: { start: string; end: string }): { from: number; to: number } {
  const from = parseTimestamp(range.start);
  const to = parseTimestamp(range.end);
  if (Number.isNaN(from) || Number.isNaN(to)) throw errors.invalid_time_range('timeRange.start and timeRange.end must be ISO-8601 timestamps');
  if (from >= to) throw errors.invalid_time_range('timeRange.start must be before timeRange.end (the end is exclusive)');
  return { from, to };
}

function rowLimit(requested: number | undefined, limits: QueryLimits): number {
  const limit = requested ?? limits.defaultRows;
  if (limit > limits.maxRows) throw errors.limit_too_large(`limit ${limit} is over the server maximum of ${limits.maxRows}`, { maxRows: limits.maxRows });
  return limit;
}

export function planQuery(request: QueryRequest, fields: SchemaField[], datasetTimestampColumn: string, limits: QueryLimits): QueryPlan {
  const column = columnLookup(fields);
  const ts = request.timestampColumn ?? datasetTimestampColumn;
  if (ts !== datasetTimestampColumn) {
    throw errors.invalid_timestamp_column(`timestampColumn "${ts}" is not this dataset's timestamp column "${datasetTimestampColumn}"`);
  }
  const { from, to } = timeRange(request.timeRange);
  const order = request.order ?? 'asc';
  const limit = rowLimit(request.limit, limits);

  const filters = columnFilters(request.filters?.columns ?? {}, column);
  const partitionKey = request.filters?.partitionKey ?? {};

  let mode: RawMode | DownsampleMode;
  if (!request.downsample) {
    const columns = request.columns ?? fields.map((f) => f.name).filter((n) => n !== ts);
    for (const name of columns) column(name, 'columns');
    mode = { kind: 'raw', columns: columns.filter((n) => n !== ts), order, limit };
  } else {
    const d = request.downsample;
    const size = d.intervalSize ?? 1;
    const buckets = bucketCount(from, to, d.intervalUnit, size);
    if (buckets > limits.maxBuckets) {
      throw errors.too_many_buckets(
        `${buckets} buckets of ${size} ${d.intervalUnit}(s) over this time range is over the maximum of ${limits.maxBuckets}: use a larger interval or a shorter range`,
        { buckets, maxBuckets: limits.maxBuckets },
      );
    }
    if (d.aggregations.length === 0) throw errors.no_aggregations('downsample.aggregations needs at least one aggregation');
    const groupBy = d.groupBy ?? [];
    for (const name of groupBy) {
      if (column(name, 'downsample.groupBy').type !== 'string') {
        throw errors.invalid_group_by(`downsample.groupBy: "${name}" is not a string column; group by string columns only`, { column: name });
      }
    }
    const aliases = new Set<string>([ts, ...groupBy]);
    let fillGaps = d.fill !== undefined && d.fill !== 'none';
    const aggregations = d.aggregations.map((a, index) => {
      const where = `downsample.aggregations[${index}]`;
      if (a.column === undefined) {
        if (a.fn !== 'count') {
          throw errors.invalid_aggregation(`${where}: ${a.fn} needs a "column" (only count, which then counts rows, goes without one)`, { index });
        }
      } else {
        const field = column(a.column, where);
        const allowed = FN_TYPES[a.fn];
        if (allowed !== 'any' && !allowed.includes(field.type)) {
          throw errors.invalid_aggregation(`${where}: ${a.fn} does not apply to ${field.type} column "${a.column}" (it needs ${allowed.join(' or ')})`, {
            index,
          });
        }
      }
      if (a.fn === 'percentile' && (a.percentile === undefined || !(a.percentile >= 0 && a.percentile <= 1))) {
        throw errors.invalid_percentile(`${where}: percentile needs a "percentile" value between 0 and 1`, { index });
      }
      if (a.fn !== 'percentile' && a.percentile !== undefined) {
        throw errors.invalid_percentile(`${where}: "percentile" only applies to fn "percentile"`, { index });
      }
      const alias = a.alias ?? (a.column === undefined ? 'count' : `${a.fn}_${a.column}`);
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(alias)) {
        throw errors.invalid_alias(`${where}: alias "${alias}" must be letters, digits and _, starting with a letter or _`, { index });
      }
      if (aliases.has(alias)) throw errors.duplicate_alias(`${where}: the output column "${alias}" is already taken; give an alias`, { index });
      aliases.add(alias);
      if (a.fill !== undefined) fillGaps = true;
      const columnType = a.column === undefined ? 'integer' : column(a.column, where).type;
      const fill = plannedFill(a.fill ?? d.fill, aggregationType(a.fn, columnType), where, index);
      return {
        fn: a.fn,
        column: a.column ?? ROWS,
        alias,
        ...(a.fn === 'percentile' ? { percentile: a.percentile } : {}),
        ...(fill !== undefined ? { fill } : {}),
      };
    });
    mode = {
      kind: 'downsample',
      intervalUnit: d.intervalUnit,
      intervalSize: size,
      aggregations,
      groupBy,
      ...(fillGaps ? { fillGaps } : {}),
      order,
      limit,
    };
  }

  return { from: new Date(from), to: new Date(to), timestampColumn: ts, partitionKey, filters, mode };
}

/**
 * A latest-per-series request checked against the dataset: `by` defaults to the series key
 * (model/series.ts), `columns` to every other field; without a time range every row counts.
 */
export function planLatest(
  request: LatestRequest,
  fields: SchemaField[],
  dataset: Pick<Dataset, 'timestampColumn' | 'sortColumns'>,
  limits: QueryLimits,
): LatestPlan {
  const column = columnLookup(fields);
  const ts = dataset.timestampColumn;
  const range = request.timeRange ? timeRange(request.timeRange) : null;
  const limit = rowLimit(request.limit, limits);
  const filters = columnFilters(request.filters?.columns ?? {}, column);
  const by = request.by ?? seriesKey(dataset, fields);
  for (const [index, name] of by.entries()) {
    column(name, 'by');
    if (name === ts) throw errors.invalid_by(`by: "${name}" is the timestamp column; name the columns that tell series apart`, { column: name });
    if (by.indexOf(name) !== index) throw errors.invalid_by(`by names "${name}" twice`, { column: name });
  }
  const columns = request.columns ?? fields.map((f) => f.name);
  for (const name of columns) column(name, 'columns');
  return {
    from: range ? new Date(range.from) : null,
    to: range ? new Date(range.to) : null,
    timestampColumn: ts,
    partitionKey: request.filters?.partitionKey ?? {},
    filters,
    mode: { kind: 'latest', by, columns: columns.filter((n) => n !== ts && !by.includes(n)), order: request.order ?? 'asc', limit },
  };
}

function columnFilters(spec: Record<string, ColumnComparisons>, column: (name: string, where: string) => SchemaField): QueryFilter[] {
  const filters: QueryFilter[] = [];
  for (const [name, ops] of Object.entries(spec)) {
    const field = column(name, 'filters.columns');
    for (const [op, raw] of Object.entries(ops) as [FilterOp, FilterValue | FilterValue[] | null][]) {
      const where = `filters.columns.${name}.${op}`;
      if (op === 'in') {
        if (!Array.isArray(raw) || raw.length === 0) throw errors.invalid_filter(`${where} needs a non-empty list of values`);
        filters.push({ column: name, op, values: raw.map((v) => typedValue(v, field, where)) });
      } else if (raw === null && (op === 'eq' || op === 'neq')) {
        filters.push({ column: name, op, value: null });
      } else {
        if (Array.isArray(raw) || raw === null) throw errors.invalid_filter(`${where} needs one value`);
        if (field.type === 'boolean' && op !== 'eq' && op !== 'neq') throw errors.invalid_filter(`${where}: booleans compare with eq and neq only`);
        filters.push({ column: name, op, value: typedValue(raw, field, where) });
      }
    }
  }
  return filters;
}

function typedValue(value: FilterValue, field: SchemaField, where: string): FilterValue {
  const ok =
    (field.type === 'string' && typeof value === 'string') ||
    (field.type === 'double' && typeof value === 'number' && Number.isFinite(value)) ||
    (field.type === 'integer' && typeof value === 'number' && Number.isSafeInteger(value)) ||
    (field.type === 'boolean' && typeof value === 'boolean') ||
    (field.type === 'timestamp' && typeof value === 'string' && !Number.isNaN(parseTimestamp(value)));
  if (!ok) throw errors.invalid_filter(`${where}: ${JSON.stringify(value)} is not a ${field.type} value`, { column: field.name });
  return value;
}
