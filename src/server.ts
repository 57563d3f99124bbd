/**
 * `timestore serve`: opens the catalog, applies migrations, registers the
 * configured storage targets, starts the worker pool and the HTTP server, and
 * shuts all of it down in order on SIGTERM/SIGINT.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { datasetIamResolver } from './access.ts';
import { AdminService } from './admin/service.ts';
import { openCatalog, type Catalog } from './catalog/connection.ts';
import { upsertStorageTarget } from './catalog/storage-targets.ts';
import { type Config, describeConfig } from './config.ts';
import { WorkerPool } from './engine/pool.ts';
import { createApp } from './http/app.ts';
import { INGEST_JOB_KIND } from './ingest/accept.ts';
import { IngestService } from './ingest/service.ts';
import { QueryService } from './query/service.ts';
import { ingestJobHandler } from './ingest/write.ts';
import { wakeLocalRunners } from './jobs/local.ts';
import { JobRunner } from './jobs/runner.ts';
import type { Logger } from './log.ts';
import { Readiness } from './readiness.ts';
import { PartitionCache } from './storage/cache.ts';
import { StorageDrivers } from './storage/index.ts';
import { VERSION } from './version.ts';

export interface RunningServer {
  url: string;
  catalog: Catalog;
  pool: WorkerPool;
  runner: JobRunner;
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
  const drivers = new StorageDrivers(config.s3);
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

  const queue = config.ingest.queueName;
  const runner = new JobRunner({ catalog, log, concurrency: config.ingest.concurrency }).register(
    INGEST_JOB_KIND,
    ingestJobHandler({ sql: catalog.sql, drivers, pool: workers, scratchDir: join(config.storageRoot, 'tmp'), log }),
    { queue, coalesce: { maxJobs: 256, weightField: 'rowCount', maxWeight: 1_000_000 } },
  );
  await runner.start();
  const ingest = new IngestService({
    sql: catalog.sql,
    drivers,
    queue,
    defaultTargetName: config.storageDriver,
    idempotencyTtlSeconds: config.ingest.idempotencyTtlSeconds,
    maxBodyBytes: config.ingest.maxBodyBytes,
    inline: config.ingest.mode === 'inline',
    wake: () => wakeLocalRunners(queue),
    waitForJob: (id, ms) => runner.waitForJob(id, ms),
  });

  const cache = new PartitionCache({ ...config.queryCache, log });
  await cache.init();
  const query = new QueryService({
    sql: catalog.sql,
    drivers,
    cache,
    pool: workers,
    limits: { maxRows: config.query.maxRows, defaultRows: config.query.defaultRows, maxBuckets: config.query.maxBuckets },
    timeoutMs: config.query.timeoutMs,
    memoryLimitBytes: config.query.memoryLimitBytes,
  });

  const readiness = new Readiness({ catalog, pool: workers, storageRoot: config.storageRoot });
  const app = createApp({
    log,
    readiness,
    ingest,
    query,
    admin: new AdminService({ sql: catalog.sql, drivers, retentionDefaults: config.retention }),
    maxBodyBytes: config.ingest.maxBodyBytes,
    scopes: config.scopes,
    datasetIam: datasetIamResolver(catalog.sql),
  }).listen({
    hostname: config.host,
    port: config.port,
  });
  const url = `http://${config.host}:${app.server?.port ?? config.port}`;
  log.info({ url, docs: `${url}/docs`, ingestMode: config.ingest.mode }, 'timestore listening');

  let stopping: Promise<void> | undefined;
  return {
    url,
    catalog,
    pool: workers,
    runner,
    shutdown(reason) {
      stopping ??= (async () => {
        log.info({ reason }, 'shutdown: /ready now answers 503; finishing in-flight requests');
        readiness.startDraining();
        // Stop accepting connections and let in-flight requests finish.
        await app.stop(false);
        // Running jobs finish (or are handed back to the queue) before their pool and catalog go.
        await runner.stop(Math.max(1_000, config.shutdownTimeoutMs - 2_000));
        await workers.close();
        drivers.close();
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
