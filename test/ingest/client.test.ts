/**
 * `timestore ingest | query | sql` as a user runs them: the command as a subprocess (from source,
 * or the compiled binary when TIMESTORE_TEST_SERVER=binary) against a real server. Each file
 * format round-trips with exact row counts; an ingest killed mid-way and run again stores every
 * row once, its summary counting the batches the server replayed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Float64, Int64, tableToIPC, TimestampMicrosecond, Table, Utf8, vectorFromArray } from 'apache-arrow';
import { testDuckDB } from '../harness/duckdb.ts';
import { settle } from '../harness/ingest-load.ts';
import { postJson, startTestServer, TEST_BINARY, type TestServer } from '../harness/server.ts';
import { REPO_ROOT } from '../harness/server-process.ts';

let ts: TestServer;
let dir: string;
beforeAll(async () => {
  ts = await startTestServer();
  dir = mkdtempSync(join(tmpdir(), 'ts-client-'));
});
afterAll(async () => {
  await ts.stop();
  rmSync(dir, { recursive: true, force: true });
});

const COMMAND = TEST_BINARY ? [TEST_BINARY] : [process.execPath, join(REPO_ROOT, 'src/main.ts')];
const BASE = Date.parse('2026-01-01T00:00:00Z');
const iso = (i: number) => new Date(BASE + i * 1000).toISOString();

function start(args: string[], stdin?: string) {
  return Bun.spawn([...COMMAND, ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdin: stdin === undefined ? 'ignore' : new TextEncoder().encode(stdin),
    stdout: 'pipe',
    stderr: 'pipe',
  });
}

async function run(args: string[], stdin?: string) {
  const proc = start(args, stdin);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

const ingest = (file: string, dataset: string, ...more: string[]) => run(['ingest', file, '--url', ts.url, '--dataset', dataset, ...more]);

async function createDataset(slug: string): Promise<void> {
  const res = await postJson(`${ts.url}/admin/datasets`, {
    slug,
    schema: {
      fields: [
        { name: 'timestamp', type: 'timestamp' },
        { name: 'seq', type: 'integer' },
        { name: 'host', type: 'string' },
        { name: 'value', type: 'double' },
      ],
    },
  }, { 'x-iam-user': 'test' });
  expect(res.status).toBe(201);
}

/** Rows and distinct `seq` values stored in the dataset, once its jobs are written. */
async function count(slug: string, column = 'seq'): Promise<{ rows: number; distinct: number }> {
  await settle(ts.sql, slug);
  const res = await postJson(`${ts.url}/datasets/${slug}/query`, {
    timeRange: { start: iso(-1), end: iso(10_000_000) },
    downsample: { intervalUnit: 'month', intervalSize: 12, aggregations: [{ fn: 'count', alias: 'rows' }, { fn: 'count_distinct', column, alias: 'distinct' }] },
  });
  expect(res.status).toBe(200);
  const rows = res.body.rows as { rows: number; distinct: number }[];
  return { rows: rows.reduce((n, r) => n + Number(r.rows), 0), distinct: rows.reduce((n, r) => n + Number(r.distinct), 0) };
}

const rowsOf = (n: number) => Array.from({ length: n }, (_, i) => ({ timestamp: iso(i), seq: i, host: `host_${i % 7}`, value: i / 4 }));
const ndjson = (n: number) => rowsOf(n).map((r) => JSON.stringify(r)).join('\n') + '\n';

function summaryOf(stdout: string) {
  const m = /ingested (\d+) rows in (\d+) batches \((\d+) replayed\)/.exec(stdout);
  if (!m) throw new Error(`no summary in ${JSON.stringify(stdout)}`);
  return { rows: Number(m[1]), batches: Number(m[2]), replayed: Number(m[3]) };
}

describe('timestore ingest', () => {
  test('NDJSON in batches, several in flight', async () => {
    await createDataset('cli-ndjson');
    const file = join(dir, 'rows.ndjson');
    writeFileSync(file, ndjson(1234));
    const result = await ingest(file, 'cli-ndjson', '--batch-rows', '100', '--concurrency', '3');
    expect(result.stderr).not.toContain('error');
    expect(result.code).toBe(0);
    expect(summaryOf(result.stdout)).toEqual({ rows: 1234, batches: 13, replayed: 0 });
    expect(await count('cli-ndjson')).toEqual({ rows: 1234, distinct: 1234 });
  }, 120_000);

  test('CSV keeps its header in every batch, and a quoted field may hold commas and newlines', async () => {
    await createDataset('cli-csv');
    const lines = rowsOf(500).map((r) => `${r.timestamp},${r.seq},"${r.seq % 50 === 0 ? 'a, "quoted"\nhost' : r.host}",${r.value}`);
    const file = join(dir, 'rows.csv');
    writeFileSync(file, `timestamp,seq,host,value\r\n${lines.join('\r\n')}\r\n`.replaceAll('"quoted"', '""quoted""'));
    const result = await ingest(file, 'cli-csv', '--batch-rows', '64');
    expect(result.code).toBe(0);
    expect(summaryOf(result.stdout)).toEqual({ rows: 500, batches: 8, replayed: 0 });
    expect(await count('cli-csv')).toEqual({ rows: 500, distinct: 500 });
    const sql = await run(['sql', `SELECT host FROM "cli-csv" WHERE seq = 50`, '--url', ts.url, '--format', 'json']);
    expect(JSON.parse(sql.stdout)).toEqual([{ host: 'a, "quoted"\nhost' }]);
  }, 120_000);

  test('an Arrow IPC file is re-sliced into streams; it creates the dataset', async () => {
    const n = 3000;
    const table = new Table({
      timestamp: vectorFromArray(rowsOf(n).map((r) => Date.parse(r.timestamp)), new TimestampMicrosecond('UTC')),
      seq: vectorFromArray(rowsOf(n).map((r) => BigInt(r.seq)), new Int64()),
      host: vectorFromArray(rowsOf(n).map((r) => r.host), new Utf8()),
      value: vectorFromArray(rowsOf(n).map((r) => r.value), new Float64()),
    });
    const file = join(dir, 'rows.arrow');
    writeFileSync(file, tableToIPC(table, 'file'));
    const result = await ingest(file, 'cli-arrow', '--batch-rows', '1000');
    expect(result.code).toBe(0);
    expect(summaryOf(result.stdout)).toEqual({ rows: n, batches: 3, replayed: 0 });
    expect(await count('cli-arrow')).toEqual({ rows: n, distinct: n });
  }, 120_000);

  test('Parquet is read by DuckDB in the client and sent as Arrow', async () => {
    const file = join(dir, 'rows.parquet');
    const db = await testDuckDB();
    await db.run(`COPY (SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i) AS timestamp, i AS seq, 'host_' || (i % 7) AS host,
      i / 4 AS value, (i % 2 = 0) AS even FROM range(2500) t(i)) TO '${file}' (FORMAT parquet)`);
    const result = await ingest(file, 'cli-parquet', '--batch-rows', '1000');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(summaryOf(result.stdout)).toEqual({ rows: 2500, batches: 3, replayed: 0 });
    expect(await count('cli-parquet')).toEqual({ rows: 2500, distinct: 2500 });
    const sql = await run(['sql', 'SELECT count(*) FILTER (WHERE even) AS evens, sum(value) AS total FROM "cli-parquet"', '--url', ts.url, '--format', 'csv']);
    expect(sql.stdout).toBe(`evens,total\n1250,${(2499 * 2500) / 2 / 4}\n`);
  }, 120_000);

  test('line protocol goes to the InfluxDB write path: each measurement is a dataset, a re-run replays', async () => {
    const lines = Array.from({ length: 900 }, (_, i) => `cli_lp,host=h${i % 3} seq=${i}i,value=${i / 2} ${(BASE / 1000 + i) * 1e9}`);
    const file = join(dir, 'rows.lp');
    writeFileSync(file, `# a comment\n\n${lines.join('\n')}\n`);
    const result = await run(['ingest', file, '--url', ts.url, '--batch-rows', '200']);
    expect(result.code).toBe(0);
    expect(summaryOf(result.stdout)).toEqual({ rows: 900, batches: 5, replayed: 0 });
    expect(await count('cli_lp')).toEqual({ rows: 900, distinct: 900 });
    // Run again (as after an interruption): every batch is a replay, nothing is stored twice.
    const again = await run(['ingest', file, '--url', ts.url, '--batch-rows', '200']);
    expect(summaryOf(again.stdout)).toEqual({ rows: 900, batches: 5, replayed: 5 });
    expect(await count('cli_lp')).toEqual({ rows: 900, distinct: 900 });
  }, 120_000);

  test('stdin, with --format', async () => {
    await createDataset('cli-stdin');
    const result = await run(['ingest', '-', '--format', 'ndjson', '--url', ts.url, '--dataset', 'cli-stdin', '--batch-rows', '150'], ndjson(700));
    expect(result.code).toBe(0);
    expect(summaryOf(result.stdout)).toEqual({ rows: 700, batches: 5, replayed: 0 });
    expect(await count('cli-stdin')).toEqual({ rows: 700, distinct: 700 });
    // The same input again: every batch is a replay.
    const again = await run(['ingest', '-', '--format', 'ndjson', '--url', ts.url, '--dataset', 'cli-stdin', '--batch-rows', '150'], ndjson(700));
    expect(summaryOf(again.stdout)).toEqual({ rows: 700, batches: 5, replayed: 5 });
    expect(await count('cli-stdin')).toEqual({ rows: 700, distinct: 700 });
  }, 120_000);

  test('killed mid-way and run again: every row stored once, the accepted batches replayed', async () => {
    await createDataset('cli-resume');
    const n = 40_000;
    const file = join(dir, 'big.ndjson');
    writeFileSync(file, ndjson(n));
    const args = ['ingest', file, '--url', ts.url, '--dataset', 'cli-resume', '--batch-rows', '100', '--concurrency', '2'];
    const first = start(args);
    // Kill it once the server holds some of its batches, long before all 400.
    const acceptedJobs = async () => {
      const rows = await ts.sql<{ jobs: number }[]>`
        SELECT count(*)::int AS jobs FROM jobs j JOIN datasets d ON d.id = j.dataset_id WHERE d.slug = 'cli-resume'`;
      return rows[0]!.jobs;
    };
    while ((await acceptedJobs()) < 20) await Bun.sleep(20);
    first.kill('SIGKILL');
    expect(await first.exited).not.toBe(0);
    const accepted = await acceptedJobs();
    expect(accepted).toBeLessThan(400);

    const second = await run(args);
    expect(second.code).toBe(0);
    const summary = summaryOf(second.stdout);
    expect(summary.rows).toBe(n);
    expect(summary.batches).toBe(400);
    expect(summary.replayed).toBeGreaterThanOrEqual(accepted);
    expect(await count('cli-resume')).toEqual({ rows: n, distinct: n });
  }, 240_000);
});

describe('timestore query and sql', () => {
  test('a downsampled query as a table, CSV and JSON', async () => {
    const base = ['query', '--url', ts.url, '--dataset', 'cli-ndjson', '--from', iso(0), '--to', iso(600), '--interval', '5m', '--agg', 'count:seq:n,max:value'];
    const table = await run(base);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n').slice(0, 3)).toEqual([
      'timestamp                 n    max_value',
      '------------------------  ---  ---------',
      '2026-01-01T00:00:00.000Z  300  74.75',
    ]);
    expect(table.stdout).toContain('(2 rows)');
    const csv = await run([...base, '--format', 'csv']);
    expect(csv.stdout).toBe('timestamp,n,max_value\n2026-01-01T00:00:00.000Z,300,74.75\n2026-01-01T00:05:00.000Z,300,149.75\n');
    const json = await run([...base, '--format', 'json']);
    expect(JSON.parse(json.stdout)).toEqual([
      { timestamp: '2026-01-01T00:00:00.000Z', n: 300, max_value: 74.75 },
      { timestamp: '2026-01-01T00:05:00.000Z', n: 300, max_value: 149.75 },
    ]);
  }, 120_000);

  test('sql with parameters', async () => {
    const result = await run(['sql', 'SELECT host, count(*) AS n FROM "cli-ndjson" WHERE seq < $1 GROUP BY host ORDER BY host LIMIT 2', '--param', '70', '--url', ts.url, '--format', 'csv']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('host,n\nhost_0,10\nhost_1,10\n');
  }, 120_000);

  test("the server's errors are printed with their code, and the exit code is non-zero", async () => {
    const missing = await run(['query', '--url', ts.url, '--dataset', 'no-such-dataset', '--from', iso(0), '--to', iso(60)]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^timestore query: not_found: /);
    const bad = await run(['sql', 'DROP TABLE x', '--url', ts.url]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('sql_not_allowed: ');
    const refused = await run(['ingest', '-', '--format', 'ndjson', '--url', ts.url, '--dataset', 'cli-ndjson'], '{"timestamp":"2026-01-01T00:00:00Z","seq":"x"}\n');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('timestore ingest: invalid_type: ');
    const notArrow = join(dir, 'not-arrow.csv');
    writeFileSync(notArrow, 'timestamp,seq\n2026-01-01T00:00:00Z,1\n');
    const unreadable = await run(['ingest', notArrow, '--format', 'arrow', '--url', ts.url, '--dataset', 'cli-arrow']);
    expect(unreadable.code).toBe(1);
    expect(unreadable.stderr).toStartWith(`timestore ingest: ${notArrow}: not an Arrow IPC file or stream`);
    const usage = await run(['ingest', 'rows.unknown', '--url', ts.url, '--dataset', 'x']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('give --format');
  }, 120_000);
});
