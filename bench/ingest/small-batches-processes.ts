/**
 * Small batches sent to several processes that share one PostgreSQL catalog and one storage root,
 * as a deployment that outgrew one VM runs them (here all on this machine): 100-row NDJSON batches
 * of TSBS rows from 8 closed-loop clients, each batch to the next process in turn.
 *
 *   node_modules/.bin/bun bench/ingest/small-batches-processes.ts [--processes 2] [checkout]
 *
 * `checkout`: the tree whose src/main.ts serves (default: this one; e.g. a `git worktree` of
 * another commit, with node_modules linked, to compare two commits). The catalog is a fresh
 * database on a cluster with PostgreSQL's stock durability (test/harness/postgres.ts), or on the
 * cluster TIMESTORE_TEST_DATABASE_URL names. The first batch goes as a JSON document with
 * `?wait=true` (it creates the dataset), then 2,999 batches as NDJSON. Prints batches per second
 * acknowledged and queryable (a count query, polled every 25 ms, sees every row), the CPU a batch
 * of the servers and of the catalog's cluster, and, where that cluster has `pg_stat_statements`
 * loaded, the job claims the processes made.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { spawnServer } from '../../test/harness/server-process.ts';
import { closedLoop, untilQueryable } from './load.ts';
import { BUN, postmasterOnPort, processCpu, REPO_ROOT, snapshotCpu } from './server.ts';
import { asNdjson, generate } from './tsbs.ts';

const { values, positionals } = parseArgs({ options: { processes: { type: 'string', default: '2' } }, allowPositionals: true });
const checkout = resolve(positionals[0] ?? REPO_ROOT);
const PROCESSES = Number(values.processes);
const CLIENTS = 8;
const data = generate({ hosts: 1000, hours: 24, batch: 100, rows: 300_000, partitionKey: {}, cacheRoot: '/tmp/timestore-bench-data' });
const bodies = await Promise.all(data.files.map(async (file) => asNdjson(await Bun.file(file).text())));
const databaseUrl = await createBenchDatabase('processes');
const catalog = postgres(databaseUrl, { max: 1, onnotice: () => {} });
const postmaster = postmasterOnPort(Number(new URL(databaseUrl).port));
// Counts statements only where the cluster loaded the library (shared_preload_libraries).
await catalog`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`.catch(() => {});
/** Claims so far, by every process, or null where pg_stat_statements is not loaded. */
const claims = async (): Promise<number | null> => {
  try {
    const [row] = await catalog<{ calls: string | null }[]>`SELECT sum(calls) AS calls FROM pg_stat_statements WHERE query LIKE '%SKIP LOCKED%'`;
    return Number(row?.calls ?? 0);
  } catch {
    return null;
  }
};
const root = mkdtempSync(join(tmpdir(), 'timestore-bench-processes-'));
const servers = await Promise.all(
  Array.from({ length: PROCESSES }, () =>
    spawnServer({
      command: [BUN, join(checkout, 'src/main.ts'), 'serve'],
      cwd: checkout,
      storageRoot: root,
      env: { TIMESTORE_DATABASE_URL: databaseUrl, TIMESTORE_LOG_LEVEL: 'warn', TIMESTORE_WORKER_THREADS: '' },
      readyTimeoutMs: 120_000,
    }),
  ),
);
try {
  const first = await fetch(`${servers[0]!.url}/datasets/tsbs/ingest?wait=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Bun.file(data.files[0]!) });
  if (first.status !== 201) throw new Error(`the first batch answered ${first.status}: ${await first.text()}`);
  const serversCpu = () => servers.reduce((sum, s) => sum + processCpu(s.proc.pid), 0);
  const before = { servers: serversCpu(), catalog: snapshotCpu(process.pid, postmaster).postgres, claims: await claims() };
  const started = performance.now();
  // The first body created the dataset: the clients send the others.
  await closedLoop(CLIENTS, bodies.length - 1, async (i) => {
    const res = await fetch(`${servers[i % PROCESSES]!.url}/datasets/tsbs/ingest`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: bodies[i + 1]!,
    });
    if (res.status !== 202) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
  });
  const acknowledged = (performance.now() - started) / 1000;
  await untilQueryable(servers[0]!.url, 'tsbs', data.batchRows.reduce((a, b) => a + b, 0));
  const queryable = (performance.now() - started) / 1000;
  const batches = bodies.length - 1;
  const perBatch = (seconds: number) => ((seconds * 1000) / batches).toFixed(2);
  const claimed = await claims();
  console.log(
    `${checkout}: ${batches} batches of 100 rows, ${CLIENTS} clients, ${PROCESSES} processes on one catalog: ` +
      `${Math.round(batches / acknowledged)}/s acknowledged, ${Math.round(batches / queryable)}/s queryable, CPU ms a batch: ` +
      `servers ${perBatch(serversCpu() - before.servers)}, catalog ${perBatch(snapshotCpu(process.pid, postmaster).postgres - before.catalog)}` +
      (claimed !== null && before.claims !== null ? `, ${claimed - before.claims} claims` : ''),
  );
} finally {
  await Promise.all(servers.map((s) => s.stop()));
  await catalog.end();
  rmSync(root, { recursive: true, force: true });
}
process.exit(0);
