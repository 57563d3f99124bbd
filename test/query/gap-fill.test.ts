/**
 * `downsample.fill` end to end (HTTP, real PostgreSQL catalog, DuckDB over the ingested files):
 * every fill mode, with and without groupBy, at the range's edges, per aggregation, streamed, over
 * month buckets, and never from the latest-value cache; then the same fills in SQL (`POST /sql`
 * with the `buckets`, `bucket`, `locf` and `interpolate` macros). Every expected answer is computed here
 * from the ingested rows in plain TypeScript: buckets, aggregates, then the fill.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { prng } from '../harness/prng.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
const SLUG = 'gaps';
const MONTHS = 'gaps-months';
const MINUTE = 60_000;
const BASE = Date.UTC(2026, 2, 1); // 2026-03-01T00:00:00Z
const HOSTS = ['a', 'b', 'c'];

interface Row {
  timestamp: string;
  host: string;
  v: number | null;
  n: number;
  s: string;
}

/**
 * Hosts a, b and c over one hour: each host has rows in about half the minutes (1–3 rows each),
 * `v` is sometimes null for a whole minute; nothing in minutes 20–24 (a gap shared by all) nor
 * after minute 49. Host c starts at minute 10.
 */
function generate(): Row[] {
  const rand = prng(16);
  const rows: Row[] = [];
  for (let minute = 0; minute < 50; minute++) {
    if (minute >= 20 && minute < 25) continue;
    for (const host of HOSTS) {
      if (host === 'c' && minute < 10) continue;
      if (rand() < 0.5) continue;
      const nullMinute = rand() < 0.15;
      const count = 1 + Math.floor(rand() * 3);
      for (let i = 0; i < count; i++) {
        rows.push({
          timestamp: new Date(BASE + minute * MINUTE + (i * 17 + HOSTS.indexOf(host)) * 1000).toISOString(),
          host,
          v: nullMinute ? null : Math.round(rand() * 10_000) / 100,
          n: Math.floor(rand() * 100) - 20,
          s: `s${Math.floor(rand() * 9)}`,
        });
      }
    }
  }
  return rows;
}
const ROWS = generate();

// Month buckets: values in January and April 2025 only.
const MONTH_ROWS = [
  { timestamp: '2025-01-10T00:00:00Z', host: 'a', v: 10, n: 1, s: 'x' },
  { timestamp: '2025-01-20T00:00:00Z', host: 'a', v: 20, n: 1, s: 'x' },
  { timestamp: '2025-04-05T00:00:00Z', host: 'a', v: 60, n: 1, s: 'y' },
];

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'v', type: 'double', nullable: true },
  { name: 'n', type: 'integer' },
  { name: 's', type: 'string' },
];

beforeAll(async () => {
  ts = await startTestServer();
  for (const [slug, rows] of [
    [SLUG, ROWS],
    [MONTHS, MONTH_ROWS],
  ] as const) {
    // Two batches, so the answer comes from more than one file.
    const half = Math.ceil(rows.length / 2);
    for (const batch of [rows.slice(0, half), rows.slice(half)]) {
      const res = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: {} }, rows: batch });
      if (res.status !== 201) throw new Error(`ingest answered ${res.status}: ${JSON.stringify(res.body)}`);
    }
  }
}, 120_000);

afterAll(async () => {
  await ts?.stop();
});

// ---------------------------------------------------------------------------------------------
// The expected answers, computed from ROWS.

type Value = number | string | null;
type Fill = 'none' | 'null' | 'previous' | 'linear' | number;

interface Agg {
  fn: 'avg' | 'sum' | 'max' | 'count' | 'last';
  column?: 'v' | 'n' | 's';
  alias: string;
  fill?: Fill;
}

/** The aggregate of `rows` (those of one bucket and group, in time order); counts of none are 0, the rest null. */
function aggregate(agg: Agg, rows: Row[]): Value {
  if (agg.fn === 'count') return agg.column ? rows.filter((r) => r[agg.column!] !== null).length : rows.length;
  const values = rows.map((r) => r[agg.column!]).filter((x): x is number | string => x !== null);
  if (values.length === 0) return null;
  switch (agg.fn) {
    case 'avg':
      return (values as number[]).reduce((a, b) => a + b, 0) / values.length;
    case 'sum':
      return (values as number[]).reduce((a, b) => a + b, 0);
    case 'max':
      return values.reduce((a, b) => (a > b ? a : b));
    case 'last':
      return values[values.length - 1]!;
  }
}

/** `values` (one group's, every bucket in order, at `positions`) with the nulls filled. */
function filled(values: Value[], positions: number[], fill: Fill): Value[] {
  if (fill === 'none' || fill === 'null') return values;
  if (typeof fill === 'number') return values.map((x) => x ?? fill);
  const known = values.map((x, i) => (x === null ? -1 : i));
  return values.map((x, i) => {
    if (x !== null) return x;
    const before = known.slice(0, i).filter((k) => k >= 0).at(-1);
    if (fill === 'previous') return before === undefined ? null : values[before]!;
    const after = known.slice(i + 1).find((k) => k >= 0);
    if (before === undefined || after === undefined) return null;
    const [v0, v1] = [values[before] as number, values[after] as number];
    return v0 + ((v1 - v0) * (positions[i]! - positions[before]!)) / (positions[after]! - positions[before]!);
  });
}

/**
 * The expected answer of a fill over minute buckets of `widthMinutes` in [from, to) (epoch ms):
 * every bucket, for every group with rows in the range, ascending by bucket then group.
 */
function expected(rows: Row[], from: number, to: number, widthMinutes: number, aggs: Agg[], fill: Fill, groupBy: boolean): Record<string, Value>[] {
  const width = widthMinutes * MINUTE;
  const inRange = rows.filter((r) => Date.parse(r.timestamp) >= from && Date.parse(r.timestamp) < to);
  const first = Math.floor(from / width);
  const last = Math.floor((to - 1) / width);
  const buckets = Array.from({ length: last - first + 1 }, (_, i) => first + i);
  const groups = groupBy ? [...new Set(inRange.map((r) => r.host))].sort() : [null];
  const byGroup = new Map<string | null, Record<string, Value>[]>();
  for (const group of groups) {
    const mine = inRange.filter((r) => group === null || r.host === group);
    const columns = aggs.map((agg) => {
      const values = buckets.map((b) => aggregate(agg, mine.filter((r) => Math.floor(Date.parse(r.timestamp) / width) === b)));
      return filled(values, buckets, agg.fn === 'count' ? 'none' : (agg.fill ?? fill));
    });
    byGroup.set(
      group,
      buckets.map((b, i) => ({
        timestamp: new Date(b * width).toISOString(),
        ...(group === null ? {} : { host: group }),
        ...Object.fromEntries(aggs.map((agg, k) => [agg.alias, columns[k]![i]!])),
      })),
    );
  }
  return buckets.flatMap((_, i) => groups.map((g) => byGroup.get(g)![i]!));
}

function expectRows(actual: Record<string, unknown>[], wanted: Record<string, Value>[]) {
  expect(actual.length).toBe(wanted.length);
  for (const [i, row] of wanted.entries()) {
    for (const [key, value] of Object.entries(row)) {
      const got = actual[i]![key];
      if (typeof value === 'number' && !Number.isInteger(value)) {
        expect(typeof got, `row ${i} ${key}`).toBe('number');
        expect(got as number, `row ${i} ${key}`).toBeCloseTo(value, 9);
      } else {
        expect(got, `row ${i} ${key}`).toEqual(value);
      }
    }
  }
}

const request = (aggs: Agg[], range: { from: number; to: number }, downsample: Record<string, unknown>) => ({
  timeRange: { start: new Date(range.from).toISOString(), end: new Date(range.to).toISOString() },
  downsample: { intervalUnit: 'minute', aggregations: aggs.map(({ fill, ...a }) => (fill === undefined ? a : { ...a, fill })), ...downsample },
  limit: 10_000,
});

async function ok(slug: string, body: unknown, headers: Record<string, string> = {}): Promise<any> {
  const res = await postJson(`${ts.url}/datasets/${slug}/query`, body, headers);
  if (res.status !== 200) throw new Error(`query answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

// The range starts inside minute 0 and ends 10 minutes after the last row: both edges have no value.
const RANGE = { from: BASE + 30_000, to: BASE + 60 * MINUTE };
const AGGS: Agg[] = [
  { fn: 'avg', column: 'v', alias: 'avg_v' },
  { fn: 'sum', column: 'n', alias: 'sum_n' },
  { fn: 'count', alias: 'rows' },
];

describe('downsample.fill', () => {
  test('the data has gaps of every kind the tests rely on', () => {
    const minutes = new Set(ROWS.map((r) => Math.floor((Date.parse(r.timestamp) - BASE) / MINUTE)));
    expect(minutes.size).toBeLessThan(50);
    expect(ROWS.some((r) => r.v === null)).toBe(true);
    expect(ROWS.filter((r) => r.host === 'c').every((r) => Date.parse(r.timestamp) >= BASE + 10 * MINUTE)).toBe(true);
  });

  test('none (the default) leaves empty buckets out; null answers every bucket, counts 0', async () => {
    const none = await ok(SLUG, request(AGGS, RANGE, {}));
    const all = expected(ROWS, RANGE.from, RANGE.to, 1, AGGS, 'null', false);
    expectRows(
      none.rows,
      all.filter((r) => (r.rows as number) > 0),
    );
    const filledNull = await ok(SLUG, request(AGGS, RANGE, { fill: 'null' }));
    expect(filledNull.rows.length).toBe(60);
    expectRows(filledNull.rows, all);
    expect(filledNull.columnTypes).toEqual([
      { name: 'timestamp', type: 'timestamp' },
      { name: 'avg_v', type: 'double' },
      { name: 'sum_n', type: 'integer' },
      { name: 'rows', type: 'integer' },
    ]);
    // JSON null is the same as "null".
    expect((await ok(SLUG, request(AGGS, RANGE, { fill: null }))).rows).toEqual(filledNull.rows);
  });

  for (const fill of ['previous', 'linear', -1] as const) {
    for (const groupBy of [false, true]) {
      test(`${fill}${groupBy ? ' with groupBy: every host gets every bucket' : ' without groupBy'}`, async () => {
        const body = request(AGGS, RANGE, { fill, ...(groupBy ? { groupBy: ['host'] } : {}) });
        const answer = await ok(SLUG, body);
        const wanted = expected(ROWS, RANGE.from, RANGE.to, 1, AGGS, fill, groupBy);
        expect(answer.rows.length).toBe(groupBy ? 3 * 60 : 60);
        expectRows(answer.rows, wanted);
        if (fill === 'linear') {
          // Interpolated integers are doubles; the first and last buckets have no value on one side.
          expect(answer.columnTypes.find((c: { name: string }) => c.name === 'sum_n').type).toBe('double');
          expect(answer.rows.at(-1).avg_v).toBeNull();
          if (groupBy) expect(answer.rows.find((r: any) => r.host === 'c').avg_v).toBeNull();
        }
      });
    }
  }

  test('per aggregation: each aggregation its own fill, the rest downsample.fill', async () => {
    const aggs: Agg[] = [
      { fn: 'avg', column: 'v', alias: 'lin', fill: 'linear' },
      { fn: 'avg', column: 'v', alias: 'zero', fill: 0 },
      { fn: 'max', column: 's', alias: 'max_s' },
      { fn: 'last', column: 'n', alias: 'last_n', fill: 'null' },
      { fn: 'count', column: 'v', alias: 'values' },
    ];
    const body = request(aggs, RANGE, { fill: 'previous', groupBy: ['host'], intervalSize: 2 });
    const answer = await ok(SLUG, body);
    expectRows(answer.rows, expected(ROWS, RANGE.from, RANGE.to, 2, aggs, 'previous', true));
    expect(answer.rows.length).toBe(3 * 30);
  });

  test('an aggregation fill alone answers every bucket; without one the others stay null there', async () => {
    const aggs: Agg[] = [
      { fn: 'avg', column: 'v', alias: 'prev', fill: 'previous' },
      { fn: 'sum', column: 'n', alias: 'plain' },
    ];
    const answer = await ok(SLUG, request(aggs, RANGE, {}));
    expectRows(answer.rows, expected(ROWS, RANGE.from, RANGE.to, 1, aggs, 'null', false));
  });

  test('streamed CSV and NDJSON carry the filled rows', async () => {
    const body = request(AGGS, RANGE, { fill: 'linear', groupBy: ['host'] });
    const json = (await ok(SLUG, body)).rows;
    const post = (accept: string) =>
      fetch(`${ts.url}/datasets/${SLUG}/query`, { method: 'POST', headers: { 'content-type': 'application/json', accept }, body: JSON.stringify(body) });
    const ndjson = (await (await post('application/x-ndjson')).text()).trim().split('\n').map((line) => JSON.parse(line));
    expect(ndjson).toEqual(json);
    const csv = (await (await post('text/csv')).text()).trim().split('\r\n');
    expect(csv[0]).toBe('timestamp,host,avg_v,sum_n,rows');
    expect(csv.length).toBe(json.length + 1);
    const cell = (x: unknown) => (x === null ? '' : String(x));
    expect(csv[5]).toBe(['timestamp', 'host', 'avg_v', 'sum_n', 'rows'].map((k) => cell(json[4][k])).join(','));
  });

  test('order desc and limit apply to the filled rows', async () => {
    const answer = await ok(SLUG, { ...request(AGGS, RANGE, { fill: 'previous' }), order: 'desc', limit: 15 });
    const wanted = expected(ROWS, RANGE.from, RANGE.to, 1, AGGS, 'previous', false).reverse().slice(0, 15);
    expectRows(answer.rows, wanted);
    expect(answer.truncated).toBe(true);
  });

  test('a range without rows: every bucket without groupBy, none with it', async () => {
    const empty = { from: BASE + 2 * 86_400_000, to: BASE + 2 * 86_400_000 + 5 * MINUTE };
    const answer = await ok(SLUG, request(AGGS, empty, { fill: 7 }));
    expect(answer.rows).toEqual(
      Array.from({ length: 5 }, (_, i) => ({ timestamp: new Date(empty.from + i * MINUTE).toISOString(), avg_v: 7, sum_n: 7, rows: 0 })),
    );
    expect(answer.partitions.scanned).toBe(0);
    expect((await ok(SLUG, request(AGGS, empty, { fill: 7, groupBy: ['host'] }))).rows).toEqual([]);
  });

  test('month buckets interpolate by time: months differ in length', async () => {
    const body = {
      timeRange: { start: '2024-12-01T00:00:00Z', end: '2025-06-01T00:00:00Z' },
      downsample: { intervalUnit: 'month', aggregations: [{ fn: 'avg', column: 'v', alias: 'v' }], fill: 'linear' },
    };
    const answer = await ok(MONTHS, body);
    const months = ['2024-12', '2025-01', '2025-02', '2025-03', '2025-04', '2025-05'].map((m) => Date.parse(`${m}-01T00:00:00Z`));
    const values = filled([null, 15, null, null, 60, null], months, 'linear');
    expect(answer.rows.map((r: any) => r.timestamp)).toEqual(months.map((m) => new Date(m).toISOString()));
    expectRows(answer.rows, values.map((v) => ({ v })));
    // Not evenly spaced: February is shorter than March.
    expect(answer.rows[2].v - 15).not.toBeCloseTo(answer.rows[3].v - answer.rows[2].v, 6);
  });

  test('a one-bucket query in the lastpoint form is not answered from the latest-value cache', async () => {
    const body = {
      timeRange: { start: new Date(BASE + 55 * MINUTE).toISOString(), end: new Date(BASE + 56 * MINUTE).toISOString() },
      downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'last', column: 'v', alias: 'v' }], fill: 'null' },
    };
    const answer = await ok(SLUG, body);
    expect(answer.source).toBe('files');
    expect(answer.rows).toEqual([{ timestamp: new Date(BASE).toISOString(), v: null }]);
    const { fill: _, ...plain } = body.downsample;
    expect((await ok(SLUG, { ...body, downsample: plain })).rows).toEqual([]);
  });

  test('refusals: fills that do not fit their aggregation, and too many buckets', async () => {
    const refused = async (downsample: Record<string, unknown>, range = RANGE) => {
      const res = await postJson(`${ts.url}/datasets/${SLUG}/query`, request([], range, downsample));
      return { status: res.status, code: res.body.error?.code, message: res.body.error?.message as string };
    };
    const linearString = await refused({ aggregations: [{ fn: 'max', column: 's' }], fill: 'linear' });
    expect(linearString).toMatchObject({ status: 400, code: 'invalid_fill' });
    expect(linearString.message).toContain('downsample.aggregations[0]');
    expect(await refused({ aggregations: [{ fn: 'max', column: 's', fill: 0 }] })).toMatchObject({ status: 400, code: 'invalid_fill' });
    expect(await refused({ aggregations: [{ fn: 'sum', column: 'n', fill: 1.5 }] })).toMatchObject({ status: 400, code: 'invalid_fill' });
    expect(await refused({ aggregations: [{ fn: 'avg', column: 'v' }], fill: 'sideways' })).toMatchObject({ status: 400, code: 'validation_failed' });
    expect(await refused({ aggregations: [{ fn: 'avg', column: 'v', fill: 'none' }] })).toMatchObject({ status: 400, code: 'validation_failed' });
    // TIMESTORE_QUERY_MAX_BUCKETS (100000 by default) counts every bucket the range touches:
    // 100000 seconds that start mid-second touch 100001 of them.
    const wide = { from: BASE + 500, to: BASE + 100_000 * 1000 + 500 };
    expect(await refused({ intervalUnit: 'second', aggregations: [{ fn: 'avg', column: 'v' }], fill: 'null' }, wide)).toMatchObject({
      status: 400,
      code: 'too_many_buckets',
    });
    const fits = { from: BASE, to: BASE + 100_000 * 1000 };
    const answer = await ok(SLUG, { ...request([{ fn: 'count', alias: 'rows' }], fits, { intervalUnit: 'second', fill: 'null' }), limit: 10 });
    expect(answer.truncated).toBe(true);
  });
});

describe('the same fills in SQL', () => {
  async function sql(statement: string, params: unknown[]): Promise<any> {
    const res = await postJson(`${ts.url}/sql`, { sql: statement, params });
    if (res.status !== 200) throw new Error(`sql answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body;
  }

  /** AGGS per bucket of `width`, every bucket of [$1, $2) (per host with `groupBy`), each value through `fill`. */
  function statement(width: string, fill: (value: string, ts: string, grp?: string) => string, groupBy: boolean): string {
    const grp = groupBy ? 'h.host' : undefined;
    return `WITH a AS (
        SELECT bucket(INTERVAL ${width}, "timestamp") AS bucket,${groupBy ? ' host,' : ''} avg(v) AS avg_v, CAST(sum(n) AS BIGINT) AS sum_n, count(*) AS "rows"
        FROM ${SLUG} WHERE "timestamp" >= $1 AND "timestamp" < $2 GROUP BY ALL)
      SELECT b.bucket AS "timestamp",${groupBy ? ' h.host,' : ''} ${fill('a.avg_v', 'b.bucket', grp)} AS avg_v, ${fill('a.sum_n', 'b.bucket', grp)} AS sum_n, coalesce(a."rows", 0) AS "rows"
      FROM buckets(INTERVAL ${width}, $1, $2) AS b
      ${groupBy ? 'CROSS JOIN (SELECT DISTINCT host FROM a) AS h LEFT JOIN a ON a.bucket = b.bucket AND a.host = h.host' : 'LEFT JOIN a USING (bucket)'}
      ORDER BY b.bucket${groupBy ? ', h.host' : ''}`;
  }
  const args = (...xs: (string | undefined)[]) => xs.filter((x) => x !== undefined).join(', ');
  const FILLS: [Fill, (value: string, ts: string, grp?: string) => string][] = [
    ['null', (value) => value],
    ['previous', (value, ts, grp) => `locf(${args(value, ts, grp)})`],
    ['linear', (value, ts, grp) => `interpolate(${args(value, ts, grp)})`],
    [-1, (value) => `coalesce(${value}, -1)`],
  ];
  const params = [new Date(RANGE.from).toISOString(), new Date(RANGE.to).toISOString()];

  for (const [fill, fn] of FILLS) {
    for (const groupBy of [false, true]) {
      test(`${fill}${groupBy ? ' with a partition per host' : ''}: the JSON query's answer, and the one computed here`, async () => {
        for (const minutes of [1, 2]) {
          const answer = await sql(statement(`${minutes} MINUTE`, fn, groupBy), params);
          const wanted = expected(ROWS, RANGE.from, RANGE.to, minutes, AGGS, fill, groupBy);
          expect(answer.rows.length).toBe((groupBy ? 3 : 1) * (60 / minutes));
          expectRows(answer.rows, wanted);
          const json = await ok(SLUG, request(AGGS, RANGE, { fill, intervalSize: minutes, ...(groupBy ? { groupBy: ['host'] } : {}) }));
          expectRows(answer.rows, json.rows);
        }
      });
    }
  }

  test('month buckets: bucket and buckets go by the calendar, interpolate by time', async () => {
    const answer = await sql(
      `WITH a AS (SELECT bucket(INTERVAL 1 MONTH, "timestamp") AS bucket, avg(v) AS v FROM dataset('${MONTHS}') GROUP BY ALL)
       SELECT b.bucket AS "timestamp", interpolate(a.v, b.bucket) AS v FROM buckets(INTERVAL 1 MONTH, $1, $2) AS b LEFT JOIN a USING (bucket) ORDER BY 1`,
      ['2024-12-01T00:00:00Z', '2025-06-01T00:00:00Z'],
    );
    const json = await ok(MONTHS, {
      timeRange: { start: '2024-12-01T00:00:00Z', end: '2025-06-01T00:00:00Z' },
      downsample: { intervalUnit: 'month', aggregations: [{ fn: 'avg', column: 'v', alias: 'v' }], fill: 'linear' },
    });
    expect(answer.rows.map((r: any) => r.timestamp)).toEqual(json.rows.map((r: any) => r.timestamp));
    expectRows(answer.rows, json.rows);
  });

  test('buckets are aligned to the Unix epoch, before 1970 too; weeks start on Thursdays', async () => {
    const answer = await sql(
      `SELECT bucket(INTERVAL 1 MINUTE, TIMESTAMPTZ '1969-12-31 23:59:30+00') AS before_1970, bucket(INTERVAL 1 WEEK, TIMESTAMPTZ '2026-01-06 12:00:00+00') AS week,
         (SELECT list(bucket ORDER BY bucket) FROM buckets(INTERVAL 2 HOUR, '2026-01-01T01:00:00Z', '2026-01-01T04:00:01Z')) AS grid`,
      [],
    );
    expect(answer.rows[0]).toMatchObject({ before_1970: '1969-12-31T23:59:00.000Z', week: '2026-01-01T00:00:00.000Z' });
    expect(String(answer.rows[0].grid)).toContain('2026-01-01 00:00:00');
    expect(String(answer.rows[0].grid)).toContain('2026-01-01 04:00:00');
  });

  test('a width that is not positive is 400 sql_error naming it', async () => {
    const res = await postJson(`${ts.url}/sql`, { sql: `SELECT * FROM buckets(INTERVAL 0 MINUTE, '2026-01-01', '2026-01-02')` });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('sql_error');
    expect(res.body.error.message).toContain('a bucket width must be positive');
  });
});
