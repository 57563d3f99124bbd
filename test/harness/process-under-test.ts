/**
 * timestore as a separate process that a fault test can kill and start again on the same port,
 * storage root and catalog: from source, or the executable the suites run against
 * (TIMESTORE_TEST_SERVER, see server.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCatalog } from '../../src/catalog/connection.ts';
import type { Catalog } from '../../src/catalog/connection.ts';
import { silentLog } from './catalog.ts';
import { freePortAsync } from './ports.ts';
import { spawnServer, type ServerProcess } from './server-process.ts';
import { TEST_BINARY } from './server.ts';

export interface ProcessUnderTest {
  url: string;
  storageRoot: string;
  /** The catalog the process uses, read the way it reads it; null for the embedded one, which only the process may open. */
  catalog: Catalog | null;
  /** The running process (replaced by `restart`). */
  current(): ServerProcess;
  /** SIGKILL, then start again; resolves once the new process is ready. */
  killAndRestart(): Promise<void>;
  /** Everything every process printed. */
  output(): string;
  stop(): Promise<void>;
}

export async function startProcessUnderTest(env: Record<string, string>, options: { storageRoot?: string } = {}): Promise<ProcessUnderTest> {
  const storageRoot = options.storageRoot ?? mkdtempSync(join(tmpdir(), 'timestore-fault-'));
  const port = await freePortAsync();
  const variables = { TIMESTORE_STORAGE_ROOT: storageRoot, ...env };
  const start = () =>
    spawnServer({
      ...(TEST_BINARY ? { command: [TEST_BINARY] } : {}),
      env: variables,
      storageRoot,
      port,
      readyTimeoutMs: 90_000,
    });
  let proc = await start();
  let printed = '';
  const databaseUrl = env.TIMESTORE_DATABASE_URL;
  const catalog = databaseUrl ? await openCatalog({ databaseUrl, schema: 'timestore', storageRoot, log: silentLog, maxConnections: 2 }) : null;
  return {
    url: proc.url,
    storageRoot,
    catalog,
    current: () => proc,
    async killAndRestart() {
      await proc.stop('SIGKILL');
      printed += proc.output();
      proc = await start();
    },
    output: () => printed + proc.output(),
    async stop() {
      await catalog?.close();
      await proc.stop('SIGTERM');
      printed += proc.output();
      if (!options.storageRoot) rmSync(storageRoot, { recursive: true, force: true });
    },
  };
}
