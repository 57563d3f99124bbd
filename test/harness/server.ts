/**
 * timestore running in this test process through the real composition root
 * (startServer), on a fresh database of the harness PostgreSQL, a temporary
 * storage root and a free port. Environment overrides select S3, inline mode
 * and the like, exactly as a user's variables would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Config, loadConfig } from '../../src/config.ts';
import type { Logger } from '../../src/log.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { silentLog } from './catalog.ts';
import { freePortAsync } from './ports.ts';
import { createTestDatabase } from './postgres.ts';

export interface TestServer {
  url: string;
  config: Config;
  server: RunningServer;
  stop(): Promise<void>;
}

/** `log`: where the server logs (default: nowhere). */
export async function startTestServer(env: Record<string, string> = {}, options: { log?: Logger } = {}): Promise<TestServer> {
  const storageRoot = mkdtempSync(join(tmpdir(), 'timestore-server-'));
  const config = loadConfig({
    TIMESTORE_DATABASE_URL: await createTestDatabase('server'),
    TIMESTORE_STORAGE_ROOT: storageRoot,
    TIMESTORE_PORT: String(await freePortAsync()),
    TIMESTORE_WORKER_THREADS: '1',
    ...env,
  });
  const server = await startServer(config, options.log ?? silentLog);
  return {
    url: server.url,
    config,
    server,
    async stop() {
      await server.shutdown('test finished');
      rmSync(storageRoot, { recursive: true, force: true });
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
