/**
 * The floor under the small-batch target: what a server that does only the least a durable
 * acknowledgement needs costs on this machine, under the load of `run.ts --batch 100 --clients 8`
 * and `small-batches-embedded.ts` (the same 2,999 NDJSON batches of 100 TSBS rows from 8
 * closed-loop clients, made by the same `fetch` calls).
 *
 *   node_modules/.bin/bun bench/ingest/small-batches-floor.ts [--catalog] [--batches N]
 *
 * The floor server is a bare `Bun.serve` in a process of its own: it reads the body, appends it to
 * one log file with group commit (the bodies that arrive while one `writev` + `fdatasync` runs go
 * in the next), and answers 202 once its body is durable. It checks no row, records no schema and
 * writes no Parquet. With `--catalog` it also inserts one row per body into a PostgreSQL table
 * (the bench's cluster, as run.ts uses), the rows of concurrent bodies in one INSERT, before the
 * 202: timestore's job row, without its indexes, claims or writes. Prints batches per second
 * acknowledged and the CPU per batch of the server, PostgreSQL and the clients.
 */
import { open } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { closedLoop } from './load.ts';
import { BUN, cpuBetween, postmasterOnPort, round, snapshotCpu } from './server.ts';
import { asNdjson, generate } from './tsbs.ts';

const { values: opts } = parseArgs({
  options: {
    catalog: { type: 'boolean', default: false },
    batches: { type: 'string', default: '2999' },
    serve: { type: 'string' },
    'database-url': { type: 'string' },
  },
  strict: true,
});

if (opts.serve !== undefined) await serve(opts.serve, opts['database-url']);
else await drive();

/** The floor server: durable append with group commit (and one catalog row per body), then 202. */
async function serve(logDir: string, databaseUrl: string | undefined): Promise<void> {
  const log = await open(join(logDir, 'staged.ndjson'), 'a');
  const sql = databaseUrl ? postgres(databaseUrl, { max: 4, onnotice: () => {} }) : null;
  if (sql) await sql`CREATE TABLE IF NOT EXISTS floor_jobs (id uuid PRIMARY KEY, payload jsonb NOT NULL)`;

  /** One group commit: bodies waiting for the next write, and whether one is in flight. */
  const group = <T>(flush: (items: T[]) => Promise<void>) => {
    let waiting: Array<{ item: T; done: () => void; failed: (err: unknown) => void }> = [];
    let inFlight = false;
    const next = (): void => {
      if (inFlight || waiting.length === 0) return;
      const members = waiting;
      waiting = [];
      inFlight = true;
      flush(members.map((m) => m.item))
        .then(() => members.forEach((m) => m.done()), (err) => members.forEach((m) => m.failed(err)))
        .finally(() => {
          inFlight = false;
          next();
        });
    };
    return (item: T) =>
      new Promise<void>((done, failed) => {
        waiting.push({ item, done, failed });
        next();
      });
  };
  const append = group<Uint8Array>(async (bodies) => {
    await log.writev(bodies);
    await log.datasync();
  });
  const record = group<{ id: string; payload: unknown }>(async (rows) => {
    await sql!`INSERT INTO floor_jobs SELECT * FROM jsonb_to_recordset(${sql!.json(rows as never)}::jsonb) AS r(id uuid, payload jsonb)`;
  });

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const body = await req.bytes();
      await append(body);
      const id = crypto.randomUUID();
      if (sql) await record({ id, payload: { bytes: body.byteLength } });
      return Response.json({ jobId: id }, { status: 202 });
    },
  });
  console.log(server.url.href);
}

async function drive(): Promise<void> {
  const CLIENTS = 8;
  const count = Number(opts.batches);
  const data = generate({ hosts: 1000, hours: 24, batch: 100, rows: (count + 1) * 100, partitionKey: {}, cacheRoot: '/tmp/timestore-bench-data' });
  const bodies = await Promise.all(data.files.slice(1).map(async (file) => asNdjson(await Bun.file(file).text())));
  const logDir = mkdtempSync(join(tmpdir(), 'timestore-bench-floor-'));
  const databaseUrl = opts.catalog ? await createBenchDatabase('floor') : undefined;
  const server = Bun.spawn([BUN, import.meta.path, '--serve', logDir, ...(databaseUrl ? ['--database-url', databaseUrl] : [])], {
    stdout: 'pipe',
    stderr: 'inherit',
  });
  try {
    const reader = server.stdout.getReader();
    const { value } = await reader.read();
    const url = new TextDecoder().decode(value).trim().replace(/\/$/, '');
    const postmaster = databaseUrl ? postmasterOnPort(Number(new URL(databaseUrl).port)) : null;
    const before = snapshotCpu(server.pid, postmaster);
    await closedLoop(CLIENTS, bodies.length, async (i) => {
      const res = await fetch(`${url}/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: bodies[i]! });
      if (res.status !== 202) throw new Error(`the floor server answered ${res.status}: ${await res.text()}`);
      await res.arrayBuffer();
    });
    const cpu = cpuBetween(before, snapshotCpu(server.pid, postmaster), availableParallelism());
    const perBatch = (s: number) => round((s / bodies.length) * 1000, 2);
    console.log(
      `floor${databaseUrl ? ' + catalog row' : ''}: ${bodies.length} batches of 100 rows, ${CLIENTS} clients: ` +
        `${Math.round(bodies.length / cpu.wallSeconds)} batches/s acknowledged; CPU ms per batch: server ${perBatch(cpu.serverTotal)}, ` +
        `PostgreSQL ${perBatch(cpu.postgres)}, clients ${perBatch(cpu.benchClient)}, other ${perBatch(cpu.otherProcesses)}; ` +
        `machine ${Math.round((cpu.machineBusy / cpu.available) * 100)} % busy`,
    );
  } finally {
    server.kill();
    await server.exited;
    rmSync(logDir, { recursive: true, force: true });
  }
}
