/**
 * bench/lifecycle/compaction: what compaction costs and what it buys.
 *
 *   node_modules/.bin/bun bench/lifecycle/compaction.ts [--rows 1000000] [--hosts 1000] [--batch 5000]
 *       [--clients 2] [--repeats 20] [--data-dir /tmp/timestore-bench-data] [--out bench/results]
 *       [--sort-columns hostname]
 *
 * 1. TSBS cpu-only bodies (bench/ingest/tsbs.ts), ingested over HTTP by --clients clients into a
 *    fresh server (throwaway PostgreSQL cluster from the test harness; lifecycle rounds off), so
 *    the day's rows arrive as many small coalesced partitions, as they do under load.
 * 2. Three queries timed through HTTP (p50 of --repeats after a warm-up): one host for one hour at
 *    one-minute max, eight hosts for eight hours at one-hour max of every metric, and the latest
 *    row of every host.
 * 3. With --sort-columns, `PATCH /admin/datasets/:id` sets the dataset's sortColumns (comma-separated)
 *    so that compaction writes its files in that order. Then
 *    `POST /admin/datasets/:id/lifecycle?wait=true` until compaction reports nothing more: its
 *    wall time, files and bytes before and after.
 * 4. The same queries again, checked to answer the same rows; a table and a JSON file in --out.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { REPO_ROOT, round, startServer } from '../ingest/server.ts';
import { generate } from '../ingest/tsbs.ts';

const defaults = { rows: 1_000_000, hosts: 1000, batch: 5000, clients: 2, repeats: 20, 'sort-columns': '', 'data-dir': '/tmp/timestore-bench-data', out: join(REPO_ROOT, 'bench/results') };
const opts: Record<string, string | number> = { ...defaults };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const name = argv[i]!.replace(/^--/, '');
  if (!(name in defaults) || argv[i + 1] === undefined) {
    console.error(`unknown option or missing value: ${argv[i]}; see the comment at the top of ${import.meta.path}`);
    process.exit(2);
  }
  opts[name] = typeof defaults[name as keyof typeof defaults] === 'number' ? Number(argv[i + 1]) : argv[i + 1]!;
}
const log = (message: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${message}`);

const data = generate({
  hosts: opts.hosts as number,
  hours: 24,
  batch: opts.batch as number,
  rows: opts.rows as number,
  partitionKey: {},
  cacheRoot: String(opts['data-dir']),
  log,
});
const bodies = await Promise.all(data.files.map((f) => Bun.file(f).arrayBuffer()));
const server = await startServer({
  databaseUrl: await createBenchDatabase('compaction'),
  env: { TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400', TIMESTORE_QUERY_CACHE_ENABLED: 'false' },
});
const slug = 'cpu';

try {
  log(`ingesting ${data.totalRows} rows in ${bodies.length} batches with ${opts.clients} clients`);
  let next = 0;
  const ingestStarted = performance.now();
  await Promise.all(
    Array.from({ length: opts.clients as number }, async () => {
      for (let i = next++; i < bodies.length; i = next++) {
        const res = await fetch(`${server.url}/datasets/${slug}/ingest?wait=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bodies[i] });
        if (res.status !== 201) throw new Error(`batch ${i}: ${res.status} ${await res.text()}`);
        await res.arrayBuffer();
      }
    }),
  );
  log(`ingested in ${round((performance.now() - ingestStarted) / 1000, 1)} s`);

  const first = data.batchTimes[0]![0];
  const last = data.batchTimes.at(-1)![1];
  const hourAt = (h: number) => new Date(first + h * 3_600_000).toISOString();
  const spanHours = Math.max(1, Math.floor((last - first) / 3_600_000));
  const hosts = (n: number) => Array.from({ length: n }, (_, i) => `host_${(i * 37) % (opts.hosts as number)}`);
  const metrics = ['usage_user', 'usage_system', 'usage_idle', 'usage_nice', 'usage_iowait', 'usage_irq', 'usage_softirq', 'usage_steal', 'usage_guest', 'usage_guest_nice'];
  const queries: Record<string, unknown> = {
    '1 host, 1 h, 1-minute max': {
      timeRange: { start: hourAt(0), end: hourAt(1) },
      filters: { columns: { hostname: { eq: hosts(1)[0] } } },
      downsample: { intervalUnit: 'minute', aggregations: [{ fn: 'max', column: 'usage_user' }] },
    },
    '8 hosts, 8 h, 1-hour max of all': {
      timeRange: { start: hourAt(0), end: hourAt(Math.min(8, spanHours)) },
      filters: { columns: { hostname: { in: hosts(8) } } },
      downsample: { intervalUnit: 'hour', aggregations: metrics.map((column) => ({ fn: 'max', column })) },
    },
    'latest row per host': {
      timeRange: { start: hourAt(0), end: new Date(last + 1).toISOString() },
      downsample: { intervalUnit: 'day', intervalSize: 36_500, groupBy: ['hostname'], aggregations: metrics.map((column) => ({ fn: 'last', column })) },
      limit: 100_000,
    },
  };
  const timeQueries = async () => {
    const out: Record<string, { p50: number; p99: number; rows: unknown }> = {};
    for (const [name, body] of Object.entries(queries)) {
      const times: number[] = [];
      let rows: unknown = null;
      for (let i = 0; i <= (opts.repeats as number); i++) {
        const started = performance.now();
        const res = await fetch(`${server.url}/datasets/${slug}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        const answer = (await res.json()) as { rows: unknown };
        if (res.status !== 200) throw new Error(`${name}: ${res.status} ${JSON.stringify(answer)}`);
        if (i > 0) times.push(performance.now() - started);
        rows = answer.rows;
      }
      times.sort((a, b) => a - b);
      out[name] = { p50: round(times[Math.floor(times.length / 2)]!, 2), p99: round(times[Math.min(times.length - 1, Math.floor(times.length * 0.99))]!, 2), rows };
    }
    return out;
  };
  const manifest = async () => ((await (await fetch(`${server.url}/admin/datasets/${slug}/manifest?limit=1`)).json()) as { totals: { partitions: number; sizeBytes: number } }).totals;

  const filesBefore = await manifest();
  const before = await timeQueries();
  log(`before: ${filesBefore.partitions} files, ${round(filesBefore.sizeBytes / 2 ** 20, 1)} MiB`);

  const sortColumns = String(opts['sort-columns']).split(',').filter(Boolean);
  if (sortColumns.length > 0) {
    const res = await fetch(`${server.url}/admin/datasets/${slug}`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sortColumns }) });
    if (res.status !== 200) throw new Error(`PATCH sortColumns: ${res.status} ${await res.text()}`);
    log(`sortColumns: ${sortColumns.join(', ')}`);
  }
  const runs: unknown[] = [];
  const compactStarted = performance.now();
  for (;;) {
    const res = await fetch(`${server.url}/admin/datasets/${slug}/lifecycle?wait=true`, { method: 'POST' });
    const job = (await res.json()) as { state: string; lastError: string | null; result: { compaction: { more: boolean; groupsMerged: number } } };
    if (job.state !== 'succeeded') throw new Error(`lifecycle job ${job.state}: ${job.lastError}`);
    runs.push(job.result.compaction);
    if (!job.result.compaction.more || job.result.compaction.groupsMerged === 0) break;
  }
  const compactSeconds = (performance.now() - compactStarted) / 1000;
  const filesAfter = await manifest();
  const after = await timeQueries();
  log(`after: ${filesAfter.partitions} files, ${round(filesAfter.sizeBytes / 2 ** 20, 1)} MiB, compaction ${round(compactSeconds, 1)} s in ${runs.length} run(s)`);

  const same = Object.keys(queries).map((name) => [name, JSON.stringify(before[name]!.rows) === JSON.stringify(after[name]!.rows)] as const);
  console.log(`\n| query | p50 / p99 ms before (${filesBefore.partitions} files) | p50 / p99 ms after (${filesAfter.partitions} files) | same rows |`);
  console.log('| --- | ---: | ---: | --- |');
  for (const [name, equal] of same) console.log(`| ${name} | ${before[name]!.p50} / ${before[name]!.p99} | ${after[name]!.p50} / ${after[name]!.p99} | ${equal ? 'yes' : 'NO'} |`);
  console.log(`\ncompaction: ${round(compactSeconds, 2)} s for ${round(filesBefore.sizeBytes / 2 ** 20, 1)} MiB (${round(filesBefore.sizeBytes / 2 ** 20 / compactSeconds, 1)} MiB/s, ${round(data.totalRows / compactSeconds)} rows/s)`);

  mkdirSync(String(opts.out), { recursive: true });
  const file = join(String(opts.out), `compaction-${new Date().toISOString().slice(0, 10)}-${data.totalRows}${sortColumns.length ? `-by-${sortColumns.join('-')}` : ''}.json`);
  const strip = (r: typeof before) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, { p50: v.p50, p99: v.p99 }]));
  writeFileSync(file, JSON.stringify({ opts, rows: data.totalRows, filesBefore, filesAfter, compactSeconds, runs, before: strip(before), after: strip(after), sameRows: Object.fromEntries(same) }, null, 2));
  log(`wrote ${file}`);
} finally {
  await server.stop();
}
process.exit(0);
