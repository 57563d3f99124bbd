/**
 * POST/GET /sql end to end, on the harness PostgreSQL and partitions on a real S3 server (radosgw;
 * local storage when it cannot start outside CI): SQL answers equal the JSON query's for the same
 * question (raw, downsampled, grouped), a join of two datasets, every answer format, the sandbox's
 * refusals (each a 4xx in the one error shape, the server answering afterwards), DuckDB's errors
 * with their position, and read scopes checked for every dataset a statement names.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { tableFromIPC } from 'apache-arrow';
import type { S3Client } from '@aws-sdk/client-s3';
import { createBucket, s3AdminClient, s3Available, s3ServerEnv, startS3Server, type S3Server } from '../harness/s3.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const withS3 = !!process.env.CI || s3Available();

const DAY = 86_400_000;
const BASE = Date.UTC(2026, 2, 1);
const RANGE = { start: new Date(BASE).toISOString(), end: new Date(BASE + 4 * DAY).toISOString() };
const CPU = 'cpu';
const MEM = 'mem-usage';
const SECRET = 'secret-data';

let s3: S3Server | undefined;
let admin: S3Client | undefined;
let ts: TestServer;

const HOSTS = ['h0', 'h1', 'h2', 'h3'];
// 4 days × 2 sites, one row every 7.5 minutes: unique timestamps, so raw answers have one order.
const CPU_ROWS = Array.from({ length: 4 * 192 }, (_, i) => ({
  timestamp: new Date(BASE + i * 450_000).toISOString(),
  host: HOSTS[i % 4]!,
  usage: Math.round(Math.abs(Math.sin(i)) * 10_000) / 100,
  n: (i * 37) % 101,
  site: i % 2 ? 'north' : 'south',
}));
const MEM_ROWS = Array.from({ length: 96 }, (_, i) => ({
  timestamp: new Date(BASE + i * 3_600_000).toISOString(),
  host: HOSTS[i % 4]!,
  used: (i * 13) % 64,
}));

async function ingest(slug: string, fields: object[], rows: Record<string, unknown>[], key: Record<string, string> = { site: 'all' }) {
  const res = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, { schema: { fields }, partition: { key }, rows });
  if (res.status !== 201) throw new Error(`ingest ${slug}: ${res.status} ${JSON.stringify(res.body)}`);
}

const AS_ADMIN = { 'x-iam-scopes': 'admin' };

beforeAll(async () => {
  const env: Record<string, string> = { TIMESTORE_REQUIRE_SCOPE: 'reader', TIMESTORE_ADMIN_SCOPE: 'admin', TIMESTORE_QUERY_TIMEOUT_MS: '3000' };
  if (withS3) {
    s3 = await startS3Server();
    admin = s3AdminClient(s3);
    Object.assign(env, s3ServerEnv(s3, await createBucket(s3, 'timestore-sql')));
  }
  ts = await startTestServer(env);
  const cpuFields = [
    { name: 'timestamp', type: 'timestamp' },
    { name: 'host', type: 'string' },
    { name: 'usage', type: 'double' },
    { name: 'n', type: 'integer' },
  ];
  for (const site of ['north', 'south']) {
    await ingest(CPU, cpuFields, CPU_ROWS.filter((r) => r.site === site).map(({ site: _s, ...r }) => r), { site });
  }
  await ingest(MEM, [{ name: 'timestamp', type: 'timestamp' }, { name: 'host', type: 'string' }, { name: 'used', type: 'integer' }], MEM_ROWS);
  await ingest(SECRET, [{ name: 'timestamp', type: 'timestamp' }, { name: 'token', type: 'string' }], [{ timestamp: RANGE.start, token: 'hidden' }]);
  // The secret dataset may be read with its own scope only.
  const res = await fetch(`${ts.url}/admin/datasets/${SECRET}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json', ...AS_ADMIN },
    body: JSON.stringify({ iam: { readScopes: ['secret-reader'] } }),
  });
  if (res.status !== 200) throw new Error(`patch: ${res.status} ${await res.text()}`);
}, 180_000);

afterAll(async () => {
  await ts?.stop();
  admin?.destroy();
  await s3?.stop();
});

const READER = { 'x-iam-scopes': 'reader' };

async function sql(statement: string, params?: unknown[], headers: Record<string, string> = READER) {
  return postJson(`${ts.url}/sql`, { sql: statement, ...(params ? { params } : {}) }, headers);
}

async function rowsOf(statement: string, params?: unknown[]) {
  const res = await sql(statement, params);
  if (res.status !== 200) throw new Error(`sql: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { rows: Record<string, unknown>[] }).rows;
}

async function jsonQuery(body: Record<string, unknown>) {
  const res = await postJson(`${ts.url}/datasets/${CPU}/query`, { timeRange: RANGE, ...body }, READER);
  if (res.status !== 200) throw new Error(`query: ${res.status} ${JSON.stringify(res.body)}`);
  return (res.body as { rows: Record<string, unknown>[] }).rows;
}

describe('answers equal the JSON query', () => {
  test('raw rows in a time range, filtered', async () => {
    const from = new Date(BASE + DAY).toISOString();
    const to = new Date(BASE + 2 * DAY).toISOString();
    const expected = await jsonQuery({ timeRange: { start: from, end: to }, columns: ['host', 'usage'], filters: { columns: { host: { eq: 'h1' } } } });
    const got = await rowsOf(`SELECT timestamp, host, usage FROM cpu WHERE timestamp >= $1 AND timestamp < $2 AND host = 'h1' ORDER BY timestamp`, [from, to]);
    expect(expected.length).toBe(48);
    expect(got).toEqual(expected);
  });

  test('downsampled: hourly avg and max', async () => {
    const expected = await jsonQuery({
      downsample: { intervalUnit: 'hour', intervalSize: 1, aggregations: [{ fn: 'avg', column: 'usage', alias: 'avg_usage' }, { fn: 'max', column: 'n', alias: 'max_n' }] },
    });
    const got = await rowsOf(
      `SELECT time_bucket(INTERVAL 1 HOUR, timestamp) AS timestamp, avg(usage) AS avg_usage, max(n) AS max_n
       FROM cpu WHERE timestamp >= '${RANGE.start}' AND timestamp < '${RANGE.end}' GROUP BY 1 ORDER BY 1`,
    );
    expect(got.length).toBe(96);
    expect(got.map((r) => r.timestamp)).toEqual(expected.map((r) => r.timestamp));
    got.forEach((r, i) => {
      expect(r.avg_usage as number).toBeCloseTo(expected[i]!.avg_usage as number, 9);
      expect(r.max_n).toBe(expected[i]!.max_n);
    });
  });

  test('grouped: daily count per host', async () => {
    const expected = await jsonQuery({
      downsample: { intervalUnit: 'day', intervalSize: 1, groupBy: ['host'], aggregations: [{ fn: 'count', column: 'timestamp', alias: 'rows' }, { fn: 'sum', column: 'n', alias: 'sum_n' }] },
    });
    const got = await rowsOf(
      `SELECT time_bucket(INTERVAL 1 DAY, timestamp) AS timestamp, host, count(timestamp) AS rows, sum(n) AS sum_n
       FROM cpu GROUP BY ALL ORDER BY timestamp, host`,
    );
    expect(got.length).toBe(16);
    expect(got).toEqual(expected);
  });
});

test('a join of two datasets, one named by dataset()', async () => {
  const got = await rowsOf(
    `SELECT m.host, count(*) AS samples, sum(m.used) AS used
     FROM dataset('mem-usage') m JOIN (SELECT DISTINCT host FROM cpu) c ON c.host = m.host
     GROUP BY m.host ORDER BY m.host`,
  );
  const expected = HOSTS.map((host) => {
    const mine = MEM_ROWS.filter((r) => r.host === host);
    return { host, samples: mine.length, used: mine.reduce((s, r) => s + r.used, 0) };
  });
  expect(got).toEqual(expected);
});

test('a JSON answer names the manifest version each dataset was read at', async () => {
  const res = await sql(`SELECT count(*) AS n FROM cpu, "mem-usage" WHERE false`);
  expect(res.status).toBe(200);
  const body = res.body as { manifestVersions: Record<string, number>; truncated: boolean; columnTypes: unknown };
  expect(Object.keys(body.manifestVersions).sort()).toEqual([CPU, MEM]);
  expect(body.truncated).toBe(false);
  expect(body.columnTypes).toEqual([{ name: 'n', type: 'integer' }]);
});

describe('formats and GET', () => {
  const statement = `SELECT timestamp, host, usage, n FROM cpu WHERE host = 'h2' ORDER BY timestamp LIMIT 5`;

  test('CSV, NDJSON and Arrow carry the same rows as JSON', async () => {
    const rows = await rowsOf(statement);
    expect(rows.length).toBe(5);
    const csv = await fetch(`${ts.url}/sql`, { method: 'POST', headers: { ...READER, 'content-type': 'application/json', accept: 'text/csv' }, body: JSON.stringify({ sql: statement }) });
    expect(csv.headers.get('content-type')).toContain('text/csv');
    const lines = (await csv.text()).trimEnd().split('\r\n');
    expect(lines[0]).toBe('timestamp,host,usage,n');
    expect(lines.slice(1)).toEqual(rows.map((r) => `${r.timestamp},${r.host},${r.usage},${r.n}`));

    const nd = await fetch(`${ts.url}/sql`, { method: 'POST', headers: { ...READER, 'content-type': 'application/json', accept: 'application/x-ndjson' }, body: JSON.stringify({ sql: statement }) });
    expect((await nd.text()).trimEnd().split('\n').map((l) => JSON.parse(l))).toEqual(rows);

    const arrow = await fetch(`${ts.url}/sql`, { method: 'POST', headers: { ...READER, 'content-type': 'application/json', accept: 'application/vnd.apache.arrow.stream' }, body: JSON.stringify({ sql: statement }) });
    expect(arrow.headers.get('content-type')).toBe('application/vnd.apache.arrow.stream');
    const table = tableFromIPC(new Uint8Array(await arrow.arrayBuffer()));
    expect(table.numRows).toBe(5);
    const decoded = table.toArray().map((r) => r.toJSON());
    expect(decoded.map((r) => new Date(Number(r.timestamp)).toISOString()) as unknown[]).toEqual(rows.map((r) => r.timestamp));
    expect(decoded.map((r) => r.host)).toEqual(rows.map((r) => r.host));
    expect(decoded.map((r) => r.usage)).toEqual(rows.map((r) => r.usage));
    expect(decoded.map((r) => Number(r.n)) as unknown[]).toEqual(rows.map((r) => r.n));
  });

  test('an answer longer than one batch streams whole, in every format', async () => {
    const many = `SELECT range AS i, range * 2 AS twice FROM range(10000)`;
    expect((await rowsOf(many)).length).toBe(10_000);
    const arrow = await fetch(`${ts.url}/sql`, { method: 'POST', headers: { ...READER, 'content-type': 'application/json', accept: 'application/vnd.apache.arrow.stream' }, body: JSON.stringify({ sql: many }) });
    const table = tableFromIPC(new Uint8Array(await arrow.arrayBuffer()));
    expect(table.numRows).toBe(10_000);
    expect(Number(table.get(9999)!.twice)).toBe(19_998);
  });

  test('GET /sql?q=… with params', async () => {
    const url = `${ts.url}/sql?q=${encodeURIComponent('SELECT count(*) AS n FROM cpu WHERE host = $1')}&params=${encodeURIComponent('["h3"]')}`;
    const res = await fetch(url, { headers: READER });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { rows: unknown[] }).rows).toEqual([{ n: CPU_ROWS.length / 4 }]);
  });
});

/** Every refusal: a 4xx in the one error shape. */
async function expectRefused(statement: string, status: number, code: string, headers: Record<string, string> = READER, params?: unknown[]) {
  const res = await sql(statement, params, headers);
  const body = res.body as { error?: { code: string; message: string } };
  if (res.status !== status || body.error?.code !== code) throw new Error(`${statement.slice(0, 80)}: ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
  expect(typeof body.error!.message).toBe('string');
}

describe('the sandbox refuses', () => {
  const readers = [
    `SELECT * FROM read_csv('/etc/passwd')`,
    `SELECT * FROM read_csv_auto('/etc/passwd')`,
    `SELECT * FROM read_text('/etc/passwd')`,
    `SELECT * FROM read_blob('/etc/passwd')`,
    `SELECT * FROM read_json('/etc/passwd')`,
    `SELECT * FROM read_json_auto('/etc/passwd')`,
    `SELECT * FROM read_ndjson_objects('/etc/passwd')`,
    `SELECT * FROM read_parquet('/etc/passwd')`,
    `SELECT * FROM parquet_metadata('/etc/passwd')`,
    `SELECT * FROM parquet_schema('/etc/passwd')`,
    `SELECT * FROM glob('/etc/*')`,
    `SELECT * FROM sniff_csv('/etc/passwd')`,
    `SELECT * FROM '/etc/passwd'`,
    `SELECT * FROM 'datasets/secret-data/*/*/*.parquet'`,
    `SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')`,
    `SELECT * FROM query_table('secret-data')`,
    `SELECT * FROM duckdb_settings()`,
    `SELECT * FROM duckdb_views()`,
    `SELECT * FROM pragma_version()`,
    `SELECT * FROM information_schema.tables`,
    `SELECT * FROM (SELECT * FROM read_text('/etc/passwd'))`,
    `SELECT (SELECT content FROM read_text('/etc/passwd'))`,
    `WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM x`,
  ];
  for (const statement of readers) test(`file reads: ${statement}`, () => expectRefused(statement, statement.includes("FROM '/etc") || statement.includes("FROM 'datasets") ? 404 : 400, statement.includes("FROM '/etc") || statement.includes("FROM 'datasets") ? 'not_found' : 'sql_not_allowed'));

  const writes = [
    `COPY (SELECT 1) TO '/tmp/timestore-sql-escape.csv'`,
    `COPY cpu TO '/tmp/timestore-sql-escape.parquet'`,
    `ATTACH '/tmp/timestore-sql-escape.db' AS x`,
    `DETACH x`,
    `LOAD httpfs`,
    `INSTALL httpfs`,
    `SET enable_external_access = true`,
    `SET memory_limit = '100GB'`,
    `RESET memory_limit`,
    `PRAGMA version`,
    `PRAGMA enable_profiling`,
    `CREATE TABLE t AS SELECT 1`,
    `CREATE VIEW v AS SELECT * FROM cpu`,
    `CREATE MACRO m() AS 1`,
    `INSERT INTO cpu VALUES (now(), 'x', 1, 1)`,
    `UPDATE cpu SET usage = 0`,
    `DELETE FROM cpu`,
    `DROP VIEW cpu`,
    `EXPORT DATABASE '/tmp/timestore-sql-escape'`,
    `CALL pragma_version()`,
    `CHECKPOINT`,
    `SELECT 1; SELECT 2`,
    `SELECT 1; COPY (SELECT 1) TO '/tmp/timestore-sql-escape.csv'`,
    `DESCRIBE cpu`,
    `SHOW TABLES`,
    `SUMMARIZE cpu`,
    `EXPLAIN SELECT 1`,
  ];
  for (const statement of writes) test(`not a read: ${statement}`, () => expectRefused(statement, 400, 'sql_not_allowed'));

  test('a statement longer than the limit', () => expectRefused(`SELECT ${'1+'.repeat(60_000)}1`, 400, 'validation_failed'));
  test('deeply nested expressions', () => expectRefused(`SELECT ${'abs('.repeat(5000)}1${')'.repeat(5000)}`, 400, 'sql_error'));
  test('deeply nested subqueries', () => expectRefused(`SELECT * FROM ${'(SELECT * FROM '.repeat(3000)}cpu${')'.repeat(3000)}`, 400, 'sql_error'));

  test('a statement that never ends is stopped by the query timeout', async () => {
    const res = await sql(`SELECT count(*) FROM range(1000000000000) a, range(1000000000000) b`);
    expect(res.status).toBe(503);
    expect((res.body as { error: { code: string } }).error.code).toBe('query_timeout');
  }, 60_000);

  test('the server answers after all of it', async () => {
    expect(await rowsOf('SELECT 42 AS answer')).toEqual([{ answer: 42 }]);
    const health = await fetch(`${ts.url}/health`);
    expect(health.status).toBe(200);
  });
});

describe("DuckDB's errors are 400 sql_error with the position", () => {
  test('a syntax error', async () => {
    const res = await sql('SELECT * FORM cpu');
    expect(res.status).toBe(400);
    const error = (res.body as { error: { code: string; message: string; details: { position: number } } }).error;
    expect(error.code).toBe('sql_error');
    expect(error.message).toContain('syntax error');
    expect(error.details.position).toBe(14);
  });

  test('an unknown column', async () => {
    const res = await sql('SELECT host,\n  nope FROM cpu');
    expect(res.status).toBe(400);
    const error = (res.body as { error: { code: string; message: string; details: { position: number; line: number; column: number } } }).error;
    expect(error.code).toBe('sql_error');
    expect(error.message).toContain('nope');
    expect(error.details).toEqual({ position: 15, line: 2, column: 3 });
  });

  test('an error while the rows are read: a JSON answer is the error, not a 200 cut short', async () => {
    const res = await sql('SELECT CAST(host AS INTEGER) AS n FROM cpu');
    expect(res.status).toBe(400);
    const error = (res.body as { error: { code: string; message: string } }).error;
    expect(error.code).toBe('sql_error');
    expect(error.message).toContain('Conversion Error');
  });

  test('a small JSON answer is sent whole, with its length', async () => {
    const res = await fetch(`${ts.url}/sql`, { method: 'POST', headers: { ...READER, 'content-type': 'application/json' }, body: JSON.stringify({ sql: 'SELECT count(*) AS n FROM cpu' }) });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
    expect(JSON.parse(text).rows).toEqual([{ n: CPU_ROWS.length }]);
  });

  test('parameters that do not match the placeholders', async () => {
    const res = await sql('SELECT $1 AS a, $2 AS b', ['x']);
    expect(res.status).toBe(400);
    expect((res.body as { error: { code: string } }).error.code).toBe('sql_error');
  });
});

describe('read scopes, for every dataset a statement names', () => {
  test('without any scope: 401', () => expectRefused('SELECT count(*) FROM cpu', 401, 'unauthorized', {}));
  test('a dataset with its own read scopes is closed to the global read scope', async () => {
    await expectRefused(`SELECT * FROM "secret-data"`, 403, 'forbidden');
    await expectRefused(`SELECT * FROM dataset('secret-data')`, 403, 'forbidden');
    await expectRefused(`SELECT c.host FROM cpu c JOIN "secret-data" s ON true`, 403, 'forbidden');
    await expectRefused(`SELECT * FROM cpu WHERE host IN (SELECT token FROM "secret-data")`, 403, 'forbidden');
  });
  test("its own scope reads it, and read:<slug> reads that dataset only", async () => {
    const own = await sql(`SELECT token FROM "secret-data"`, undefined, { 'x-iam-scopes': 'secret-reader' });
    expect(own.status).toBe(200);
    expect((own.body as { rows: unknown[] }).rows).toEqual([{ token: 'hidden' }]);
    const perDataset = await sql(`SELECT count(*) AS n FROM cpu`, undefined, { 'x-iam-scopes': 'read:cpu' });
    expect(perDataset.status).toBe(200);
    await expectRefused(`SELECT count(*) AS n FROM "mem-usage"`, 403, 'forbidden', { 'x-iam-scopes': 'read:cpu' });
  });
  test("a dataset one statement read is not visible to the next (a name its parse took for a CTE's)", async () => {
    // The outer "secret-data" is not the CTE (that one is in scope inside the subquery only), and the
    // parse, taking it for the CTE, checks no scope for it: it must name nothing in the sandbox.
    const shadowed = `SELECT count(*) AS n FROM cpu, (WITH "secret-data" AS (SELECT 1 AS x) SELECT x FROM "secret-data") c, "secret-data" s`;
    for (let i = 0; i < 4; i++) {
      expect((await sql(`SELECT token FROM "secret-data"`, undefined, { 'x-iam-scopes': 'secret-reader' })).status).toBe(200);
      const res = await sql(shadowed);
      expect(res.status).toBe(400);
      expect((res.body as { error: { code: string } }).error.code).toBe('sql_error');
    }
  });
  test('a repeated statement is checked again, with its own parameters', async () => {
    const byParam = `SELECT count(*) AS n FROM dataset($1)`;
    for (let i = 0; i < 2; i++) {
      expect(await rowsOf(byParam, [CPU])).toEqual([{ n: CPU_ROWS.length }]);
      expect(await rowsOf(byParam, [MEM])).toEqual([{ n: MEM_ROWS.length }]);
      await expectRefused(byParam, 403, 'forbidden', READER, [SECRET]);
      await expectRefused(`SELECT count(*) AS n FROM cpu`, 403, 'forbidden', { 'x-iam-scopes': 'read:mem-usage' });
    }
  });
  test('a dataset that does not exist: 403 without the scope, 404 with it', async () => {
    await expectRefused('SELECT * FROM nothing_here', 403, 'forbidden', { 'x-iam-scopes': 'read:cpu' });
    await expectRefused('SELECT * FROM nothing_here', 404, 'not_found');
  });
});

test('a statement that runs while compaction publishes reads one manifest version throughout', async () => {
  const slug = 'compacted';
  const fields = [{ name: 'timestamp', type: 'timestamp' }, { name: 'batch', type: 'integer' }];
  const BATCHES = 6;
  const PER_BATCH = 2000;
  for (let b = 0; b < BATCHES; b++) {
    const rows = Array.from({ length: PER_BATCH }, (_, i) => ({ timestamp: new Date(BASE + (i * BATCHES + b) * 1000).toISOString(), batch: b }));
    await ingest(slug, fields, rows);
  }
  // Files a publish removes are deleted at once unless a reader pins their version.
  const policy = await fetch(`${ts.url}/admin/datasets/${slug}/retention`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...AS_ADMIN },
    body: JSON.stringify({ rules: {}, deleteGraceMinutes: 0 }),
  });
  expect(policy.status).toBe(200);

  const statement = `SELECT timestamp, batch FROM ${slug} ORDER BY timestamp`;
  const res = await fetch(`${ts.url}/sql`, { method: 'POST', headers: { ...READER, 'content-type': 'application/json', accept: 'application/x-ndjson' }, body: JSON.stringify({ sql: statement }) });
  expect(res.status).toBe(200);
  const before = Number(res.headers.get('x-timestore-manifest-versions')!.split('=')[1]);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const first = await reader.read();
  let text = decoder.decode(first.value);

  // Compaction merges the files and publishes a version that removes them, while the statement reads.
  const lifecycle = await postJson(`${ts.url}/admin/datasets/${slug}/lifecycle?wait=true`, {}, AS_ADMIN);
  expect(lifecycle.status).toBe(200);
  expect((lifecycle.body as { result: { compaction: { partitionsMerged: number } } }).result.compaction.partitionsMerged).toBe(BATCHES);

  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += decoder.decode(chunk.value);
  const rows = text.trimEnd().split('\n').map((l) => JSON.parse(l) as { batch: number });
  expect(rows.length).toBe(BATCHES * PER_BATCH);
  for (let b = 0; b < BATCHES; b++) expect(rows.filter((r) => r.batch === b).length).toBe(PER_BATCH);

  // The next statement reads the compacted version: the same rows, from one file.
  const after = await sql(`SELECT count(*) AS n, count(DISTINCT batch) AS batches FROM ${slug}`);
  const body = after.body as { rows: unknown[]; manifestVersions: Record<string, number> };
  expect(body.manifestVersions[slug]).toBeGreaterThan(before);
  expect(body.rows).toEqual([{ n: BATCHES * PER_BATCH, batches: BATCHES }]);
}, 120_000);
