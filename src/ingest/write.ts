/**
 * The ingest job: turns staged batches into published partitions.
 *
 * The runner hands over several queued jobs of one dataset at once
 * (coalescing), so many small batches become few files. The staged bodies
 * are read by DuckDB in a worker thread, written as sorted Parquet per
 * partition key and time window, stored on the target, and published in one
 * catalog transaction that also completes the jobs: either all of it is
 * visible or none of it is.
 *
 * One batch that cannot be written must not hold back the others: when a
 * write of several batches fails because of the data (write-failures.ts), the
 * set is split in halves, each written and published on its own, down to the
 * single batch that fails, which fails alone and for good with its reason.
 * A failure of the moment (storage or catalog unreachable) fails the whole
 * call instead, and its jobs retry later.
 *
 * Files stored by an attempt whose publish certainly did not commit are
 * deleted; when the commit's outcome is unknown they are left for the
 * collector, which decides from the catalog.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { getDataset } from '../catalog/datasets.ts';
import { referencedLocations } from '../catalog/lifecycle.ts';
import type { Job } from '../catalog/job-table.ts';
import { publishManifestVersion } from '../catalog/manifests.ts';
import type { CatalogCache } from '../catalog/lookup-cache.ts';
import { CommitOutcomeUnknownError, inTransaction } from '../catalog/transaction.ts';
import { type Dataset, type NewPartition, partitionKeyId, type SchemaVersion } from '../model/records.ts';
import type { StagedInput } from '../engine/partition-writer.ts';
import type { WorkerPool } from '../engine/pool.ts';
import { type JobContext, type JobResults, PermanentJobError } from '../jobs/runner.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type Context, inSpan, NOOP_TRACER, type Span, type Tracer, traceFields } from '../observability/tracing.ts';
import type { StorageDriver, StorageDrivers } from '../storage/index.ts';
import { storePartitionFiles } from '../storage/partition-files.ts';
import type { IngestJobPayload } from './accept.ts';
import { inStagingLog } from './staging-groups.ts';
import { step, WriteStepError } from './write-failures.ts';

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
  /**
   * Told of every manifest version this writer publishes, after its commit (the query service's
   * latest-value cache; the lifecycle, which schedules the dataset's compaction).
   */
  published?: (datasetId: string, version: number) => void;
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

/** What every part of one handler call shares. */
interface Call {
  deps: WriteDeps;
  tracer: Tracer;
  ctx: JobContext;
  trace: Context;
  /** The call's span (`ingest.write`). */
  span: Span;
  dataset: Dataset;
  schema: SchemaVersion;
  /** Each job's staged body as a local file (for a range of a shared object: the object's). */
  inputs: Map<string, StagedInput>;
  /** Scratch directory of the call: inputs and DuckDB's output. */
  work: string;
  /** Jobs claimed together in this call. */
  claimed: number;
  results: JobResults;
  /** Partitions and bytes published by the call. */
  written: { partitions: number; bytes: number };
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
    const call: Call = {
      ...{ deps, tracer, ctx, trace, span, dataset, schema, work },
      inputs: new Map(),
      claimed: jobs.length,
      results: {},
      written: { partitions: 0, bytes: 0 },
    };
    // Fetched once for the whole call, however often the batches are written apart.
    const readable = await fetchStagedBodies(call, jobs);
    ctx.signal.throwIfAborted();
    await writeApart(call, readable);

    const published = jobs.filter((j) => !(call.results[j.id] instanceof Error));
    span.setAttributes({
      'timestore.partitions': call.written.partitions,
      'timestore.bytes': call.written.bytes,
      'timestore.jobs.written': published.length,
      'timestore.jobs.failed': jobs.length - published.length,
    });
    await deleteStagedBodies(deps, published);
    return call.results;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The staged bodies of published batches are no longer needed: an object of one body goes at once,
 * an object shared with other batches (staging-groups.ts) once no job that has not succeeded names
 * it; a staging log is left to the process appending to it. What a crash leaves, or two writes of
 * one shared object that finish together, the collector removes. The bodies of failed batches stay
 * with their jobs.
 */
async function deleteStagedBodies(deps: WriteDeps, published: Job<IngestJobPayload>[]): Promise<void> {
  const ours = published.filter((j) => !inStagingLog(j.payload.staged.range));
  const shared = [...new Set(ours.filter((j) => j.payload.staged.range).map((j) => j.payload.staged.location))];
  const needed = shared.length ? await referencedLocations(deps.sql, shared, published.map((j) => j.id)) : new Set<string>();
  const done = new Map<string, Job<IngestJobPayload>>();
  for (const job of ours) if (!needed.has(job.payload.staged.location)) done.set(job.payload.staged.location, job);
  await Promise.all(
    [...done].map(async ([location, job]) => {
      const stagedOn = deps.drivers.forTarget(await deps.catalogCache.storageTarget(job.payload.storageTargetId));
      await stagedOn.delete(location).catch((err) => deps.log.warn({ err, job: job.id }, 'ingest: staged batch not deleted'));
    }),
  );
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

/**
 * Makes each job's staged body a local file. A body that is gone (or whose location this target
 * cannot hold) fails its own job for good; any other failure fails the call.
 */
async function fetchStagedBodies(call: Call, jobs: Job<IngestJobPayload>[]): Promise<Job<IngestJobPayload>[]> {
  const { deps } = call;
  // A shared object is fetched once (see inputsOf).
  const shared = new Map<string, Promise<string>>();
  const fetched = await Promise.allSettled(
    jobs.map((job) =>
      step('read', async () => {
        const stagedOn = deps.drivers.forTarget(await deps.catalogCache.storageTarget(job.payload.storageTargetId));
        const { location, range } = job.payload.staged;
        let input: string;
        if (range) {
          let whole = shared.get(location);
          if (!whole) shared.set(location, (whole = stagedOn.materialize(location, join(call.work, `shared-${shared.size}.json`))));
          input = await whole;
        } else {
          input = await stagedOn.materialize(location, join(call.work, `${job.id}.json`));
        }
        const fields = await validatedFields(deps, call.dataset, job, call.schema.version);
        call.inputs.set(job.id, {
          path: input,
          format: job.payload.staged.format,
          partitionKey: job.payload.partitionKey,
          fields,
          timeSpan: { min: job.payload.minTime, max: job.payload.maxTime },
        });
      }),
    ),
  );
  const readable: Job<IngestJobPayload>[] = [];
  for (const [i, outcome] of fetched.entries()) {
    const job = jobs[i]!;
    if (outcome.status === 'fulfilled') readable.push(job);
    else if (outcome.reason instanceof WriteStepError && outcome.reason.dataFailure) call.results[job.id] = unwritable(call, job, outcome.reason);
    else throw outcome.reason;
  }
  return readable;
}

/**
 * The staged inputs of one write of `jobs`: each job's own body, but a shared staged object whose
 * batches are all in this write (with one partition key and the same fields read) read once and
 * whole (its NDJSON rows, or its JSON documents one after another). Otherwise (a staging log, which
 * is never read whole; a claim that split an object's batches; a failure being narrowed down to
 * its batch: a document whose repeated keys need the slow path is read alone) the batches' byte
 * ranges are read, one input for those read alike (the writer copies them out in its thread).
 */
function inputsOf(call: Call, jobs: Job<IngestJobPayload>[]): StagedInput[] {
  const inputs: StagedInput[] = [];
  const shared = new Map<string, Job<IngestJobPayload>[]>();
  for (const job of jobs) {
    if (!job.payload.staged.range) inputs.push(call.inputs.get(job.id)!);
    else shared.set(job.payload.staged.location, [...(shared.get(job.payload.staged.location) ?? []), job]);
  }
  for (const members of shared.values()) {
    const alike = groupBy(members, (job) => {
      const input = call.inputs.get(job.id)!;
      return `${partitionKeyId(input.partitionKey)} ${String(input.fields)}`;
    });
    const whole = alike.size === 1 && members.length === members[0]!.payload.staged.range!.batches;
    for (const group of alike.values()) {
      const own = group.map((job) => call.inputs.get(job.id)!);
      const spans = own.map((input) => input.timeSpan!);
      inputs.push({
        ...own[0]!,
        timeSpan: { min: spans.map((t) => t.min).sort()[0]!, max: spans.map((t) => t.max).sort().at(-1)! },
        ...(whole ? {} : { ranges: group.map((job) => job.payload.staged.range!).map(({ offset, length }) => ({ offset, length })) }),
      });
    }
  }
  return inputs;
}

/**
 * Writes and publishes `jobs` together; when that fails because of the data, writes each half
 * apart, down to the single batch that cannot be written, which gets its own error.
 */
async function writeApart(call: Call, jobs: Job<IngestJobPayload>[]): Promise<void> {
  if (jobs.length === 0) return;
  try {
    await writeAndPublish(call, jobs);
  } catch (err) {
    if (!(err instanceof WriteStepError && err.dataFailure)) throw err;
    if (jobs.length === 1) {
      call.results[jobs[0]!.id] = unwritable(call, jobs[0]!, err);
      return;
    }
    call.deps.log.warn(
      { dataset: call.dataset.slug, jobs: jobs.length, step: err.step, error: err.message },
      'ingest: a set of batches cannot be written together; writing its halves apart',
    );
    const half = Math.ceil(jobs.length / 2);
    await writeApart(call, jobs.slice(0, half));
    await writeApart(call, jobs.slice(half));
  }
}

/** The error of a batch that cannot be written: final (retrying cannot help), with the reason. */
function unwritable(call: Call, job: Job<IngestJobPayload>, err: WriteStepError): PermanentJobError {
  call.deps.log.error({ dataset: call.dataset.slug, job: job.id, rows: job.payload.rowCount, step: err.step, error: err.message }, 'ingest: a batch cannot be written');
  return new PermanentJobError(`the batch cannot be written: ${err.message}`, { cause: err });
}

/** Writes the jobs' batches as partition files, stores them and publishes them with the jobs' completion. */
async function writeAndPublish(call: Call, jobs: Job<IngestJobPayload>[]): Promise<void> {
  const { deps, tracer, ctx, trace, dataset, schema } = call;
  const added: NewPartition[] = [];
  const storedOn = new Map<string, StorageDriver>(); // location → driver, to delete what was not published
  let publishedVersion = 0;
  try {
    // Batches for different storage targets are written separately: each file lives on the
    // target its batch asked for.
    for (const [targetId, group] of groupBy(jobs, (j) => j.payload.storageTargetId)) {
      const target = await deps.catalogCache.storageTarget(targetId);
      const written = await step('write', () =>
        inSpan(tracer, 'engine.write_partitions', trace, async (span) => {
          const files = await deps.pool.writePartitions({
            inputs: inputsOf(call, group),
            fields: schema.fields,
            timestampColumn: schema.timestampColumn,
            windowSeconds: dataset.partitionWindowSeconds,
            outputDir: call.work,
            sortColumns: dataset.sortColumns,
          });
          span.setAttribute('timestore.files', files.length);
          return files;
        }),
      );
      ctx.signal.throwIfAborted();
      const driver = deps.drivers.forTarget(target);
      try {
        await step('store', () => storePartitionFiles(driver, target, dataset, schema.version, written, (p) => {
          added.push(p);
          storedOn.set(p.location, driver);
        }));
      } finally {
        await Promise.all(written.map((file) => rm(file.path, { force: true }))); // not moved when storing failed
      }
    }

    ctx.signal.throwIfAborted();
    const ids = jobs.map((j) => j.id);
    await step('publish', () =>
      inSpan(tracer, 'catalog.publish', trace, () =>
        inTransaction(deps.sql, async (tx) => {
          const published = await publishManifestVersion(tx, {
            datasetId: dataset.id,
            reason: 'ingest',
            add: added,
            summary: { jobs: ids, rows: jobs.reduce((n, j) => n + j.payload.rowCount, 0) },
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
          const results: JobResults = {};
          for (const job of jobs) {
            results[job.id] = {
              dataset: { id: dataset.id, slug: dataset.slug },
              manifestVersion: published.manifest.version,
              schemaVersion: schema.version,
              rowCount: job.payload.rowCount,
              coalescedJobs: jobs.length,
              claimedJobs: call.claimed,
              // The files that hold the batch's rows (coalesced batches share files, so they may hold
              // others' rows too). Not every file of the publish: with many batches written together,
              // that list repeated in every job's result would outgrow what one catalog write takes.
              partitions: partitions.filter((p) => holdsRowsOf(job.payload, p)),
            };
          }
          await ctx.complete(tx, results, ids);
          Object.assign(call.results, results);
          publishedVersion = published.manifest.version;
        }),
      ),
    );
  } catch (err) {
    // Unpublished for certain: nothing references these files. Unknown: the collector decides.
    if (!(err instanceof WriteStepError && err.cause instanceof CommitOutcomeUnknownError)) {
      await Promise.all([...storedOn].map(([location, driver]) => driver.delete(location).catch(() => {})));
    }
    throw err;
  }
  try {
    deps.published?.(dataset.id, publishedVersion);
  } catch (err) {
    deps.log.warn({ err, dataset: dataset.slug }, 'ingest: a listener of published versions failed');
  }
  const rows = jobs.reduce((n, j) => n + j.payload.rowCount, 0);
  const bytes = added.reduce((n, p) => n + p.sizeBytes, 0);
  call.written.partitions += added.length;
  call.written.bytes += bytes;
  deps.metrics?.ingestWritten(dataset.slug, { rows, partitions: added.length, bytes });
  deps.log.info({ dataset: dataset.slug, jobs: jobs.length, rows, partitions: added.length, ...traceFields(call.span) }, 'ingest: published');
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
