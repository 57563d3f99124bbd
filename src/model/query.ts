/**
 * The query vocabulary, declared once: what a client may ask for (the request body of
 * POST /datasets/:slug/query, as TypeBox schemas that the route validates and documents) and the
 * checked plan the query service hands to the engine. The TypeScript types and value lists that the
 * route, the planner (query/request.ts) and the SQL builder (engine/query-sql.ts) use are derived
 * from these schemas.
 */
import { type IntegerOptions, type Static, type TSchema, Type } from '@sinclair/typebox';

export const AggregationFnSchema = Type.Union([
  Type.Literal('avg'),
  Type.Literal('min'),
  Type.Literal('max'),
  Type.Literal('sum'),
  Type.Literal('median'),
  Type.Literal('count'),
  Type.Literal('count_distinct'),
  Type.Literal('percentile'),
  Type.Literal('first'),
  Type.Literal('last'),
]);
export type AggregationFn = Static<typeof AggregationFnSchema>;

export const IntervalUnitSchema = Type.Union([
  Type.Literal('second'),
  Type.Literal('minute'),
  Type.Literal('hour'),
  Type.Literal('day'),
  Type.Literal('week'),
  Type.Literal('month'),
]);
export type IntervalUnit = Static<typeof IntervalUnitSchema>;
export const INTERVAL_UNITS: readonly IntervalUnit[] = IntervalUnitSchema.anyOf.map((s) => s.const);

/** Widths of the fixed-width units in microseconds (UTC has no leap seconds or DST); months vary. */
export const FIXED_INTERVAL_MICROS: Readonly<Record<Exclude<IntervalUnit, 'month'>, bigint>> = {
  second: 1_000_000n,
  minute: 60_000_000n,
  hour: 3_600_000_000n,
  day: 86_400_000_000n,
  week: 604_800_000_000n,
};

/** `[start, end)` around every instant a row may have (model/timestamps.ts STORABLE_TIME_RANGE), for reads of every row. */
export const EVERY_INSTANT = { start: '0001-01-01T00:00:00Z', end: '10000-01-01T00:00:00Z' } as const;

/**
 * What an empty bucket of a downsample answers (`downsample.fill`, or one aggregation's `fill`):
 * `none` leaves buckets without rows out; the others answer every bucket of the time range (for
 * every `groupBy` combination) and replace an aggregation that has no value there: `null` leaves
 * it null, `previous` takes the last value before it within the range, `linear` interpolates
 * between the values before and after it (null at either edge), a number is that number.
 */
export const FillSchema = Type.Union(
  [Type.Literal('none'), Type.Literal('null'), Type.Null(), Type.Literal('previous'), Type.Literal('linear'), Type.Number()],
  {
    description:
      'Empty buckets: `none` (default) leaves them out; `null`, `previous` (the last value before, within the range), `linear` (between the neighbouring values; null at the edges) or a number answer every bucket of the range, for every groupBy combination.',
  },
);
export type Fill = Static<typeof FillSchema>;

/** One aggregation's own fill (overriding `downsample.fill`); `none` is a property of the whole answer, not of one column. */
export const AggregationFillSchema = Type.Union([Type.Literal('null'), Type.Null(), Type.Literal('previous'), Type.Literal('linear'), Type.Number()], {
  description: "This aggregation's fill, overriding `downsample.fill`; any aggregation's fill makes every bucket of the range answer.",
});

/** A checked fill of one aggregation; absent: it stays null in a bucket without a value. */
export type PlannedFill = 'previous' | 'linear' | { value: number };

export const FilterValueSchema = Type.Union([Type.String(), Type.Number(), Type.Boolean()]);
export type FilterValue = Static<typeof FilterValueSchema>;

/** The comparisons a request may make on one column (`filters.columns.<name>`). */
export const ColumnComparisonsSchema = Type.Object(
  {
    eq: Type.Optional(Type.Union([FilterValueSchema, Type.Null()])),
    neq: Type.Optional(Type.Union([FilterValueSchema, Type.Null()])),
    in: Type.Optional(Type.Array(FilterValueSchema, { minItems: 1, maxItems: 1000 })),
    gt: Type.Optional(FilterValueSchema),
    gte: Type.Optional(FilterValueSchema),
    lt: Type.Optional(FilterValueSchema),
    lte: Type.Optional(FilterValueSchema),
  },
  { additionalProperties: false, description: 'Comparisons on one column, all of which must hold.' },
);
export type ColumnComparisons = Static<typeof ColumnComparisonsSchema>;
export type FilterOp = keyof ColumnComparisons;

/** Which rows a request reads besides its time range (`filters`). */
export const FiltersSchema = Type.Object({
  partitionKey: Type.Optional(
    Type.Record(Type.String(), Type.Array(Type.String(), { minItems: 1 }), {
      description: 'Partition-key values to keep, e.g. {"instrument":["A","B"]}: prunes whole partitions.',
    }),
  ),
  columns: Type.Optional(
    Type.Record(Type.String(), ColumnComparisonsSchema, {
      description: 'Per-column comparisons, ANDed: {"host":{"in":["a","b"]},"usage":{"gte":0.9}}.',
    }),
  ),
});

export const TimeRangeSchema = Type.Object({
  start: Type.String({ format: 'date-time' }),
  end: Type.String({ format: 'date-time', description: 'Exclusive.' }),
});

export const SortOrderSchema = Type.Union([Type.Literal('asc'), Type.Literal('desc')]);
export type SortOrder = Static<typeof SortOrderSchema>;

const EXAMPLE = {
  timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' },
  downsample: {
    intervalUnit: 'hour',
    intervalSize: 1,
    aggregations: [
      { fn: 'avg', column: 'temperature_c', alias: 'avg_temp' },
      { fn: 'max', column: 'temperature_c', fill: 'linear' },
      { fn: 'percentile', column: 'temperature_c', percentile: 0.95, alias: 'p95_temp' },
      { fn: 'count', alias: 'readings' },
    ],
    fill: 'previous',
  },
  limit: 1000,
};

/**
 * The request body. `integer` builds its integer properties: the HTTP layer passes its framework's
 * integer, which also takes an integer written as a string, so the transport keeps that leniency
 * without this module depending on the framework.
 */
export function queryRequestSchema<Integer extends TSchema>(integer: (options: IntegerOptions) => Integer) {
  return Type.Object(
    {
      timeRange: TimeRangeSchema,
      timestampColumn: Type.Optional(Type.String({ description: "The dataset's timestamp column (default: the dataset's)." })),
      columns: Type.Optional(Type.Array(Type.String(), { description: 'Raw mode: the columns to return besides the timestamp (default: all).' })),
      filters: Type.Optional(FiltersSchema),
      downsample: Type.Optional(
        Type.Object({
          intervalUnit: IntervalUnitSchema,
          intervalSize: Type.Optional(integer({ minimum: 1, maximum: 100_000, default: 1 })),
          aggregations: Type.Array(
            Type.Object({
              fn: AggregationFnSchema,
              column: Type.Optional(Type.String({ description: 'The column to aggregate; every fn needs one but `count`, which without one counts rows.' })),
              alias: Type.Optional(Type.String({ description: 'The output column (default `<fn>_<column>`, or `count` for a count of rows).' })),
              percentile: Type.Optional(Type.Number({ description: 'For fn "percentile": between 0 and 1.' })),
              fill: Type.Optional(AggregationFillSchema),
            }),
            { maxItems: 100 },
          ),
          groupBy: Type.Optional(Type.Array(Type.String(), { maxItems: 10, description: 'String columns: one series per distinct combination.' })),
          fill: Type.Optional(FillSchema),
        }),
      ),
      limit: Type.Optional(integer({ minimum: 1, description: 'Most rows to return (server maximum: TIMESTORE_QUERY_MAX_ROWS).' })),
      order: Type.Optional(Type.Union(SortOrderSchema.anyOf, { description: 'By time; default asc.' })),
    },
    { example: EXAMPLE },
  );
}

export const QueryRequestSchema = queryRequestSchema(Type.Integer);
/** A query as the client sent it, validated for shape only (the planner checks it against the dataset). */
export type QueryRequest = Static<typeof QueryRequestSchema>;

/**
 * The query string of GET /datasets/:slug/query: the same question as the POST body in words a URL
 * (and a dashboard's macros) can carry; a list parameter may be comma-separated or given more than
 * once. query/parameters.ts turns it into a {@link QueryRequest}.
 */
export const QueryParametersSchema = Type.Object(
  {
    from: Type.String({ description: 'Start (inclusive): epoch milliseconds (Grafana `${__from}`) or ISO-8601.', example: '1767225600000' }),
    to: Type.String({ description: 'End (exclusive): epoch milliseconds (Grafana `${__to}`) or ISO-8601.', example: '1767312000000' }),
    interval: Type.Optional(
      Type.String({
        pattern: '^[1-9][0-9]*(ms|s|m|h|d|w|M)?$',
      example: '3600000',
        description:
          'Bucket width: a number of milliseconds (Grafana `${__interval_ms}`; rounded up to whole seconds), or a number with a unit `s`, `m`, `h`, `d`, `w`, `M` (months). With it the answer is downsampled and `agg` is needed.',
      }),
    ),
    agg: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.:*,]+$' }), {
      example: ['avg:temperature_c', 'max:temperature_c:peak'],
        description:
          'Aggregations, `fn:column[:alias]` (comma-separated or repeated): `avg:usage_user`, `max:usage_user:peak`; `count` counts rows; `p95:latency` is the 0.95 percentile (`p99.9` …).',
      }),
    ),
    groupBy: Type.Optional(Type.String({ description: 'String columns, comma-separated: one series per combination.' })),
    fill: Type.Optional(Type.String({ example: 'null', pattern: '^(none|null|previous|linear|-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?)$', description: 'As `downsample.fill` of the POST body, for every aggregation.' })),
    columns: Type.Optional(Type.String({ description: 'Raw answers (no `interval`): the columns besides the timestamp, comma-separated (default: all).' })),
    filter: Type.Optional(
      Type.Array(Type.String(), {
        description:
          '`column:value` (repeated): rows whose column equals the value; several values (`host:a,b`, or the column named again): any of them. Values cannot hold commas.',
      }),
    ),
    limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]*$', description: 'Most rows to return (server maximum: TIMESTORE_QUERY_MAX_ROWS).' })),
    order: Type.Optional(Type.Union(SortOrderSchema.anyOf, { description: 'By time; default asc.' })),
  },
  {
  additionalProperties: false,
  example: { from: '1767225600000', to: '1767312000000', interval: '3600000', agg: ['avg:temperature_c', 'max:temperature_c'], fill: 'null' },
  },
);
/** The query string of GET /datasets/:slug/query, validated for shape only. */
export type QueryParameters = Static<typeof QueryParametersSchema>;

/**
 * The body of POST /datasets/:slug/latest: the latest row of every series (model/series.ts), or
 * of every combination of `by`, optionally within a time range and filtered; `integer` as for
 * {@link queryRequestSchema}.
 */
export function latestRequestSchema<Integer extends TSchema>(integer: (options: IntegerOptions) => Integer) {
  return Type.Object(
    {
      by: Type.Optional(
        Type.Array(Type.String(), {
          maxItems: 10,
          description: "Columns whose combinations are the series (default: the dataset's series key: its sortColumns, else its string fields).",
        }),
      ),
      columns: Type.Optional(Type.Array(Type.String(), { description: 'The columns to return besides the timestamp and `by` (default: all).' })),
      timeRange: Type.Optional(Type.Object(TimeRangeSchema.properties, { description: 'Only rows in [start, end) count (default: every row).' })),
      filters: Type.Optional(FiltersSchema),
      limit: Type.Optional(integer({ minimum: 1, description: 'Most rows (series) to return (server maximum: TIMESTORE_QUERY_MAX_ROWS).' })),
      order: Type.Optional(Type.Union(SortOrderSchema.anyOf, { description: 'By the `by` columns (NULLs last); default asc.' })),
    },
    { example: { by: ['host'], columns: ['usage_user', 'usage_system'], filters: { columns: { region: { eq: 'eu-west-1' } } } } },
  );
}

export const LatestRequestSchema = latestRequestSchema(Type.Integer);
/** A latest-per-series request as the client sent it, validated for shape only. */
export type LatestRequest = Static<typeof LatestRequestSchema>;

/** A checked comparison on one column, ready for the SQL builder. */
export interface QueryFilter {
  column: string;
  op: FilterOp;
  /** For every op but `in`. `null` only with `eq` (IS NULL) and `neq` (IS NOT NULL). */
  value?: FilterValue | null;
  /** For `in`. An empty list matches nothing. */
  values?: FilterValue[];
}

/** The `column` of a checked `count` aggregation that counts rows (the request names no column). */
export const ROWS = '*';

export interface Aggregation {
  fn: AggregationFn;
  /** A field name; `count` also takes {@link ROWS} (rows in the bucket). */
  column: string;
  alias: string;
  /** For `percentile`: 0 … 1. */
  percentile?: number;
  /** With {@link DownsampleMode} `fillGaps`: what replaces a null value (absent: it stays null). */
  fill?: PlannedFill;
}

export interface RawMode {
  kind: 'raw';
  columns: string[];
  order: SortOrder;
  limit: number;
}

export interface DownsampleMode {
  kind: 'downsample';
  intervalUnit: IntervalUnit;
  intervalSize: number;
  aggregations: Aggregation[];
  groupBy: string[];
  /**
   * Every bucket of the time range is answered, for every groupBy combination that has rows in it,
   * not only the buckets with rows; `count` and `count_distinct` are 0 in an empty one.
   */
  fillGaps?: boolean;
  order: SortOrder;
  limit: number;
}

/**
 * The type of an aggregation's output column in timestore's type names: counts are integers,
 * averages and quantiles doubles, a `linear` fill makes any number a double, the others keep their
 * column's type (`sum` of integers stays an integer).
 */
export function aggregationType(fn: AggregationFn, columnType: string, fill?: PlannedFill): string {
  if (fn === 'count' || fn === 'count_distinct') return 'integer';
  if (fn === 'avg' || fn === 'median' || fn === 'percentile' || fill === 'linear') return 'double';
  return columnType;
}

/**
 * The latest row (model/series.ts `latestRowOrder`) of every combination of `by` among the rows
 * in range that pass the filters: the timestamp, `by` and `columns`, ordered by `by` (NULLs last).
 */
export interface LatestMode {
  kind: 'latest';
  by: string[];
  columns: string[];
  order: SortOrder;
  limit: number;
}

/** What a planned query reads: raw rows, buckets, or the latest row of each series. */
export type PlannedMode = RawMode | DownsampleMode | LatestMode;
