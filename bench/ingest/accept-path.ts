/**
 * What accepting a small batch costs, without its write: the load of `run.ts --batch 100 --clients
 * 8 --body ndjson` (2,999 NDJSON batches of 100 TSBS rows, 8 closed-loop clients) sent --passes
 * times to one server whose batches wait 60 s for their write (the coalescing wait and budgets
 * raised), so each pass sees the HTTP thread's check, the staging log and the job's INSERT, and
 * the runner's claims, and no DuckDB. A later pass measures a warm process (JIT done). Prints, per
 * pass, batches per second acknowledged, the POST's median, and the CPU per batch of each of the
 * server's threads, PostgreSQL (the bench's cluster, as run.ts uses) and the clients.
 *
 *   node_modules/.bin/bun bench/ingest/accept-path.ts [--passes 2] [--at <rev> [--patch a.patch,…]]
 *
 * With --patch, a proposed change or a part left out for the measurement (bench/ingest/patches/
 * `accept-*.patch`) is applied to a `git archive` of --at, never to the working tree.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { closedLoop, percentile } from './load.ts';
import { cpuBetween, postmasterOnPort, round, snapshotCpu, startServer } from './server.ts';
import { resolveSource } from './source.ts';
import { asNdjson, generate } from './tsbs.ts';

const { values: opts } = parseArgs({
  options: { passes: { type: 'string', default: '2' }, at: { type: 'string' }, patch: { type: 'string', default: '' } },
  strict: true,
});
const CLIENTS = 8;
const source = resolveSource(opts.at, opts.patch.split(',').filter(Boolean));
const data = generate({ hosts: 1000, hours: 24, batch: 100, rows: 300_000, partitionKey: {}, cacheRoot: '/tmp/timestore-bench-data' });
const bodies = await Promise.all(data.files.slice(1).map(async (file) => asNdjson(await Bun.file(file).text())));
const databaseUrl = await createBenchDatabase('accept');
const server = await startServer({
  databaseUrl,
  root: source.root,
  env: {
    TIMESTORE_INGEST_COALESCE_WAIT_MS: '60000',
    TIMESTORE_INGEST_COALESCE_ROWS: '1000000',
    TIMESTORE_INGEST_COALESCE_MAX_BYTES: String(2 ** 30),
  },
});
console.log(`timestore ${source.description}: ${bodies.length} NDJSON batches of 100 rows a pass, ${CLIENTS} clients, no write during the passes`);
try {
  const first = await fetch(`${server.url}/datasets/tsbs/ingest?wait=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Bun.file(data.files[0]!) });
  if (first.status !== 201) throw new Error(`the first batch answered ${first.status}: ${await first.text()}`);
  const postmaster = postmasterOnPort(Number(new URL(databaseUrl).port));
  for (let pass = 1; pass <= Number(opts.passes); pass++) {
    const before = snapshotCpu(server.pid, postmaster);
    const posts = await closedLoop(CLIENTS, bodies.length, async (i) => {
      const res = await fetch(`${server.url}/datasets/tsbs/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: bodies[i]! });
      if (res.status !== 202) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
      await res.arrayBuffer();
    });
    const cpu = cpuBetween(before, snapshotCpu(server.pid, postmaster), availableParallelism());
    const perBatch = (seconds: number) => round((seconds / bodies.length) * 1000, 2);
    const threads = cpu.serverThreads.filter((t) => t.seconds > 0).map((t) => `${t.name} ${perBatch(t.seconds)}`);
    console.log(
      `pass ${pass}: ${Math.round(bodies.length / cpu.wallSeconds)} batches/s acknowledged, POST p50 ${round(percentile(posts, 50), 1)} ms; ` +
        `CPU ms a batch: server ${perBatch(cpu.serverTotal)} (${threads.join(', ')}), PostgreSQL ${perBatch(cpu.postgres)}, ` +
        `clients ${perBatch(cpu.benchClient)}, other ${perBatch(cpu.otherProcesses)}; machine ${Math.round((cpu.machineBusy / cpu.available) * 100)} % busy`,
    );
  }
} finally {
  await server.stop();
}
