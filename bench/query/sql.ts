/**
 * bench/query/sql.ts: the same TSBS questions through POST /datasets/cpu/query (JSON) and POST /sql,
 * on one server, in alternation, to measure what the SQL path adds (parse in a worker, scope and
 * dataset look-ups, the sandbox's connection and view).
 *
 *   node_modules/.bin/bun bench/query/sql.ts [--hosts 100] [--hours 4] [--reps 200] [--warmup 20]
 *       [--data-dir /tmp/timestore-bench-data]
 *
 * TSBS cpu-only rows (bench/ingest/tsbs.ts) are ingested into a dataset `cpu` (sortColumns
 * ["hostname"]) through a server on a throwaway harness PostgreSQL, then compacted. Questions:
 * - single-groupby-1-1-1: max(usage_user) per minute of one host over one hour;
 * - double-groupby-1: avg(usage_user) per hour and host over the whole range.
 * Client wall time, POST to the last byte of the JSON answer; the rows of both paths are checked
 * equal. Paths, in rotating order: `json`, `sql` (the same statement text every time, as a
 * dashboard sends it) and `sql-new` (made new by a comment, so never parsed before). Prints p50,
 * p90 and mean per question and path, and the p50 differences.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { spawnServer, type ServerProcess } from '../../test/harness/server-process.ts';
import { percentile } from '../ingest/load.ts';
import { BUN, compactFully, REPO_ROOT, round, timedPost } from '../ingest/server.ts';
import { generate, SCHEMA, START_MS } from '../ingest/tsbs.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const num = (name: string, fallback: number) => Number(args.get(name) ?? fallback);
const hosts = num('hosts', 100);
const hours = num('hours', 4);
const reps = num('reps', 200);
const warmup = num('warmup', 20);
const dataDir = args.get('data-dir') ?? '/tmp/timestore-bench-data';
const log = (message: string) => console.log(`[sql] ${message}`);


const iso = (ms: number) => new Date(ms).toISOString();
const hour = { start: iso(START_MS + 3_600_000), end: iso(START_MS + 2 * 3_600_000) };
const all = { start: iso(START_MS), end: iso(START_MS + hours * 3_600_000) };
const QUESTIONS = {
  'single-groupby-1-1-1': {
    json: {
      timeRange: hour,
      filters: { columns: { hostname: { eq: 'host_1' } } },
      downsample: { intervalUnit: 'minute', intervalSize: 1, aggregations: [{ fn: 'max', column: 'usage_user', alias: 'max_usage_user' }] },
    },
    sql: {
      sql: `SELECT make_timestamptz(epoch_us(timestamp) // 60000000 * 60000000) AS timestamp, max(usage_user) AS max_usage_user FROM cpu
            WHERE hostname = 'host_1' AND timestamp >= $1 AND timestamp < $2 GROUP BY 1 ORDER BY 1`,
      params: [hour.start, hour.end],
    },
  },
  'double-groupby-1': {
    json: {
      timeRange: all,
      downsample: { intervalUnit: 'hour', intervalSize: 1, groupBy: ['hostname'], aggregations: [{ fn: 'avg', column: 'usage_user', alias: 'avg_usage_user' }] },
      limit: 100_000,
    },
    sql: {
      sql: `SELECT make_timestamptz(epoch_us(timestamp) // 3600000000 * 3600000000) AS timestamp, hostname, avg(usage_user) AS avg_usage_user FROM cpu
            WHERE timestamp >= $1 AND timestamp < $2 GROUP BY ALL ORDER BY timestamp, hostname`,
      params: [all.start, all.end],
    },
  },
} as const;

type Row = Record<string, unknown>;

/** The same rows: equal keys and strings, numbers equal to 1e-9 relative (avg sums in another order). */
function sameRows(name: string, expected: Row[], actual: Row[]): void {
  const differs = (a: unknown, b: unknown) =>
    typeof a === 'number' && typeof b === 'number' ? Math.abs(a - b) > 1e-9 * Math.max(1, Math.abs(a)) : a !== b;
  const bad = expected.length !== actual.length || expected.some((row, i) => Object.keys(row).some((k) => differs(row[k], actual[i]![k])));
  if (bad) throw new Error(`${name}: the two paths answered differently:\n${JSON.stringify(expected.slice(0, 3))}\n${JSON.stringify(actual.slice(0, 3))}`);
}

const root = mkdtempSync(join(tmpdir(), 'timestore-bench-sql-'));
let server: ServerProcess | undefined;
try {
  server = await spawnServer({
    command: [BUN, join(REPO_ROOT, 'src/main.ts'), 'serve'],
    storageRoot: root,
    env: { TIMESTORE_DATABASE_URL: await createBenchDatabase('sql'), TIMESTORE_LOG_LEVEL: 'warn', TIMESTORE_WORKER_THREADS: '', TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '604800' },
    readyTimeoutMs: 120_000,
  });
  const url = server.url;
  const data = generate({ hosts, hours, batch: 5000, rows: Number.POSITIVE_INFINITY, partitionKey: {}, cacheRoot: dataDir, log });
  await timedPost(`${url}/admin/datasets`, { slug: 'cpu', schema: SCHEMA, sortColumns: ['hostname'] });
  for (const file of data.files) {
    const res = await fetch(`${url}/datasets/cpu/ingest?wait=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Bun.file(file) });
    if (res.status !== 201) throw new Error(`ingest ${file}: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  }
  await compactFully(url, 'cpu');
  log(`${data.totalRows} rows ingested and compacted`);

  // `sql-new`: the same statement made new text each time (a comment), so the server has not
  // parsed it before: what a statement costs the first time.
  const PATHS = ['json', 'sql', 'sql-new'] as const;
  const bodyOf = (q: (typeof QUESTIONS)[keyof typeof QUESTIONS], path: (typeof PATHS)[number], i: number) =>
    path === 'json' ? q.json : path === 'sql' ? q.sql : { ...q.sql, sql: `${q.sql.sql} /* ${i} */` };
  const times: Record<string, number[]> = {};
  for (let i = 0; i < warmup + reps; i++) {
    for (const [name, q] of Object.entries(QUESTIONS)) {
      const order = PATHS.map((_, k) => PATHS[(i + k) % PATHS.length]!);
      const rows: Record<string, unknown> = {};
      for (const path of order) {
        const { ms, answer } = await timedPost(`${url}${path === 'json' ? '/datasets/cpu/query' : '/sql'}`, bodyOf(q, path, i));
        if (i >= warmup) (times[`${name} ${path}`] ??= []).push(ms);
        rows[path] = answer.rows;
      }
      if (i === 0) for (const path of ['sql', 'sql-new'] as const) sameRows(name, rows.json as Row[], rows[path] as Row[]);
    }
  }
  console.log(`\n${hosts} hosts × ${hours} h (${data.totalRows} rows, compacted), ${reps} runs each, ms:`);
  console.log('| question | path | p50 | p90 | mean |\n| --- | --- | ---: | ---: | ---: |');
  for (const [question, path] of Object.keys(QUESTIONS).flatMap((q) => PATHS.map((p) => [q, p] as const))) {
    const list = times[`${question} ${path}`]!;
    const mean = list.reduce((a, b) => a + b, 0) / list.length;
    console.log(`| ${question} | ${path} | ${round(percentile(list, 50), 2)} | ${round(percentile(list, 90), 2)} | ${round(mean, 2)} |`);
  }
  for (const name of Object.keys(QUESTIONS)) {
    const p50 = (path: string) => percentile(times[`${name} ${path}`]!, 50);
    console.log(`${name}: SQL p50 − JSON p50 = ${round(p50('sql') - p50('json'), 2)} ms (a statement new to the server: ${round(p50('sql-new') - p50('json'), 2)} ms)`);
  }
} finally {
  await server?.stop().catch(() => 0);
  rmSync(root, { recursive: true, force: true });
}
process.exit(0);
