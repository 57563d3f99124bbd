/**
 * Small batches on the embedded catalog: 100-row NDJSON batches of TSBS rows from 8 closed-loop
 * clients to a server that runs with no TIMESTORE_DATABASE_URL (its catalog embedded under its
 * storage root, as `npm start` runs it).
 *
 *   node_modules/.bin/bun bench/ingest/small-batches-embedded.ts [--warm-batches N] [--batches N] [checkout]
 *
 * `checkout`: the tree whose src/main.ts serves (default: this one; e.g. a `git worktree` of
 * another commit, with node_modules linked, to compare two commits). The first batch goes as a
 * JSON document with `?wait=true` (it creates the dataset), then 2,999 batches as NDJSON. Prints
 * batches per second acknowledged and queryable (a count query, polled every 25 ms, sees every row),
 * and the server's CPU per batch until then (its catalog's included: PGlite runs in the server).
 *
 * `--batches N` measures N NDJSON batches (the bodies cycled) instead of 2,999: the last write's
 * wait (the runner's coalescing budget, about half a second) is then a smaller share of the run.
 *
 * `--warm-batches N` first sends N of the bodies (cycled) to another dataset with the same clients
 * and waits until they are queryable, as run.ts does: the run then measures a process that has been
 * up a while. Without it, it measures a process's first requests, while the compilers still work on
 * the server's code and PGlite's WebAssembly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { spawnServer } from '../../test/harness/server-process.ts';
import { closedLoop, untilQueryable } from './load.ts';
import { BUN, processCpu, REPO_ROOT } from './server.ts';
import { asNdjson, generate } from './tsbs.ts';

const { values: options, positionals } = parseArgs({ args: process.argv.slice(2), options: { 'warm-batches': { type: 'string', default: '0' }, batches: { type: 'string' } }, allowPositionals: true });
const warmBatches = Number(options['warm-batches']);
const checkout = resolve(positionals[0] ?? REPO_ROOT);
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
/** Sends `count` NDJSON bodies (cycled, from the second) to dataset `slug` from the clients. */
const send = (slug: string, count: number) =>
  closedLoop(CLIENTS, count, async (i) => {
    const res = await fetch(`${server.url}/datasets/${slug}/ingest`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: bodies[1 + (i % (bodies.length - 1))]!,
    });
    if (res.status !== 202) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
  });
/** Creates dataset `slug` with the first batch (a JSON document, which declares the schema). */
const create = async (slug: string) => {
  const first = await fetch(`${server.url}/datasets/${slug}/ingest?wait=true`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Bun.file(data.files[0]!) });
  if (first.status !== 201) throw new Error(`the first batch answered ${first.status}: ${await first.text()}`);
};
const rowsOf = (count: number) => Array.from({ length: count }, (_, i) => data.batchRows[1 + (i % (bodies.length - 1))]!).reduce((a, b) => a + b, 0);
try {
  if (warmBatches > 0) {
    await create('warmup');
    await send('warmup', warmBatches);
    await untilQueryable(server.url, 'warmup', data.batchRows[0]! + rowsOf(warmBatches));
  }
  await create('tsbs');
  const cpuBefore = processCpu(server.proc.pid);
  const started = performance.now();
  // The first body created the dataset: the clients send the others.
  const batches = options.batches ? Number(options.batches) : bodies.length - 1;
  await send('tsbs', batches);
  const acknowledged = (performance.now() - started) / 1000;
  await untilQueryable(server.url, 'tsbs', data.batchRows[0]! + rowsOf(batches));
  const queryable = (performance.now() - started) / 1000;
  const cpuMsPerBatch = ((processCpu(server.proc.pid) - cpuBefore) * 1000) / batches;
  console.log(
    `${checkout}: ${batches} batches of 100 rows, ${CLIENTS} clients, embedded catalog${warmBatches > 0 ? `, after ${warmBatches} warm-up batches` : ''}: ${Math.round(batches / acknowledged)}/s acknowledged, ` +
      `${Math.round(batches / queryable)}/s queryable, server CPU ${cpuMsPerBatch.toFixed(2)} ms a batch`,
  );
} finally {
  await server.stop();
  rmSync(root, { recursive: true, force: true });
}
process.exit(0);
