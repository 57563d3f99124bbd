/**
 * bench/query/under-ingest.ts: small queries while the same server ingests at full speed, against
 * the same queries on a quiet server.
 *
 *   node_modules/.bin/bun bench/query/under-ingest.ts [--hosts 1000] [--base-hours 4] [--load-hours 8]
 *       [--shape single-groupby-1-1-1] [--quiet-reps 100] [--clients 2] [--body json|ndjson] [--seed 1]
 *       [--server-env NAME=value,…] [--data-dir /tmp/timestore-bench-data] [--at <git rev>]
 *
 * TSBS cpu-only rows (bench/ingest/tsbs.ts, batches of 5,000 rows as JSON documents): the first
 * --base-hours are ingested into a dataset `cpu` (`sortColumns` ["hostname"]) and compacted by the
 * server's lifecycle, as a deployment's would be; the next --load-hours are the load. One server
 * (`bun src/main.ts serve` from this checkout or `git archive` of --at; a throwaway harness
 * PostgreSQL as the catalog; one DuckDB worker per core, as deployed). Phases:
 * 1. quiet: --quiet-reps instances of the shape (bench/query/shapes.ts, random hosts and hours of
 *    the base data, seeded), one after another;
 * 2. under ingest: --clients closed-loop clients post the load's batches (--body: as generated, or
 *    their rows as NDJSON) as fast as they are
 *    acknowledged while one client runs instances of the same shape, one after another, until the
 *    load is acknowledged;
 * 3. quiet again.
 * Client wall time, POST to the last byte of the JSON answer. Prints p50, p90, p99 per phase and
 * the ingest rate during phase 2. Compaction after writes is put off (600 s) so that it does not
 * overlap the phases.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { prng } from '../../test/harness/prng.ts';
import { spawnServer } from '../../test/harness/server-process.ts';
import { percentile } from '../ingest/load.ts';
import { BUN, compactFully, round, timedPost } from '../ingest/server.ts';
import { resolveSource } from '../ingest/source.ts';
import { asNdjson, generate, SCHEMA, START_MS } from '../ingest/tsbs.ts';
import { instances, SHAPES, type QueryBody } from './shapes.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const num = (name: string, fallback: number) => Number(args.get(name) ?? fallback);
const hosts = num('hosts', 1000);
const baseHours = num('base-hours', 4);
const loadHours = num('load-hours', 8);
const quietReps = num('quiet-reps', 100);
const clients = num('clients', 2);
const seed = num('seed', 1);
const shapeName = args.get('shape') ?? 'single-groupby-1-1-1';
const ndjson = (args.get('body') ?? 'json') === 'ndjson';
const dataDir = args.get('data-dir') ?? '/tmp/timestore-bench-data';
const log = (message: string) => console.log(`[under-ingest] ${message}`);

const shape = SHAPES.find((s) => s.name === shapeName);
if (!shape) throw new Error(`unknown shape ${shapeName}; one of ${SHAPES.map((s) => s.name).join(', ')}`);
const source = resolveSource(args.get('at') || undefined);
log(`timestore ${source.description}`);

const root = mkdtempSync(join(tmpdir(), 'timestore-bench-under-ingest-'));
const server = await spawnServer({
  command: [BUN, join(source.root, 'src/main.ts'), 'serve'],
  cwd: source.root,
  storageRoot: root,
  readyTimeoutMs: 120_000,
  env: {
    TIMESTORE_DATABASE_URL: await createBenchDatabase('under_ingest'),
    TIMESTORE_LOG_LEVEL: 'warn',
    TIMESTORE_WORKER_THREADS: '',
    TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '604800',
    TIMESTORE_COMPACTION_DELAY_SECONDS: '600',
    ...Object.fromEntries((args.get('server-env') ?? '').split(',').filter(Boolean).map((kv) => kv.split('=', 2) as [string, string])),
  },
});
try {
  const data = generate({ hosts, hours: baseHours + loadHours, batch: 5000, rows: Number.POSITIVE_INFINITY, partitionKey: {}, cacheRoot: dataDir, log });
  const baseBatches = (hosts * baseHours * 360) / 5000;
  const base = data.files.slice(0, baseBatches);
  const load = data.files.slice(baseBatches);
  // The load's rows one per line, prepared before the clock (the base always goes as documents).
  const ndjsonBodies = new Map<string, string>();
  if (ndjson) {
    for (const file of load) ndjsonBodies.set(file, asNdjson(await Bun.file(file).text()));
  }
  const created = await timedPost(`${server.url}/admin/datasets`, { slug: 'cpu', schema: SCHEMA, sortColumns: ['hostname'] });
  if (created.answer.slug !== 'cpu') throw new Error('dataset not created');

  const post = async (file: string, wait: boolean) => {
    const body = ndjson && !wait ? ndjsonBodies.get(file)! : Bun.file(file);
    const headers = { 'content-type': ndjson && !wait ? 'application/x-ndjson' : 'application/json' };
    const res = await fetch(`${server.url}/datasets/cpu/ingest${wait ? '?wait=true' : ''}`, { method: 'POST', headers, body });
    if (res.status !== (wait ? 201 : 202)) throw new Error(`ingest ${file}: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  };
  const ingest = async (files: string[], wait: boolean) => {
    let next = 0;
    const client = async () => {
      while (next < files.length) await post(files[next++]!, wait);
    };
    await Promise.all(Array.from({ length: clients }, client));
  };
  await ingest(base, true);
  await compactFully(server.url, 'cpu');
  const manifest = (await (await fetch(`${server.url}/admin/datasets/cpu/manifest?limit=1`)).json()) as { totals: { partitions: number; rowCount: number } };
  log(`base: ${manifest.totals.rowCount} rows in ${manifest.totals.partitions} files after compaction; load: ${load.length} batches`);

  const random = prng(seed);
  const space = { hosts, startMs: START_MS, hours: baseHours };
  const nextQuery = (() => {
    let pool: QueryBody[] = [];
    return () => (pool.length ? pool : (pool = instances(shape, space, 100, random))).pop()!;
  })();
  const query = async () => {
    const { ms, answer } = await timedPost(`${server.url}/datasets/cpu/query`, nextQuery());
    if (!Array.isArray(answer.rows)) throw new Error(`query: ${JSON.stringify(answer).slice(0, 300)}`);
    return ms;
  };
  for (let i = 0; i < 10; i++) await query(); // warm-up: JIT, footers, page cache

  const phases: Record<string, number[]> = {};
  const quiet = async (name: string) => {
    phases[name] = [];
    for (let i = 0; i < quietReps; i++) phases[name].push(await query());
  };
  await quiet('quiet before');
  phases['under ingest'] = [];
  let loading = true;
  const started = performance.now();
  const loaded = ingest(load, false).finally(() => (loading = false));
  while (loading) phases['under ingest'].push(await query());
  await loaded;
  const seconds = (performance.now() - started) / 1000;
  log(`load: ${load.length * 5000} rows acknowledged in ${round(seconds, 1)} s (${Math.round((load.length * 5000) / seconds)} rows/s)`);
  await new Promise((r) => setTimeout(r, 3000)); // the last writes
  await quiet('quiet after');

  console.log(`\n${shapeName}, ${hosts} hosts, base ${baseHours} h compacted, load ${loadHours} h by ${clients} clients; ms, client wall time:`);
  console.log('| phase | queries | p50 | p90 | p99 |\n| --- | ---: | ---: | ---: | ---: |');
  for (const [name, list] of Object.entries(phases)) {
    console.log(`| ${name} | ${list.length} | ${round(percentile(list, 50), 2)} | ${round(percentile(list, 90), 2)} | ${round(percentile(list, 99), 2)} |`);
  }
} finally {
  await server.stop().catch(() => 0);
  rmSync(root, { recursive: true, force: true });
}
process.exit(0);
