/**
 * timestore for the end-to-end suites, on a fresh database of the harness PostgreSQL, a temporary
 * storage root and a free port. Environment overrides select S3, inline mode and the like,
 * exactly as a user's variables would.
 *
 * By default it runs in this test process through the real composition root (startServer). With
 * TIMESTORE_TEST_SERVER=binary it runs dist/timestore as a separate process instead (with
 * TIMESTORE_TEST_SERVER=<path>, that executable), so the suites that only speak HTTP and read
 * the catalog prove the shipped file does what the source tree does. Tests that look inside the
 * process (`ts.server`, its log) are skipped against a separate process: `test.skipIf(againstBinary)`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { openCatalog } from '../../src/catalog/connection.ts';
import { type Config, loadConfig } from '../../src/config.ts';
import type { Logger } from '../../src/log.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { silentLog } from './catalog.ts';
import { freePortAsync } from './ports.ts';
import { createTestDatabase } from './postgres.ts';
import { REPO_ROOT, spawnServer } from './server-process.ts';

/** The executable the suites run against, or null to run the server in this process. */
export const TEST_BINARY: string | null = (() => {
  const chosen = process.env.TIMESTORE_TEST_SERVER;
  if (!chosen || chosen === 'source') return null;
  return chosen === 'binary' ? join(REPO_ROOT, 'dist/timestore') : chosen;
})();

/** True when the suites run against an executable: tests of the server's internals skip then. */
export const againstBinary = TEST_BINARY !== null;

export interface TestServer {
  url: string;
  config: Config;
  /** The catalog, as the server sees it (its schema on the search path). */
  sql: Sql;
  /** The server's internals; only when it runs in this process (see `againstBinary`). */
  server: RunningServer;
  /** The process the server runs in (this one, or the binary's). */
  pid: number;
  /** Everything a separate process printed so far ('' in process). */
  output(): string;
  stop(): Promise<void>;
}

/** `log`: where an in-process server logs (default: nowhere). */
export async function startTestServer(env: Record<string, string> = {}, options: { log?: Logger } = {}): Promise<TestServer> {
  const storageRoot = mkdtempSync(join(tmpdir(), 'timestore-server-'));
  const variables = {
    TIMESTORE_DATABASE_URL: await createTestDatabase('server'),
    TIMESTORE_STORAGE_ROOT: storageRoot,
    TIMESTORE_PORT: String(await freePortAsync()),
    TIMESTORE_WORKER_THREADS: '1',
    ...env,
  };
  const config = loadConfig(variables);
  if (TEST_BINARY) return startProcess(config, variables, storageRoot);

  const server = await startServer(config, options.log ?? silentLog);
  return {
    url: server.url,
    config,
    sql: server.catalog.sql,
    server,
    pid: process.pid,
    output: () => '',
    async stop() {
      await server.shutdown('test finished');
      rmSync(storageRoot, { recursive: true, force: true });
    },
  };
}

async function startProcess(config: Config, variables: Record<string, string>, storageRoot: string): Promise<TestServer> {
  const proc = await spawnServer({ command: [TEST_BINARY as string], env: variables, storageRoot, port: config.port, readyTimeoutMs: 90_000 });
  // The server has migrated it; this handle reads it the way the server does (camelCase columns).
  const catalog = await openCatalog({ databaseUrl: config.databaseUrl, schema: config.pgSchema, storageRoot: storageRoot, log: silentLog, maxConnections: 4 });
  return {
    url: proc.url,
    config,
    sql: catalog.sql,
    get server(): RunningServer {
      throw new Error('this test reads the server\'s internals: skip it when againstBinary (the server is a separate process)');
    },
    pid: proc.proc.pid,
    output: proc.output,
    async stop() {
      await catalog.close();
      const code = await proc.stop('SIGTERM');
      rmSync(storageRoot, { recursive: true, force: true });
      if (code !== 0) throw new Error(`timestore exited with ${code}:\n${proc.output().slice(-4000)}`);
    },
  };
}

/** POSTs JSON and returns the status and parsed body. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

export interface Answer {
  status: number;
  body: any;
}

/** POSTs an ingest body of any content type to a dataset; `query` is the query string without `?`. */
export async function postIngest(
  url: string,
  slug: string,
  contentType: string,
  body: string | Uint8Array,
  query = '',
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(`${url}/datasets/${slug}/ingest${query ? `?${query}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': contentType, ...headers },
    body,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
