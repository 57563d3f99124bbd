/**
 * bench/query/latest.ts: "the latest row of every host" through timestore's HTTP API, answered by
 * the latest-value cache against the same request answered from the files.
 *
 *   node_modules/.bin/bun bench/query/latest.ts [--hosts 1000] [--hours 4] [--reps 200] [--warmup 10]
 *       [--compact 1] [--data-dir /tmp/timestore-bench-data]
 *
 * TSBS cpu-only rows (bench/ingest/tsbs.ts) are ingested into a dataset `cpu` with `sortColumns`
 * ["hostname"] through one server (a throwaway harness PostgreSQL as the catalog, this checkout's
 * src/main.ts), then compacted by its lifecycle (--compact 1) as a deployment's would. A second
 * server on the same catalog and storage root runs with TIMESTORE_QUERY_LATEST_CACHE_SERIES=0, so
 * its answers come from the files. Both take the two request forms in alternation:
 * - lastpoint: the peers benchmark's form (../shared/peers/lib/queries.ts): a downsample over one
 *   36,500-day bucket, `max` of the timestamp and `last` of every other column, by hostname;
 * - latest: POST /datasets/cpu/latest with no body fields;
 * - latest-1-host: the same for one host (`filters.columns.hostname.eq`): a small answer, so
 *   mostly the per-query cost.
 * Client wall time, POST to the last byte of the JSON answer; the answers of the two servers are
 * checked equal. Prints p50, p90 and mean per form and server, and the first (seeding) query.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { spawnServer, type ServerProcess } from '../../test/harness/server-process.ts';
import { percentile } from '../ingest/load.ts';
import { BUN, compactFully, REPO_ROOT, round, timedPost } from '../ingest/server.ts';
import { FIELDS, generate, SCHEMA, START_MS, TAGS } from '../ingest/tsbs.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const num = (name: string, fallback: number) => Number(args.get(name) ?? fallback);
const hosts = num('hosts', 1000);
const hours = num('hours', 4);
const reps = num('reps', 200);
const warmup = num('warmup', 10);
const compact = num('compact', 1) === 1;
const dataDir = args.get('data-dir') ?? '/tmp/timestore-bench-data';
const log = (message: string) => console.log(`[latest] ${message}`);


const range = { start: new Date(START_MS).toISOString(), end: new Date(START_MS + hours * 3_600_000).toISOString() };
const FORMS = {
  lastpoint: {
    path: '/datasets/cpu/query',
    body: {
      timeRange: range,
      downsample: {
        intervalUnit: 'day',
        intervalSize: 36_500,
        aggregations: [
          { fn: 'max', column: 'timestamp', alias: 'last_ts' },
          ...[...TAGS.filter((t) => t !== 'hostname'), ...FIELDS].map((c) => ({ fn: 'last', column: c, alias: c })),
        ],
        groupBy: ['hostname'],
      },
      limit: 100_000,
    },
  },
  latest: { path: '/datasets/cpu/latest', body: {} },
  'latest-1-host': { path: '/datasets/cpu/latest', body: { filters: { columns: { hostname: { eq: 'host_1' } } } } },
} as const;

const root = mkdtempSync(join(tmpdir(), 'timestore-bench-latest-'));
const servers: ServerProcess[] = [];
try {
  const databaseUrl = await createBenchDatabase('latest');
  const env = {
    TIMESTORE_DATABASE_URL: databaseUrl,
    TIMESTORE_LOG_LEVEL: 'warn',
    TIMESTORE_WORKER_THREADS: '', // one DuckDB worker per core, as deployed
    TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '604800', // the round at start, then none while measuring
  };
  const start = (extra: Record<string, string>) =>
    spawnServer({ command: [BUN, join(REPO_ROOT, 'src/main.ts'), 'serve'], storageRoot: root, env: { ...env, ...extra }, readyTimeoutMs: 120_000 });
  const cached = await start({});
  servers.push(cached);

  const data = generate({ hosts, hours, batch: 5000, rows: Number.POSITIVE_INFINITY, partitionKey: {}, cacheRoot: dataDir, log });
  const created = await timedPost(`${cached.url}/admin/datasets`, { slug: 'cpu', schema: SCHEMA, sortColumns: ['hostname'] });
  if (created.answer.slug !== 'cpu') throw new Error('dataset not created');
  let t0 = performance.now();
  let next = 0;
  const client = async () => {
    while (next < data.files.length) {
      const file = data.files[next++]!;
      const res = await fetch(`${cached.url}/datasets/cpu/ingest?wait=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Bun.file(file) });
      if (res.status !== 201) throw new Error(`ingest ${file}: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    }
  };
  await Promise.all([client(), client()]);
  log(`ingested ${data.totalRows} rows in ${data.files.length} batches in ${round((performance.now() - t0) / 1000, 1)} s`);
  if (compact) {
    t0 = performance.now();
    await compactFully(cached.url, 'cpu');
    log(`compacted in ${round((performance.now() - t0) / 1000, 1)} s`);
  }
  const manifest = (await (await fetch(`${cached.url}/admin/datasets/cpu/manifest?limit=1`)).json()) as { totals: { partitions: number; rowCount: number } };
  log(`${manifest.totals.partitions} partition files, ${manifest.totals.rowCount} rows`);

  const files = await start({ TIMESTORE_QUERY_LATEST_CACHE_SERIES: '0' });
  servers.push(files);

  // The first query of each form on the caching server: the cache is seeded by the first.
  for (const [name, form] of Object.entries(FORMS)) {
    const first = await timedPost(`${cached.url}${form.path}`, form.body);
    log(`first ${name} on the caching server: ${round(first.ms, 1)} ms (source ${first.answer.source})`);
  }

  const times: Record<string, number[]> = {};
  for (let i = 0; i < warmup + reps; i++) {
    for (const [name, form] of Object.entries(FORMS)) {
      const pair = i % 2 === 0 ? [cached, files] : [files, cached];
      const answers: any[] = [];
      for (const server of pair) {
        const { ms, answer } = await timedPost(`${server.url}${form.path}`, form.body);
        const key = `${name} ${server === cached ? 'cache' : 'files'}`;
        if (answer.source !== (server === cached ? 'cache' : 'files')) throw new Error(`${key}: answered from ${answer.source}`);
        if (i >= warmup) (times[key] ??= []).push(ms);
        answers.push(answer);
      }
      if (i < 2 && JSON.stringify(answers[0].rows) !== JSON.stringify(answers[1].rows)) throw new Error(`${name}: the two servers answered differently`);
      const expected = name === 'latest-1-host' ? 1 : hosts;
      if (answers[0].rows.length !== expected) throw new Error(`${name}: ${answers[0].rows.length} rows, not ${expected}`);
    }
  }
  console.log(`\n${hosts} hosts × ${hours} h (${data.totalRows} rows, ${manifest.totals.partitions} files${compact ? ', compacted' : ''}), ${reps} runs each, ms:`);
  console.log('| form | source | p50 | p90 | mean |\n| --- | --- | ---: | ---: | ---: |');
  for (const [key, list] of Object.entries(times)) {
    const [form, source] = key.split(' ');
    const mean = list.reduce((a, b) => a + b, 0) / list.length;
    console.log(`| ${form} | ${source} | ${round(percentile(list, 50), 2)} | ${round(percentile(list, 90), 2)} | ${round(mean, 2)} |`);
  }
} finally {
  await Promise.all(servers.map((s) => s.stop().catch(() => 0)));
  rmSync(root, { recursive: true, force: true });
}
process.exit(0);
