/**
 * A throwaway PostgreSQL for the test run: one cluster, started on first use
 * (so unit tests that never touch it pay nothing) and stopped after the last
 * test file (teardown.ts) or when a script that started one exits; each test
 * file asks for its own database. Benchmarks get theirs from a cluster of their
 * own with stock durability (createBenchDatabase).
 *
 * TIMESTORE_TEST_DATABASE_URL points the suite at an existing server instead.
 * PostgreSQL refuses to run as root, so as root the cluster is owned by and run
 * as the `postgres` user.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { freePort } from './ports.ts';

export interface Cluster {
  /** URL of the maintenance database; test databases are created from it. */
  adminUrl: string;
  /** Stops the server (immediate mode, like a crash) and keeps its data directory. */
  halt(): void;
  /** Starts the stopped server again on the same port and data directory. */
  resume(): void;
  /** Stops the server and removes its directory. */
  stop(): void;
}

let cluster: Cluster | undefined;
/** The benchmarks' cluster (createBenchDatabase). */
let stockCluster: Cluster | undefined;
/** The stop of every cluster started and not yet stopped. */
const running = new Set<() => void>();

/**
 * Stops every cluster still running. Bun's test runner ends without the process's `exit` event,
 * so the test run calls this after its last file (teardown.ts); a script gets `exit`.
 */
export function stopClusters(): void {
  for (const stop of running) stop();
  cluster = undefined;
  stockCluster = undefined;
}

function pgBin(name: string): string {
  for (const dir of ['/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin']) {
    if (existsSync(join(dir, name))) return join(dir, name);
  }
  return name; // on PATH
}

/**
 * How much of PostgreSQL's durability a cluster keeps:
 * - `none` (the tests' shared cluster): no fsync and no synchronous commit, for speed;
 * - `commits`: synchronous_commit on, for tests whose `halt` is a crash: without it a commit
 *   already acknowledged to timestore (and so a batch acknowledged to its client) could be lost
 *   with it; the machine does not crash, so fsync stays off;
 * - `stock`: PostgreSQL's defaults (fsync, synchronous_commit and full-page writes on), as a
 *   deployment runs: what benchmarks measure against.
 */
export type Durability = 'none' | 'commits' | 'stock';

const DURABILITY_SETTINGS: Record<Durability, string> = {
  none: '-c fsync=off -c synchronous_commit=off -c full_page_writes=off',
  commits: '-c fsync=off -c synchronous_commit=on -c full_page_writes=off',
  stock: '',
};

/**
 * A cluster of its own, for tests that stop and start PostgreSQL under a running timestore
 * (the shared one serves every other test file), or for benchmarks. Stopped when the process exits.
 */
export function startCluster(options: { durability?: Durability } = {}): Cluster {
  const asRoot = userInfo().uid === 0;
  const dir = mkdtempSync(join(tmpdir(), 'timestore-pg-'));
  chmodSync(dir, 0o755);
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
  }
  const run = (bin: string, args: string[]) => {
    const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', pgBin(bin), ...args]] : [pgBin(bin), args];
    const result = spawnSync(cmd as string, argv as string[], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${bin} failed (${result.status}): ${result.stderr || result.stdout}`);
  };
  const data = join(dir, 'data');
  const port = freePort();
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const resume = () =>
    run('pg_ctl', [
      '-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '60',
      '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 ${DURABILITY_SETTINGS[options.durability ?? 'none']} -c max_connections=300`,
      'start',
    ]);
  const halt = () => run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
  resume();
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    running.delete(stop);
    try {
      if (existsSync(join(data, 'postmaster.pid'))) halt();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  running.add(stop);
  process.once('exit', stop);
  return { adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`, halt, resume, stop };
}

function sharedCluster(): Cluster {
  const external = process.env.TIMESTORE_TEST_DATABASE_URL;
  if (!external) return startCluster();
  const unsupported = () => {
    throw new Error('TIMESTORE_TEST_DATABASE_URL names a server the tests do not control');
  };
  return { adminUrl: external, halt: unsupported, resume: unsupported, stop() {} };
}

/**
 * A fresh database on a cluster with PostgreSQL's stock durability, started on first use: a
 * benchmark's catalog, so that a commit the server waits for is on disk as in a deployment.
 * TIMESTORE_TEST_DATABASE_URL points it at an existing server instead, as it does the tests.
 */
export function createBenchDatabase(prefix: string): Promise<string> {
  if (process.env.TIMESTORE_TEST_DATABASE_URL) return createTestDatabase(prefix);
  return createTestDatabase(prefix, (stockCluster ??= startCluster({ durability: 'stock' })));
}

/** A fresh, empty database for one test file; returns its URL. */
export async function createTestDatabase(prefix = 'test', on?: Cluster): Promise<string> {
  const server = on ?? (cluster ??= sharedCluster());
  const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`.toLowerCase();
  const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE "${name}" TEMPLATE template0`);
  } finally {
    await admin.end();
  }
  const url = new URL(server.adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
