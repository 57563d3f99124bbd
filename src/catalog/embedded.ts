/**
 * The embedded catalog: PostgreSQL (PGlite, compiled to WebAssembly) in this
 * process, served over the wire protocol on a loopback port so the same
 * postgres.js code serves both modes.
 *
 * PGlite is one backend behind one session, which shapes how it is used:
 * postgres.js gets exactly one connection (several would interleave messages),
 * advisory locks and LISTEN/NOTIFY do nothing (the caller wakes workers
 * in-process), and nothing stops a second process from opening the same data
 * directory, so a lock file does.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { errors } from '../model/errors.ts';
import { acquireLockFile, type LockFile } from './lock-file.ts';
import { pgliteAssets } from './pglite-assets.ts';

export interface EmbeddedCatalogServer {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

export async function startEmbeddedCatalog(storageRoot: string): Promise<EmbeddedCatalogServer> {
  const dataDir = join(storageRoot, 'catalog');
  mkdirSync(dataDir, { recursive: true });
  const lock: LockFile = acquireLockFile(join(storageRoot, 'timestore.lock'), (holder) => errors.storage_root_in_use(storageRoot, holder));
  let db: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  try {
    const options: PGliteOptions = { dataDir, ...(await pgliteAssets()) };
    db = await PGlite.create(options);
    // Several sockets may connect (a pool that reconnects, a migration connection), but
    // postgres.js is always given max: 1, so queries never interleave across connections.
    server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 16 });
    await server.start();
  } catch (err) {
    await server?.stop().catch(() => {});
    await db?.close().catch(() => {});
    lock.release();
    throw err;
  }
  const started = server;
  const database = db;
  return {
    url: `postgres://postgres@${started.getServerConn()}/postgres`,
    dataDir,
    async stop() {
      await started.stop();
      await database.close();
      lock.release();
    },
  };
}
