/**
 * The ingest job: turns staged batches into published partitions.
 *
 * The runner hands over several queued jobs of one dataset at once
 * (coalescing), so many small batches become few files. The staged bodies
 * are read by DuckDB in a worker thread, written as sorted Parquet per
 * partition key and time window, stored on the target, and published in one
 * catalog transaction that also completes the jobs: either all of it is
 * visible or none of it is. Files stored by an attempt that then fails are
 * left for the garbage collector; the jobs retry.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { getDataset } from '../catalog/datasets.ts';
import type { Job } from '../catalog/jobs.ts';
import { type NewPartition, publishManifestVersion } from '../catalog/manifests.ts';
import type { CatalogCache } from '../catalog/cache.ts';
import type { Dataset, StorageTarget } from '../catalog/types.ts';
import type { WrittenPartition } from '../engine/partition-writer.ts';
import type { WorkerPool } from '../engine/pool.ts';
import type { JobContext, JobResults } from '../jobs/runner.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type Context, inSpan, NOOP_TRACER, type Span, type Tracer, traceFields } from '../observability/tracing.ts';
import type { StorageDriver, StorageDrivers } from '../storage/index.ts';
import type { IngestJobPayload } from './accept.ts';
import { partitionObjectKey } from './object-keys.ts';

export interface WriteDeps {
  sql: Sql;
  drivers: StorageDrivers;
  pool: WorkerPool;
  /** Local scratch space (downloads of staged S3 objects, DuckDB's output before it is stored). */
  scratchDir: string;
  log: Logger;
  /** Schema versions and storage targets, kept across writes. */
  catalogCache: CatalogCache;
  /** Spans `ingest.write` (child of the batch's first job span) and its steps. */
  tracer?: Tracer;
  metrics?: Metrics;
}

/**
 * Stores the partition writer's files on the target (each moved under its partition path) and
 * describes them for the publish. A file stored here and never published is the collector's.
 */
export async function storePartitionFiles(
  driver: StorageDriver,
  target: StorageTarget,
  dataset: Dataset,
  schemaVersion: number,
  written: WrittenPartition[],
): Promise<NewPartition[]> {
  const stored: NewPartition[] = [];
  for (const file of written) {
    const object = await driver.putFile(partitionObjectKey(dataset.slug, file.partitionKey, file.windowStart), file.path, { move: true });
    stored.push({
      storageTargetId: target.id,
      location: object.location,
      partitionKey: file.partitionKey,
      schemaVersion,
      startTime: file.startTime,
      endTime: file.endTime,
      rowCount: file.rowCount,
      sizeBytes: object.sizeBytes,
      checksum: file.checksum,
      columnStatistics: file.columnStatistics,
    });
  }
  return stored;
}

export function ingestJobHandler(deps: WriteDeps) {
  const tracer = deps.tracer ?? NOOP_TRACER;
  return (jobs: Job<IngestJobPayload>[], ctx: JobContext): Promise<JobResults> =>
    inSpan(tracer, 'ingest.write', ctx.trace.context, (span, trace) => writeBatch(deps, tracer, jobs, ctx, span, trace), {
      links: ctx.trace.links,
      attributes: {
        'timestore.jobs': jobs.length,
        'timestore.rows': jobs.reduce((n, j) => n + j.payload.rowCount, 0),
        'timestore.dataset.slug': jobs[0]?.payload.datasetSlug ?? '',
      },
    });
}

async function writeBatch(
  deps: WriteDeps,
  tracer: Tracer,
  jobs: Job<IngestJobPayload>[],
  ctx: JobContext,
  span: Span,
  trace: Context,
): Promise<JobResults> {
  const first = jobs[0];
  if (!first?.datasetId) throw new Error('ingest job without a dataset');
  const dataset = await getDataset(deps.sql, first.datasetId);
  const schemaVersion = Math.max(...jobs.map((j) => j.payload.schemaVersion));
  const schema = await deps.catalogCache.schemaVersion(dataset.id, schemaVersion);
  if (!schema) throw new Error(`schema version ${schemaVersion} of dataset ${dataset.slug} is missing`);

  const work = join(deps.scratchDir, `ingest-${randomUUID()}`);
  await mkdir(work, { recursive: true });
  try {

    // Batches for different storage targets are written separately: each file lives on the
    // target its batch asked for.
    const added: NewPartition[] = [];
    for (const [targetId, group] of groupBy(jobs, (j) => j.payload.storageTargetId)) {
      const target = await deps.catalogCache.storageTarget(targetId);
      const stagedOn = deps.drivers.forTarget(target); // a batch is staged on the target it asked for
      const inputs = await Promise.all(
        group.map(async (job) => {
          const path = await stagedOn.materialize(job.payload.staged.location, join(work, `${job.id}.json`));
          return { path, format: job.payload.staged.format, partitionKey: job.payload.partitionKey, fields: await validatedFields(deps, dataset, job, schemaVersion) };
        }),
      );
      ctx.signal.throwIfAborted();
      const written = await inSpan(tracer, 'engine.write_partitions', trace, async (step) => {
        const files = await deps.pool.writePartitions({
          inputs,
          fields: schema.fields,
          timestampColumn: schema.timestampColumn,
          windowSeconds: dataset.partitionWindowSeconds,
          outputDir: work,
          sortColumns: dataset.sortColumns,
          // As compaction writes them (src/lifecycle/compaction.ts): smaller and faster to scan.
          parquetVersion: 'v2',
        });
        step.setAttribute('timestore.files', files.length);
        return files;
      });
      ctx.signal.throwIfAborted();
      added.push(...(await storePartitionFiles(deps.drivers.forTarget(target), target, dataset, schemaVersion, written)));
    }

    ctx.signal.throwIfAborted();
    const results: JobResults = {};
    await inSpan(tracer, 'catalog.publish', trace, () => deps.sql.begin(async (tx) => {
      const published = await publishManifestVersion(tx, {
        datasetId: dataset.id,
        reason: 'ingest',
        add: added,
        summary: { jobs: jobs.map((j) => j.id), rows: jobs.reduce((n, j) => n + j.payload.rowCount, 0) },
      });
      const partitions = published.partitions.map((p) => ({
        id: p.id,
        location: p.location,
        partitionKey: p.partitionKey,
        startTime: p.startTime.toISOString(),
        endTime: p.endTime.toISOString(),
        rowCount: p.rowCount,
        sizeBytes: p.sizeBytes,
      }));
      for (const job of jobs) {
        results[job.id] = {
          dataset: { id: dataset.id, slug: dataset.slug },
          manifestVersion: published.manifest.version,
          schemaVersion,
          rowCount: job.payload.rowCount,
          coalescedJobs: jobs.length,
          // The files that hold the batch's rows (coalesced batches share files, so they may hold
          // others' rows too). Not every file of the publish: with many batches written together,
          // that list repeated in every job's result would outgrow what one catalog write takes.
          partitions: partitions.filter((p) => holdsRowsOf(job.payload, p)),
        };
      }
      await ctx.complete(tx, results);
    }));
    const rows = jobs.reduce((n, j) => n + j.payload.rowCount, 0);
    const bytes = added.reduce((n, p) => n + p.sizeBytes, 0);
    span.setAttributes({ 'timestore.partitions': added.length, 'timestore.bytes': bytes });
    deps.metrics?.ingestWritten(dataset.slug, { rows, partitions: added.length, bytes });
    deps.log.info({ dataset: dataset.slug, jobs: jobs.length, rows, partitions: added.length, ...traceFields(span) }, 'ingest: published');

    // The staged bodies are no longer needed; what a crash leaves here, the collector removes.
    await Promise.all(
      jobs.map(async (job) => {
        const stagedOn = deps.drivers.forTarget(await deps.catalogCache.storageTarget(job.payload.storageTargetId));
        await stagedOn.delete(job.payload.staged.location).catch((err) => deps.log.warn({ err, job: job.id }, 'ingest: staged batch not deleted'));
      }),
    );
    return results;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The fields a batch was validated against, when a batch written with it brought a later schema
 * version (else undefined: all of them). A key the batch carried as an unknown field must not be
 * read into a field of that name added since.
 */
async function validatedFields(deps: WriteDeps, dataset: Dataset, job: Job<IngestJobPayload>, writtenVersion: number): Promise<string[] | undefined> {
  if (job.payload.schemaVersion === writtenVersion) return undefined;
  const own = await deps.catalogCache.schemaVersion(dataset.id, job.payload.schemaVersion);
  if (!own) throw new Error(`schema version ${job.payload.schemaVersion} of dataset ${dataset.slug} is missing`);
  return own.fields.map((f) => f.name);
}

/** Whether partition `p` is one the batch's rows went to: its partition key, a window overlapping the batch's time range. */
function holdsRowsOf(batch: IngestJobPayload, p: { partitionKey: Record<string, string>; startTime: string; endTime: string }): boolean {
  const key = Object.entries(batch.partitionKey);
  if (key.length !== Object.keys(p.partitionKey).length || key.some(([name, value]) => p.partitionKey[name] !== value)) return false;
  return Date.parse(p.endTime) >= Date.parse(batch.minTime) && Date.parse(p.startTime) <= Date.parse(batch.maxTime);
}

function groupBy<T, K>(items: T[], key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
