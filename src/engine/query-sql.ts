/**
 * SQL for the query task (query.ts): checks a {@link QueryInput} (`checkQuery`: every refusal) and
 * turns the checked input into ONE DuckDB statement plus its bound parameters (`compileQuery`),
 * and for some raw queries a statement before it that names the files worth reading (`narrows`).
 * Pure: no DuckDB here, so it is testable on its own and safe to load on any thread.
 *
 * What keeps input from changing the statement's shape:
 * - identifiers (columns, aliases, the timestamp column) are re-checked against the identifier
 *   pattern of sql.ts and against `fields`, then double-quoted with {@link quoteIdent};
 * - every value (file paths, time range, filter values, interval sizes, percentiles, the limit) is
 *   a `$n` parameter; the SQL text only varies with enums (op, fn, unit, order) and with counts
 *   (how many filters, aggregations, `in` values);
 * - the statement is prepared with `prepare`, which refuses more than one statement.
 *
 * Reading: `read_parquet($1, union_by_name = true, hive_partitioning = false)`, so a column that
 * some files lack (they predate it) is NULL in their rows (without `union_by_name` when every file
 * has one schema version: `oneSchema`). A field that no file has is added by a
 * `UNION ALL BY NAME` with a zero-row SELECT of typed NULLs, so it is NULL of its schema type
 * rather than a binder error; without `fieldsInFiles` every field gets one. DuckDB removes the
 * zero-row side and pushes projections and filters through the union into the Parquet scan. The
 * time range and the filters are written directly on the columns
 * (`"ts" >= CAST($2 AS TIMESTAMPTZ)`), so the scan skips row groups by their min/max statistics.
 *
 * Latest (`mode.kind` `latest`): each `by` combination's latest row in the order of
 * model/series.ts (time, then every field), so that the query service's latest-value cache, which
 * keeps rows by the same order, and this statement give the same answer.
 *
 * Gap filling (`fillGaps`): the buckets with rows are joined onto every bucket number of the
 * range crossed with the groupBy combinations, and each aggregation's fill is a window function
 * over its group's buckets (see `gapFilled`), so streamed answers are filled as they are read.
 *
 * Buckets: fixed-width units (second … week) are the floor of epoch microseconds divided by the
 * width (one integer division per row; correct before 1970 too); months are the UTC calendar month
 * number since 1970-01 (divided likewise for sizes above 1). Rows are grouped by that number and
 * only the groups are turned back into timestamps. On 10 M rows (1-minute avg+max, one thread):
 * this ~0.45 s; `us - ((us % w) + w) % w` ~0.9 s; `time_bucket` on a plain TIMESTAMP ~1.2 s; on
 * TIMESTAMPTZ (ICU calendars) 2.7 s for minutes and over 200 s for days.
 */
import { type FieldType, SQL_TYPES } from '../model/field-types.ts';
import {
  type Aggregation,
  type AggregationFn,
  type DownsampleMode,
  type FilterOp,
  type FilterValue,
  INTERVAL_UNITS,
  type IntervalUnit,
  type LatestMode,
  type PlannedFill,
  type PlannedMode,
  type QueryFilter,
  type RawMode,
} from '../model/query.ts';
import type { SchemaField } from '../model/records.ts';
import { latestRowOrder } from '../model/series.ts';
import { assertIdentifier, quoteIdent } from './sql.ts';

/** A field as a query reads it (nullability does not matter there). */
export type QueryField = Pick<SchemaField, 'name' | 'type'>;

export interface QueryInput {
  /**
   * Local Parquet paths, best in ascending time order (e.g. by partition start time): a raw query
   * with a small limit then skips most row groups, `asc` or `desc`. None: no rows (a gap-filled
   * downsample then answers its empty buckets).
   */
  files: string[];
  /** The union schema: every column any of the files may have. */
  fields: QueryField[];
  timestampColumn: string;
  /** ISO-8601, `[start, end)`; without an offset the time is UTC. */
  timeRange: { start: string; end: string };
  /** ANDed. */
  filters: QueryFilter[];
  mode: PlannedMode;
  /** The query is interrupted after this long (streaming: time spent waiting for the consumer excluded). */
  timeoutMs: number;
  /** DuckDB `memory_limit` while this query runs. */
  memoryLimitBytes?: number;
  /** DuckDB threads for this query (default 1; see `WorkerPool.queryEncoded` for when the pool gives more). */
  threads?: number;
  /**
   * Columns that hold no NULL in any of the files (the catalog's statistics say so). When every
   * aggregation is `last` of such a column or `max` of the timestamp (or all `first`/`min`), the
   * statement picks each group's latest (earliest) row instead of keeping one aggregate per column.
   */
  nonNullColumns?: string[];
  /** The fields that at least one of the files holds (the others are NULL throughout); default: any may be missing. */
  fieldsInFiles?: string[];
  /** Every file was written with one schema version, so all have the same columns in the same order. */
  oneSchema?: boolean;
}

/** A value of an answer's row, as it leaves the engine (query.ts says how each type converts). */
export type QueryValue = string | number | boolean | null;
export type QueryRow = Record<string, QueryValue>;

export interface QueryColumn {
  name: string;
  /** One of timestore's type names: `timestamp`, `string`, `double`, `integer`, `boolean`. */
  type: string;
}

/** A bound parameter, by position ($1 is index 0). */
export type SqlParam =
  | { type: 'varchar'; value: string }
  | { type: 'double'; value: number }
  | { type: 'bigint'; value: bigint }
  | { type: 'boolean'; value: boolean }
  | { type: 'varchar[]'; value: string[] };

export interface BuiltQuery {
  sql: string;
  params: SqlParam[];
  /** The output columns, in order. */
  columns: string[];
  /** Rows the caller may return; the statement fetches one more to detect truncation. */
  limit: number;
  /**
   * A statement naming (column `$file`) the files that hold a row the query matches, read from the
   * filter columns only: run first, then the query built again over just those files. Set for raw
   * queries over several files with a filter on a number or boolean, where it pays (see
   * {@link narrows}).
   */
  narrowing?: { sql: string; params: SqlParam[] };
}

/** An input the engine refuses (the service should have caught it first). */
export class InvalidQueryError extends Error {
  readonly code = 'invalid_query';
  override name = 'InvalidQueryError';
}

const OPS: Record<Exclude<FilterOp, 'in' | 'eq' | 'neq'>, string> = { gt: '>', gte: '>=', lt: '<', lte: '<=' };

/** Widths in microseconds of the fixed-width units (UTC has no leap seconds or DST). */
const UNIT_MICROS: Record<Exclude<IntervalUnit, 'month'>, bigint> = {
  second: 1_000_000n,
  minute: 60_000_000n,
  hour: 3_600_000_000n,
  day: 86_400_000_000n,
  week: 604_800_000_000n,
};

/** Which column types an aggregation accepts; `null` means any. */
const AGGREGATION_TYPES: Record<AggregationFn, ReadonlySet<FieldType> | null> = {
  avg: new Set(['double', 'integer', 'timestamp']),
  sum: new Set(['double', 'integer']),
  median: new Set(['double', 'integer', 'timestamp']),
  percentile: new Set(['double', 'integer', 'timestamp']),
  min: null,
  max: null,
  count: null,
  count_distinct: null,
  first: null,
  last: null,
};

/** The longest delay setTimeout honours (longer ones fire at once). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Longest month interval (ten thousand years). */
const MAX_MONTHS = 120_000;

/** Most buckets a gap-filled answer generates per group (a sanity check; the service's limit is lower). */
const MAX_FILLED_BUCKETS = 100_000_000;

/** Upper bound of `limit` (a sanity check, not a policy: the service sets its own maximum). */
const MAX_LIMIT = 2 ** 31;

function invalid(message: string): never {
  throw new InvalidQueryError(message);
}

function identifier(name: unknown, what: string): string {
  try {
    assertIdentifier(name, what);
  } catch (error) {
    invalid((error as Error).message);
  }
  return name;
}

/** Checks `input` and builds the statement; throws {@link InvalidQueryError}. */
export function buildQuery(input: QueryInput): BuiltQuery {
  return compileQuery(checkQuery(input));
}

/** A filter whose column is a field and whose values have that field's type. */
interface CheckedFilter {
  field: QueryField;
  op: FilterOp;
  value?: FilterValue | null;
  values?: FilterValue[];
}

/**
 * An input that passed every check of {@link checkQuery}: names are fields (in their declared
 * spelling), values have their field's type, output names are distinct, numbers are in range.
 */
interface CheckedQuery {
  /** In the order given. */
  files: string[];
  fields: QueryField[];
  ts: QueryField;
  timeRange: { start: string; end: string };
  filters: CheckedFilter[];
  /** Raw `columns` hold the timestamp column first, and each column once. */
  mode: RawMode | DownsampleMode | LatestMode;
  fieldsInFiles: ReadonlySet<string> | null;
  nonNullColumns: ReadonlySet<string>;
  oneSchema: boolean;
}

/** Every check of the input, before any SQL; throws {@link InvalidQueryError}. */
function checkQuery(input: QueryInput): CheckedQuery {
  if (typeof input !== 'object' || input === null) invalid('the query input must be an object');

  if (!Array.isArray(input.files)) invalid('files must be an array of paths');
  for (const file of input.files) {
    if (typeof file !== 'string' || file === '' || file.includes('\0')) invalid(`file ${JSON.stringify(file)} is not a path`);
  }

  // Fields: names are case-insensitive in DuckDB, so they are matched case-insensitively here too,
  // but the query must use each field's declared spelling.
  if (!Array.isArray(input.fields) || input.fields.length === 0) invalid('fields must be a non-empty array');
  const fields = new Map<string, QueryField>();
  const folded = new Set<string>();
  for (const field of input.fields) {
    const name = identifier(field?.name, 'field name');
    if (!Object.hasOwn(SQL_TYPES, field.type)) invalid(`field ${name} has unknown type ${JSON.stringify(field.type)}`);
    if (folded.has(name.toLowerCase())) invalid(`field ${name} appears twice (names are case-insensitive)`);
    folded.add(name.toLowerCase());
    fields.set(name, { name, type: field.type });
  }
  const field = (name: unknown, what: string): QueryField => {
    const found = fields.get(identifier(name, what));
    if (!found) invalid(`${what} ${name as string} is not a field of the dataset`);
    return found;
  };

  const ts = field(input.timestampColumn, 'timestamp column');
  if (ts.type !== 'timestamp') invalid(`timestamp column ${ts.name} must be a field of type timestamp`);

  if (!Number.isFinite(input.timeoutMs) || input.timeoutMs <= 0 || input.timeoutMs > MAX_TIMER_MS) {
    invalid(`timeoutMs must be a positive number up to ${MAX_TIMER_MS}, got ${input.timeoutMs}`);
  }
  if (input.memoryLimitBytes !== undefined && (!Number.isSafeInteger(input.memoryLimitBytes) || input.memoryLimitBytes <= 0)) {
    invalid(`memoryLimitBytes must be a positive integer, got ${input.memoryLimitBytes}`);
  }
  if (input.threads !== undefined && (!Number.isSafeInteger(input.threads) || input.threads < 1 || input.threads > 256)) {
    invalid(`threads must be an integer from 1 to 256, got ${input.threads}`);
  }

  const range = input.timeRange;
  if (typeof range?.start !== 'string' || typeof range.end !== 'string') invalid('timeRange needs start and end as ISO-8601 strings');
  if (!Array.isArray(input.filters)) invalid('filters must be an array');
  const filters = input.filters.map((filter, index) => checkFilter(filter, index, field));

  const checked = {
    files: [...input.files],
    fields: [...fields.values()],
    ts,
    timeRange: { start: range.start, end: range.end },
    filters,
    fieldsInFiles: input.fieldsInFiles === undefined ? null : new Set(input.fieldsInFiles),
    nonNullColumns: new Set(input.nonNullColumns ?? []),
    oneSchema: input.oneSchema === true,
  };

  const mode = input.mode;
  if (mode?.order !== 'asc' && mode?.order !== 'desc') invalid(`order must be asc or desc, got ${JSON.stringify(mode?.order)}`);
  if (!Number.isSafeInteger(mode.limit) || mode.limit < 0 || mode.limit >= MAX_LIMIT) {
    invalid(`limit must be an integer from 0 to ${MAX_LIMIT - 1}, got ${mode.limit}`);
  }
  const { order, limit } = mode;

  if (mode.kind === 'raw') {
    if (!Array.isArray(mode.columns)) invalid('columns must be an array');
    const columns = [ts.name];
    for (const column of mode.columns) {
      const f = field(column, 'column');
      if (!columns.includes(f.name)) columns.push(f.name);
    }
    return { ...checked, mode: { kind: 'raw', order, limit, columns } };
  }

  if (mode.kind === 'latest') return { ...checked, mode: checkLatest(mode, ts, field, order, limit) };
  if (mode.kind !== 'downsample') invalid(`mode.kind must be raw, downsample or latest, got ${JSON.stringify((mode as { kind?: unknown })?.kind)}`);
  const { intervalUnit, intervalSize } = mode;
  if (!Number.isSafeInteger(intervalSize) || intervalSize <= 0) invalid(`intervalSize must be a positive integer, got ${intervalSize}`);
  if (intervalUnit === 'month') {
    if (intervalSize > MAX_MONTHS) invalid(`intervalSize must be at most ${MAX_MONTHS} months, got ${intervalSize}`);
  } else if (Object.hasOwn(UNIT_MICROS, intervalUnit)) {
    if (UNIT_MICROS[intervalUnit] * BigInt(intervalSize) > 2n ** 62n) invalid(`an interval of ${intervalSize} ${intervalUnit}s is too long`);
  } else {
    invalid(`intervalUnit must be one of ${INTERVAL_UNITS.join(', ')}; got ${JSON.stringify(intervalUnit)}`);
  }

  const outputNames = new Set<string>([ts.name.toLowerCase()]);
  const claim = (name: string, what: string) => {
    if (outputNames.has(name.toLowerCase())) invalid(`${what} ${name} clashes with another output column (names are case-insensitive)`);
    outputNames.add(name.toLowerCase());
  };

  if (!Array.isArray(mode.groupBy)) invalid('groupBy must be an array');
  const groupBy: string[] = [];
  for (const column of mode.groupBy) {
    const f = field(column, 'groupBy column');
    if (f.name === ts.name) invalid(`groupBy cannot name the timestamp column ${ts.name}; use the interval`);
    claim(f.name, 'groupBy column');
    groupBy.push(f.name);
  }

  if (!Array.isArray(mode.aggregations)) invalid('aggregations must be an array');
  const aggregations: Aggregation[] = [];
  for (const aggregation of mode.aggregations) {
    const alias = identifier(aggregation?.alias, 'aggregation alias');
    claim(alias, 'aggregation alias');
    aggregations.push(checkAggregation(aggregation, field));
  }
  if (mode.fillGaps !== undefined && typeof mode.fillGaps !== 'boolean') invalid('fillGaps must be a boolean');
  const fillGaps = mode.fillGaps === true;
  if (!fillGaps && aggregations.some((a) => a.fill !== undefined)) invalid('an aggregation fill needs fillGaps');
  if (fillGaps) {
    const [first, last] = bucketSpan(checked.timeRange, intervalUnit, intervalSize);
    if (last - first >= BigInt(MAX_FILLED_BUCKETS)) invalid(`a gap-filled answer has at most ${MAX_FILLED_BUCKETS} buckets per group`);
  }

  return { ...checked, mode: { kind: 'downsample', intervalUnit, intervalSize, aggregations, groupBy, fillGaps, order, limit } };
}

/** A statement's bound values, and `param`, which adds one and returns its placeholder (`$n`). */
function parameterList(): { params: SqlParam[]; param(p: SqlParam): string } {
  const params: SqlParam[] = [];
  return {
    params,
    param(p) {
      params.push(p);
      return `$${params.length}`;
    },
  };
}

/**
 * Whether the answer to `input` is the same whatever order DuckDB reads its rows in, so that it
 * may run on several threads: a raw read (ordered by time; rows of one timestamp have no defined
 * order, and DuckDB's ORDER BY … LIMIT shares its bound on the timestamp between threads), or a
 * downsample without `first` or `last` (which pick among rows of one timestamp by the order they
 * are read in). Sums and averages of doubles may then differ in their last digits from one run to
 * the next, as in any database that adds in parallel. `latest` stays on one thread.
 */
export function readsInAnyOrder(input: QueryInput): boolean {
  const { mode } = input;
  return mode.kind === 'raw' || (mode.kind === 'downsample' && mode.aggregations.every((a) => a.fn !== 'first' && a.fn !== 'last'));
}

/** The statement of a checked input; every value is a bound parameter. */
function compileQuery(query: CheckedQuery): BuiltQuery {
  const { params, param } = parameterList();
  const { ts, mode, timeRange: range } = query;
  const tsSql = quoteIdent(ts.name);
  const direction = mode.order === 'asc' ? 'ASC' : 'DESC';

  // DuckDB scans files in list order (its threads take the next row group in turn). For raw
  // queries, ORDER BY … LIMIT pushes a moving bound on the timestamp into the scan, which then
  // skips whole row groups once the first files have filled the limit, so files in time order (as
  // the caller is asked to pass them) are read newest first for `desc`: measured 2.8 s → 0.1 s for
  // the latest 1000 of 10 M rows.
  const files = mode.kind === 'raw' && mode.order === 'desc' ? [...query.files].reverse() : query.files;

  // Source: the files combined by name (a column some files lack is NULL in their rows), behind
  // typed NULLs for the fields that no file has, when the caller does not know that every field is
  // in some file. The typed-NULL union costs the row-picking plan below 4x (0.56 s → 2.3 s).
  const absent = files.length === 0 ? query.fields : query.fields.filter((f) => !query.fieldsInFiles?.has(f.name));
  // Combining by name is needed only across schema versions; files of one version are read as they
  // are (0.3 ms less on a 5 ms one-host query: DuckDB skips unifying the files' schemas).
  const byName = query.oneSchema ? '' : ', union_by_name = true';
  const typedNulls = `SELECT ${absent.map((f) => `CAST(NULL AS ${SQL_TYPES[f.type]}) AS ${quoteIdent(f.name)}`).join(', ')} WHERE false`;
  const scan = () => `read_parquet(${param({ type: 'varchar[]', value: files })}${byName}, hive_partitioning = false)`;
  const source =
    files.length === 0
      ? `(${typedNulls})`
      : absent.length === 0
        ? scan()
        : `(${typedNulls}
    UNION ALL BY NAME
    SELECT * FROM ${scan()})`;

  // WHERE: the time range, then the filters, all on bare columns.
  const conditions = (param: (p: SqlParam) => string) => [
    `${tsSql} >= CAST(${param({ type: 'varchar', value: range.start })} AS TIMESTAMPTZ)`,
    `${tsSql} < CAST(${param({ type: 'varchar', value: range.end })} AS TIMESTAMPTZ)`,
    ...query.filters.map((filter) => filterSql(filter, param)),
  ];
  const where = conditions(param);
  const limitSql = () => `LIMIT ${param({ type: 'bigint', value: BigInt(mode.limit) + 1n })}`;

  if (mode.kind === 'latest') return compileLatest(query, mode, source, where, limitSql, params);
  if (mode.kind === 'raw') {
    const sql = `SELECT ${mode.columns.map(quoteIdent).join(', ')}
FROM ${source} AS s
WHERE ${where.join('\n  AND ')}
ORDER BY ${tsSql} ${direction}
${limitSql()}`;
    if (!narrows(query, absent.length)) return { sql, params, columns: mode.columns, limit: mode.limit };
    const narrowing = parameterList();
    const narrowingSql = `SELECT DISTINCT "$file"
FROM read_parquet(${narrowing.param({ type: 'varchar[]', value: files })}${byName}, hive_partitioning = false, filename = '$file')
WHERE ${conditions(narrowing.param).join('\n  AND ')}`;
    return { sql, params, columns: mode.columns, limit: mode.limit, narrowing: { sql: narrowingSql, params: narrowing.params } };
  }

  // The bucket as an integer (its number since the epoch), labelled with its start by an outer
  // SELECT, per group rather than per row. `//` truncates towards zero, so when the range reaches
  // before 1970 those times take the other branch to round down (a CASE evaluates each branch only
  // on the rows it selects; without one, a one-host hour is 0.4 ms faster).
  const fromEpoch = (isoMicros(range.start) ?? -1n) >= 0n;
  const floorDiv = (x: string, nonNegative: string, d: string) =>
    fromEpoch ? `${x} // ${d}` : `CASE WHEN ${nonNegative} THEN ${x} // ${d} ELSE (${x} + 1) // ${d} - 1 END`;
  const us = `epoch_us(${tsSql})`;
  const afterEpoch = `${tsSql} >= TIMESTAMPTZ '1970-01-01 00:00:00+00'`;
  let bucket: string;
  let labelOf: (bucketNumber: string) => string;
  if (mode.intervalUnit === 'month') {
    // UTC wall clock without ICU: make_timestamp(us) is a plain TIMESTAMP.
    const utc = `make_timestamp(${us})`;
    const month = `((year(${utc}) - 1970) * 12 + month(${utc}) - 1)`;
    let firstMonth = (n: string) => n;
    bucket = month;
    if (mode.intervalSize !== 1) {
      const size = param({ type: 'bigint', value: BigInt(mode.intervalSize) });
      bucket = floorDiv(month, afterEpoch, size);
      firstMonth = (n) => `${n} * ${size}`;
    }
    labelOf = (n) => `make_timestamptz(epoch_us(TIMESTAMP '1970-01-01 00:00:00' + to_months(CAST(${firstMonth(n)} AS INTEGER))))`;
  } else {
    const w = param({ type: 'bigint', value: UNIT_MICROS[mode.intervalUnit] * BigInt(mode.intervalSize) });
    bucket = floorDiv(us, afterEpoch, w);
    labelOf = (n) => `make_timestamptz(${n} * ${w})`;
  }

  const { groupBy, aggregations } = mode;
  const aliases = aggregations.map((a) => a.alias);
  const aggregates = aggregations.map((a) => `${aggregationSql(a, ts, param)} AS ${quoteIdent(a.alias)}`);
  const order = [`b."$bucket" ${direction}`, ...groupBy.map((c) => `b.${quoteIdent(c)} ASC NULLS LAST`)];
  // Picking one row per group: `arg_max` per column updates one aggregate state per column for
  // every row; `row_number() … = 1` partitioned by the groupBy columns alone is planned as a top-1
  // per group (lastpoint, 10 columns of 8.64 M rows: 3.3 s → 0.5 s). Only when the whole range is
  // one bucket (a bucket in the window's partitioning makes it a full sort, 10 s) and only without
  // NULLs, which `arg_max` skips.
  const pick = rowPick(aggregations, ts, query.nonNullColumns);
  const onlyBucket = pick && mode.intervalUnit !== 'month' ? singleBucket(range, UNIT_MICROS[mode.intervalUnit] * BigInt(mode.intervalSize)) : null;
  const grouped =
    pick && onlyBucket !== null
      ? `SELECT ${[`${param({ type: 'bigint', value: onlyBucket })} AS "$bucket"`, ...groupBy.map(quoteIdent), ...aggregations.map((a) => `${quoteIdent(a.column)} AS ${quoteIdent(a.alias)}`)].join(',\n    ')}
  FROM ${source} AS s
  WHERE ${where.join('\n    AND ')}
  QUALIFY row_number() OVER (${groupBy.length ? `PARTITION BY ${groupBy.map(quoteIdent).join(', ')} ` : ''}ORDER BY ${tsSql} ${pick}) = 1`
      : `SELECT ${[`${bucket} AS "$bucket"`, ...groupBy.map(quoteIdent), ...aggregates].join(',\n    ')}
  FROM ${source} AS s
  WHERE ${where.join('\n    AND ')}
  GROUP BY ${[1, ...groupBy.map((_, i) => i + 2)].join(', ')}`;
  const columns = [ts.name, ...groupBy, ...aliases];
  if (mode.fillGaps) {
    const sql = gapFilled(query, mode, grouped, labelOf, param, order, limitSql());
    return { sql, params, columns, limit: mode.limit };
  }
  const outer = [`${labelOf('b."$bucket"')} AS ${tsSql}`, ...[...groupBy, ...aliases].map((c) => `b.${quoteIdent(c)}`)];
  const sql = `SELECT ${outer.join(', ')}
FROM (
  ${grouped}
) AS b
ORDER BY ${order.join(', ')}
${limitSql()}`;
  return { sql, params, columns, limit: mode.limit };
}

/**
 * Whether a raw query first asks which files hold a match. DuckDB's Parquet reader decompresses
 * every returned column of each row group its min/max statistics keep, whatever the filters then
 * drop: one host's 12 hours of TSBS rows with `usage_user > 90`, all 21 columns, took 22 ms
 * whether 0 or 871 rows matched, the same filters returning only the timestamp 8 ms. A filter on a
 * number or boolean seldom follows the files' order (strings are series keys, which the statistics
 * already prune by), so with one the files without a match are worth dropping before the columns
 * are read; over one file, or with fields that no file has, there is nothing to drop.
 */
function narrows(query: CheckedQuery, absentFields: number): boolean {
  return (
    query.files.length > 1 &&
    absentFields === 0 &&
    query.filters.some((f) => f.field.name !== query.ts.name && (f.field.type === 'double' || f.field.type === 'integer' || f.field.type === 'boolean'))
  );
}

/**
 * A downsample that answers every bucket of the range: the buckets with rows (`grouped`) joined
 * onto every bucket number of the range (`range`), crossed with every groupBy combination that has
 * rows, then each aggregation's fill over its group's buckets in time order. Window functions with
 * IGNORE NULLS find the values before and after a bucket (`previous`: the last one up to it;
 * `linear`: the last before and the first after, weighted by the bucket start times). Counts of
 * an empty bucket are 0. Positions are bucket numbers for fixed-width units and bucket start times
 * for months, which differ in length.
 */
function gapFilled(
  query: CheckedQuery,
  mode: DownsampleMode,
  grouped: string,
  labelOf: (bucketNumber: string) => string,
  param: (p: SqlParam) => string,
  order: string[],
  limit: string,
): string {
  const { groupBy, aggregations } = mode;
  const [first, last] = bucketSpan(query.timeRange, mode.intervalUnit, mode.intervalSize);
  const g = (c: string) => `g.${quoteIdent(c)}`;
  const grid = (c: string) => `grid.${quoteIdent(c)}`;
  const partition = groupBy.length > 0 ? `PARTITION BY ${groupBy.map(grid).join(', ')} ` : '';
  const position = mode.intervalUnit === 'month' ? `CAST(epoch_us(${labelOf('grid."$bucket"')}) AS DOUBLE)` : 'CAST(grid."$bucket" AS DOUBLE)';

  // Per aggregation: the helper columns the fill needs beside the joined value, then the output.
  const helpers: string[] = [];
  const outputs: string[] = [];
  for (const [i, a] of aggregations.entries()) {
    const value = g(a.alias);
    const out = `b.${quoteIdent(a.alias)}`;
    const helper = (name: string, sql: string) => {
      helpers.push(`${sql} AS "$${name}_${i}"`);
      return `b."$${name}_${i}"`;
    };
    let output: string;
    if (a.fn === 'count' || a.fn === 'count_distinct') {
      output = `COALESCE(${out}, 0)`;
    } else if (a.fill === undefined) {
      output = out;
    } else if (a.fill === 'previous') {
      output = helper('previous', `last_value(${value} IGNORE NULLS) OVER upto`);
    } else if (a.fill === 'linear') {
      const known = (x: string) => `CASE WHEN ${value} IS NOT NULL THEN ${x} END`;
      const before = helper('before', `CAST(last_value(${value} IGNORE NULLS) OVER before AS DOUBLE)`);
      const after = helper('after', `CAST(first_value(${value} IGNORE NULLS) OVER after AS DOUBLE)`);
      const at = helper('at', position);
      const beforeAt = helper('before_at', `last_value(${known(position)} IGNORE NULLS) OVER before`);
      const afterAt = helper('after_at', `first_value(${known(position)} IGNORE NULLS) OVER after`);
      output = `CASE WHEN ${out} IS NOT NULL THEN CAST(${out} AS DOUBLE) ELSE ${before} + (${after} - ${before}) * (${at} - ${beforeAt}) / (${afterAt} - ${beforeAt}) END`;
    } else {
      const integer = numericOutput(a.fn, query.fields.find((f) => f.name === a.column) ?? null) === 'integer';
      const constant = integer ? param({ type: 'bigint', value: BigInt(a.fill.value) }) : param({ type: 'double', value: a.fill.value });
      output = `COALESCE(${out}, CAST(${constant} AS ${integer ? 'BIGINT' : 'DOUBLE'}))`;
    }
    outputs.push(`${output} AS ${quoteIdent(a.alias)}`);
  }

  const window = (frame: string) => `(${partition}ORDER BY grid."$bucket" ROWS BETWEEN ${frame})`;
  const groups = groupBy.length > 0 ? `\n  CROSS JOIN (SELECT DISTINCT ${groupBy.map(quoteIdent).join(', ')} FROM g) AS k` : '';
  const joinedOn = ['g."$bucket" = grid."$bucket"', ...groupBy.map((c) => `${g(c)} IS NOT DISTINCT FROM ${grid(c)}`)];
  const selected = ['grid."$bucket"', ...groupBy.map(grid), ...aggregations.map((a) => g(a.alias)), ...helpers];
  return `WITH g AS MATERIALIZED (
  ${grouped}
), grid AS (
  SELECT ${['n.range AS "$bucket"', ...groupBy.map((c) => `k.${quoteIdent(c)}`)].join(', ')}
  FROM range(CAST(${param({ type: 'bigint', value: first })} AS BIGINT), CAST(${param({ type: 'bigint', value: last + 1n })} AS BIGINT)) AS n${groups}
)
SELECT ${[`${labelOf('b."$bucket"')} AS ${quoteIdent(query.ts.name)}`, ...groupBy.map((c) => `b.${quoteIdent(c)}`), ...outputs].join(', ')}
FROM (
  SELECT ${selected.join(', ')}
  FROM grid LEFT JOIN g ON ${joinedOn.join(' AND ')}
  WINDOW upto AS ${window('UNBOUNDED PRECEDING AND CURRENT ROW')}, before AS ${window('UNBOUNDED PRECEDING AND 1 PRECEDING')}, after AS ${window('1 FOLLOWING AND UNBOUNDED FOLLOWING')}
) AS b
ORDER BY ${order.join(', ')}
${limit}`;
}

/**
 * The first and last bucket numbers (as `compileQuery` numbers them) that `[start, end)` touches:
 * epoch microseconds divided by the width, or UTC calendar months since 1970-01 divided by the size.
 */
function bucketSpan(range: { start: string; end: string }, unit: IntervalUnit, size: number): [bigint, bigint] {
  const [start, end] = [isoMicros(range.start), isoMicros(range.end)];
  if (start === null || end === null || end <= start) invalid('a gap-filled answer needs a time range whose start is before its end');
  if (unit !== 'month') {
    const width = UNIT_MICROS[unit] * BigInt(size);
    return [floorDivide(start, width), floorDivide(end - 1n, width)];
  }
  const month = (micros: bigint) => {
    const date = new Date(Number(floorDivide(micros, 1000n)));
    return BigInt((date.getUTCFullYear() - 1970) * 12 + date.getUTCMonth());
  };
  return [floorDivide(month(start), BigInt(size)), floorDivide(month(end - 1n), BigInt(size))];
}

/** `by` and `columns` are fields other than the timestamp, each once; `columns` leaves out what `by` names. */
function checkLatest(mode: LatestMode, ts: QueryField, field: (name: unknown, what: string) => QueryField, order: LatestMode['order'], limit: number): LatestMode {
  if (!Array.isArray(mode.by)) invalid('by must be an array');
  if (!Array.isArray(mode.columns)) invalid('columns must be an array');
  const by: string[] = [];
  for (const column of mode.by) {
    const f = field(column, 'by column');
    if (f.name === ts.name) invalid(`by cannot name the timestamp column ${ts.name}`);
    if (by.includes(f.name)) invalid(`by names ${f.name} twice`);
    by.push(f.name);
  }
  const columns: string[] = [];
  for (const column of mode.columns) {
    const f = field(column, 'column');
    if (f.name !== ts.name && !by.includes(f.name) && !columns.includes(f.name)) columns.push(f.name);
  }
  return { kind: 'latest', by, columns, order, limit };
}

/**
 * The latest row of each `by` combination in the order of model/series.ts: the rows at each
 * group's greatest timestamp (a join with `max` per group), then `row_number() … = 1` over the
 * other fields among those few. A window ordered by every field over all rows costs far more: on
 * 3.6 M rows × 20 columns, 9.3 s against 0.16–0.7 s for this form, and 0.5–1.0 s for the window
 * ordered by time alone. The filtered rows are a CTE that is NOT MATERIALIZED: referenced twice,
 * DuckDB would otherwise buffer all of it (1.4–2.4 s). Group keys match NULL to NULL.
 */
function compileLatest(
  query: CheckedQuery,
  mode: LatestMode,
  source: string,
  where: string[],
  limitSql: () => string,
  params: SqlParam[],
): BuiltQuery {
  const ts = quoteIdent(query.ts.name);
  const r = (column: string) => `r.${quoteIdent(column)}`;
  const tieBreak = latestRowOrder(query.fields, query.ts.name)
    .slice(1)
    .map((f) => `${r(f.name)} DESC NULLS LAST`);
  const joined = [...mode.by.map((c) => `${r(c)} IS NOT DISTINCT FROM l.${quoteIdent(c)}`), `r.${ts} = l."$latest"`];
  const groupBy = mode.by.length > 0 ? ` GROUP BY ${mode.by.map(quoteIdent).join(', ')}` : '';
  const partition = mode.by.length > 0 ? `PARTITION BY ${mode.by.map(r).join(', ')} ` : '';
  const direction = mode.order === 'asc' ? 'ASC' : 'DESC';
  const columns = [query.ts.name, ...mode.by, ...mode.columns];
  const sql = `WITH r AS NOT MATERIALIZED (
  SELECT * FROM ${source} AS s
  WHERE ${where.join('\n    AND ')}
), l AS (
  SELECT ${[...mode.by.map(quoteIdent), `max(${ts}) AS "$latest"`].join(', ')} FROM r${groupBy}
)
SELECT ${columns.map(r).join(', ')}
FROM r JOIN l ON ${joined.join(' AND ')}
QUALIFY row_number() OVER (${partition}ORDER BY ${tieBreak.length > 0 ? tieBreak.join(', ') : `r.${ts}`}) = 1
${mode.by.length > 0 ? `ORDER BY ${mode.by.map((c) => `${r(c)} ${direction} NULLS LAST`).join(', ')}\n` : ''}${limitSql()}`;
  return { sql, params, columns, limit: mode.limit };
}

/**
 * `DESC` when the aggregations only read each group's latest row (`last` of a column without NULLs,
 * `max` of the timestamp), `ASC` for the earliest (`first`, `min`), else null.
 */
function rowPick(aggregations: Aggregation[], ts: QueryField, nonNull: ReadonlySet<string>): 'ASC' | 'DESC' | null {
  const direction = (a: Aggregation): 'ASC' | 'DESC' | null => {
    if (a.column === ts.name) return a.fn === 'last' || a.fn === 'max' ? 'DESC' : a.fn === 'first' || a.fn === 'min' ? 'ASC' : null;
    if (!nonNull.has(a.column)) return null;
    return a.fn === 'last' ? 'DESC' : a.fn === 'first' ? 'ASC' : null;
  };
  const directions = new Set(aggregations.map(direction));
  if (directions.size !== 1) return null;
  return [...directions][0]!;
}

/** ISO-8601 as epoch microseconds (sub-millisecond digits kept); null when it does not parse. */
function isoMicros(iso: string): bigint | null {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return null;
  const sub = /\.\d{3}(\d{1,3})/.exec(iso)?.[1];
  return BigInt(ms) * 1000n + (sub ? BigInt(sub.padEnd(3, '0')) : 0n);
}

function floorDivide(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n ? q - 1n : q;
}

/** The bucket number when every instant of [start, end) falls in one bucket of `width` µs; else null. */
function singleBucket(range: { start: string; end: string }, width: bigint): bigint | null {
  const [start, end] = [isoMicros(range.start), isoMicros(range.end)];
  if (start === null || end === null || end <= start) return null;
  const first = floorDivide(start, width);
  return first === floorDivide(end - 1n, width) ? first : null;
}

function checkFilter(filter: QueryFilter, index: number, field: (name: unknown, what: string) => QueryField): CheckedFilter {
  if (typeof filter !== 'object' || filter === null) invalid(`filter ${index} must be an object`);
  const f = field(filter.column, `filter ${index} column`);
  const typed = (value: unknown) => checkValue(f, value, `filter ${index} (${f.name})`);
  switch (filter.op) {
    case 'eq':
    case 'neq':
      return { field: f, op: filter.op, value: filter.value === null ? null : typed(filter.value) };
    case 'in':
      if (!Array.isArray(filter.values)) invalid(`filter ${index} (${f.name}): in needs a values array`);
      return { field: f, op: filter.op, values: filter.values.map(typed) };
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
      return { field: f, op: filter.op, value: typed(filter.value) };
    default:
      invalid(`filter ${index} has unknown op ${JSON.stringify((filter as { op?: unknown }).op)}`);
  }
}

function filterSql(filter: CheckedFilter, param: (p: SqlParam) => string): string {
  const column = quoteIdent(filter.field.name);
  const bound = (value: FilterValue) => typedParam(filter.field, value, param);
  switch (filter.op) {
    case 'eq':
    case 'neq': {
      if (filter.value === null) return `${column} IS ${filter.op === 'eq' ? '' : 'NOT '}NULL`;
      // neq matches rows where the column is NULL too (NULL is not equal to the value).
      return filter.op === 'eq' ? `${column} = ${bound(filter.value!)}` : `${column} IS DISTINCT FROM ${bound(filter.value!)}`;
    }
    case 'in':
      if (filter.values!.length === 0) return 'false';
      return `${column} IN (${filter.values!.map(bound).join(', ')})`;
    case 'gt':
    case 'gte':
    case 'lt':
    case 'lte':
      return `${column} ${OPS[filter.op]} ${bound(filter.value!)}`;
  }
}

/** `value` when it has the type of field `f`; refuses it otherwise. */
function checkValue(f: QueryField, value: unknown, what: string): FilterValue {
  switch (f.type) {
    case 'string':
      if (typeof value !== 'string') invalid(`${what}: expected a string, got ${JSON.stringify(value)}`);
      return value;
    case 'timestamp':
      if (typeof value !== 'string') invalid(`${what}: expected an ISO-8601 timestamp string, got ${JSON.stringify(value)}`);
      return value;
    case 'double':
      if (typeof value !== 'number' || !Number.isFinite(value)) invalid(`${what}: expected a finite number, got ${JSON.stringify(value)}`);
      return value;
    case 'integer':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) invalid(`${what}: expected an integer, got ${JSON.stringify(value)}`);
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') invalid(`${what}: expected a boolean, got ${JSON.stringify(value)}`);
      return value;
  }
}

/** `CAST($n AS <type of f>)` with a checked `value` bound as its JS type. */
function typedParam(f: QueryField, value: FilterValue, param: (p: SqlParam) => string): string {
  let p: SqlParam;
  switch (f.type) {
    case 'string':
    case 'timestamp':
      p = { type: 'varchar', value: value as string };
      break;
    case 'double':
      p = { type: 'double', value: value as number };
      break;
    case 'integer':
      p = { type: 'bigint', value: BigInt(value as number) };
      break;
    case 'boolean':
      p = { type: 'boolean', value: value as boolean };
      break;
  }
  return `CAST(${param(p)} AS ${SQL_TYPES[f.type]})`;
}

/** The aggregation when its fn applies to its column (`count` also to `*`); refuses it otherwise. */
function checkAggregation(aggregation: Aggregation, field: (name: unknown, what: string) => QueryField): Aggregation {
  const { fn, alias } = aggregation;
  if (!Object.hasOwn(AGGREGATION_TYPES, fn)) invalid(`aggregation ${alias}: unknown fn ${JSON.stringify(fn)}`);
  const rows = fn === 'count' && aggregation.column === '*';
  const f = rows ? null : field(aggregation.column, `aggregation ${alias} column`);
  if (f) {
    const accepted = AGGREGATION_TYPES[fn];
    if (accepted && !accepted.has(f.type)) invalid(`aggregation ${alias}: ${fn} does not apply to ${f.type} column ${f.name}`);
  }
  const fill = aggregation.fill === undefined ? {} : { fill: checkFill(aggregation.fill, fn, f, alias) };
  if (!f) return { fn, column: '*', alias, ...fill };
  if (fn !== 'percentile') return { fn, column: f.name, alias, ...fill };
  const p = aggregation.percentile;
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) {
    invalid(`aggregation ${alias}: percentile needs a percentile between 0 and 1, got ${JSON.stringify(p)}`);
  }
  return { fn, column: f.name, alias, percentile: p, ...fill };
}

/**
 * What an aggregation answers in DuckDB: counts are integers; a numeric column's aggregations are
 * numbers (integers for sum, min, max, first, last of an integer column); else not a number.
 */
function numericOutput(fn: AggregationFn, f: QueryField | null): 'integer' | 'double' | null {
  if (fn === 'count' || fn === 'count_distinct') return 'integer';
  if (!f || (f.type !== 'integer' && f.type !== 'double')) return null;
  return f.type === 'integer' && fn !== 'avg' && fn !== 'median' && fn !== 'percentile' ? 'integer' : 'double';
}

/** `linear` and constants apply to numbers only, a constant to an integer output only when whole. */
function checkFill(fill: PlannedFill, fn: AggregationFn, f: QueryField | null, alias: string): PlannedFill {
  const numeric = numericOutput(fn, f);
  if (fill === 'previous') return fill;
  if (fill === 'linear') {
    if (!numeric) invalid(`aggregation ${alias}: fill linear needs numeric values`);
    return fill;
  }
  const value = (fill as { value?: unknown })?.value;
  if (typeof value !== 'number' || !Number.isFinite(value)) invalid(`aggregation ${alias}: fill must be previous, linear or {value: <finite number>}`);
  if (!numeric) invalid(`aggregation ${alias}: a constant fill needs numeric values`);
  if (numeric === 'integer' && !Number.isSafeInteger(value)) invalid(`aggregation ${alias}: the fill of integer values must be an integer, got ${value}`);
  return { value };
}

function aggregationSql(aggregation: Aggregation, ts: QueryField, param: (p: SqlParam) => string): string {
  const { fn } = aggregation;
  if (fn === 'count' && aggregation.column === '*') return 'count(*)';
  const c = quoteIdent(aggregation.column);
  switch (fn) {
    case 'avg':
    case 'min':
    case 'max':
    case 'sum':
    case 'median':
      return `${fn}(${c})`;
    case 'count':
      return `count(${c})`;
    case 'count_distinct':
      return `count(DISTINCT ${c})`;
    case 'percentile':
      return `quantile_cont(${c}, ${param({ type: 'double', value: aggregation.percentile! })})`;
    case 'first':
      return `arg_min(${c}, ${quoteIdent(ts.name)})`;
    case 'last':
      return `arg_max(${c}, ${quoteIdent(ts.name)})`;
  }
}
