/**
 * `timestore serve`: opens the catalog, applies migrations, registers the
 * configured storage targets, starts the worker pool and the HTTP server, and
 * shuts all of it down in order on SIGTERM/SIGINT.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { openCatalog, type Catalog } from './catalog/connection.ts';
import { upsertStorageTarget } from './catalog/storage-targets.ts';
import { type Config, describeConfig } from './config.ts';
import { WorkerPool } from './engine/pool.ts';
import { createApp } from './http/app.ts';
import type { Logger } from './log.ts';
import { Readiness } from './readiness.ts';
import { VERSION } from './version.ts';

export interface RunningServer {
  url: string;
  catalog: Catalog;
  pool: WorkerPool;
  /** Drains and stops everything; safe to call more than once. */
  shutdown(reason: string): Promise<void>;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  log.info({ version: VERSION, config: describeConfig(config) }, 'timestore starting');
  mkdirSync(config.storageRoot, { recursive: true });

  const catalog = await openCatalog({
    databaseUrl: config.databaseUrl,
    schema: config.pgSchema,
    storageRoot: config.storageRoot,
    log,
  });
  let pool: WorkerPool | undefined;
  try {
    await catalog.migrate();
    await registerConfiguredTargets(catalog.sql, config, log);
    pool = await WorkerPool.start(config.workerThreads, join(config.storageRoot, '.runtime'));
    const ping = await pool.ping();
    log.info({ threads: pool.threads, duckdb: ping.duckdbVersion }, 'worker pool ready');
  } catch (err) {
    await pool?.close().catch(() => {});
    await catalog.close().catch(() => {});
    throw err;
  }
  const workers = pool;

  const readiness = new Readiness({ catalog, pool: workers, storageRoot: config.storageRoot });
  const app = createApp({ log, readiness }).listen({ hostname: config.host, port: config.port });
  const url = `http://${config.host}:${app.server?.port ?? config.port}`;
  log.info({ url, docs: `${url}/docs` }, 'timestore listening');

  let stopping: Promise<void> | undefined;
  return {
    url,
    catalog,
    pool: workers,
    shutdown(reason) {
      stopping ??= (async () => {
        log.info({ reason }, 'shutdown: /ready now answers 503; finishing in-flight requests');
        readiness.startDraining();
        // Stop accepting connections and let in-flight requests finish.
        await app.stop(false);
        await workers.close();
        await catalog.close();
        log.info('shutdown complete');
      })();
      return stopping;
    },
  };
}

/**
 * The targets the configuration describes: `local` (partitions under the
 * storage root) always, and `s3` when the driver is s3 or any S3 endpoint,
 * region or key is set. Credentials stay in the environment, never in the catalog.
 */
async function registerConfiguredTargets(sql: Sql, config: Config, log: Logger): Promise<void> {
  const local = await upsertStorageTarget(sql, {
    name: 'local',
    kind: 'local',
    description: 'Local disk under TIMESTORE_STORAGE_ROOT',
    config: { root: join(config.storageRoot, 'partitions') },
  });
  const targets = [{ name: local.name, id: local.id, kind: local.kind }];
  const { s3 } = config;
  if (config.storageDriver === 's3' || s3.endpoint || s3.region || s3.accessKeyId) {
    const remote = await upsertStorageTarget(sql, {
      name: 's3',
      kind: 's3',
      description: 'S3 bucket from TIMESTORE_S3_*',
      config: { bucket: s3.bucket, prefix: '', endpoint: s3.endpoint, region: s3.region, forcePathStyle: s3.forcePathStyle },
    });
    targets.push({ name: remote.name, id: remote.id, kind: remote.kind });
  }
  log.info({ targets, default: config.storageDriver }, 'storage targets registered');
}
