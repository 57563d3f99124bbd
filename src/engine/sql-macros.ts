/**
 * The macros every sandboxed statement may call, defined once on each sandbox instance.
 *
 * `dataset(slug)`: the dataset of that slug as a table (its view, for slugs that are not identifiers).
 *
 * Gap filling, with the semantics of the JSON query's `downsample.fill` (buckets aligned to the Unix
 * epoch, calendar months since 1970-01):
 * - `bucket(width, ts)`: the start of the bucket of `width` that holds `ts`.
 * - `buckets(width, start, stop)` (a table, column `bucket`): every bucket that `[start, stop)` touches.
 * - `locf(val, ts[, grp])`: the last non-null value up to this row, in `ts` order (`previous`).
 * - `interpolate(val, ts[, grp])`: the value, or the linear interpolation between the nearest
 *   non-null values before and after, weighted by time (`linear`); null at the edges.
 *
 * `ts` is the bucket's timestamp; `grp` a column, or a row of columns `(a, b)`, whose rows are
 * filled apart. `null` is the left join of the data onto `buckets`; a constant is `coalesce`.
 */

/** Fixed-width buckets (no month part) are integer arithmetic on epoch microseconds; months go by the calendar. */
const BUCKET = `CREATE OR REPLACE MACRO bucket(width, ts) AS
  CASE
    WHEN epoch_us(width) <= 0 THEN error('a bucket width must be positive, got ' || CAST(width AS VARCHAR))
    WHEN datepart('year', width) * 12 + datepart('month', width) = 0 THEN make_timestamptz(
      epoch_us(CAST(ts AS TIMESTAMPTZ)) - (epoch_us(CAST(ts AS TIMESTAMPTZ)) % epoch_us(width) + epoch_us(width)) % epoch_us(width))
    ELSE time_bucket(width, CAST(ts AS TIMESTAMPTZ), TIMESTAMPTZ '1970-01-01 00:00:00+00')
  END`;

const BUCKETS = `CREATE OR REPLACE MACRO buckets(width, start, stop) AS TABLE
  SELECT range AS bucket FROM range(bucket(width, start), CAST(stop AS TIMESTAMPTZ), width)`;

/** One macro with and without a partition: DuckDB picks the overload by the number of arguments. */
function overloaded(name: string, body: (window: (frame: string) => string) => string): string {
  const over = (partition: string) => (frame: string) => `OVER (${partition}ORDER BY ts ROWS BETWEEN ${frame})`;
  return `CREATE OR REPLACE MACRO ${name}(val, ts) AS ${body(over(''))}, (val, ts, grp) AS ${body(over('PARTITION BY grp '))}`;
}

const LOCF = overloaded('locf', (over) => `last_value(val IGNORE NULLS) ${over('UNBOUNDED PRECEDING AND CURRENT ROW')}`);

const INTERPOLATE = overloaded('interpolate', (over) => {
  const at = 'CAST(epoch_us(ts) AS DOUBLE)';
  const known = `CASE WHEN val IS NOT NULL THEN ${at} END`;
  const [before, after] = [over('UNBOUNDED PRECEDING AND 1 PRECEDING'), over('1 FOLLOWING AND UNBOUNDED FOLLOWING')];
  const [v0, v1] = [`CAST(last_value(val IGNORE NULLS) ${before} AS DOUBLE)`, `CAST(first_value(val IGNORE NULLS) ${after} AS DOUBLE)`];
  const [t0, t1] = [`last_value(${known} IGNORE NULLS) ${before}`, `first_value(${known} IGNORE NULLS) ${after}`];
  return `CASE WHEN val IS NOT NULL THEN CAST(val AS DOUBLE) ELSE ${v0} + (${v1} - ${v0}) * (${at} - ${t0}) / (${t1} - ${t0}) END`;
});

/** Resolved when a statement runs, so it finds the views of that statement's connection. */
const DATASET = 'CREATE OR REPLACE MACRO dataset(slug) AS TABLE FROM query_table(slug)';

/** The statements that define the macros, run once on each sandbox instance. */
export const SANDBOX_MACROS: readonly string[] = [DATASET, BUCKET, BUCKETS, LOCF, INTERPOLATE];

/** The table macros that generate rows and read nothing, which a statement may name in FROM (`dataset` is checked apart). */
export const GENERATING_MACROS: readonly string[] = ['buckets'];
