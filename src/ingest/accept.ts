/**
 * Accepting a batch: validate it, make it durable, queue it.
 *
 * The order is what makes the acknowledgement honest: every row is checked
 * first (a refused batch stores nothing), then the request body is staged on
 * the storage target (so any process sharing the bucket can write it out),
 * then one catalog transaction creates the dataset or its next schema
 * version if needed, claims the idempotency key and inserts the job. Only
 * after that commit does the client hear 202.
 *
 * Except for the most common batch: of an existing dataset, adding no field,
 * without an idempotency key, from a client that does not wait for its write.
 * Its job goes into its staging log's record with the body, and the client
 * hears 202 once that record is durable; the job row is inserted after, in log
 * order (staging-groups.ts), or by the next process to start if this one stops
 * first (logged-jobs.ts). A row remembered from an earlier request is read
 * again while the body is appended, so the batch is accepted only as the
 * catalog's current row would accept it.
 *
 * The body formats (formats/) differ only in where the schema comes from (the
 * batch's declaration, or the dataset's latest version), how rows are checked
 * and what is staged (JSON and NDJSON/CSV bodies as they arrived, Arrow as
 * NDJSON); the rules are the same.
 */
import { randomUUID } from 'node:crypto';
import type { Sql } from 'postgres';
import { recordAuditEvent } from '../catalog/audit.ts';
import { acceptsAsBefore, createDatasetIfMissing, DEFAULT_PARTITION_WINDOW_SECONDS, findDataset, lockDataset } from '../catalog/datasets.ts';
import { claimIdempotencyKey, findIdempotencyKey, type IdempotencyRecord } from '../catalog/idempotency.ts';
import { enqueueJob, enqueueJobIf, getJob, type Job, jobBeforeItsRow, type NewJob } from '../catalog/job-table.ts';
import { getSchemaVersion, recordSchemaVersion } from '../catalog/schema-versions.ts';
import type { CatalogCache } from '../catalog/lookup-cache.ts';
import type { Db } from '../catalog/db.ts';
import { CommitOutcomeUnknownError, inStatement, inTransaction } from '../catalog/transaction.ts';
import { type Dataset, ifNamed, type SchemaField, type SchemaVersion, type StorageTarget } from '../model/records.ts';
import type { StagedInputFormat } from '../engine/partition-writer.ts';
import { AppError } from '../model/errors.ts';
import type { StorageDrivers } from '../storage/index.ts';
import { MAX_BATCH_WINDOWS, MAX_IDEMPOTENCY_KEY_LENGTH, refuse } from '../model/constraints.ts';
import { chooseTimestampColumn, checkDeclaredFields, mergeSchema } from '../model/schema.ts';
import type { BatchParams, DecodedBatch } from './formats/batch.ts';
import { DEFAULT_MAX_BATCH_ROWS, tooManyRows } from './formats/index.ts';
import type { BatchSummary } from './validation.ts';
import { stagingLogKey, stagingObjectKey } from '../model/object-keys.ts';
import { checkObjectKeys } from './object-key-limits.ts';
import { type LoggedJob, type StagedBody, stagedAlone, type StagedRange, type StagingGroups } from './staging-groups.ts';
import type { JobGroups } from './job-groups.ts';
import { isStorableTime, parseIngestTimestamp, STORABLE_TIME_RANGE } from '../model/timestamps.ts';

export const INGEST_JOB_KIND = 'ingest';

/** What an ingest job carries: where its batch is staged and how to read it. */
export interface IngestJobPayload {
  datasetSlug: string;
  schemaVersion: number;
  partitionKey: Record<string, string>;
  storageTargetId: string;
  /** `range`: the body is these bytes of an object shared with other batches (staging-groups.ts). */
  staged: { location: string; format: StagedInputFormat; sizeBytes: number; range?: StagedRange };
  rowCount: number;
  minTime: string;
  maxTime: string;
  /** A client waits for this batch to be written: it does not wait for the coalescing budget. */
  awaited?: boolean;
}

/** The job that writes one staged batch of `dataset` at schema version `schema`. */
export function ingestJob(
  queue: string,
  request: { actor: string | null; traceParent: string | null; awaited?: boolean },
  dataset: Dataset,
  schema: SchemaVersion,
  { target, staged, format }: Pick<StagedBatch, 'target' | 'format'> & { staged: Pick<StagedBody, 'sizeBytes' | 'range'> & { location?: string } },
  partitionKey: Record<string, string>,
  rows: { rowCount: number; minTime: number; maxTime: number },
): NewJob {
  const payload: IngestJobPayload = {
    datasetSlug: dataset.slug,
    schemaVersion: schema.version,
    partitionKey,
    storageTargetId: target.id,
    // No location for a job kept in a staging log's record: the log is its place (jobOfRecord).
    staged: { location: staged.location!, format, sizeBytes: staged.sizeBytes, ...(staged.range ? { range: staged.range } : {}) },
    rowCount: rows.rowCount,
    minTime: new Date(rows.minTime).toISOString(),
    maxTime: new Date(rows.maxTime).toISOString(),
    ...(request.awaited ? { awaited: true } : {}),
  };
  return { queue, kind: INGEST_JOB_KIND, datasetId: dataset.id, payload, actor: request.actor, traceParent: request.traceParent };
}

export interface AcceptRequest {
  datasetSlug: string;
  /** The dataset's row as the request already read it (its scope check), if it did: not read again. */
  dataset?: Dataset;
  /** The request body, decoded in its format (formats/decodeBody); its rows not checked yet. */
  batch: DecodedBatch;
  idempotencyKey: string | null;
  actor: string | null;
  traceParent: string | null;
  /** The client waits until the batch is written (`Prefer: wait`, inline mode). */
  awaited?: boolean;
  /** The caller holds the admin scope: it may send the batch to another storage target than its dataset's. */
  mayChooseTarget?: boolean;
}

export interface Accepted {
  job: Job;
  /** True when an earlier request with the same idempotency key and body already holds this job. */
  replayed: boolean;
  /** For a batch acknowledged on its staging log's record: resolves once its job row exists. */
  jobRow?: Promise<void>;
}

/**
 * The job of a staging log's record (see {@link ingestJob}: written into the record without its
 * body's place, which the log gives).
 */
export function jobOfRecord<J extends NewJob>(job: J, location: string, body: { offset: number; length: number }): J {
  const payload = job.payload as IngestJobPayload;
  return { ...job, payload: { ...payload, staged: { ...payload.staged, location, range: { offset: body.offset, length: body.length } } } };
}

export interface AcceptDeps {
  sql: Sql;
  drivers: StorageDrivers;
  queue: string;
  /** Target for datasets that name none (`local` or `s3`, from TIMESTORE_STORAGE_DRIVER). */
  defaultTargetName: string;
  idempotencyTtlSeconds: number;
  /** Wakes this process's job runner for the jobs just enqueued. */
  wake(enqueued: readonly Job[]): void;
  /** Schema versions and storage targets, kept across batches. */
  catalogCache: CatalogCache;
  /** Group commit of small bodies (one per process); without it each body is staged alone. */
  staging?: StagingGroups;
  /** Group commit of jobs (one per process); without it each job is inserted alone. */
  jobs?: JobGroups;
  /** The most rows one batch may carry (TIMESTORE_INGEST_MAX_BATCH_ROWS; default 1,000,000). */
  maxBatchRows?: number;
  /** The most fields a dataset may hold (TIMESTORE_INGEST_MAX_FIELDS; default and most MAX_FIELDS). */
  maxFields?: number;
}

/** Signals, from inside the transaction, that an earlier request holds the idempotency key. */
export class KeyHeld extends Error {
  constructor(readonly record: IdempotencyRecord) {
    super('idempotency key held');
  }
}

export async function acceptBatch(deps: AcceptDeps, request: AcceptRequest): Promise<Accepted> {
  const { batch } = request;
  checkRequestText(request.idempotencyKey, batch);
  const named = batch.declare(null);
  if (named) checkDeclaredFields(named, deps.maxFields);
  // The row the request's scope check passed on, if it has one (possibly a row this process read
  // for an earlier request): the batch is queued only while the catalog's row still accepts it as
  // that one did, so the check holds when the batch is acknowledged.
  const checkedOn = ifNamed(request.dataset, request.datasetSlug);
  const existing = checkedOn ?? (await findDataset(deps.sql, request.datasetSlug));
  if (existing) assertAcceptsIngest(existing);
  // A dataset named by its id (as every route may) is that dataset: never a new one called by the id.
  const slug = existing?.slug ?? request.datasetSlug;
  const latest = existing && existing.schemaVersion > 0 ? await deps.catalogCache.schemaVersion(existing.id, existing.schemaVersion) : null;
  const declared = batch.declare(latest) ?? datasetFields(slug, existing, latest);
  const timestampColumn = existing?.timestampColumn ?? chooseTimestampColumn(declared);
  const merged = mergeSchema(latest, declared, timestampColumn, deps.maxFields);
  // The common case, a batch of an existing dataset that adds no field, takes no lock: its
  // fields are in the latest version, and versions only grow, so concurrent batches of one
  // dataset do not queue behind each other here.
  const unchanged = existing !== null && latest !== null && merged.added.length === 0;
  // Staging is I/O and checking the rows is work for this thread: when the staged bytes are the
  // body itself and large enough to be staged alone, staging starts first and moves on while the
  // check yields (NDJSON does, between chunks of lines). Refusals of the rows still come first, as
  // if staging had waited for them; a refused batch's staged body is deleted before the answer. A
  // small body (checked in well under a millisecond) may share a staging log, from which it could
  // not be taken back: it is staged once its rows passed.
  const early = batch.stagesBodyAsReceived && stagedAlone(batch.staged().bytes.byteLength);
  const staging = early ? stageBody(deps, slug, batch, existing, request.mayChooseTarget === true) : null;
  staging?.catch(() => {}); // observed below
  let summary: BatchSummary;
  let requestHash: string;
  try {
    summary = await batch.validate({
      fields: merged.fields,
      timestampColumn,
      strict: existing?.metadata.allowUnknownFields !== true,
      timeRange: parseTimeRange(batch.partition.timeRange),
    });
    const maxRows = deps.maxBatchRows ?? DEFAULT_MAX_BATCH_ROWS;
    if (summary.rowCount > maxRows) throw tooManyRows(summary.rowCount, maxRows);
    checkPartitionKey(batch.partition.key);
    checkWindowSpan(summary, existing?.partitionWindowSeconds ?? DEFAULT_PARTITION_WINDOW_SECONDS);
    // Hashing a 3 MB body costs as much as validating it: only done when there is a key to hold it.
    requestHash = request.idempotencyKey ? batch.requestHash() : '';
    if (existing && request.idempotencyKey) {
      const held = await findIdempotencyKey(deps.sql, existing.id, request.idempotencyKey);
      if (held) {
        await discard(deps, staging);
        return replay(deps.sql, held, requestHash);
      }
    }
  } catch (err) {
    await discard(deps, staging);
    throw err;
  }
  // May be acknowledged on its staging log's record (see the top of this file). On a target that
  // takes logs, the body is appended while a row the request did not read itself is read again:
  // a batch the row no longer accepts as before, or whose row could not be read, is withdrawn
  // from the log once the log's mark has passed its record (so no replay inserts it either), and
  // refused as the path below would have refused it.
  const mayLogJob = unchanged && !early && !request.idempotencyKey && !request.awaited && deps.jobs !== undefined;
  let logged: (NewJob & { id: string }) | undefined;
  let accepted: Promise<boolean> | undefined;
  const jobFor: JobFor = (target, format) => {
    accepted = checkedOn ? deps.jobs!.confirm(checkedOn) : Promise.resolve(true);
    accepted.catch(() => {}); // observed below
    logged = { ...ingestJob(deps.queue, request, existing!, latest!, { target, staged: { sizeBytes: batch.staged().bytes.byteLength }, format }, batch.partition.key, summary), id: randomUUID() };
    return { job: logged, accepted };
  };
  const { target, driver, staged, format } = await (staging ?? stageBody(deps, slug, batch, existing, request.mayChooseTarget === true, mayLogJob ? jobFor : undefined));
  if (staged.jobRow && staged.range && logged && accepted) {
    const outcome = await accepted.then(
      (yes) => (yes ? null : datasetChanged(slug)),
      (err: unknown) => err,
    );
    if (!outcome) return { job: jobBeforeItsRow(jobOfRecord(logged, staged.location, staged.range)), replayed: false, jobRow: staged.jobRow };
    // Withdrawn: answered once no replay can insert it (a catalog that could not be read is
    // waited for, as the record is withdrawn only once the catalog takes the log's mark).
    await staged.jobRow;
    throw outcome;
  }
  // Otherwise the job row comes before the 202: the path below, whose INSERT finds a changed row itself.

  try {
    // Without an idempotency key to claim, the common case's one statement needs no transaction.
    const newJob = (dataset: Dataset, schema: SchemaVersion) =>
      ingestJob(deps.queue, request, dataset, schema, { target, staged, format }, batch.partition.key, summary);
    // null: the row the check passed on no longer accepts the batch as it did.
    const enqueue = async (db: Db, job: NewJob): Promise<Job | null> =>
      checkedOn ? enqueueJobIf(db, job, acceptsAsBefore(db, checkedOn)) : (await enqueueJob(db, job)).job;
    // Outside a transaction, a job checked on a row is inserted with the other jobs of that row's
    // dataset arriving at the same time (job-groups.ts).
    const enqueueWithOthers = (job: NewJob): Promise<Job | null> =>
      checkedOn && deps.jobs ? deps.jobs.enqueue(job, checkedOn) : enqueue(deps.sql, job);
    const changed = () => datasetChanged(slug);
    const job =
      unchanged && !request.idempotencyKey
        ? await inStatement(() => enqueueWithOthers(newJob(existing, latest)))
        : await inTransaction(deps.sql, async (tx) => {
            const dataset = unchanged ? existing : await ensureDataset(tx, slug, batch, timestampColumn, request.actor, batch.storageTargetId ? target.id : null);
            const schema = unchanged ? latest : await recordSchema(tx, dataset, declared, timestampColumn, request.actor, deps.maxFields);
            const job = await enqueue(tx, newJob(dataset, schema));
            if (!job) throw changed(); // rolls back what the transaction wrote
            if (request.idempotencyKey) {
              const held = await claimIdempotencyKey(tx, {
                datasetId: dataset.id,
                key: request.idempotencyKey,
                requestHash,
                jobId: job.id,
                ttlSeconds: deps.idempotencyTtlSeconds,
              });
              if (held) throw new KeyHeld(held);
            }
            return job;
          });
    if (!job) throw changed();
    deps.wake([job]);
    await settleStaged(deps, { driver, staged }, true);
    return { job, replayed: false };
  } catch (err) {
    // After a commit of unknown outcome the job may exist and need its body: the collector decides.
    await settleStaged(deps, { driver, staged }, err instanceof CommitOutcomeUnknownError);
    if (err instanceof KeyHeld) return replay(deps.sql, err.record, requestHash);
    throw err;
  }
}

/** The refusal of a batch whose dataset's row changed while it was accepted (the route checks the caller again and starts over). */
function datasetChanged(slug: string): AppError {
  return refuse('dataset_changed', `dataset "${slug}" changed (its scopes, status or storage target) while this batch was accepted; send it again`, { dataset: slug });
}

/**
 * Stages the batch's body on its storage target: durable once this resolves. `jobFor`: the job to
 * keep in a staging log's record with the body, if it goes to one.
 */
async function stageBody(deps: AcceptDeps, slug: string, batch: DecodedBatch, existing: Dataset | null, mayChooseTarget: boolean, jobFor?: JobFor) {
  return stageBytes(deps, slug, await batchTarget(deps, slug, batch, existing, mayChooseTarget), batch.staged(), batch.partition.key, jobFor);
}

/**
 * The job of a body staged on `target` in `format`, without the body's place (see
 * {@link jobOfRecord}), and whether its batch is accepted; asked for only when the body goes to a
 * staging log.
 */
type JobFor = (target: StorageTarget, format: StagedInputFormat) => LoggedJob;

/** A body staged on its storage target, durable (what `stageBytes` resolves to). */
export type StagedBatch = Awaited<ReturnType<typeof stageBytes>>;

/**
 * The staged formats whose bodies, one after another (each on lines of its own), read as one file:
 * these are staged with group commit. A CSV body carries its own header.
 */
const GROUPED_FORMATS: ReadonlySet<StagedInputFormat> = new Set(['ndjson', 'json-document']);

/** Stages `body` for a batch of the dataset `slug` with this partition key on `target`. */
export async function stageBytes(
  deps: AcceptDeps,
  slug: string,
  target: StorageTarget,
  body: ReturnType<DecodedBatch['staged']>,
  partitionKey: Record<string, string>,
  jobFor?: JobFor,
) {
  const driver = deps.drivers.forTarget(target);
  checkObjectKeys(driver, slug, partitionKey, body.extension);
  const keys = { body: () => stagingObjectKey(slug, body.extension), log: () => stagingLogKey(slug, body.extension) };
  const staged: StagedBody =
    deps.staging && GROUPED_FORMATS.has(body.format)
      ? await deps.staging.stage(driver, `${target.id} ${slug} ${body.format}`, keys, body.bytes, jobFor && (() => jobFor(target, body.format)))
      : await driver.putBytes(keys.body(), body.bytes);
  return { target, driver, staged, format: body.format };
}

/**
 * What becomes of a staged body once its batch is queued (its job committed, or perhaps: a commit
 * of unknown outcome, which the collector decides), or not: an object of its own is deleted at once
 * when its batch is not queued; an object shared with other batches (staging-groups.ts) when none
 * of them is.
 */
export async function settleStaged(deps: AcceptDeps, { driver, staged }: Pick<StagedBatch, 'driver' | 'staged'>, queued: boolean): Promise<void> {
  if (staged.range) await deps.staging?.settle(staged, queued);
  else if (!queued) await driver.delete(staged.location).catch(() => {}); // else left for the collector
}

/** Settles a body staged for a batch that is not queued after all; whatever went wrong staging it no longer matters. */
async function discard(deps: AcceptDeps, staging: ReturnType<typeof stageBody> | null): Promise<void> {
  if (!staging) return;
  try {
    await settleStaged(deps, await staging, false);
  } catch {
    // not stored
  }
}

/** The schema of a batch whose format carries none (NDJSON, CSV): the dataset's latest version. */
function datasetFields(slug: string, existing: Dataset | null, latest: SchemaVersion | null): SchemaField[] {
  if (!existing) {
    throw refuse(
      'dataset_missing',
      `dataset "${slug}" does not exist, and NDJSON and CSV batches take their schema from the dataset: ` +
        'create it with a JSON batch (which declares schema.fields) or an Arrow stream (whose schema declares the fields) first',
      { dataset: slug },
    );
  }
  if (!latest) {
    throw refuse(
      'dataset_without_schema',
      `dataset "${slug}" has no schema yet, and NDJSON and CSV batches take their schema from the dataset: send a JSON batch or an Arrow stream first`,
      { dataset: slug },
    );
  }
  return latest.fields;
}

export function assertAcceptsIngest(dataset: Dataset): void {
  if (dataset.status !== 'active') {
    throw refuse(dataset.status === 'archived' ? 'dataset_archived' : 'dataset_inactive', `dataset "${dataset.slug}" is ${dataset.status} and accepts no new rows`);
  }
}

/**
 * The batch's storage target: its dataset's (for a new dataset, the server's default), or the one
 * the batch names, which must be that same target unless the caller may administer (403 otherwise,
 * before the name is looked up: a writer learns nothing about other targets).
 */
/** The storage target of a dataset's batches (a new dataset's: the default). */
export function datasetTarget(deps: AcceptDeps, existing: Dataset | null): Promise<StorageTarget> {
  return storageTarget(deps, existing?.defaultStorageTargetId ?? deps.defaultTargetName);
}

async function batchTarget(deps: AcceptDeps, slug: string, batch: DecodedBatch, existing: Dataset | null, mayChooseTarget: boolean): Promise<StorageTarget> {
  const own = await datasetTarget(deps, existing);
  const named = batch.storageTargetId;
  if (!named || named === own.id || named === own.name) return own;
  if (!mayChooseTarget) {
    const whose = existing ? `the storage target of dataset "${slug}"` : `the default storage target a new dataset ("${slug}") gets`;
    throw refuse('storage_target_choice', `storageTargetId "${named}" is not ${whose}, "${own.name}": sending a batch to another target needs the admin scope`);
  }
  return storageTarget(deps, named);
}

/** The batch's storage target; 404 `storage_target_not_found` when it names none that is registered. */
async function storageTarget(deps: AcceptDeps, idOrName: string): Promise<StorageTarget> {
  try {
    return await deps.catalogCache.storageTarget(idOrName);
  } catch (err) {
    if (err instanceof AppError && err.code === 'not_found') throw refuse('storage_target', idOrName);
    throw err;
  }
}

/** An idempotency key the catalog can hold: PostgreSQL text holds no U+0000, and the key is indexed. An empty key is no key. */
export function checkIdempotencyKey(idempotencyKey: string | null): void {
  if (idempotencyKey && (idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH || idempotencyKey.includes('\0'))) {
    throw refuse(
      'idempotency_key',
      `the idempotency key must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters without U+0000 (got ${idempotencyKey.length})`,
      { length: idempotencyKey.length },
    );
  }
}

/** Text that the catalog stores or looks up: PostgreSQL text holds no U+0000, and the idempotency key is indexed. */
function checkRequestText(idempotencyKey: string | null, batch: DecodedBatch): void {
  checkIdempotencyKey(idempotencyKey);
  for (const [name, value] of [['datasetName', batch.datasetName], ['storageTargetId', batch.storageTargetId]] as const) {
    if (value?.includes('\0')) throw refuse('nul_character', `${name} contains U+0000, which the catalog cannot store; remove it`, { parameter: name });
  }
}

/** A batch spans at most MAX_BATCH_WINDOWS partition windows, counted from its first row's window to its last's. */
export function checkWindowSpan(summary: { minTime: number; maxTime: number }, windowSeconds: number): void {
  const windowMs = windowSeconds * 1000;
  const windows = Math.floor(summary.maxTime / windowMs) - Math.floor(summary.minTime / windowMs) + 1;
  if (windows > MAX_BATCH_WINDOWS) {
    throw refuse(
      'window_span',
      `the batch's rows span ${windows} partition windows of ${windowSeconds} s (${new Date(summary.minTime).toISOString()} to ` +
        `${new Date(summary.maxTime).toISOString()}); a batch may span at most ${MAX_BATCH_WINDOWS}: split it by time`,
      { windows, windowSeconds, limit: MAX_BATCH_WINDOWS },
    );
  }
}

/** The answer to a request whose idempotency key an earlier one holds: its job, if the body is the same. */
export async function replay(sql: Sql, held: IdempotencyRecord, requestHash: string): Promise<Accepted> {
  if (held.requestHash !== requestHash) {
    throw refuse(
      'idempotency_reused',
      `idempotency key "${held.key}" was used for a different request body; use a new key for a new batch`,
      { key: held.key, firstSeenAt: held.createdAt.toISOString() },
    );
  }
  const job = held.jobId ? await getJob(sql, held.jobId) : null;
  if (!job) throw refuse('idempotency_expired', `the job of idempotency key "${held.key}" is gone; use a new key`, { key: held.key });
  return { job, replayed: true };
}

function parseTimeRange(range: BatchParams['partition']['timeRange']): { start: number; end: number } | undefined {
  if (!range) return undefined;
  const start = parseIngestTimestamp(range.start);
  const end = parseIngestTimestamp(range.end);
  if (Number.isNaN(start) || Number.isNaN(end)) {
    throw refuse('time_range', 'partition.timeRange.start and end must be ISO-8601 timestamps (an offset needs the seconds)', { timeRange: range });
  }
  if (!isStorableTime(start) || !isStorableTime(end)) {
    throw refuse(
      'time_range',
      `partition.timeRange must lie within ${STORABLE_TIME_RANGE.min} to ${STORABLE_TIME_RANGE.max} (after applying offsets)`,
      { timeRange: range, min: STORABLE_TIME_RANGE.min, max: STORABLE_TIME_RANGE.max },
    );
  }
  if (start >= end) throw refuse('time_range', 'partition.timeRange.start must be before end', { timeRange: range });
  return { start, end };
}

const KEY_PART = /^[A-Za-z0-9_.:-]{1,128}$/;

function checkPartitionKey(key: Record<string, string>): void {
  const entries = Object.entries(key);
  if (entries.length > 8) throw refuse('partition_key', 'partition.key has more than 8 fields', { fields: entries.length });
  for (const [name, value] of entries) {
    if (!KEY_PART.test(name) || !KEY_PART.test(value)) {
      throw refuse(
        'partition_key',
        `partition.key "${name}": "${value}" is not allowed: names and values use letters, digits and _ . : - (at most 128)`,
        { field: name },
      );
    }
  }
}

/** The dataset row, created by the first batch (a concurrent first batch may win: then it is used). */
export async function ensureDataset(
  tx: Db,
  slug: string,
  batch: Pick<DecodedBatch, 'datasetName' | 'format'>,
  timestampColumn: string,
  actor: string | null,
  storageTargetId: string | null,
): Promise<Dataset> {
  // A first batch that names its target (only an administrator's may) makes it the dataset's.
  const created = await createDatasetIfMissing(tx, { slug, name: batch.datasetName ?? slug, timestampColumn, defaultStorageTargetId: storageTargetId });
  if (created) {
    await recordAuditEvent(tx, { datasetId: created.id, action: 'dataset.created', actor, details: { by: 'ingest', format: batch.format } });
  }
  const dataset = created ?? (await findDataset(tx, slug));
  if (!dataset) throw new Error(`dataset ${slug} vanished`);
  assertAcceptsIngest(dataset);
  if (dataset.timestampColumn !== timestampColumn) {
    // A concurrent first batch created the dataset with another timestamp column.
    throw refuse('concurrent_creation', `dataset "${dataset.slug}" was just created by another request; retry this batch`, {
      timestampColumn: dataset.timestampColumn,
    });
  }
  return dataset;
}

/**
 * Records the batch's schema under the dataset lock. The merge is done again
 * here because another batch may have added a version since the check above.
 */
export async function recordSchema(
  tx: Db,
  dataset: Dataset,
  declared: SchemaField[],
  timestampColumn: string,
  actor: string | null,
  maxFields: number | undefined,
): Promise<SchemaVersion> {
  const locked = await lockDataset(tx, dataset.id);
  const latest = locked.schemaVersion > 0 ? await getSchemaVersion(tx, locked.id, locked.schemaVersion) : null;
  const merged = mergeSchema(latest, declared, timestampColumn, maxFields);
  if (latest && merged.added.length === 0) return latest;
  const version = await recordSchemaVersion(tx, locked.id, merged.fields, timestampColumn);
  if (latest) {
    await recordAuditEvent(tx, {
      datasetId: locked.id,
      action: 'schema.evolved',
      actor,
      details: { version: version.version, added: merged.added },
    });
  }
  return version;
}
