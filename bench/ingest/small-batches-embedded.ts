/**
 * Small batches on the embedded catalog: 100-row NDJSON batches of TSBS rows from 8 closed-loop
 * clients to a server that runs with no TIMESTORE_DATABASE_URL (its catalog embedded under its
 * storage root, as `npm start` runs it).
 *
 *   node_modules/.bin/bun bench/ingest/small-batches-embedded.ts [checkout]
 *
 * `checkout`: the tree whose src/main.ts serves (default: this one; e.g. a `git worktree` of
 * another commit, with node_modules linked, to compare two commits). The first batch goes as a
 * JSON document with `?wait=true` (it creates the dataset), then 2,999 batches as NDJSON. Prints
 * batches per second acknowledged and queryable (a count query, polled every 25 ms, sees every row),
 * and the server's CPU per batch until then (its catalog's included: PGlite runs in the server).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnServer } from '../../test/harness/server-process.ts';
import { closedLoop, untilQueryable } from './load.ts';
import { BUN, processCpu, REPO_ROOT } from './server.ts';
import { asNdjson, generate } from './tsbs.ts';

const checkout = resolve(process.argv[2] ?? REPO_ROOT);
const CLIENTS = 8;
const data = generate({ hosts: 1000, hours: 24, batch: 100, rows: 300_000, partitionKey: {}, cacheRoot: '/tmp/timestore-bench-data' });
const bodies = await Promise.all(data.files.map(async (file) => asNdjson(await Bun.file(file).text())));
const root = mkdtempSync(join(tmpdir(), 'timestore-bench-embedded-'));
const server = await spawnServer({
  command: [BUN, join(checkout, 'src/main.ts'), 'serve'],
  cwd: checkout,
  storageRoot: root,
  env: { TIMESTORE_LOG_LEVEL: 'warn', TIMESTORE_WORKER_THREADS: '' },
  readyTimeoutMs: 120_000,
});
try {
  const first = await fetch(`${server.url}/datasets/tsbs/ingest?wait=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Bun.file(data.files[0]!) });
  if (first.status !== 201) throw new Error(`the first batch answered ${first.status}: ${await first.text()}`);
  const cpuBefore = processCpu(server.proc.pid);
  const started = performance.now();
  // The first body created the dataset: the clients send the others.
  await closedLoop(CLIENTS, bodies.length - 1, async (i) => {
    const res = await fetch(`${server.url}/datasets/tsbs/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: bodies[i + 1]! });
    if (res.status !== 202) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
  });
  const acknowledged = (performance.now() - started) / 1000;
  await untilQueryable(server.url, 'tsbs', data.batchRows.reduce((a, b) => a + b, 0));
  const queryable = (performance.now() - started) / 1000;
  const batches = bodies.length - 1;
  const cpuMsPerBatch = ((processCpu(server.proc.pid) - cpuBefore) * 1000) / batches;
  console.log(
    `${checkout}: ${batches} batches of 100 rows, ${CLIENTS} clients, embedded catalog: ${Math.round(batches / acknowledged)}/s acknowledged, ` +
      `${Math.round(batches / queryable)}/s queryable, server CPU ${cpuMsPerBatch.toFixed(2)} ms a batch`,
  );
} finally {
  await server.stop();
  rmSync(root, { recursive: true, force: true });
}
process.exit(0);
