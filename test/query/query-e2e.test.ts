/**
 * POST /datasets/:slug/query end to end: rows ingested through HTTP, the same rows inserted into a
 * plain PostgreSQL table (schema `oracle` of the test database), and every answer compared with
 * what PostgreSQL computes independently (date_bin buckets, percentile_cont, array_agg for
 * first/last). Also filters, pruning counts, schema evolution, CSV/NDJSON, every 400, and the
 * one-manifest-version guarantee under concurrent publishes.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import postgres from 'postgres';
import { findDataset } from '../../src/catalog/datasets.ts';
import { listActivePartitions } from '../../src/catalog/manifests.ts';
import type { Partition } from '../../src/model/records.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
const SLUG = 'e2e-metrics';
const DAY = 86_400_000;
const BASE = Date.UTC(2026, 0, 28); // a Wednesday; the data crosses a month and several weeks
const RANGE = { start: new Date(BASE - DAY).toISOString(), end: new Date(BASE + 12 * DAY).toISOString() };

interface Row {
  timestamp: string;
  host: string;
  usage: number | null;
  reqs: number;
  ok: boolean;
  note?: string | null;
  region: string;
}

/** Deterministic PRNG (mulberry32). */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HOSTS = Array.from({ length: 8 }, (_, i) => `host-${String(i).padStart(2, '0')}`);
const regionOf = (host: string) => (Number(host.slice(-2)) % 2 === 0 ? 'eu' : 'us');

/** Unique, increasing timestamps (first/last are then well defined, also without groupBy). */
function generate(count: number, start: number, step: number, seed: number, withNote: boolean): Row[] {
  const rand = prng(seed);
  return Array.from({ length: count }, (_, i) => {
    const host = HOSTS[(i * 5 + Math.floor(rand() * 3)) % HOSTS.length]!;
    const row: Row = {
      timestamp: new Date(start + i * step + Math.floor(rand() * (step - 1000))).toISOString(),
      host,
      usage: i % 13 === 0 ? null : Math.round(rand() * 100_000) / 1000,
      reqs: Math.floor(rand() * 1000) - 200,
      ok: rand() < 0.6,
      region: regionOf(host),
    };
    if (withNote) row.note = i % 4 === 0 ? null : `n${i % 7}`;
    return row;
  });
}

const OLD = generate(3000, BASE, 230_000, 42, false); // ~8 days
const NEW = generate(400, BASE + 8 * DAY + 3_600_000, 200_000, 7, true); // the day after, with `note`
const ALL = [...OLD, ...NEW];

const baseFields = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'usage', type: 'double' },
  { name: 'reqs', type: 'integer' },
  { name: 'ok', type: 'boolean' },
];

async function ingest(slug: string, rows: Row[], fields: object[]) {
  for (const region of ['eu', 'us']) {
    const mine = rows.filter((r) => r.region === region).map(({ region: _r, ...rest }) => rest);
    for (let i = 0; i < mine.length; i += 800) {
      const res = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, {
        schema: { fields },
        partition: { key: { region } },
        rows: mine.slice(i, i + 800),
      });
      if (res.status !== 201) throw new Error(`ingest answered ${res.status}: ${JSON.stringify(res.body)}`);
    }
  }
}

const query = (body: unknown, slug = SLUG, headers: Record<string, string> = {}) =>
  postJson(`${ts.url}/datasets/${slug}/query`, body, headers);

async function ok(body: Record<string, unknown>, slug = SLUG): Promise<any> {
  const res = await query({ timeRange: RANGE, ...body }, slug);
  if (res.status !== 200) throw new Error(`query answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

const sql = () => ts.sql;
/** The oracle's own client on the same database: no camelCase renaming of result columns. */
let pg: postgres.Sql;

beforeAll(async () => {
  ts = await startTestServer();
  await ingest(SLUG, OLD, baseFields);
  await ingest(SLUG, NEW, [...baseFields, { name: 'note', type: 'string', nullable: true }]);
  pg = postgres(ts.config.databaseUrl!, { max: 4, onnotice: () => {} });
  await pg.unsafe(`CREATE SCHEMA oracle`);
  await pg.unsafe(`CREATE TABLE oracle.rows (ts timestamptz NOT NULL, host text, usage double precision, reqs integer, ok boolean, note text, region text)`);
  const values = ALL.map((r) => ({ ts: r.timestamp, host: r.host, usage: r.usage, reqs: r.reqs, ok: r.ok, note: r.note ?? null, region: r.region }));
  for (let i = 0; i < values.length; i += 1000) {
    await pg`INSERT INTO oracle.rows ${pg(values.slice(i, i + 1000), 'ts', 'host', 'usage', 'reqs', 'ok', 'note', 'region')}`;
  }
}, 120_000);

afterAll(async () => {
  await pg?.end();
  await ts?.stop();
});

// ---------------------------------------------------------------------------------------------
// Comparison helpers

/** A PostgreSQL value in the API's vocabulary: ISO timestamps, numbers for numeric strings. */
function normal(value: unknown): unknown {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string' && /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i.test(value)) return Number(value);
  return value;
}

function expectClose(actual: unknown, expected: unknown, where: string) {
  expected = normal(expected);
  if (typeof expected === 'number') {
    if (typeof actual !== 'number') throw new Error(`${where}: expected ${expected}, got ${JSON.stringify(actual)}`);
    const tolerance = 1e-9 * Math.max(1, Math.abs(expected));
    if (!(Math.abs(actual - expected) <= tolerance)) throw new Error(`${where}: expected ${expected}, got ${actual}`);
  } else if (actual !== expected) {
    throw new Error(`${where}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

function compareRows(actual: Record<string, unknown>[], expected: Record<string, unknown>[], keys: string[], what: string) {
  if (actual.length !== expected.length) throw new Error(`${what}: ${actual.length} rows, PostgreSQL has ${expected.length}`);
  for (let i = 0; i < expected.length; i++) {
    for (const k of keys) expectClose(actual[i]![k], expected[i]![k], `${what} row ${i} column ${k}`);
  }
}

const ROW_COLUMNS = ['timestamp', 'host', 'usage', 'reqs', 'ok', 'note'];

async function pgRows(where = 'TRUE', params: unknown[] = [], range = RANGE): Promise<Record<string, unknown>[]> {
  const n = params.length;
  return pg.unsafe(
    `SELECT ts AS timestamp, host, usage, reqs, ok, note FROM oracle.rows
     WHERE ts >= $${n + 1}::timestamptz AND ts < $${n + 2}::timestamptz AND (${where}) ORDER BY ts`,
    [...params, range.start, range.end] as never[],
  );
}

// ---------------------------------------------------------------------------------------------
// Downsampling against PostgreSQL

const AGGREGATIONS = [
  { fn: 'avg', column: 'usage', alias: 'avg_usage', pg: 'avg(usage)' },
  { fn: 'min', column: 'usage', alias: 'min_usage', pg: 'min(usage)' },
  { fn: 'max', column: 'usage', alias: 'max_usage', pg: 'max(usage)' },
  { fn: 'sum', column: 'usage', alias: 'sum_usage', pg: 'sum(usage)' },
  { fn: 'median', column: 'usage', alias: 'median_usage', pg: 'percentile_cont(0.5) WITHIN GROUP (ORDER BY usage)' },
  { fn: 'count', column: 'usage', alias: 'count_usage', pg: 'count(usage)' },
  { fn: 'count_distinct', column: 'host', alias: 'hosts', pg: 'count(DISTINCT host)' },
  { fn: 'percentile', column: 'usage', alias: 'p90_usage', percentile: 0.9, pg: 'percentile_cont(0.9) WITHIN GROUP (ORDER BY usage)' },
  { fn: 'percentile', column: 'reqs', alias: 'p0_reqs', percentile: 0, pg: 'percentile_cont(0) WITHIN GROUP (ORDER BY reqs)' },
  { fn: 'first', column: 'usage', alias: 'first_usage', pg: '(array_agg(usage ORDER BY ts) FILTER (WHERE usage IS NOT NULL))[1]' },
  { fn: 'last', column: 'usage', alias: 'last_usage', pg: '(array_agg(usage ORDER BY ts DESC) FILTER (WHERE usage IS NOT NULL))[1]' },
  { fn: 'sum', column: 'reqs', alias: 'sum_reqs', pg: 'sum(reqs)' },
  { fn: 'avg', column: 'reqs', alias: 'avg_reqs', pg: 'avg(reqs)' },
  { fn: 'count_distinct', column: 'reqs', alias: 'distinct_reqs', pg: 'count(DISTINCT reqs)' },
  { fn: 'min', column: 'host', alias: 'min_host', pg: 'min(host COLLATE "C")' },
  { fn: 'max', column: 'timestamp', alias: 'max_ts', pg: 'max(ts)' },
  { fn: 'first', column: 'host', alias: 'first_host', pg: '(array_agg(host ORDER BY ts))[1]' },
  { fn: 'last', column: 'ok', alias: 'last_ok', pg: '(array_agg(ok ORDER BY ts DESC))[1]' },
  { fn: 'count', column: 'note', alias: 'notes', pg: 'count(note)' },
  { fn: 'count', alias: 'rows', pg: 'count(*)' },
  { fn: 'last', column: 'note', alias: 'last_note', pg: '(array_agg(note ORDER BY ts DESC) FILTER (WHERE note IS NOT NULL))[1]' },
] as const;

function pgBucket(unit: string, size: number): string {
  if (unit === 'month') {
    // intervalSize months counted from 1970-01 (src/engine/query.ts), calendar months in UTC.
    const months = `((extract(year FROM ts AT TIME ZONE 'UTC') - 1970) * 12 + extract(month FROM ts AT TIME ZONE 'UTC') - 1)`;
    return `((timestamp '1970-01-01' + make_interval(months => (floor(${months} / ${size}) * ${size})::int)) AT TIME ZONE 'UTC')`;
  }
  return `date_bin(interval '${size} ${unit}', ts, timestamptz '1970-01-01 00:00:00+00')`;
}

async function pgDownsample(unit: string, size: number, groupBy: boolean, range = RANGE, where = 'TRUE') {
  const aggs = AGGREGATIONS.map((a) => `${a.pg} AS ${a.alias}`).join(', ');
  return pg.unsafe(
    `SELECT ${pgBucket(unit, size)} AS timestamp${groupBy ? ', host' : ''}, ${aggs}
     FROM oracle.rows WHERE ts >= $1::timestamptz AND ts < $2::timestamptz AND (${where})
     GROUP BY 1${groupBy ? ', 2' : ''} ORDER BY 1${groupBy ? ', host COLLATE "C"' : ''}`,
    [range.start, range.end],
  );
}

const downsample = (unit: string, size: number, groupBy: boolean) => ({
  intervalUnit: unit,
  intervalSize: size,
  aggregations: AGGREGATIONS.map(({ pg: _pg, ...a }) => a),
  ...(groupBy ? { groupBy: ['host'] } : {}),
});

const AGG_KEYS = ['timestamp', ...AGGREGATIONS.map((a) => a.alias)];

describe('downsampling matches PostgreSQL', () => {
  const cases: [string, number][] = [
    ['second', 30],
    ['minute', 1],
    ['minute', 15],
    ['hour', 1],
    ['hour', 5],
    ['day', 1],
    ['day', 3],
    ['week', 1],
    ['week', 2],
    ['month', 1],
    ['month', 5],
  ];
  for (const [unit, size] of cases) {
    for (const groupBy of [false, true]) {
      test(`${size} ${unit}${groupBy ? ' by host' : ''}`, async () => {
        const answer = await ok({ downsample: downsample(unit, size, groupBy), limit: 100_000 });
        expect(answer.mode).toBe('downsampled');
        expect(answer.truncated).toBe(false);
        expect(answer.columns).toEqual(groupBy ? ['timestamp', 'host', ...AGG_KEYS.slice(1)] : AGG_KEYS);
        const expected = await pgDownsample(unit, size, groupBy);
        compareRows(answer.rows, expected, groupBy ? [...AGG_KEYS, 'host'] : AGG_KEYS, `${size} ${unit}`);
      });
    }
  }

  test('latest values per host (one bucket for the whole range), of columns with and without NULLs', async () => {
    // reqs and ok are never NULL (the statement may then pick each host's latest row); usage is
    // NULL in the latest row of a host when the range ends just after such a row, and `last` must
    // still answer the latest value that is set.
    const aggregations = [
      { fn: 'last', column: 'reqs', alias: 'last_reqs', pg: '(array_agg(reqs ORDER BY ts DESC))[1]' },
      { fn: 'last', column: 'ok', alias: 'last_ok', pg: '(array_agg(ok ORDER BY ts DESC))[1]' },
      { fn: 'max', column: 'timestamp', alias: 'max_ts', pg: 'max(ts)' },
    ];
    const withUsage = [...aggregations, { fn: 'last', column: 'usage', alias: 'last_usage', pg: AGGREGATIONS.find((a) => a.alias === 'last_usage')!.pg }];
    const nullRow = OLD.find((r, i) => r.usage === null && i > 100)!;
    const endingOnNull = { start: RANGE.start, end: new Date(Date.parse(nullRow.timestamp) + 1).toISOString() };
    for (const [list, range] of [[aggregations, RANGE], [withUsage, RANGE], [withUsage, endingOnNull]] as const) {
      const answer = await ok({
        timeRange: range,
        downsample: { intervalUnit: 'day', intervalSize: 36_500, aggregations: list.map(({ pg: _pg, ...a }) => a), groupBy: ['host'] },
      });
      const expected = await pg.unsafe(
        `SELECT timestamptz '1970-01-01 00:00:00+00' AS timestamp, host, ${list.map((a) => `${a.pg} AS ${a.alias}`).join(', ')},
                (array_agg(usage ORDER BY ts DESC))[1] IS NULL AS latest_usage_null
         FROM oracle.rows WHERE ts >= $1::timestamptz AND ts < $2::timestamptz
         GROUP BY 2 ORDER BY host COLLATE "C"`,
        [range.start, range.end],
      );
      expect(expected).toHaveLength(HOSTS.length);
      compareRows(answer.rows, expected, ['timestamp', 'host', ...list.map((a) => a.alias)], 'latest per host');
      if (range === endingOnNull) expect(expected.some((r) => r.latest_usage_null && r.last_usage !== null)).toBe(true);
      // The latest-value cache answers the form when it gives the same rows: not when a host's
      // latest row lies past the range (or, with usage, may hold a NULL, which `last` skips).
      if (list === aggregations && range === RANGE) expect(answer.source).toBe('cache');
      if (range === endingOnNull) expect(answer.source).toBe('files');
    }
  });

  test('column types are in the dataset vocabulary', async () => {
    const answer = await ok({ downsample: downsample('day', 1, true) });
    const types = Object.fromEntries(answer.columnTypes.map((c: { name: string; type: string }) => [c.name, c.type]));
    expect(types).toMatchObject({
      timestamp: 'timestamp',
      host: 'string',
      avg_usage: 'double',
      count_usage: 'integer',
      rows: 'integer',
      hosts: 'integer',
      sum_reqs: 'integer',
      min_host: 'string',
      max_ts: 'timestamp',
      last_ok: 'boolean',
      p90_usage: 'double',
    });
  });

  test('a range that starts and ends inside buckets, with a filter, descending', async () => {
    const range = { start: new Date(BASE + 1.5 * DAY + 1234).toISOString(), end: new Date(BASE + 6.25 * DAY).toISOString() };
    const answer = await ok({
      timeRange: range,
      downsample: downsample('hour', 6, true),
      filters: { columns: { reqs: { gte: 0 }, host: { in: ['host-01', 'host-02', 'host-05'] } } },
      order: 'desc',
    });
    const expected = await pgDownsample('hour', 6, true, range, `reqs >= 0 AND host IN ('host-01', 'host-02', 'host-05')`);
    // desc: buckets newest first; within a bucket the groups stay ascending.
    const resorted = [...answer.rows].sort((a, b) => (a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : 0));
    compareRows(resorted, expected, [...AGG_KEYS, 'host'], 'desc');
    for (let i = 1; i < answer.rows.length; i++) expect(answer.rows[i - 1].timestamp >= answer.rows[i].timestamp).toBe(true);
  });

  test('groupBy a nullable (schema-evolved) column and two columns: NULL groups last', async () => {
    const aggregations = [
      { fn: 'count', column: 'usage', alias: 'c' },
      { fn: 'sum', column: 'reqs', alias: 's' },
      { fn: 'last', column: 'usage', alias: 'l' },
    ];
    const pgAggs = `count(usage) AS c, sum(reqs) AS s, (array_agg(usage ORDER BY ts DESC) FILTER (WHERE usage IS NOT NULL))[1] AS l`;
    const one = await ok({ downsample: { intervalUnit: 'day', groupBy: ['note'], aggregations }, limit: 100_000 });
    const expectedOne = await pg.unsafe(
      `SELECT ${pgBucket('day', 1)} AS timestamp, note, ${pgAggs} FROM oracle.rows GROUP BY 1, 2 ORDER BY 1, note COLLATE "C" NULLS LAST`,
    );
    compareRows(one.rows, expectedOne, ['timestamp', 'note', 'c', 's', 'l'], 'by note');
    const two = await ok({ downsample: { intervalUnit: 'week', groupBy: ['host', 'note'], aggregations }, limit: 100_000 });
    expect(two.columns).toEqual(['timestamp', 'host', 'note', 'c', 's', 'l']);
    const expectedTwo = await pg.unsafe(
      `SELECT ${pgBucket('week', 1)} AS timestamp, host, note, ${pgAggs} FROM oracle.rows
       GROUP BY 1, 2, 3 ORDER BY 1, host COLLATE "C", note COLLATE "C" NULLS LAST`,
    );
    compareRows(two.rows, expectedTwo, ['timestamp', 'host', 'note', 'c', 's', 'l'], 'by host and note');
  });

  test('a time range with offsets means the same instants', async () => {
    const utc = { start: new Date(BASE + DAY).toISOString(), end: new Date(BASE + 2 * DAY).toISOString() };
    const shifted = { start: '2026-01-29T02:00:00+02:00', end: '2026-01-29T19:00:00-05:00' };
    const a = await ok({ timeRange: utc, downsample: downsample('hour', 1, false) });
    const b = await ok({ timeRange: shifted, downsample: downsample('hour', 1, false) });
    expect(b.rows).toEqual(a.rows);
    expect(a.rows.length).toBeGreaterThan(20);
  });

  test('a time range with no data answers no rows and scans nothing', async () => {
    const answer = await ok({ timeRange: { start: '2030-01-01T00:00:00Z', end: '2030-02-01T00:00:00Z' }, downsample: downsample('day', 1, true) });
    expect(answer.rows).toEqual([]);
    expect(answer.partitions.scanned).toBe(0);
    expect(answer.columns).toEqual(['timestamp', 'host', ...AGG_KEYS.slice(1)]);
  });

  test('a limit truncates downsampled rows', async () => {
    const answer = await ok({ downsample: downsample('day', 1, false), limit: 3 });
    expect(answer.rows).toHaveLength(3);
    expect(answer.truncated).toBe(true);
    compareRows(answer.rows, (await pgDownsample('day', 1, false)).slice(0, 3), AGG_KEYS, 'limited');
  });
});

describe('counts over whole partitions come from their statistics', () => {
  const COUNTS = [
    { fn: 'count', alias: 'rows' },
    { fn: 'count', column: 'usage', alias: 'count_usage' },
    { fn: 'count', column: 'note', alias: 'notes' },
  ];
  const counts = (range: { start: string; end: string }) => ({ timeRange: range, downsample: { intervalUnit: 'day', intervalSize: 36_500, aggregations: COUNTS } });
  const pgCounts = (range: { start: string; end: string }) =>
    pg.unsafe(
      `SELECT timestamptz '1970-01-01 00:00:00+00' AS timestamp, count(*) AS rows, count(usage) AS count_usage, count(note) AS notes
       FROM oracle.rows WHERE ts >= $1::timestamptz AND ts < $2::timestamptz`,
      [range.start, range.end],
    );
  const KEYS = ['timestamp', 'rows', 'count_usage', 'notes'];

  test('a range that holds every row of the partitions it touches: no file read, the same counts', async () => {
    const answer = await ok(counts(RANGE));
    expect(answer.source).toBe('statistics');
    expect(answer.partitions.scanned).toBe(0);
    expect(answer.columns).toEqual(KEYS);
    expect(answer.columnTypes.slice(1).map((c: { type: string }) => c.type)).toEqual(['integer', 'integer', 'integer']);
    compareRows(answer.rows, await pgCounts(RANGE), KEYS, 'from statistics');
    // The streamed forms give the same rows.
    const res = await fetch(`${ts.url}/datasets/${SLUG}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify(counts(RANGE)),
    });
    expect((await res.text()).trim().split('\n').map((line) => JSON.parse(line))).toEqual(answer.rows);
  });

  test('a range that cuts a partition, or a filter, is scanned, with the counts PostgreSQL gives', async () => {
    const cut = { start: new Date(BASE + 2.5 * DAY).toISOString(), end: RANGE.end };
    const scanned = await ok(counts(cut));
    expect(scanned.source).toBe('files');
    expect(scanned.partitions.scanned).toBeGreaterThan(0);
    compareRows(scanned.rows, await pgCounts(cut), KEYS, 'scanned');
    const filtered = await ok({ ...counts(RANGE), filters: { columns: { reqs: { gte: -1000 } } } });
    expect(filtered.source).toBe('files');
    compareRows(filtered.rows, await pgCounts(RANGE), KEYS, 'filtered');
  });
});

// ---------------------------------------------------------------------------------------------
// Raw mode and filters

describe('raw mode', () => {
  test('every row, ascending by time, all columns', async () => {
    const answer = await ok({ limit: 100_000 });
    expect(answer.mode).toBe('raw');
    expect(answer.columns).toEqual(ROW_COLUMNS);
    expect(answer.truncated).toBe(false);
    compareRows(answer.rows, await pgRows(), ROW_COLUMNS, 'raw asc');
  });

  test('descending', async () => {
    const answer = await ok({ order: 'desc', limit: 100_000, columns: ['usage'] });
    expect(answer.columns).toEqual(['timestamp', 'usage']);
    compareRows(answer.rows, (await pgRows()).reverse(), ['timestamp', 'usage'], 'raw desc');
  });

  test('a limit returns the first rows in order and says it truncated', async () => {
    const asc = await ok({ limit: 25, columns: ['host'] });
    expect(asc.truncated).toBe(true);
    compareRows(asc.rows, (await pgRows()).slice(0, 25), ['timestamp', 'host'], 'limit asc');
    const desc = await ok({ limit: 25, order: 'desc', columns: ['host'] });
    expect(desc.truncated).toBe(true);
    compareRows(desc.rows, (await pgRows()).reverse().slice(0, 25), ['timestamp', 'host'], 'limit desc');
    const exact = await ok({ limit: ALL.length, columns: ['host'] });
    expect(exact.rows).toHaveLength(ALL.length);
    expect(exact.truncated).toBe(false);
  });

  test('an answer arrives whole at any size: a small one with its length, a large one in chunks', async () => {
    const raw = (limit: number) =>
      fetch(`${ts.url}/datasets/${SLUG}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ timeRange: RANGE, limit }) });
    const small = await raw(25);
    const smallText = await small.text();
    expect(small.headers.get('content-length')).toBe(String(Buffer.byteLength(smallText)));
    expect(JSON.parse(smallText).rows).toHaveLength(25);

    // Rows of 64 KiB or more follow the head without being copied into one buffer.
    const large = await raw(100_000);
    const largeText = await large.text();
    expect(large.status).toBe(200);
    expect(large.headers.get('content-type')).toContain('application/json');
    expect(Buffer.byteLength(largeText)).toBeGreaterThan(64 * 1024);
    const answer = JSON.parse(largeText);
    expect(answer.columns).toEqual(ROW_COLUMNS);
    compareRows(answer.rows, await pgRows(), ROW_COLUMNS, 'large answer');
  });

  test('the default limit applies without one', async () => {
    const answer = await ok({ columns: ['host'] });
    expect(answer.rows).toHaveLength(Math.min(ALL.length, ts.config.query.defaultRows));
  });

  test('the time range end is exclusive and the start inclusive', async () => {
    const row = OLD[100]!;
    const answer = await ok({ timeRange: { start: row.timestamp, end: OLD[102]!.timestamp }, columns: ['host'] });
    expect(answer.rows.map((r: any) => r.timestamp)).toEqual([OLD[100]!.timestamp, OLD[101]!.timestamp]);
  });
});

describe('filters match PostgreSQL', () => {
  const t = (i: number) => OLD[i]!.timestamp;
  const cases: [string, Record<string, Record<string, unknown>>, string, unknown[]][] = [
    ['string eq', { host: { eq: 'host-03' } }, `host = 'host-03'`, []],
    ['string neq', { host: { neq: 'host-03' } }, `host IS DISTINCT FROM 'host-03'`, []],
    ['string in', { host: { in: ['host-01', 'host-06', 'nope'] } }, `host IN ('host-01', 'host-06', 'nope')`, []],
    ['string range', { host: { gt: 'host-02', lte: 'host-05' } }, `host COLLATE "C" > 'host-02' AND host COLLATE "C" <= 'host-05'`, []],
    ['double gt', { usage: { gt: 50.5 } }, 'usage > 50.5', []],
    ['double gte/lt', { usage: { gte: 10, lt: 20.25 } }, 'usage >= 10 AND usage < 20.25', []],
    ['double lte', { usage: { lte: 1.5 } }, 'usage <= 1.5', []],
    ['double neq (nulls pass)', { usage: { neq: OLD[1]!.usage! } }, `usage IS DISTINCT FROM ${OLD[1]!.usage}`, []],
    ['double eq', { usage: { eq: OLD[5]!.usage! } }, `usage = ${OLD[5]!.usage}`, []],
    ['double eq null', { usage: { eq: null } }, 'usage IS NULL', []],
    ['double neq null', { usage: { neq: null } }, 'usage IS NOT NULL', []],
    ['integer in', { reqs: { in: [0, 1, 2, 3, 4, 5, 100, 799] } }, 'reqs IN (0, 1, 2, 3, 4, 5, 100, 799)', []],
    ['integer range', { reqs: { gt: -50, lte: 10 } }, 'reqs > -50 AND reqs <= 10', []],
    ['integer eq', { reqs: { eq: 42 } }, 'reqs = 42', []],
    ['boolean eq', { ok: { eq: true } }, 'ok = true', []],
    ['boolean neq', { ok: { neq: true } }, 'ok IS DISTINCT FROM true', []],
    ['timestamp gte/lt', { timestamp: { gte: t(500), lt: t(900) } }, `ts >= '${t(500)}' AND ts < '${t(900)}'`, []],
    ['timestamp gt/lte', { timestamp: { gt: t(500), lte: t(900) } }, `ts > '${t(500)}' AND ts <= '${t(900)}'`, []],
    ['timestamp eq', { timestamp: { eq: t(77) } }, `ts = '${t(77)}'`, []],
    ['timestamp in', { timestamp: { in: [t(1), t(2), '2026-01-30T00:00:00Z'] } }, `ts IN ('${t(1)}', '${t(2)}', '2026-01-30T00:00:00Z')`, []],
    ['timestamp neq', { timestamp: { neq: t(3) } }, `ts <> '${t(3)}'`, []],
    ['evolved column eq', { note: { eq: 'n3' } }, `note = 'n3'`, []],
    ['evolved column eq null', { note: { eq: null } }, 'note IS NULL', []],
    ['evolved column neq (nulls pass)', { note: { neq: 'n3' } }, `note IS DISTINCT FROM 'n3'`, []],
    [
      'several columns ANDed',
      { host: { in: ['host-00', 'host-04'] }, usage: { gt: 30 }, ok: { eq: false }, reqs: { lt: 500 } },
      `host IN ('host-00', 'host-04') AND usage > 30 AND ok = false AND reqs < 500`,
      [],
    ],
  ];
  for (const [name, columns, where, params] of cases) {
    test(name, async () => {
      const answer = await ok({ filters: { columns }, limit: 100_000 });
      const expected = await pgRows(where, params);
      expect(expected.length).toBeGreaterThan(0);
      compareRows(answer.rows, expected, ROW_COLUMNS, name);
    });
  }

  test('a filter no row passes answers no rows', async () => {
    const answer = await ok({ filters: { columns: { usage: { gt: 60, lt: 40 } } } });
    expect(answer.rows).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Pruning

async function active(): Promise<Partition[]> {
  const dataset = (await findDataset(sql(), SLUG))!;
  return listActivePartitions(sql(), { datasetId: dataset.id, version: dataset.manifestVersion });
}

describe('pruning', () => {
  test('partition key filters prune whole partitions', async () => {
    const partitions = await active();
    const eu = partitions.filter((p) => p.partitionKey.region === 'eu').length;
    expect(eu).toBeGreaterThan(0);
    expect(eu).toBeLessThan(partitions.length);

    const all = await ok({ columns: ['host'], limit: 100_000 });
    expect(all.partitions).toEqual({ scanned: partitions.length, pruned: 0 });

    const answer = await ok({ filters: { partitionKey: { region: ['eu'] } }, limit: 100_000 });
    expect(answer.partitions).toEqual({ scanned: eu, pruned: partitions.length - eu });
    compareRows(answer.rows, await pgRows(`region = 'eu'`), ROW_COLUMNS, 'eu');

    const both = await ok({ filters: { partitionKey: { region: ['eu', 'us'] } }, columns: ['host'], limit: 100_000 });
    expect(both.partitions).toEqual({ scanned: partitions.length, pruned: 0 });
    expect(both.rows).toHaveLength(ALL.length);

    const none = await ok({ filters: { partitionKey: { region: ['mars'] } } });
    expect(none.partitions).toEqual({ scanned: 0, pruned: partitions.length });
    expect(none.rows).toEqual([]);
    const noField = await ok({ filters: { partitionKey: { planet: ['earth'] } } });
    expect(noField.partitions.scanned).toBe(0);
  });

  test('the time range prunes partitions outside it', async () => {
    const partitions = await active();
    const range = { start: new Date(BASE + 2 * DAY).toISOString(), end: new Date(BASE + 3 * DAY).toISOString() };
    const overlapping = partitions.filter((p) => p.endTime.getTime() >= BASE + 2 * DAY && p.startTime.getTime() < BASE + 3 * DAY).length;
    expect(overlapping).toBeLessThan(partitions.length / 2);
    const answer = await ok({ timeRange: range, limit: 100_000 });
    expect(answer.partitions).toEqual({ scanned: overlapping, pruned: partitions.length - overlapping });
    compareRows(answer.rows, await pgRows('TRUE', [], range), ROW_COLUMNS, 'one day');
  });

  test('column statistics prune partitions no row of which can match', async () => {
    const partitions = await active();
    for (const columns of [
      { usage: { gt: 1000 } },
      { reqs: { lt: -1000 } },
      { host: { eq: 'zz-not-a-host' } },
      { host: { in: ['a', 'zzz'] } },
      { timestamp: { gte: '2030-01-01T00:00:00Z' } },
    ]) {
      const answer = await ok({ filters: { columns } });
      expect({ columns, partitions: answer.partitions, rows: answer.rows }).toEqual({ columns, partitions: { scanned: 0, pruned: partitions.length }, rows: [] });
    }
    // The evolved column: older partitions have no statistics for it and are kept (never wrongly pruned).
    const newer = partitions.filter((p) => p.startTime.getTime() >= BASE + 8 * DAY).length;
    const notes = await ok({ filters: { columns: { note: { eq: 'n3' } } }, limit: 100_000 });
    expect(notes.partitions.scanned).toBeGreaterThanOrEqual(newer);
    expect(notes.rows.length).toBe(NEW.filter((r) => r.note === 'n3').length);
    // A filter that some partitions can match scans only those.
    const highReqs = await ok({ filters: { columns: { usage: { gte: 0 } } }, columns: ['usage'], limit: 100_000 });
    expect(highReqs.partitions).toEqual({ scanned: partitions.length, pruned: 0 });
  });

  test('pruned and scanned answers agree with the rows of the kept partitions', async () => {
    // Stats pruning must never drop a matching row: a filter at the data's edges still finds it.
    const maxUsage = Math.max(...ALL.map((r) => r.usage ?? -1));
    const minReqs = Math.min(...ALL.map((r) => r.reqs));
    const answer = await ok({ filters: { columns: { usage: { gte: maxUsage } } } });
    expect(answer.rows.map((r: any) => r.usage)).toEqual(ALL.filter((r) => r.usage === maxUsage).map(() => maxUsage));
    const low = await ok({ filters: { columns: { reqs: { lte: minReqs } } } });
    expect(low.rows.length).toBe(ALL.filter((r) => r.reqs === minReqs).length);
    const first = await ok({ filters: { columns: { timestamp: { eq: ALL[0]!.timestamp } } } });
    expect(first.rows).toHaveLength(1);
    const last = await ok({ filters: { columns: { timestamp: { lte: ALL.at(-1)!.timestamp, gt: ALL.at(-2)!.timestamp } } } });
    expect(last.rows.map((r: any) => r.timestamp)).toEqual([ALL.at(-1)!.timestamp]);
  });
});

describe('stats pruning at the edges', () => {
  test('microsecond timestamps and non-ASCII strings: boundary filters keep exactly the matching rows', async () => {
    const slug = 'e2e-edges';
    const values = [
      { timestamp: '2026-01-28T00:00:00.123456Z', s: 'z' },
      { timestamp: '2026-01-28T00:00:00.123457Z', s: 'é' },
      { timestamp: '2026-01-28T00:00:00.124Z', s: 'Zürich' },
      { timestamp: '2026-01-28T00:00:01.000Z', s: '日本' },
    ];
    // One partition per row (its own key), so statistics decide per row.
    for (const [i, row] of values.entries()) {
      const res = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, {
        schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 's', type: 'string' }] },
        partition: { key: { k: String(i) } },
        rows: [row],
      });
      expect(res.status).toBe(201);
    }
    const cases: [Record<string, unknown>, number[]][] = [
      [{ timestamp: { eq: '2026-01-28T00:00:00.123456Z' } }, [0]],
      [{ timestamp: { eq: '2026-01-28T00:00:00.123457Z' } }, [1]],
      [{ timestamp: { gt: '2026-01-28T00:00:00.123456Z' } }, [1, 2, 3]],
      [{ timestamp: { gte: '2026-01-28T00:00:00.123457Z' } }, [1, 2, 3]],
      [{ timestamp: { lt: '2026-01-28T00:00:00.123457Z' } }, [0]],
      [{ timestamp: { lte: '2026-01-28T00:00:00.123457Z' } }, [0, 1]],
      [{ timestamp: { lt: '2026-01-28T00:00:00.124Z' } }, [0, 1]],
      [{ timestamp: { gte: '2026-01-28T00:00:00.124Z', lt: '2026-01-28T00:00:01Z' } }, [2]],
      [{ timestamp: { in: ['2026-01-28T00:00:00.123457Z', '2026-01-28T01:00:00+01:00'] } }, [1]],
      [{ timestamp: { neq: '2026-01-28T00:00:00.123456Z' } }, [1, 2, 3]],
      [{ s: { eq: 'é' } }, [1]],
      [{ s: { gt: 'z' } }, [1, 3]],
      [{ s: { lt: 'é' } }, [0, 2]],
      [{ s: { gte: '日本' } }, [3]],
      [{ s: { in: ['Zürich', '日本'] } }, [2, 3]],
      [{ s: { lte: 'Z' } }, []],
    ];
    for (const [columns, expected] of cases) {
      const res = await query({ timeRange: { start: '2026-01-27T00:00:00Z', end: '2026-01-29T00:00:00Z' }, filters: { columns } }, slug);
      expect(res.status).toBe(200);
      expect({ columns, rows: res.body.rows.map((r: any) => r.timestamp) }).toEqual({ columns, rows: expected.map((i) => values[i]!.timestamp) });
      // Strings prune exactly; timestamp statistics compare at millisecond resolution, widened
      // outward (prune.ts), so rows within the same millisecond may be scanned, never lost.
      if ('s' in columns) expect({ columns, scanned: res.body.partitions.scanned }).toEqual({ columns, scanned: expected.length });
      else expect(res.body.partitions.scanned).toBeGreaterThanOrEqual(expected.length);
    }
  });
});

describe('schema evolution', () => {
  test('a column added later is null for older rows and present for newer ones', async () => {
    const answer = await ok({ columns: ['note', 'host'], limit: 100_000 });
    expect(answer.columns).toEqual(['timestamp', 'note', 'host']);
    const byTime = new Map(answer.rows.map((r: any) => [r.timestamp, r]));
    for (const row of OLD) expect((byTime.get(row.timestamp) as any).note).toBeNull();
    for (const row of NEW) expect((byTime.get(row.timestamp) as any).note).toBe(row.note ?? null);
  });

  test('only older partitions: the column is there, all null', async () => {
    const answer = await ok({ timeRange: { start: RANGE.start, end: new Date(BASE + 2 * DAY).toISOString() }, columns: ['note'], limit: 100_000 });
    expect(answer.rows.length).toBeGreaterThan(0);
    expect(answer.rows.every((r: any) => r.note === null && Object.keys(r).length === 2)).toBe(true);
    const counted = await ok({
      timeRange: { start: RANGE.start, end: new Date(BASE + 2 * DAY).toISOString() },
      downsample: { intervalUnit: 'day', aggregations: [{ fn: 'count', column: 'note' }, { fn: 'last', column: 'note' }] },
    });
    expect(counted.rows.every((r: any) => r.count_note === 0 && r.last_note === null)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// CSV and NDJSON

/** RFC 4180 (quoted fields, "" escapes, CRLF). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
      i += 1;
      continue;
    }
    if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i += 1;
    } else field += c;
    i += 1;
  }
  if (field !== '' || row.length) throw new Error('CSV does not end with CRLF');
  return rows;
}

const csvText = (v: unknown) => (v === null || v === undefined ? '' : String(v));

describe('CSV and NDJSON answers', () => {
  const bodies: [string, Record<string, unknown>][] = [
    ['raw', { limit: 100_000 }],
    ['raw desc with a filter and limit', { order: 'desc', limit: 777, filters: { columns: { ok: { eq: true } } } }],
    ['downsampled by host', { downsample: downsample('hour', 6, true) }],
    ['empty', { filters: { partitionKey: { region: ['mars'] } } }],
  ];
  for (const [name, body] of bodies) {
    test(name, async () => {
      const json = await ok(body);
      const full = { timeRange: RANGE, ...body };

      const csvRes = await fetch(`${ts.url}/datasets/${SLUG}/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/csv' },
        body: JSON.stringify(full),
      });
      expect(csvRes.status).toBe(200);
      expect(csvRes.headers.get('content-type')).toStartWith('text/csv');
      const [header, ...lines] = parseCsv(await csvRes.text());
      expect(header).toEqual(json.columns);
      expect(lines).toEqual(json.rows.map((r: any) => json.columns.map((c: string) => csvText(r[c]))));

      const ndRes = await fetch(`${ts.url}/datasets/${SLUG}/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
        body: JSON.stringify(full),
      });
      expect(ndRes.status).toBe(200);
      expect(ndRes.headers.get('content-type')).toStartWith('application/x-ndjson');
      const text = await ndRes.text();
      const parsed = text === '' ? [] : text.trimEnd().split('\n').map((l) => JSON.parse(l));
      if (text !== '') expect(text.endsWith('\n')).toBe(true);
      expect(parsed).toEqual(json.rows);
    });
  }

  test('CSV quotes strings with commas, quotes and newlines', async () => {
    const weird = ['a,b', 'say "hi"', 'two\nlines', '', 'plain'];
    const res = await postJson(`${ts.url}/datasets/e2e-csv/ingest?wait=true`, {
      schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 's', type: 'string' }] },
      partition: { key: {} },
      rows: weird.map((s, i) => ({ timestamp: new Date(BASE + i * 1000).toISOString(), s })),
    });
    expect(res.status).toBe(201);
    const csv = await fetch(`${ts.url}/datasets/e2e-csv/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/csv' },
      body: JSON.stringify({ timeRange: RANGE }),
    });
    const [header, ...lines] = parseCsv(await csv.text());
    expect(header).toEqual(['timestamp', 's']);
    expect(lines.map((l) => l[1])).toEqual(weird);
  });

  test('errors stay JSON whatever the Accept header', async () => {
    for (const accept of ['text/csv', 'application/x-ndjson']) {
      const res = await query({ timeRange: RANGE, columns: ['nope'] }, SLUG, { accept });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('unknown_column');
      const missing = await query({ timeRange: RANGE }, 'no-such-dataset', { accept });
      expect(missing.status).toBe(404);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Refusals

describe('refusals through HTTP', () => {
  const agg = (a: Record<string, unknown>) => ({ downsample: { intervalUnit: 'hour', aggregations: [a] } });
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ['timestampColumn', { timestampColumn: 'usage' }, 'invalid_timestamp_column', /timestampColumn "usage" is not this dataset's timestamp column "timestamp"/],
    ['impossible date', { timeRange: { start: '2026-02-30T00:00:00Z', end: RANGE.end } }, 'invalid_time_range', /ISO-8601/],
    ['start after end', { timeRange: { start: RANGE.end, end: RANGE.start } }, 'invalid_time_range', /start must be before/],
    ['start equals end', { timeRange: { start: RANGE.start, end: RANGE.start } }, 'invalid_time_range', /end is exclusive/],
    ['limit over the maximum', { limit: 100_001 }, 'limit_too_large', /limit 100001 is over the server maximum of 100000/],
    ['unknown raw column', { columns: ['host', 'nope'] }, 'unknown_column', /columns: "nope" is not a column of this dataset \(columns: timestamp, host, usage, reqs, ok, note\)/],
    ['unknown filter column', { filters: { columns: { nope: { eq: 1 } } } }, 'unknown_column', /filters\.columns: "nope"/],
    ['unknown aggregation column', agg({ fn: 'avg', column: 'nope' }), 'unknown_column', /downsample\.aggregations\[0\]: "nope"/],
    ['unknown groupBy column', { downsample: { intervalUnit: 'hour', groupBy: ['nope'], aggregations: [{ fn: 'count', column: 'host' }] } }, 'unknown_column', /downsample\.groupBy: "nope"/],
    ['groupBy a number', { downsample: { intervalUnit: 'hour', groupBy: ['usage'], aggregations: [{ fn: 'count', column: 'host' }] } }, 'invalid_group_by', /"usage" is not a string column/],
    ['too many buckets', { downsample: { intervalUnit: 'second', aggregations: [{ fn: 'count', column: 'host' }] } }, 'too_many_buckets', /buckets of 1 second\(s\) over this time range is over the maximum of 100000/],
    ['no aggregations', { downsample: { intervalUnit: 'hour', aggregations: [] } }, 'no_aggregations', /at least one aggregation/],
    ['avg of a string', agg({ fn: 'avg', column: 'host' }), 'invalid_aggregation', /avg does not apply to string column "host" \(it needs double or integer\)/],
    ['sum of a boolean', agg({ fn: 'sum', column: 'ok' }), 'invalid_aggregation', /sum does not apply to boolean column "ok"/],
    ['median of a timestamp', agg({ fn: 'median', column: 'timestamp' }), 'invalid_aggregation', /median does not apply to timestamp/],
    ['avg without a column', agg({ fn: 'avg' }), 'invalid_aggregation', /downsample\.aggregations\[0\]: avg needs a "column" \(only count, which then counts rows, goes without one\)/],
    ['min of a boolean', agg({ fn: 'min', column: 'ok' }), 'invalid_aggregation', /min does not apply to boolean column "ok"/],
    ['percentile without a value', agg({ fn: 'percentile', column: 'usage' }), 'invalid_percentile', /percentile needs a "percentile" value between 0 and 1/],
    ['percentile over 1', agg({ fn: 'percentile', column: 'usage', percentile: 1.5 }), 'invalid_percentile', /between 0 and 1/],
    ['percentile below 0', agg({ fn: 'percentile', column: 'usage', percentile: -0.1 }), 'invalid_percentile', /between 0 and 1/],
    ['percentile on another fn', agg({ fn: 'avg', column: 'usage', percentile: 0.5 }), 'invalid_percentile', /"percentile" only applies to fn "percentile"/],
    ['bad alias', agg({ fn: 'avg', column: 'usage', alias: 'a b' }), 'invalid_alias', /alias "a b" must be letters, digits and _/],
    ['alias taken by the timestamp', agg({ fn: 'avg', column: 'usage', alias: 'timestamp' }), 'duplicate_alias', /"timestamp" is already taken/],
    [
      'two aggregations, one name',
      { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'usage' }, { fn: 'avg', column: 'usage' }] } },
      'duplicate_alias',
      /downsample\.aggregations\[1\]: the output column "avg_usage" is already taken/,
    ],
    [
      'alias taken by a groupBy column',
      { downsample: { intervalUnit: 'hour', groupBy: ['host'], aggregations: [{ fn: 'min', column: 'host', alias: 'host' }] } },
      'duplicate_alias',
      /"host" is already taken/,
    ],
    ['boolean range', { filters: { columns: { ok: { gt: true } } } }, 'invalid_filter', /filters\.columns\.ok\.gt: booleans compare with eq and neq only/],
    ['string for a double', { filters: { columns: { usage: { gt: '5' } } } }, 'invalid_filter', /filters\.columns\.usage\.gt: "5" is not a double value/],
    ['fraction for an integer', { filters: { columns: { reqs: { eq: 1.5 } } } }, 'invalid_filter', /1\.5 is not a integer value/],
    ['number for a string', { filters: { columns: { host: { in: ['a', 1] } } } }, 'invalid_filter', /filters\.columns\.host\.in: 1 is not a string value/],
    ['bad timestamp value', { filters: { columns: { timestamp: { gte: 'yesterday' } } } }, 'invalid_filter', /"yesterday" is not a timestamp value/],
    ['string for a boolean', { filters: { columns: { ok: { eq: 'true' } } } }, 'invalid_filter', /"true" is not a boolean value/],
  ];
  for (const [name, body, code, message] of cases) {
    test(name, async () => {
      const res = await query({ timeRange: RANGE, ...body });
      expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status: 400, code });
      expect(res.body.error.message).toMatch(message);
    });
  }

  test('malformed bodies are validation_failed', async () => {
    for (const body of [{}, { timeRange: { start: RANGE.start } }, { timeRange: RANGE, limit: 0 }, { timeRange: RANGE, order: 'sideways' }, { timeRange: RANGE, filters: { columns: { host: { in: [] } } } }]) {
      const res = await query(body);
      expect({ body, status: res.status, code: res.body?.error?.code }).toEqual({ body, status: 400, code: 'validation_failed' });
    }
  });

  test('an unknown dataset is 404', async () => {
    const res = await query({ timeRange: RANGE }, 'no-such-dataset');
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
    expect(res.body.error.message).toContain('no-such-dataset');
  });
});

// ---------------------------------------------------------------------------------------------
// One manifest version per query

describe('snapshot guarantee', () => {
  test('concurrent queries each see exactly one manifest version while batches publish', async () => {
    const slug = 'e2e-snapshot';
    const fields = [
      { name: 'timestamp', type: 'timestamp' },
      { name: 'batch', type: 'integer' },
      { name: 'v', type: 'double' },
    ];
    const batchRows = (b: number) =>
      Array.from({ length: 50 }, (_, i) => ({ timestamp: new Date(BASE + b * 60_000 + i * 1000).toISOString(), batch: b, v: b + i / 100 }));
    const send = async (b: number) => {
      const res = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, { schema: { fields }, partition: { key: { k: String(b % 3) } }, rows: batchRows(b) });
      if (res.status !== 201) throw new Error(`ingest ${b}: ${res.status} ${JSON.stringify(res.body)}`);
    };
    await send(0);
    const dataset = (await findDataset(sql(), slug))!;

    const BATCHES = 25;
    let publishing = true;
    const ingests = (async () => {
      try {
        for (let b = 1; b < BATCHES; b++) await send(b);
      } finally {
        publishing = false;
      }
    })();
    const answers: any[] = [];
    const reader = async (mode: 'raw' | 'downsample') => {
      while (publishing) {
        const body =
          mode === 'raw'
            ? { timeRange: RANGE, limit: 100_000 }
            : { timeRange: RANGE, downsample: { intervalUnit: 'month', aggregations: [{ fn: 'count', column: 'batch' }, { fn: 'count_distinct', column: 'batch' }, { fn: 'max', column: 'batch' }] } };
        const res = await query(body, slug);
        if (res.status !== 200) throw new Error(`query: ${res.status} ${JSON.stringify(res.body)}`);
        answers.push(res.body);
      }
    };
    await Promise.all([ingests, reader('raw'), reader('raw'), reader('downsample'), reader('downsample')]);

    const versions = new Map<number, { rowCount: number; partitionCount: number }>();
    for (const v of await sql()<{ version: number; rowCount: number; partitionCount: number }[]>`
      SELECT version::int, row_count::int, partition_count FROM manifest_versions WHERE dataset_id = ${dataset.id}`) {
      versions.set(v.version, { rowCount: v.rowCount, partitionCount: v.partitionCount });
    }
    const seen = new Set<number>();
    for (const answer of answers) {
      const at = versions.get(answer.manifestVersion)!;
      expect(at).toBeDefined();
      seen.add(answer.manifestVersion);
      expect(answer.partitions.scanned + answer.partitions.pruned).toBe(at.partitionCount);
      if (answer.mode === 'raw') {
        expect(answer.rows.length).toBe(at.rowCount);
        // Whole batches only, and the first ones: batches publish in order, one version each.
        const batches = new Set(answer.rows.map((r: any) => r.batch));
        expect([...batches].sort((a: any, b: any) => a - b)).toEqual(Array.from({ length: at.rowCount / 50 }, (_, i) => i));
      } else {
        expect(answer.rows).toHaveLength(1);
        expect(answer.rows[0].count_batch).toBe(at.rowCount);
        expect(answer.rows[0].count_distinct_batch).toBe(at.rowCount / 50);
        expect(answer.rows[0].max_batch).toBe(at.rowCount / 50 - 1);
      }
    }
    // The race was real: answers saw several versions.
    expect(seen.size).toBeGreaterThan(2);
    expect(answers.length).toBeGreaterThan(10);
  }, 120_000);
});
