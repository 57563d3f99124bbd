/**
 * The ingested server state bench/query queries, built once and cached under /tmp.
 *
 * A state is a storage root (the Parquet partitions, `file://` URIs into it recorded in the
 * catalog) plus a `pg_dump` of the catalog database, under `<cache root>/<key>/`, keyed by the
 * data parameters. Building it: a throwaway PostgreSQL from the test harness
 * (test/harness/postgres.ts), a `bun src/main.ts serve` on that storage root (spawned by
 * test/harness/server-process.ts), every dataset POSTed through `POST /datasets/:slug/ingest` by
 * `clients` closed-loop clients, the job table polled until every job has succeeded, the catalog
 * checked (row counts), then dumped. Each batch carries the idempotency key `<slug>-<batch>`, a server
 * that goes away (the machine is shared) is restarted on the same catalog and root and the batch
 * sent again, and the catalog is dumped after each dataset, so an interrupted build resumes at the
 * dataset it was on. Using it: a fresh database in a fresh harness cluster, the dump
 * restored into it, and a server started on the same storage root.
 *
 * Datasets (TSBS cpu-only rows from bench/ingest/tsbs.ts, 5,000-row batches by default):
 * - `cpu`: `hosts` × `hours`, the TSBS query shapes run on it;
 * - `growth1d` and `growth30d`: `growthHosts` × 1 day and × `growthDays` days (the first day of
 *   both is the same rows), for the one-hour query as the dataset grows.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres, { type Sql } from 'postgres';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { spawnServer, type ServerProcess } from '../../test/harness/server-process.ts';
import { BUN } from '../ingest/server.ts';
import type { Source } from '../ingest/source.ts';
import { generate } from '../ingest/tsbs.ts';

export interface DatasetSpec {
  slug: string;
  hosts: number;
  hours: number;
  /** Delete the generated request bodies once ingested (they can be generated again). */
  dropBodies: boolean;
}

export interface IngestedDataset {
  slug: string;
  hosts: number;
  hours: number;
  rows: number;
  batches: number;
  ingestSeconds: number;
  rowsPerSecond: number;
  partitions: number;
  bytes: number;
}

export interface StateInfo {
  key: string;
  createdAt: string;
  /** The timestore source that ingested the data (its writer decided the file layout). */
  ingestedBy: string;
  batch: number;
  clients: number;
  datasets: IngestedDataset[];
}

export interface State {
  dir: string;
  storageRoot: string;
  dump: string;
  info: StateInfo;
  reused: boolean;
}

export interface StateOptions {
  cacheRoot: string;
  dataDir: string;
  datasets: DatasetSpec[];
  batch: number;
  clients: number;
  reingest: boolean;
  source: Source;
  serverEnv: Record<string, string>;
  log: (message: string) => void;
}

export const SCHEMA_NAME = 'timestore';

function pgBin(name: string): string {
  for (const dir of ['/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin']) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  return name;
}

export function stateKey(datasets: DatasetSpec[], batch: number): string {
  return `${datasets.map((d) => `${d.slug}-h${d.hosts}-t${d.hours}`).join('_')}_b${batch}`;
}

/** Starts a timestore server for the benchmark: loopback, warn logs, worker threads as deployed. */
export async function startQueryServer(o: {
  databaseUrl: string;
  storageRoot: string;
  source: Source;
  env: Record<string, string>;
}): Promise<ServerProcess> {
  return spawnServer({
    command: [BUN, join(o.source.root, 'src/main.ts'), 'serve'],
    cwd: o.source.root,
    storageRoot: o.storageRoot,
    readyTimeoutMs: 120_000,
    env: {
      TIMESTORE_DATABASE_URL: o.databaseUrl,
      TIMESTORE_LOG_LEVEL: 'warn',
      TIMESTORE_WORKER_THREADS: '', // blank is unset: one DuckDB worker per core, as deployed
      // No compaction, retention or garbage collection inside serve (versions that have them):
      // they would rewrite the cached files under the benchmark and delete the ones it restores.
      TIMESTORE_LIFECYCLE_ENABLED: 'false',
      ...o.env,
    },
  });
}

export async function ensureState(o: StateOptions): Promise<State> {
  const key = stateKey(o.datasets, o.batch);
  const dir = join(o.cacheRoot, key);
  const storageRoot = join(dir, 'root');
  const dump = join(dir, 'catalog.dump');
  const infoPath = join(dir, 'state.json');
  // After each dataset: the catalog so far and what it holds, so an interrupted build resumes there.
  const partialDump = join(dir, 'catalog.partial.dump');
  const progressPath = join(dir, 'progress.json');
  if (!o.reingest && existsSync(infoPath) && existsSync(dump)) {
    const info = JSON.parse(readFileSync(infoPath, 'utf8')) as StateInfo;
    o.log(`state: reusing ${dir} (ingested ${info.createdAt} by ${info.ingestedBy}; --reingest to rebuild)`);
    return { dir, storageRoot, dump, info, reused: true };
  }

  const datasets: IngestedDataset[] = [];
  const databaseUrl = await createBenchDatabase('qstate');
  if (!o.reingest && existsSync(progressPath) && existsSync(partialDump)) {
    datasets.push(...(JSON.parse(readFileSync(progressPath, 'utf8')) as IngestedDataset[]));
    execFileSync(pgBin('pg_restore'), ['--no-owner', '-d', databaseUrl, partialDump]);
    // Files of a dataset whose ingest was interrupted are in no catalog: start it again.
    for (const spec of o.datasets) {
      if (!datasets.some((d) => d.slug === spec.slug)) rmSync(join(storageRoot, 'partitions/datasets', spec.slug), { recursive: true, force: true });
    }
    o.log(`state: resuming ${dir} after ${datasets.map((d) => d.slug).join(', ')}`);
  } else {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(storageRoot, { recursive: true });
  }

  const start = () => startQueryServer({ databaseUrl, storageRoot, source: o.source, env: o.serverEnv });
  let server = await start();
  const live = {
    url: () => server.url,
    // The machine is shared: a server that goes away (another session's kill, a crash) is
    // restarted on the same catalog and storage root; batches carry idempotency keys, so one
    // sent again is not stored twice, and acknowledged ones are queued jobs the new server runs.
    async restart(why: string) {
      const exit = server.proc.exitCode ?? server.proc.signalCode;
      o.log(`state: restarting the server (${why}; it exited ${exit}); its last output:\n${server.output().slice(-2000)}`);
      await server.stop('SIGKILL').catch(() => {});
      server = await start();
    },
  };
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  try {
    for (const spec of o.datasets) {
      if (datasets.some((d) => d.slug === spec.slug)) continue;
      const data = generate({ hosts: spec.hosts, hours: spec.hours, batch: o.batch, rows: Number.POSITIVE_INFINITY, partitionKey: {}, cacheRoot: o.dataDir, log: o.log });
      const started = performance.now();
      await ingest(live, spec.slug, data.files, o.clients, sql, o.log);
      const seconds = (performance.now() - started) / 1000;
      const [catalog] = await sql<{ partitions: number; rows: string; bytes: string }[]>`
        SELECT count(*)::int AS partitions, coalesce(sum(p.row_count), 0)::text AS rows, coalesce(sum(p.size_bytes), 0)::text AS bytes
        FROM ${sql(SCHEMA_NAME)}.partitions p JOIN ${sql(SCHEMA_NAME)}.datasets d ON d.id = p.dataset_id
        WHERE d.slug = ${spec.slug} AND p.removed_version IS NULL`;
      if (Number(catalog!.rows) !== data.totalRows) throw new Error(`${spec.slug}: the catalog holds ${catalog!.rows} rows, ${data.totalRows} were sent`);
      const entry: IngestedDataset = {
        slug: spec.slug,
        hosts: spec.hosts,
        hours: spec.hours,
        rows: data.totalRows,
        batches: data.files.length,
        ingestSeconds: Math.round(seconds * 10) / 10,
        rowsPerSecond: Math.round(data.totalRows / seconds),
        partitions: catalog!.partitions,
        bytes: Number(catalog!.bytes),
      };
      datasets.push(entry);
      o.log(`state: ${spec.slug}: ${entry.rows} rows in ${entry.ingestSeconds} s (${entry.rowsPerSecond} rows/s), ${entry.partitions} partitions, ${(entry.bytes / 2 ** 20).toFixed(0)} MiB`);
      execFileSync(pgBin('pg_dump'), ['-Fc', '--no-owner', '-d', databaseUrl, '-f', partialDump]);
      writeFileSync(progressPath, JSON.stringify(datasets));
      if (spec.dropBodies) {
        rmSync(data.dir, { recursive: true, force: true });
        o.log(`state: removed the generated bodies ${data.dir}`);
      }
    }
  } finally {
    await sql.end();
    const code = await server.stop();
    if (code !== 0) o.log(`state: server exited ${code}:\n${server.output().slice(-4000)}`);
  }
  execFileSync(pgBin('pg_dump'), ['-Fc', '--no-owner', '-d', databaseUrl, '-f', dump]);
  const info: StateInfo = { key, createdAt: new Date().toISOString(), ingestedBy: o.source.description, batch: o.batch, clients: o.clients, datasets };
  writeFileSync(infoPath, `${JSON.stringify(info, null, 2)}\n`);
  rmSync(partialDump, { force: true });
  rmSync(progressPath, { force: true });
  o.log(`state: saved under ${dir}`);
  return { dir, storageRoot, dump, info, reused: false };
}

/**
 * A fresh database in the harness cluster holding the state's catalog, analyzed (pg_restore leaves
 * no planner statistics, and until autovacuum gets to it the partition listing takes a plan that
 * reads every partition of the dataset: measured 2 ms instead of 0.6–0.8 on growth30d); returns
 * its URL.
 */
export async function restoreCatalog(state: State): Promise<string> {
  const databaseUrl = await createBenchDatabase('query');
  execFileSync(pgBin('pg_restore'), ['--no-owner', '-d', databaseUrl, state.dump]);
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await sql`ANALYZE`;
  } finally {
    await sql.end();
  }
  return databaseUrl;
}

interface LiveServer {
  url(): string;
  restart(why: string): Promise<void>;
}

/**
 * POSTs every body (read from disk as it goes) with `clients` clients, each with the idempotency
 * key `<slug>-<batch>`, then waits for every job. A refused connection restarts the server.
 */
async function ingest(server: LiveServer, slug: string, files: string[], clients: number, sql: Sql, log: (m: string) => void): Promise<void> {
  let next = 0;
  let acked = 0;
  let restarting: Promise<void> | null = null;
  const restart = (why: string) => (restarting ??= server.restart(why).finally(() => (restarting = null)));
  const client = async () => {
    for (;;) {
      const index = next++;
      if (index >= files.length) return;
      const body = readFileSync(files[index]!);
      for (let attempt = 0; ; attempt++) {
        if (restarting) await restarting;
        let res: Response;
        try {
          res = await fetch(`${server.url()}/datasets/${slug}/ingest`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': `${slug}-${index}` },
            body,
          });
        } catch (error) {
          if (attempt >= 5) throw error;
          await restart(`${slug} batch ${index}: ${(error as Error).message}`);
          continue;
        }
        const text = await res.text();
        if (res.status === 202 || res.status === 201) break;
        if (attempt >= 5 || res.status < 500) throw new Error(`${slug} batch ${index}: ${res.status} ${text.slice(0, 300)}`);
        await Bun.sleep(1000);
      }
      acked += 1;
    }
  };
  const progress = setInterval(() => log(`  ${slug}: ${acked}/${files.length} batches acknowledged`), 15_000);
  try {
    await Promise.all(Array.from({ length: clients }, client));
    for (let polls = 0; ; polls++) {
      const [jobs] = await sql<{ open: number; failed: number }[]>`
        SELECT count(*) FILTER (WHERE j.state IN ('queued', 'running'))::int AS open, count(*) FILTER (WHERE j.state = 'failed')::int AS failed
        FROM ${sql(SCHEMA_NAME)}.jobs j JOIN ${sql(SCHEMA_NAME)}.datasets d ON d.id = j.dataset_id WHERE d.slug = ${slug}`;
      if (jobs!.failed > 0) throw new Error(`${slug}: ${jobs!.failed} ingest jobs failed`);
      if (jobs!.open === 0) return;
      if (polls % 50 === 49) {
        const alive = await fetch(`${server.url()}/health`).then((r) => r.ok, () => false);
        if (!alive) await restart(`${slug}: /health does not answer with ${jobs!.open} jobs open`);
      }
      await Bun.sleep(100);
    }
  } finally {
    clearInterval(progress);
  }
}
