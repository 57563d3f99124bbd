/**
 * The metrics of one server, in the Prometheus text format (GET /metrics), through prom-client.
 *
 * Every metric lives in this instance's own `Registry` (none in prom-client's global default
 * registry, and no default collectors with process-wide timers), so several servers in one
 * process each count their own work.
 *
 * Three kinds of source:
 * - events counted as they happen, through the methods below (ingest, jobs, queries, HTTP, and
 *   `compaction` / `retention` / `garbageCollection` for the lifecycle tasks);
 * - figures read from the catalog at scrape time (jobs per queue, kind and state, and overdue
 *   ones; partitions, rows and bytes per dataset), so every process reports the shared catalog's state;
 * - figures other components already keep, read at scrape time (the partition cache's counters,
 *   the worker pool's queue).
 *
 * docs/api.md lists every metric with its labels.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { countJobs, countOverdueJobs, type JobState } from '../catalog/job-table.ts';
import type { Db } from '../catalog/db.ts';
import { datasetTotals } from '../catalog/stats.ts';
import type { Logger } from '../log.ts';
import type { WarmUpStats } from '../engine/pool.ts';
import type { PartitionCacheStats } from '../storage/partition-cache.ts';
import { VERSION } from '../version.ts';

export type QueryMode = 'raw' | 'downsampled' | 'latest';
/** `ok`; `rejected`: the request was refused (4xx: bad query, no such dataset); `failed`: 5xx (timeout, memory limit, storage). */
export type QueryOutcome = 'ok' | 'rejected' | 'failed';
export type JobOutcome = 'succeeded' | 'failed';
/** What one run of a lifecycle task did for one dataset: `skipped` when there was nothing to do. */
export type LifecycleOutcome = 'succeeded' | 'failed' | 'skipped';

const JOB_STATES: readonly JobState[] = ['queued', 'running', 'succeeded', 'failed'];
const LIFECYCLE_OUTCOMES: readonly LifecycleOutcome[] = ['succeeded', 'failed', 'skipped'];

/** A job due (or with a lease expired) this long and not taken up is overdue: no runner is keeping up. */
export const JOB_OVERDUE_AFTER_MS = 5 * 60_000;

const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const JOB_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/** What the snapshot metrics read, declared here so observability imports nothing from the services. */
type SnapshotFigures = Record<'datasets' | 'partitions' | 'hits' | 'advances' | 'loads' | 'bypasses', number>;
/** What the latest-value cache metrics read (src/query/latest-cache.ts `LatestCacheStats`). */
type LatestCacheFigures = Record<'datasets' | 'series' | 'hits' | 'misses' | 'loads' | 'advances' | 'rebuilds', number> & {
  fallbacks: Record<LatestFallbackReason, number>;
};
const LATEST_FALLBACK_REASONS = ['disabled', 'over_limit', 'request', 'error'] as const;
type LatestFallbackReason = (typeof LATEST_FALLBACK_REASONS)[number];

export interface MetricsSources {
  /** The catalog, read at each scrape for job counts and dataset totals. */
  catalog?: Db;
  /** Job (queue, kind) pairs reported (with zeros) even before the table holds any. */
  jobKinds?: { queue: string; kind: string }[];
  cache?: { stats(): PartitionCacheStats };
  /** The query service's manifest snapshots (src/query/manifest-snapshots.ts `SnapshotStats`). */
  snapshots?: { snapshotStats(): SnapshotFigures };
  /** The query service's latest-value cache (src/query/latest-cache.ts). */
  latestCache?: { latestCacheStats(): LatestCacheFigures };
  pool?: {
    stats(): Record<string, { threads: number; queued: number; refused: number; utilization: number }>;
    warmUpStats(): WarmUpStats;
  };
}

export class Metrics {
  readonly registry = new Registry();
  private sources: MetricsSources = {};

  private readonly ingestBatches: Counter<'dataset' | 'outcome'>;
  private readonly ingestRows: Counter<'dataset'>;
  private readonly ingestBytes: Counter<'dataset'>;
  private readonly writtenRows: Counter<'dataset'>;
  private readonly writtenPartitions: Counter<'dataset'>;
  private readonly writtenBytes: Counter<'dataset'>;
  private readonly jobLatency: Histogram<'kind' | 'outcome'>;
  private readonly jobAttemptFailures: Counter<'kind'>;
  private readonly jobs: Gauge<'queue' | 'kind' | 'state'>;
  private readonly overdueJobs: Gauge<'queue' | 'kind'>;
  private readonly queryDuration: Histogram<'mode' | 'outcome'>;
  private readonly queryPartitions: Counter<'mode' | 'result'>;
  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly httpDuration: Histogram<'method' | 'route'>;
  private readonly datasetPartitions: Gauge<'dataset'>;
  private readonly datasetRows: Gauge<'dataset'>;
  private readonly datasetBytes: Gauge<'dataset'>;
  private readonly catalogErrors: Counter;
  private readonly compactionRuns: Counter<'outcome'>;
  private readonly compactionPartitionsIn: Counter;
  private readonly compactionPartitionsOut: Counter;
  private readonly compactionBytesOut: Counter;
  private readonly retentionRuns: Counter<'outcome'>;
  private readonly retentionPartitions: Counter;
  private readonly retentionBytes: Counter;
  private readonly gcRuns: Counter<'outcome'>;
  private readonly gcFiles: Counter;
  private readonly gcBytes: Counter;
  private readonly gcLeftAlone: Counter;
  private readonly gcTargetsNotOwned: Counter;

  constructor(private readonly log?: Logger) {
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
      new Counter<L>({ name, help, labelNames, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
      new Gauge<L>({ name, help, labelNames, registers });
    const histogram = <L extends string>(name: string, help: string, labelNames: readonly L[], buckets: number[]) =>
      new Histogram<L>({ name, help, labelNames, buckets, registers });

    // Ingest: accepted batches (at the 202/201), then what the jobs wrote.
    this.ingestBatches = counter('timestore_ingest_batches_total', 'Ingest batches accepted (outcome="accepted") or answered from an idempotency key (outcome="replayed").', ['dataset', 'outcome']);
    this.ingestRows = counter('timestore_ingest_rows_total', 'Rows in accepted ingest batches.', ['dataset']);
    this.ingestBytes = counter('timestore_ingest_bytes_total', 'Request body bytes of accepted ingest batches.', ['dataset']);
    this.writtenRows = counter('timestore_ingest_written_rows_total', 'Rows published into partitions by ingest jobs.', ['dataset']);
    this.writtenPartitions = counter('timestore_ingest_written_partitions_total', 'Partition files published by ingest jobs.', ['dataset']);
    this.writtenBytes = counter('timestore_ingest_written_bytes_total', 'Bytes of the partition files published by ingest jobs.', ['dataset']);

    // Jobs.
    this.jobLatency = histogram('timestore_job_latency_seconds', 'Time from a job\'s creation to its end (succeeded, or failed with no attempts left), by kind.', ['kind', 'outcome'], JOB_BUCKETS);
    this.jobAttemptFailures = counter('timestore_job_attempt_failures_total', 'Job attempts that failed (retried later, or the last one).', ['kind']);
    this.jobs = gauge(
      'timestore_jobs',
      'Jobs in the catalog\'s job table by queue, kind and state, counted at scrape time; state="failed" are jobs that failed for good, kept until an operator retries or deletes them.',
      ['queue', 'kind', 'state'],
    );
    this.overdueJobs = gauge(
      'timestore_jobs_overdue',
      'Jobs no runner has taken up for 5 minutes past their due time: queued and due, or running with an expired lease (from the catalog at scrape time).',
      ['queue', 'kind'],
    );

    // Queries.
    this.queryDuration = histogram('timestore_query_duration_seconds', 'Queries by mode (raw, downsampled) and outcome (ok, rejected, failed): count and time to the last row.', ['mode', 'outcome'], REQUEST_BUCKETS);
    this.queryPartitions = counter('timestore_query_partitions_total', 'Partitions considered by queries: result="scanned" were read, result="pruned" skipped by the catalog.', ['mode', 'result']);

    // HTTP.
    this.httpRequests = counter('timestore_http_requests_total', 'HTTP requests by method, route template and status.', ['method', 'route', 'status']);
    this.httpDuration = histogram('timestore_http_request_duration_seconds', 'HTTP request time until the response is handed to the client, by method and route template.', ['method', 'route'], REQUEST_BUCKETS);

    // Datasets, from the catalog.
    this.datasetPartitions = gauge('timestore_dataset_partitions', 'Active partitions of each dataset at its current manifest version (from the catalog at scrape time).', ['dataset']);
    this.datasetRows = gauge('timestore_dataset_rows', 'Rows in the active partitions of each dataset (from the catalog at scrape time).', ['dataset']);
    this.datasetBytes = gauge('timestore_dataset_bytes', 'Bytes of the active partition files of each dataset (from the catalog at scrape time).', ['dataset']);
    this.catalogErrors = counter('timestore_metrics_catalog_errors_total', 'Scrapes whose catalog figures (timestore_jobs, timestore_jobs_overdue, timestore_dataset_*) could not be read; those series are absent from that scrape.');

    // Lifecycle tasks.
    this.compactionRuns = counter('timestore_compaction_runs_total', 'Compaction runs (one per dataset and pass) by outcome.', ['outcome']);
    this.compactionPartitionsIn = counter('timestore_compaction_partitions_merged_total', 'Partitions replaced by compaction.');
    this.compactionPartitionsOut = counter('timestore_compaction_partitions_written_total', 'Partitions written by compaction.');
    this.compactionBytesOut = counter('timestore_compaction_bytes_written_total', 'Bytes of the partitions written by compaction.');
    this.retentionRuns = counter('timestore_retention_runs_total', 'Retention runs (one per dataset and pass) by outcome.', ['outcome']);
    this.retentionPartitions = counter('timestore_retention_partitions_removed_total', 'Partitions removed from the manifest by retention.');
    this.retentionBytes = counter('timestore_retention_bytes_removed_total', 'Bytes of the partitions removed by retention.');
    this.gcRuns = counter('timestore_gc_runs_total', 'Garbage-collection runs by outcome.', ['outcome']);
    this.gcFiles = counter('timestore_gc_files_deleted_total', 'Files deleted by garbage collection (removed partitions past their grace period, orphans, staged bodies).');
    this.gcBytes = counter('timestore_gc_bytes_deleted_total', 'Bytes of the files deleted by garbage collection.');
    this.gcLeftAlone = counter('timestore_gc_objects_left_alone_total', "Objects the orphan sweep listed but left alone: their keys are not of a shape timestore writes.");
    this.gcTargetsNotOwned = counter('timestore_gc_targets_not_owned_total', "Orphan sweeps of a storage target skipped because it holds no owner marker of this catalog.");
    for (const outcome of LIFECYCLE_OUTCOMES) {
      this.compactionRuns.inc({ outcome }, 0);
      this.retentionRuns.inc({ outcome }, 0);
      this.gcRuns.inc({ outcome }, 0);
    }

    this.partitionCacheMetrics(registers);
    this.snapshotMetrics(registers);
    this.latestCacheMetrics(registers);
    this.processMetrics(registers);
  }

  /** Connects the scrape-time sources; call again to add more. */
  observe(sources: MetricsSources): this {
    this.sources = { ...this.sources, ...sources };
    return this;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text: catalog figures are read first, then every metric is rendered. */
  async render(): Promise<string> {
    await this.refreshCatalog();
    return this.registry.metrics();
  }

  // ---- events ----

  /** An ingest batch was accepted (a replay counts the batch but no rows or bytes again). */
  ingestAccepted(dataset: string, batch: { rows: number; bytes: number; replayed: boolean }): void {
    this.ingestBatches.inc({ dataset, outcome: batch.replayed ? 'replayed' : 'accepted' });
    if (batch.replayed) return;
    this.ingestRows.inc({ dataset }, batch.rows);
    this.ingestBytes.inc({ dataset }, batch.bytes);
  }

  /** An ingest job (or a coalesced batch of them) published partitions. */
  ingestWritten(dataset: string, written: { rows: number; partitions: number; bytes: number }): void {
    this.writtenRows.inc({ dataset }, written.rows);
    this.writtenPartitions.inc({ dataset }, written.partitions);
    this.writtenBytes.inc({ dataset }, written.bytes);
  }

  /** A job ended: succeeded, or failed for good; `seconds` from its creation. */
  jobFinished(kind: string, outcome: JobOutcome, seconds: number): void {
    this.jobLatency.observe({ kind, outcome }, Math.max(0, seconds));
  }

  /** A job attempt failed (whether or not it will be retried). */
  jobAttemptFailed(kind: string): void {
    this.jobAttemptFailures.inc({ kind });
  }

  query(mode: QueryMode, outcome: QueryOutcome, seconds: number, partitions?: { scanned: number; pruned: number }): void {
    this.queryDuration.observe({ mode, outcome }, seconds);
    if (partitions) {
      this.queryPartitions.inc({ mode, result: 'scanned' }, partitions.scanned);
      this.queryPartitions.inc({ mode, result: 'pruned' }, partitions.pruned);
    }
  }

  httpRequest(method: string, route: string, status: number, seconds: number): void {
    this.httpRequests.inc({ method, route, status: String(status) });
    this.httpDuration.observe({ method, route }, seconds);
  }

  /** One compaction run over one dataset ended. */
  compaction(outcome: LifecycleOutcome, done: { partitionsMerged?: number; partitionsWritten?: number; bytesWritten?: number } = {}): void {
    this.compactionRuns.inc({ outcome });
    this.compactionPartitionsIn.inc(done.partitionsMerged ?? 0);
    this.compactionPartitionsOut.inc(done.partitionsWritten ?? 0);
    this.compactionBytesOut.inc(done.bytesWritten ?? 0);
  }

  /** One retention run over one dataset ended. */
  retention(outcome: LifecycleOutcome, done: { partitionsRemoved?: number; bytesRemoved?: number } = {}): void {
    this.retentionRuns.inc({ outcome });
    this.retentionPartitions.inc(done.partitionsRemoved ?? 0);
    this.retentionBytes.inc(done.bytesRemoved ?? 0);
  }

  /** One garbage-collection run ended. */
  garbageCollection(
    outcome: LifecycleOutcome,
    done: { filesDeleted?: number; bytesDeleted?: number; objectsLeftAlone?: number; targetsNotOwned?: number } = {},
  ): void {
    this.gcRuns.inc({ outcome });
    this.gcFiles.inc(done.filesDeleted ?? 0);
    this.gcBytes.inc(done.bytesDeleted ?? 0);
    this.gcLeftAlone.inc(done.objectsLeftAlone ?? 0);
    this.gcTargetsNotOwned.inc(done.targetsNotOwned ?? 0);
  }

  // ---- scrape-time sources ----

  private async refreshCatalog(): Promise<void> {
    const db = this.sources.catalog;
    if (!db) return;
    let counts: Awaited<ReturnType<typeof countJobs>>;
    let overdue: Awaited<ReturnType<typeof countOverdueJobs>>;
    let totals: Awaited<ReturnType<typeof datasetTotals>>;
    try {
      [counts, overdue, totals] = await Promise.all([countJobs(db), countOverdueJobs(db, JOB_OVERDUE_AFTER_MS), datasetTotals(db)]);
    } catch (err) {
      this.catalogErrors.inc();
      this.log?.warn({ err }, 'metrics: the catalog figures could not be read');
      for (const g of [this.jobs, this.overdueJobs, this.datasetPartitions, this.datasetRows, this.datasetBytes]) g.reset();
      return;
    }
    // Synchronously from here, so a concurrent scrape never renders a half-filled gauge.
    this.jobs.reset();
    this.overdueJobs.reset();
    for (const { queue, kind } of [...(this.sources.jobKinds ?? []), ...counts]) {
      for (const state of JOB_STATES) this.jobs.set({ queue, kind, state }, 0);
      this.overdueJobs.set({ queue, kind }, 0);
    }
    for (const c of counts) this.jobs.set({ queue: c.queue, kind: c.kind, state: c.state }, c.count);
    for (const o of overdue) this.overdueJobs.set({ queue: o.queue, kind: o.kind }, o.count);
    for (const g of [this.datasetPartitions, this.datasetRows, this.datasetBytes]) g.reset();
    for (const t of totals) {
      this.datasetPartitions.set({ dataset: t.slug }, t.partitions);
      this.datasetRows.set({ dataset: t.slug }, t.rows);
      this.datasetBytes.set({ dataset: t.slug }, t.bytes);
    }
  }

  /** The cache counts for itself (PartitionCache.stats); these read its figures at scrape time. */
  private partitionCacheMetrics(registers: Registry[]): void {
    const { counterOf, gaugeOf } = scrapedFrom(registers, () => this.sources.cache?.stats());
    counterOf('timestore_partition_cache_hits_total', 'Remote partition reads served from the local cache.', (s) => s.hits);
    counterOf('timestore_partition_cache_misses_total', 'Remote partition reads that downloaded the file into the cache.', (s) => s.misses);
    counterOf('timestore_partition_cache_coalesced_total', 'Remote partition reads that joined a download already under way.', (s) => s.coalesced);
    counterOf('timestore_partition_cache_uncached_fetches_total', 'Remote partition downloads not kept (cache disabled, or a file larger than the cache).', (s) => s.uncachedFetches);
    counterOf('timestore_partition_cache_fetched_bytes_total', 'Bytes downloaded from remote storage targets for queries.', (s) => s.bytesFetched);
    counterOf('timestore_partition_cache_evictions_total', 'Files evicted from the cache.', (s) => s.evictions);
    counterOf('timestore_partition_cache_evicted_bytes_total', 'Bytes of the files evicted from the cache.', (s) => s.evictedBytes);
    counterOf('timestore_partition_cache_integrity_failures_total', 'Partition files whose size or checksum differed from the catalog\'s.', (s) => s.integrityFailures);
    counterOf('timestore_partition_local_reads_total', 'Partition files of local storage targets read in place.', (s) => s.localReads);
    gaugeOf('timestore_partition_cache_bytes', 'Bytes of the files in the cache.', (s) => s.currentBytes);
    gaugeOf('timestore_partition_cache_files', 'Files in the cache.', (s) => s.files);
    gaugeOf('timestore_partition_cache_max_bytes', 'The cache\'s limit (TIMESTORE_QUERY_CACHE_MAX_BYTES).', (s) => s.maxBytes);
  }

  /** The query service's snapshots of active partitions, read at scrape time like the cache's. */
  private snapshotMetrics(registers: Registry[]): void {
    const { counterOf, gaugeOf } = scrapedFrom(registers, () => this.sources.snapshots?.snapshotStats());
    counterOf('timestore_query_manifest_snapshot_hits_total', 'Queries planned from a kept snapshot of the active partitions.', (s) => s.hits);
    counterOf('timestore_query_manifest_snapshot_advances_total', 'Snapshots moved forward by the partitions newer manifest versions added and removed.', (s) => s.advances);
    counterOf('timestore_query_manifest_snapshot_loads_total', 'Snapshots listed in full from the catalog.', (s) => s.loads);
    counterOf(
      'timestore_query_manifest_snapshot_bypasses_total',
      'Queries that listed partitions from the catalog: an older version than the kept one, or a dataset larger than TIMESTORE_QUERY_MANIFEST_CACHE_PARTITIONS.',
      (s) => s.bypasses,
    );
    gaugeOf('timestore_query_manifest_snapshot_datasets', 'Datasets with a kept snapshot.', (s) => s.datasets);
    gaugeOf('timestore_query_manifest_snapshot_partitions', 'Partitions held by the kept snapshots.', (s) => s.partitions);
  }

  /** The query service's latest-value cache, read at scrape time. */
  private latestCacheMetrics(registers: Registry[]): void {
    const stats = () => this.sources.latestCache?.latestCacheStats();
    const { counterOf, gaugeOf } = scrapedFrom(registers, stats);
    counterOf('timestore_query_latest_cache_hits_total', 'Latest-per-series answers from the latest-value cache, its rows current when the query came.', (s) => s.hits);
    counterOf(
      'timestore_query_latest_cache_misses_total',
      'Latest-per-series answers from the latest-value cache after the query waited for it to be seeded or brought forward from newer files.',
      (s) => s.misses,
    );
    new Counter({
      name: 'timestore_query_latest_cache_fallbacks_total',
      help: 'Latest-per-series queries answered from the files instead, by reason: disabled, over_limit (more series than TIMESTORE_QUERY_LATEST_CACHE_SERIES), request (needs rows the cache does not keep), error.',
      labelNames: ['reason'],
      registers,
      collect() {
        const s = stats();
        this.reset();
        for (const reason of LATEST_FALLBACK_REASONS) this.inc({ reason }, s?.fallbacks[reason] ?? 0);
      },
    });
    counterOf('timestore_query_latest_cache_loads_total', 'Datasets whose latest rows were read from every active file (first use, or a rebuild).', (s) => s.loads);
    counterOf('timestore_query_latest_cache_advances_total', 'Cache entries brought forward by newer manifest versions (reading only the files they added).', (s) => s.advances);
    counterOf(
      'timestore_query_latest_cache_rebuilds_total',
      'Cache entries rebuilt because a removal may have taken rows they kept, or the schema or series key changed.',
      (s) => s.rebuilds,
    );
    gaugeOf('timestore_query_latest_cache_datasets', 'Datasets the latest-value cache holds (declined ones included).', (s) => s.datasets);
    gaugeOf('timestore_query_latest_cache_series', 'Series rows the latest-value cache holds.', (s) => s.series);
  }

  private processMetrics(registers: Registry[]): void {
    const pool = () => this.sources.pool?.stats();
    const perLane = (name: string, help: string, value: (lane: NonNullable<ReturnType<typeof pool>>[string]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['workload'],
        registers,
        collect() {
          for (const [workload, lane] of Object.entries(pool() ?? {})) this.set({ workload }, value(lane));
        },
      });
    perLane('timestore_worker_pool_threads', 'DuckDB worker threads of each workload\'s lane (ingest, query, stream, lifecycle, health).', (l) => l.threads);
    perLane('timestore_worker_pool_queue_size', 'Tasks waiting for a thread of their workload\'s lane.', (l) => l.queued);
    perLane('timestore_worker_pool_utilization', 'Share of a lane\'s thread time spent running tasks since the pool started (0 to 1).', (l) => l.utilization);
    new Counter({
      name: 'timestore_worker_pool_refused_total',
      help: 'Tasks refused because their lane\'s threads were busy and its queue full (answered 503 queue_full).',
      labelNames: ['workload'],
      registers,
      collect() {
        this.reset();
        for (const [workload, lane] of Object.entries(pool() ?? {})) this.inc({ workload }, lane.refused);
      },
    });
    const { counterOf: warmUpCounter } = scrapedFrom(registers, () => this.sources.pool?.warmUpStats());
    warmUpCounter(
      'timestore_query_threads_warmed_total',
      'Query threads that ran made-up queries at start, so that their first real queries run compiled code.',
      (s) => s.threadsCompiled,
    );
    warmUpCounter(
      'timestore_query_footers_read_ahead_total',
      'Parquet footers read into a query thread\'s cache ahead of its queries (one per file per thread; files compaction published).',
      (s) => s.footersRead,
    );
    new Gauge({ name: 'timestore_build_info', help: 'The running timestore version (always 1).', labelNames: ['version'], registers }).set({ version: VERSION }, 1);
    new Gauge({
      name: 'process_start_time_seconds',
      help: 'Start time of the process since the UNIX epoch, in seconds.',
      registers,
    }).set(Math.round((Date.now() - process.uptime() * 1000) / 1000));
    new Gauge({
      name: 'process_resident_memory_bytes',
      help: 'Resident memory size in bytes.',
      registers,
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
    new Counter({
      name: 'process_cpu_seconds_total',
      help: 'User and system CPU time of the process, in seconds.',
      registers,
      collect() {
        const usage = process.cpuUsage();
        this.reset();
        this.inc((usage.user + usage.system) / 1e6);
      },
    });
  }
}

/** Counters and gauges whose values another component keeps, read from `stats()` at each scrape. */
function scrapedFrom<S>(registers: Registry[], stats: () => S | undefined) {
  return {
    counterOf: (name: string, help: string, read: (s: S) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const s = stats();
          this.reset();
          if (s) this.inc(read(s));
        },
      }),
    gaugeOf: (name: string, help: string, read: (s: S) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = stats();
          this.set(s ? read(s) : 0);
        },
      }),
  };
}
