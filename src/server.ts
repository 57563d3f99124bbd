/**
 * `timestore serve`: opens the catalog, applies migrations, registers the
 * configured storage targets, starts the worker pool and the HTTP server, and
 * shuts all of it down in order on SIGTERM/SIGINT.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { datasetAccessReader } from './access.ts';
import { AdminService } from './admin/service.ts';
import { Lifecycle } from './lifecycle/service.ts';
import { openCatalog, type Catalog } from './catalog/connection.ts';
import { CatalogCache } from './catalog/lookup-cache.ts';
import { referencedLocations } from './catalog/lifecycle.ts';
import { type Config, describeConfig } from './config.ts';
import { withTargetRegistrationLock } from './catalog/identity.ts';
import { registerConfiguredTargets } from './configured-targets.ts';
import { WorkerPool, type WorkerPoolOptions } from './engine/pool.ts';
import { createApp } from './http/app.ts';
import { INGEST_JOB_KIND } from './ingest/accept.ts';
import { IngestService } from './ingest/service.ts';
import { StagingGroups } from './ingest/staging-groups.ts';
import { JobGroups } from './ingest/job-groups.ts';
import { LoggedJobs } from './ingest/logged-jobs.ts';
import { ReaderPins } from './query/reader-pins.ts';
import { QueryService } from './query/service.ts';
import { ingestJobHandler } from './ingest/write.ts';
import { wakeLocalRunners } from './jobs/local-signals.ts';
import { JobRunner } from './jobs/runner.ts';
import type { Logger } from './log.ts';
import { Metrics } from './observability/metrics.ts';
import { Tracing } from './observability/tracing.ts';
import { Readiness } from './readiness.ts';
import { PartitionCache } from './storage/partition-cache.ts';
import { StorageDrivers } from './storage/index.ts';
import { TokenService } from './tokens/service.ts';
import { VERSION } from './version.ts';

export interface RunningServer {
  url: string;
  catalog: Catalog;
  pool: WorkerPool;
  runner: JobRunner;
  /** This server's metrics (GET /metrics); lifecycle tasks report through `metrics.compaction(…)` etc. */
  metrics: Metrics;
  tracing: Tracing;
  lifecycle: Lifecycle;
  /** Null when TIMESTORE_LIFECYCLE_ENABLED=false (a `timestore lifecycle` process runs the jobs). */
  lifecycleRunner: JobRunner | null;
  /** Drains and stops everything; safe to call more than once. */
  shutdown(reason: string): Promise<void>;
}

interface Core {
  catalog: Catalog;
  drivers: StorageDrivers;
  pool: WorkerPool;
}

/** What every process needs: the migrated catalog, the configured storage targets, the worker pool. */
async function openCore(config: Config, log: Logger): Promise<Core> {
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
    const register = () => registerConfiguredTargets(catalog.sql, config, drivers, log);
    // The embedded catalog has one connection and one process (its lock file): nothing to serialize.
    await (catalog.mode === 'external' ? withTargetRegistrationLock(catalog.sql, register) : register());
    pool = await WorkerPool.start(workerLanes(config), join(config.storageRoot, '.runtime'));
    const ping = await pool.ping();
    log.info({ threads: pool.threads, duckdb: ping.duckdbVersion, spillPerThread: ping.spill.maxSize }, 'worker pool ready');
  } catch (err) {
    await pool?.close().catch(() => {});
    drivers.close();
    await catalog.close().catch(() => {});
    throw err;
  }
  return { catalog, drivers, pool };
}

/**
 * Each workload's threads and queue (engine/lanes.ts). Ingest writes get one thread per job the
 * runner takes at once and lifecycle work one (its runner takes one job at a time), so neither
 * ever waits for a thread; queries and streams wait in bounded queues.
 */
function workerLanes(config: Config): WorkerPoolOptions {
  const { ingest, query } = config;
  return {
    lanes: {
      ingest: { threads: ingest.concurrency, maxQueue: ingest.concurrency, eager: true },
      query: { threads: config.workerThreads, maxQueue: query.queueMax, eager: true },
      stream: { threads: query.streamThreads, maxQueue: query.streamQueueMax },
      lifecycle: { threads: 1, maxQueue: 4 },
    },
    maxSpillBytes: config.duckdbMaxSpillBytes,
  };
}

const retries = (config: Config) => ({ retryWindowMs: config.jobs.retryWindowMs, retryMaxMs: config.jobs.retryMaxDelayMs });

/**
 * The lifecycle tasks, and (when `run`) a runner of their own that takes one lifecycle job at a
 * time; `servesQueries`: this process also answers queries.
 */
function lifecycleOf(
  core: Core,
  config: Config,
  log: Logger,
  metrics: Metrics | undefined,
  { run, servesQueries, loggedJobs }: { run: boolean; servesQueries: boolean; loggedJobs: LoggedJobs },
) {
  const lifecycle = new Lifecycle({
    replayStagingLog: (driver, location) => loggedJobs.replay(driver, location),
    sql: core.catalog.sql,
    drivers: core.drivers,
    pool: core.pool,
    scratchDir: join(config.storageRoot, 'tmp'),
    log,
    warmQueryThreads: servesQueries,
    settings: config.lifecycle,
    retentionDefaults: config.retention,
    metrics,
  });
  const runner = run ? lifecycle.register(new JobRunner({ catalog: core.catalog, log, concurrency: 1, metrics, ...retries(config) })) : null;
  return { lifecycle, runner };
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const core = await openCore(config, log);
  const { catalog, drivers, pool: workers } = core;

  // Until a query thread has answered some dozens of queries its JavaScript runs interpreted, which
  // made a restarted server's first queries several times slower (engine/warm-up.ts). The server
  // listens once its query threads are warm, beside the rest of its start.
  const warming = workers.warmQueryThreads({ compile: true, files: [] }).then(
    (threads) => log.info({ threads: threads.length, ms: Math.max(...threads.map((t) => t.ms)) }, 'query threads warmed'),
    (err) => log.warn({ err }, 'query threads: not warmed at start; their first queries are slower'),
  );
  const queue = config.ingest.queueName;
  let query: QueryService | undefined;
  const catalogCache = new CatalogCache(catalog.sql);
  const metrics = new Metrics(log);
  const tracing = Tracing.create(config.tracing, log);
  const { tracer } = tracing;
  const jobGroups = new JobGroups(catalog.sql, { notify: catalog.mode === 'external', log });
  const loggedJobs = new LoggedJobs({ sql: catalog.sql, drivers, jobs: jobGroups, wake: (enqueued) => wakeLocalRunners(queue, enqueued), log });
  const { lifecycle, runner: lifecycleRunner } = lifecycleOf(core, config, log, metrics, { run: config.lifecycle.enabled, servesQueries: true, loggedJobs });
  let ingest: IngestService | undefined;
  const datasetAccess = datasetAccessReader(catalog.sql, (id) => ingest?.jobBeforeItsRow(id) ?? null);
  const runner = new JobRunner({ catalog, log, concurrency: config.ingest.concurrency, tracer, metrics, ...retries(config) }).register(
    INGEST_JOB_KIND,
    ingestJobHandler({
      sql: catalog.sql,
      drivers,
      pool: workers,
      scratchDir: join(config.storageRoot, 'tmp'),
      log,
      catalogCache,
      tracer,
      metrics,
      // The query service exists once the runner is up; a publish before that has no cache to feed.
      published: (datasetId, version) => {
        lifecycle.compactSoon(datasetId);
        datasetAccess.changed(datasetId);
        query?.published(datasetId, version);
      },
    }),
    {
      queue,
      coalesce: {
        maxJobs: 256,
        weightField: 'rowCount',
        maxWeight: 1_000_000,
        minWeight: config.ingest.coalesceRows,
        sizePath: ['staged', 'sizeBytes'],
        maxSize: config.ingest.coalesceMaxBytes,
        maxWaitMs: config.ingest.coalesceWaitMs,
        promptField: 'awaited',
      },
    },
  );
  await runner.start();
  // Batches acknowledged by a process that stopped before it inserted their jobs.
  await loggedJobs.start({ exclusive: catalog.mode === 'embedded' }).catch((err) => log.warn({ err }, 'ingest: staging logs left by a stopped process not replayed at start; the orphan sweep does it'));
  if (lifecycleRunner) {
    await lifecycleRunner.start();
    lifecycle.startScheduler(lifecycleRunner.workerId);
  }
  const staging = new StagingGroups((locations) => referencedLocations(catalog.sql, locations), loggedJobs);
  ingest = new IngestService({
    sql: catalog.sql,
    drivers,
    queue,
    defaultTargetName: config.storageDriver,
    idempotencyTtlSeconds: config.ingest.idempotencyTtlSeconds,
    maxBodyBytes: config.ingest.maxBodyBytes,
    maxBatchRows: config.ingest.maxBatchRows,
    maxFields: config.ingest.maxFields,
    inline: config.ingest.mode === 'inline',
    wake: (enqueued) => wakeLocalRunners(queue, enqueued),
    waitForJob: (id, ms) => runner.waitForJob(id, ms),
    catalogCache,
    staging,
    jobs: jobGroups,
    metrics,
  });

  const cache = new PartitionCache({ ...config.queryCache, log });
  await cache.init();
  const pins = new ReaderPins(catalog.sql, log);
  pins.start();
  query = new QueryService({
    sql: catalog.sql,
    drivers,
    cache,
    pool: workers,
    limits: { maxRows: config.query.maxRows, defaultRows: config.query.defaultRows, maxBuckets: config.query.maxBuckets },
    scanLimits: { maxPartitions: config.query.maxPartitions, maxBytes: config.query.maxBytes },
    timeoutMs: config.query.timeoutMs,
    memoryLimitBytes: config.query.memoryLimitBytes,
    snapshotPartitions: config.query.manifestCachePartitions,
    latestCacheSeries: config.query.latestCacheSeries,
    catalogCache,
    pins,
    tracer,
    metrics,
    log,
  });
  query.seedLatest().then(
    (stats) => stats.loads > 0 && log.info({ datasets: stats.datasets, series: stats.series }, 'latest-value cache: seeded from the files'),
    (err) => log.warn({ err }, 'latest-value cache: not seeded at start; first queries seed it'),
  );
  metrics.observe({ catalog: catalog.sql, jobKinds: [{ queue, kind: INGEST_JOB_KIND }], cache, snapshots: query, latestCache: query, pool: workers });

  const exposure = openExposure(config);
  if (exposure) log.warn({ host: config.host, auth: config.auth.mode }, exposure);
  const readiness = new Readiness({ catalog, pool: workers, storageRoot: config.storageRoot, warnings: exposure ? [exposure] : [] });
  const tokens = new TokenService({ sql: catalog.sql, log, cacheMs: config.auth.tokenCacheMs });
  await warming;
  const app = createApp({
    log,
    readiness,
    ingest,
    query,
    admin: new AdminService({
      sql: catalog.sql,
      drivers,
      retentionDefaults: config.retention,
      maxFields: config.ingest.maxFields,
      startLifecycle: (datasetId, actor) => lifecycle.requestRun(datasetId, actor),
      waitForJob: (id, ms) => runner.waitForJob(id, ms),
      jobRetryWindowMs: config.jobs.retryWindowMs,
    }),
    maxBodyBytes: config.ingest.maxBodyBytes,
    idleTimeoutSeconds: config.httpIdleTimeoutSeconds,
    metrics,
    tracer,
    scopes: config.scopes,
    authMode: config.auth.mode,
    datasetAccess,
    tokens,
  }).listen({
    hostname: config.host,
    port: config.port,
  });
  const url = `http://${config.host}:${app.server?.port ?? config.port}`;
  log.info({ url, docs: `${url}/docs`, ingestMode: config.ingest.mode, auth: config.auth.mode }, 'timestore listening');

  let stopping: Promise<void> | undefined;
  return {
    url,
    catalog,
    pool: workers,
    runner,
    lifecycle,
    lifecycleRunner,
    metrics,
    tracing,
    shutdown(reason) {
      stopping ??= (async () => {
        log.info({ reason }, 'shutdown: /ready now answers 503; finishing in-flight requests');
        readiness.startDraining();
        // Stop accepting connections and let in-flight requests finish.
        await app.stop(false);
        await staging.close();
        loggedJobs.close();
        // Running jobs finish (or are handed back to the queue) before their pool and catalog go.
        await lifecycle.stopScheduler();
        await Promise.all([runner, lifecycleRunner].map((r) => r?.stop(Math.max(1_000, config.shutdownTimeoutMs - 2_000))));
        await pins.stop();
        // The last spans (requests, jobs) go out before the process does.
        await tracing.shutdown().catch((err) => log.warn({ err }, 'tracing: the last spans could not be exported'));
        await workers.close();
        drivers.close();
        await catalog.close();
        log.info('shutdown complete');
      })();
      return stopping;
    },
  };
}

const LOOPBACK_HOSTS = new Set(['localhost', '::1', '[::1]']);

/**
 * What is wrong with listening where the configuration says, or null: anyone who reaches a port
 * beyond loopback may use every route when nothing is checked (TIMESTORE_AUTH=none, or header
 * mode with no scope configured), and may send any scopes when header mode trusts them.
 */
export function openExposure(config: Pick<Config, 'host' | 'scopes' | 'auth'>): string | null {
  if (LOOPBACK_HOSTS.has(config.host) || /^127\./.test(config.host)) return null;
  const { mode } = config.auth;
  const scopes = config.scopes;
  if (mode === 'none' || (mode === 'headers' && !scopes.read && !scopes.write && !scopes.admin)) {
    return (
      `NO AUTHENTICATION: listening on ${config.host}, beyond loopback, with every route open to whoever reaches the port ` +
      '(reads, writes and administration): set TIMESTORE_AUTH=tokens and create a token with `timestore token create`, or bind TIMESTORE_HOST=127.0.0.1'
    );
  }
  if (mode === 'headers') {
    return (
      `listening on ${config.host}, beyond loopback, trusting x-iam-scopes as sent: only a gateway that sets these headers may reach this port; ` +
      'otherwise set TIMESTORE_AUTH=tokens'
    );
  }
  return null;
}

export interface LifecycleProcess {
  /** Stops scheduling, lets the running job finish (or hands it back), closes everything. */
  shutdown(reason: string): Promise<void>;
  /** With `once`: resolves when the round this process enqueued at start has finished. */
  finished: Promise<void>;
}

/**
 * `timestore lifecycle`: the scheduler and a lifecycle runner without HTTP or ingestion. With
 * `once`, it enqueues one round at once (whatever the schedule says), waits for it, and is done.
 */
export async function startLifecycleProcess(config: Config, log: Logger, options: { once: boolean }): Promise<LifecycleProcess> {
  const core = await openCore(config, log);
  const jobs = new JobGroups(core.catalog.sql, { notify: core.catalog.mode === 'external', log });
  // The orphan sweep inserts the jobs a stopped process owed; another process's runner writes them (it hears of them).
  const loggedJobs = new LoggedJobs({ sql: core.catalog.sql, drivers: core.drivers, jobs, wake: () => {}, log });
  const { lifecycle, runner } = lifecycleOf(core, config, log, undefined, { run: true, servesQueries: false, loggedJobs });
  await runner!.start();
  let finished: Promise<void> = new Promise(() => {});
  if (options.once) {
    const jobs = await lifecycle.enqueueRound();
    log.info({ jobs: jobs.length }, 'lifecycle: one round enqueued');
    finished = Promise.all(jobs.map((job) => runner!.waitForJob(job.id, 24 * 3_600_000))).then((done) => {
      const failed = done.filter((job) => job?.state === 'failed');
      if (failed.length > 0) throw new Error(`${failed.length} lifecycle job(s) failed: ${failed.map((j) => j!.lastError).join('; ')}`);
    });
  } else {
    lifecycle.startScheduler(runner!.workerId);
    log.info({ intervalSeconds: config.lifecycle.intervalMs / 1000 }, 'lifecycle: scheduler running');
  }
  let stopping: Promise<void> | undefined;
  return {
    finished,
    shutdown(reason) {
      stopping ??= (async () => {
        log.info({ reason }, 'lifecycle: stopping');
        await lifecycle.stopScheduler();
        await runner!.stop(Math.max(1_000, config.shutdownTimeoutMs - 2_000));
        await core.pool.close();
        core.drivers.close();
        await core.catalog.close();
      })();
      return stopping;
    },
  };
}
