/**
 * POST /datasets/:slug/latest end to end, and the latest-value cache behind it: rows ingested
 * through HTTP, the same rows in a plain PostgreSQL table (schema `oracle`), and every answer
 * compared with PostgreSQL's DISTINCT ON over the same order (time, then every field, NULL lowest,
 * strings in "C" collation). Answers from the cache are also compared with answers from the files
 * (requests the cache declines); more batches (newer rows, late rows, rows of equal time),
 * compaction and retention in between; a second and third process on the same catalog (one kept
 * current by another's publishes, one whose cache is too small); the lastpoint downsample form.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import postgres from 'postgres';
import { spawnServer, type ServerProcess } from '../harness/server-process.ts';
import { postJson, startTestServer, TEST_BINARY, type TestServer } from '../harness/server.ts';
import { prng } from '../harness/prng.ts';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
// Recent rows in the last day; old ones (hosts that stopped reporting) eight days back, for retention.
const RECENT = Math.floor(Date.now() / HOUR) * HOUR - 20 * HOUR;
const OLD = RECENT - 8 * DAY;
const HOSTS = Array.from({ length: 10 }, (_, i) => `h${String(i).padStart(2, '0')}`);
const GONE = ['h10', 'h11']; // only old rows

const FIELDS = [
  { name: 'ts', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'region', type: 'string' },
  { name: 'usage', type: 'double' },
  { name: 'reqs', type: 'integer' },
  { name: 'ok', type: 'boolean' },
  { name: 'note', type: 'string' },
];
/** PostgreSQL's side of the latest-row order: time, then every field in schema order, NULL lowest. */
const PG_ORDER = `ts DESC, host COLLATE "C" DESC NULLS LAST, region COLLATE "C" DESC NULLS LAST, usage DESC NULLS LAST,
  reqs DESC NULLS LAST, ok DESC NULLS LAST, note COLLATE "C" DESC NULLS LAST`;

interface Row {
  ts: string;
  host: string;
  region: string;
  usage: number | null;
  reqs: number;
  ok: boolean;
  note: string | null;
}

const random = prng(7);
const regionOf = (host: string) => (Number(host.slice(1)) % 3 === 0 ? 'us' : 'eu');
const NOTES = ['x', 'y', '\uff61', '\u{1f600}', null];

/** `count` rows of these hosts, one a minute from `start` (whole milliseconds, as PostgreSQL keeps them). */
function rows(hosts: string[], start: number, count: number): Row[] {
  return Array.from({ length: count }, (_, i) => {
    const host = hosts[Math.floor(random() * hosts.length)]!;
    return {
      ts: new Date(start + i * 60_000 + Math.floor(random() * 50_000)).toISOString(),
      host,
      region: regionOf(host),
      usage: random() < 0.1 ? null : Math.round(random() * 10_000) / 100,
      reqs: Math.floor(random() * 1000) - 100,
      ok: random() < 0.5,
      note: NOTES[Math.floor(random() * NOTES.length)]!,
    };
  });
}

/** Rows at the same time as each host's latest so far, with other values: some win the tie, some lose. */
function ties(latest: Row[]): Row[] {
  return latest.flatMap((r, i) => [
    { ...r, usage: i % 2 === 0 ? (r.usage ?? 0) + 1 : null, note: 'tie' },
    { ...r, region: 'zz', note: null },
  ]);
}

let ts: TestServer;
let pg: postgres.Sql;
const SLUG = 'fleet'; // sortColumns ["host"]: the series are the hosts
const TAGS = 'fleet-tags'; // no sortColumns: the series are (host, region, note), its string fields

async function ingest(slug: string, batch: Row[], url = ts.url): Promise<void> {
  for (const region of ['eu', 'us', 'zz']) {
    const mine = batch.filter((r) => r.region === region);
    if (mine.length === 0) continue;
    const res = await postJson(`${url}/datasets/${slug}/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: { region } }, rows: mine });
    if (res.status !== 201) throw new Error(`ingest answered ${res.status}: ${JSON.stringify(res.body)}`);
  }
  const table = slug === SLUG ? 'oracle.fleet' : 'oracle.tags';
  await pg.unsafe(`INSERT INTO ${table} SELECT * FROM json_populate_recordset(NULL::${table}, $1::text::json)`, [JSON.stringify(batch)]);
}

async function latest(body: Record<string, unknown>, slug = SLUG, url = ts.url): Promise<any> {
  const res = await postJson(`${url}/datasets/${slug}/latest`, body);
  if (res.status !== 200) throw new Error(`latest answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

interface Reference {
  by?: string[];
  columns?: string[];
  where?: string;
  order?: 'asc' | 'desc';
  limit?: number;
  table?: string;
}

/** What PostgreSQL says the answer is, with values in the API's vocabulary. */
async function reference(r: Reference): Promise<Record<string, unknown>[]> {
  const by = r.by ?? ['host'];
  const columns = [...by, ...(r.columns ?? FIELDS.map((f) => f.name).filter((c) => c !== 'ts' && !by.includes(c)))];
  const c = (col: string) => (col === 'reqs' || col === 'usage' || col === 'ok' ? col : `${col} COLLATE "C"`);
  const distinct = by.length > 0 ? `DISTINCT ON (${by.map(c).join(', ')})` : '';
  const direction = r.order === 'desc' ? 'DESC' : 'ASC';
  const rows = await pg.unsafe(
    `SELECT * FROM (
       SELECT ${distinct} ts, ${columns.join(', ')} FROM ${r.table ?? 'oracle.fleet'} WHERE ${r.where ?? 'TRUE'}
       ORDER BY ${[...by.map(c), PG_ORDER].join(', ')} ${by.length === 0 ? 'LIMIT 1' : ''}
     ) x ORDER BY ${by.length > 0 ? by.map((b) => `${c(b)} ${direction} NULLS LAST`).join(', ') : 'ts'}
     ${r.limit ? `LIMIT ${r.limit}` : ''}`,
  );
  return rows.map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : v])));
}

/** Scraped counters of the latest-value cache. */
async function cacheMetrics(url = ts.url): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^timestore_query_latest_cache_(\w+?)(?:_total)?(\{reason="(\w+)"\})? (\d+)/gm)) {
    out[m[3] ? `${m[1]}_${m[3]}` : m[1]!] = Number(m[4]);
  }
  return out;
}

/** Runs the dataset's lifecycle job and returns its result. */
async function lifecycle(): Promise<any> {
  const res = await postJson(`${ts.url}/admin/datasets/${SLUG}/lifecycle?wait=true`, {});
  expect({ status: res.status, state: res.body.state }).toEqual({ status: 200, state: 'succeeded' });
  return res.body.result.compaction ? res.body.result : res.body.result[res.body.id];
}

/** Each host's latest row so far (by the oracle). */
const latestRows = async (): Promise<Row[]> => (await reference({})) as unknown as Row[];

beforeAll(async () => {
  ts = await startTestServer();
  pg = postgres(ts.config.databaseUrl!, { max: 4, onnotice: () => {} });
  await pg.unsafe(`CREATE SCHEMA oracle`);
  for (const table of ['oracle.fleet', 'oracle.tags']) {
    await pg.unsafe(`CREATE TABLE ${table} (ts timestamptz NOT NULL, host text, region text, usage double precision, reqs integer, ok boolean, note text)`);
  }
  const created = await postJson(`${ts.url}/admin/datasets`, { slug: SLUG, schema: { fields: FIELDS }, sortColumns: ['host'] });
  expect(created.status).toBe(201);
  await ingest(SLUG, rows([...HOSTS, ...GONE], OLD, 300));
  await ingest(SLUG, rows(HOSTS, RECENT, 400));
  await ingest(SLUG, ties(await latestRows()));
  await ingest(TAGS, rows(HOSTS.slice(0, 4), RECENT, 300));
}, 120_000);

afterAll(async () => {
  await pg?.end();
  await ts?.stop();
});

describe('the latest row of every series equals PostgreSQL', () => {
  test('from the cache, and the same from the files', async () => {
    const before = await cacheMetrics();
    const cached = await latest({});
    expect(cached.source).toBe('cache');
    expect(cached.mode).toBe('latest');
    expect(cached.columns).toEqual(['ts', 'host', 'region', 'usage', 'reqs', 'ok', 'note']);
    expect(cached.columnTypes.map((c: { type: string }) => c.type)).toEqual(['timestamp', 'string', 'string', 'double', 'integer', 'boolean', 'string']);
    expect(cached.rows).toEqual(await reference({}));
    expect(cached.rows.map((r: Row) => r.host)).toEqual([...HOSTS, ...GONE]);
    // Ties were decided by the other fields: some hosts' latest row is a tie row.
    expect(cached.rows.some((r: Row) => r.note === 'tie' || r.region === 'zz')).toBe(true);

    // A filter on a column outside the series key (true of every row) makes the files answer.
    const files = await latest({ filters: { columns: { reqs: { gte: -1_000_000 } } } });
    expect(files.source).toBe('files');
    expect(files.rows).toEqual(cached.rows);
    const byKey = await latest({ filters: { partitionKey: { region: ['eu', 'us', 'zz'] } } });
    expect(byKey.source).toBe('files');
    expect(byKey.rows).toEqual(cached.rows);

    const after = await cacheMetrics();
    expect(after.loads! - before.loads!).toBe(1);
    expect(after.misses! - before.misses!).toBe(1);
    expect(after.fallbacks_request! - before.fallbacks_request!).toBe(2);
    expect(after.series).toBe(HOSTS.length + GONE.length);
  });

  const last = (offsetMinutes: number) => new Date(RECENT + offsetMinutes * 60_000).toISOString();
  const cases: [string, Record<string, unknown>, Reference, 'cache' | 'files', string?][] = [
    ['some hosts, some columns', { filters: { columns: { host: { in: ['h01', 'h03', 'h07'] } } }, columns: ['usage', 'note'] }, { where: `host IN ('h01', 'h03', 'h07')`, columns: ['usage', 'note'] }, 'cache'],
    ['hosts after one, descending, limited', { filters: { columns: { host: { gt: 'h04' } } }, order: 'desc', limit: 3 }, { where: `host COLLATE "C" > 'h04'`, order: 'desc', limit: 3 }, 'cache'],
    ['the whole dataset', { by: [] }, { by: [] }, 'cache'],
    ['a range after every row', { timeRange: { start: new Date(OLD + DAY).toISOString(), end: new Date(Date.now() + DAY).toISOString() } }, { where: `ts >= '${new Date(OLD + DAY).toISOString()}'` }, 'cache'],
    ['a range that ends before some latest rows', { timeRange: { start: new Date(OLD).toISOString(), end: last(200) } }, { where: `ts >= '${new Date(OLD).toISOString()}' AND ts < '${last(200)}'` }, 'files'],
    ['by a column outside the series key', { by: ['region'] }, { by: ['region'] }, 'files'],
    ['a filter on a value', { filters: { columns: { usage: { gte: 50 } } } }, { where: 'usage >= 50' }, 'files'],
    ['nothing passes', { filters: { columns: { host: { eq: 'nobody' } } } }, { where: `host = 'nobody'` }, 'cache'],
  ];
  for (const [name, body, ref, source] of cases) {
    test(name, async () => {
      const answer = await latest(body);
      expect(answer.rows).toEqual(await reference(ref));
      expect(answer.source).toBe(source);
      expect(answer.truncated).toBe(ref.limit !== undefined);
    });
  }

  test('series of several string fields, NULL among them: by default, by part of the key, filtered on NULL', async () => {
    const table = 'oracle.tags';
    const key = ['host', 'region', 'note'];
    for (const [body, ref] of [
      [{}, { by: key, table }],
      [{ by: ['note'] }, { by: ['note'], table }],
      [{ by: ['region', 'host'], filters: { columns: { note: { eq: null } } } }, { by: ['region', 'host'], where: 'note IS NULL', table }],
      [{ filters: { columns: { note: { neq: 'x' } } }, order: 'desc' }, { by: key, where: `note IS DISTINCT FROM 'x'`, order: 'desc', table }],
    ] as [Record<string, unknown>, Reference][]) {
      const answer = await latest(body, TAGS);
      expect(answer.source).toBe('cache');
      expect(answer.rows).toEqual(await reference(ref));
    }
  });
});

describe('the cache stays right as the data changes', () => {
  test('newer rows, late rows with older times and rows of equal times: the next answer has them, reading only the new files', async () => {
    const before = await cacheMetrics();
    const newest = await latestRows();
    await ingest(SLUG, rows(HOSTS.slice(0, 5), RECENT + 2 * DAY, 20)); // newer, for some hosts
    await ingest(SLUG, rows(HOSTS, RECENT, 50).map((r) => ({ ...r, usage: 1e6 }))); // late: older than each host's latest
    await ingest(SLUG, ties(newest.slice(5))); // equal times for the others
    const answer = await latest({});
    expect(answer.source).toBe('cache');
    expect(answer.rows).toEqual(await reference({}));
    expect(answer.rows.some((r: Row) => r.usage === 1e6)).toBe(false);
    const after = await cacheMetrics();
    expect(after.loads).toBe(before.loads!);
    expect(after.rebuilds).toBe(before.rebuilds!);
    expect(after.advances! - before.advances!).toBeGreaterThanOrEqual(1);
  });

  test('compaction rewrites the files, not the answer, and the cache reads none of them', async () => {
    const before = await cacheMetrics();
    const manifest = async () => (await fetch(`${ts.url}/admin/datasets/${SLUG}/manifest?limit=1`)).json() as Promise<any>;
    const files = (await manifest()).totals.partitions;
    const run = await lifecycle();
    expect(run.compaction.partitionsMerged).toBeGreaterThan(0);
    expect((await manifest()).totals.partitions).toBeLessThan(files);
    const answer = await latest({});
    expect(answer.source).toBe('cache');
    expect(answer.rows).toEqual(await reference({}));
    const after = await cacheMetrics();
    expect([after.loads, after.rebuilds]).toEqual([before.loads!, before.rebuilds!]);
  });

  test('retention removes the hosts that only had old rows: rebuilt, and they are gone', async () => {
    const before = await cacheMetrics();
    expect((await latest({})).rows.map((r: Row) => r.host)).toContain(GONE[0]);
    const policy = await fetch(`${ts.url}/admin/datasets/${SLUG}/retention`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rules: { maxAgeHours: 72 } }),
    });
    expect(policy.status).toBe(200);
    const run = await lifecycle();
    expect(run.retention.partitionsRemoved).toBeGreaterThan(0);
    await pg.unsafe(`DELETE FROM oracle.fleet WHERE ts < $1`, [new Date(OLD + 2 * DAY).toISOString()]);
    const answer = await latest({});
    expect(answer.source).toBe('cache');
    expect(answer.rows).toEqual(await reference({}));
    expect(answer.rows.map((r: Row) => r.host)).toEqual(HOSTS);
    expect((await cacheMetrics()).rebuilds! - before.rebuilds!).toBe(1);
  });
});

describe('the lastpoint downsample (one bucket, last of every column, by the series key)', () => {
  // The shape the peers benchmark sends for "the latest row of every host".
  const lastpoint = (range: { start: string; end: string }) => ({
    timeRange: range,
    downsample: {
      intervalUnit: 'day',
      intervalSize: 36_500,
      aggregations: [{ fn: 'max', column: 'ts', alias: 'last_ts' }, ...['region', 'reqs', 'ok'].map((c) => ({ fn: 'last', column: c, alias: c }))],
      groupBy: ['host'],
    },
    limit: 100_000,
  });
  const whole = { start: new Date(OLD - DAY).toISOString(), end: new Date(RECENT + 4 * DAY).toISOString() };

  test('is answered from the cache with the latest rows', async () => {
    const res = await postJson(`${ts.url}/datasets/${SLUG}/query`, lastpoint(whole));
    expect(res.status).toBe(200);
    expect(res.body.source).toBe('cache');
    const expected = (await reference({})).map((r) => ({ ts: '1970-01-01T00:00:00.000Z', host: r.host, last_ts: r.ts, region: r.region, reqs: r.reqs, ok: r.ok }));
    expect(res.body.rows).toEqual(expected);
    expect(res.body.columns).toEqual(['ts', 'host', 'last_ts', 'region', 'reqs', 'ok']);
    // Streamed (NDJSON), the same rows.
    const streamed = await fetch(`${ts.url}/datasets/${SLUG}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify(lastpoint(whole)),
    });
    const lines = (await streamed.text()).trim().split('\n').map((line) => JSON.parse(line));
    expect(lines).toEqual(expected);
  });

  test('a `last` of a column whose latest value is NULL is answered from the files (last skips NULLs)', async () => {
    // On (host, region, note) series, by host; the newest row of h00 has no note. (Not on the
    // other dataset: its rows of equal times make `last` itself ambiguous.)
    const [newest] = await reference({ by: [], table: 'oracle.tags' });
    await ingest(TAGS, [{ ts: new Date(Date.parse(newest!.ts as string) + 1000).toISOString(), host: 'h00', region: 'eu', usage: 1, reqs: 1, ok: true, note: null }]);
    const body = lastpoint(whole);
    const withNote = { ...body, downsample: { ...body.downsample, aggregations: [...body.downsample.aggregations, { fn: 'last', column: 'note', alias: 'note' }] } };
    const res = await postJson(`${ts.url}/datasets/${TAGS}/query`, withNote);
    expect(res.body.source).toBe('files');
    const expected = await pg.unsafe(
      `SELECT host, (array_agg(note ORDER BY ts DESC) FILTER (WHERE note IS NOT NULL))[1] AS note FROM oracle.tags GROUP BY host ORDER BY host COLLATE "C"`,
    );
    expect(res.body.rows.map((r: Row) => ({ host: r.host, note: r.note }))).toEqual(expected.map((r) => ({ host: r.host, note: r.note })));
    expect(expected[0]!.note).not.toBeNull();
    // Without it, the same request is the cache's.
    expect((await postJson(`${ts.url}/datasets/${TAGS}/query`, body)).body.source).toBe('cache');
  });
});

describe('refusals', () => {
  const cases: [string, Record<string, unknown>, number, string, RegExp][] = [
    ['by the timestamp', { by: ['ts'] }, 400, 'invalid_by', /by: "ts" is the timestamp column/],
    ['by a column twice', { by: ['host', 'host'] }, 400, 'invalid_by', /by names "host" twice/],
    ['by an unknown column', { by: ['nope'] }, 400, 'unknown_column', /by: "nope" is not a column of this dataset/],
    ['an unknown column', { columns: ['nope'] }, 400, 'unknown_column', /columns: "nope"/],
    ['a backwards range', { timeRange: { start: '2026-01-02T00:00:00Z', end: '2026-01-01T00:00:00Z' } }, 400, 'invalid_time_range', /before timeRange\.end/],
    ['a limit over the maximum', { limit: 100_001 }, 400, 'limit_too_large', /over the server maximum/],
    ['a filter of the wrong type', { filters: { columns: { host: { eq: 1 } } } }, 400, 'invalid_filter', /1 is not a string value/],
  ];
  for (const [name, body, status, code, message] of cases) {
    test(name, async () => {
      const res = await postJson(`${ts.url}/datasets/${SLUG}/latest`, body);
      expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
      expect(res.body.error.message).toMatch(message);
    });
  }

  test('an unknown dataset is 404; a malformed body is validation_failed', async () => {
    expect((await postJson(`${ts.url}/datasets/nope/latest`, {})).status).toBe(404);
    expect((await postJson(`${ts.url}/datasets/${SLUG}/latest`, { by: 'host' })).body.error.code).toBe('validation_failed');
  });
});

describe('other processes on the same catalog', () => {
  let other: ServerProcess;
  let small: ServerProcess;
  beforeAll(async () => {
    const env = { TIMESTORE_DATABASE_URL: ts.config.databaseUrl!, TIMESTORE_LIFECYCLE_ENABLED: 'false' };
    const spawn = (extra: Record<string, string> = {}) =>
      spawnServer({ ...(TEST_BINARY ? { command: [TEST_BINARY] } : {}), env: { ...env, ...extra }, storageRoot: ts.config.storageRoot, readyTimeoutMs: 90_000 });
    [other, small] = await Promise.all([spawn(), spawn({ TIMESTORE_QUERY_LATEST_CACHE_SERIES: '5' })]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([other?.stop(), small?.stop()]);
  });

  test('a process seeds its cache from the files at start: its first answer is a hit', async () => {
    // Both datasets hold rows when the process starts; seeding runs in the background.
    let seeded = await cacheMetrics(other.url);
    for (let i = 0; i < 600 && seeded.loads! < 2; i++) {
      await Bun.sleep(100);
      seeded = await cacheMetrics(other.url);
    }
    expect(seeded).toMatchObject({ loads: 2, datasets: 2, hits: 0, misses: 0 });
    const first = await latest({}, SLUG, other.url);
    expect(first.source).toBe('cache');
    expect(first.rows).toEqual(await reference({}));
    expect(await cacheMetrics(other.url)).toMatchObject({ loads: 2, hits: 1, misses: 0 });
  });

  test('a process that answers from its cache sees every batch another process publishes, at once', async () => {
    const first = await latest({}, SLUG, other.url);
    expect(first.source).toBe('cache');
    expect(first.rows).toEqual(await reference({}));
    for (let i = 0; i < 3; i++) {
      await ingest(SLUG, rows(HOSTS.slice(i, i + 4), RECENT + (3 + i) * DAY, 8));
      const answer = await latest({}, SLUG, other.url);
      expect(answer.source).toBe('cache');
      expect(answer.rows).toEqual(await reference({}));
      const manifest = (await (await fetch(`${ts.url}/admin/datasets/${SLUG}/manifest?limit=1`)).json()) as { version: number };
      expect(answer.manifestVersion).toBe(manifest.version);
    }
    const metrics = await cacheMetrics(other.url);
    expect(metrics.advances).toBeGreaterThanOrEqual(3);
    expect(metrics.loads).toBe(2); // seeded at start, then only brought forward
  });

  test('a dataset with more series than the cache may hold is answered from the files, the same rows', async () => {
    const answer = await latest({}, SLUG, small.url);
    expect(answer.source).toBe('files');
    expect(answer.rows).toEqual(await reference({}));
    const tags = await latest({ by: ['host'] }, TAGS, small.url); // 4 hosts, but more (host, region, note) series than 5
    expect(tags.source).toBe('files');
    expect(tags.rows).toEqual(await reference({ table: 'oracle.tags' }));
    const metrics = await cacheMetrics(small.url);
    expect(metrics.fallbacks_over_limit).toBe(2);
    expect(metrics.series).toBe(0);
  });
});
