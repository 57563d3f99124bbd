/**
 * Administration: datasets, their manifests, retention policies, storage
 * targets, and jobs that failed for good. Every change is written together
 * with an audit event naming the actor, in one transaction. Datasets are
 * addressed by id or slug.
 */
import type { Sql } from 'postgres';
import { listAuditEvents, recordAuditEvent } from '../catalog/audit.ts';
import {
  createDataset,
  type DatasetListQuery,
  findDataset,
  type DatasetPage,
  getDataset,
  listDatasets,
  lockDataset,
  updateDataset,
} from '../catalog/datasets.ts';
import { deleteFailedJob, getJob, type Job, type JobPage, type JobState, listJobs, retryFailedJob, sharesStagedObject, stagedBodyOf } from '../catalog/job-table.ts';
import { getManifestVersion, listActivePartitions, manifestTotalsByTarget, type TargetTotals } from '../catalog/manifests.ts';
import { catalogId } from '../catalog/identity.ts';
import { referencedLocations } from '../catalog/lifecycle.ts';
import { getRetentionPolicy, putRetentionPolicy } from '../catalog/retention-policies.ts';
import { getSchemaVersion, recordSchemaVersion } from '../catalog/schema-versions.ts';
import { createStorageTarget, findStorageTarget, getStorageTarget, listStorageTargets, type StorageTargetInput } from '../catalog/storage-targets.ts';
import type {
  AuditEvent,
  Dataset,
  DatasetIam,
  DatasetMetadata,
  DatasetStatus,
  ManifestVersion,
  Partition,
  RetentionPolicy,
  SchemaField,
  SchemaVersion,
  StorageTarget,
  StorageTargetKind,
  StoredRetentionPolicy,
} from '../model/records.ts';
import { AppError, errors } from '../model/errors.ts';
import { chooseTimestampColumn, checkDeclaredFields, checkTimestampColumnName, DEFAULT_TIMESTAMP_COLUMN, mergeSchema } from '../model/schema.ts';
import { wakeLocalRunners } from '../jobs/local-signals.ts';
import {
  describeProbeStep,
  type Ownership,
  ownershipOf,
  ownershipProblem,
  probeRoundTrip,
  type StorageDriver,
  type StorageDrivers,
  writeOwnerMarker,
} from '../storage/index.ts';
import { effectiveRetention, type EffectiveRetention, type RetentionDefaults } from '../model/retention.ts';

export interface AdminServiceOptions {
  sql: Sql;
  drivers: StorageDrivers;
  retentionDefaults: RetentionDefaults;
  /** The most fields a dataset may hold (TIMESTORE_INGEST_MAX_FIELDS; default and most MAX_FIELDS). */
  maxFields?: number;
  /** Enqueues (or finds) the lifecycle job of a dataset (src/lifecycle). */
  startLifecycle(datasetId: string, actor: string | null): Promise<Job>;
  /** The job once finished, or as it is when the time is up. */
  waitForJob(jobId: string, timeoutMs: number): Promise<Job | null>;
  /** How long a job retried by an operator is retried for (TIMESTORE_JOB_RETRY_WINDOW_HOURS). */
  jobRetryWindowMs: number;
}

export interface JobListRequest {
  state?: JobState;
  /** Dataset id or slug. */
  dataset?: string;
  kind?: string;
  cursor?: string;
  limit: number;
}

export interface DeletedJob {
  job: Job;
  /** The staged batch deleted with it (null for a job that staged none). */
  stagedBody: { storageTargetId: string; location: string } | null;
}

export interface NewDatasetRequest {
  slug: string;
  name?: string;
  description?: string | null;
  status?: Exclude<DatasetStatus, 'archived'>;
  schema?: { fields: SchemaField[] };
  timestampColumn?: string;
  partitionWindowSeconds?: number;
  sortColumns?: string[];
  storageTargetId?: string;
  iam?: DatasetIam;
  metadata?: Record<string, unknown>;
}

export interface DatasetPatch {
  name?: string;
  description?: string | null;
  status?: DatasetStatus;
  sortColumns?: string[];
  iam?: DatasetIam;
  metadata?: Record<string, unknown>;
}

export interface DatasetDetail {
  dataset: Dataset;
  schema: SchemaVersion | null;
}

export interface ManifestView {
  dataset: Dataset;
  manifest: ManifestVersion | null;
  partitions: Partition[];
  byStorageTarget: TargetTotals[];
  nextCursor: string | null;
}

export interface RetentionView {
  dataset: Dataset;
  stored: StoredRetentionPolicy | null;
  effective: EffectiveRetention;
}

export interface AuditPage {
  events: AuditEvent[];
  nextCursor: string | null;
}

export class AdminService {
  constructor(private readonly o: AdminServiceOptions) {}

  listDatasets(query: DatasetListQuery): Promise<DatasetPage> {
    return listDatasets(this.o.sql, query);
  }

  async getDataset(idOrSlug: string): Promise<DatasetDetail> {
    const dataset = await getDataset(this.o.sql, idOrSlug);
    const schema = dataset.schemaVersion > 0 ? await getSchemaVersion(this.o.sql, dataset.id, dataset.schemaVersion) : null;
    return { dataset, schema };
  }

  async createDataset(input: NewDatasetRequest, actor: string | null): Promise<DatasetDetail> {
    const fields = input.schema?.fields;
    if (fields) checkDeclaredFields(fields, this.o.maxFields);
    if (input.timestampColumn !== undefined) checkTimestampColumnName(input.timestampColumn);
    const timestampColumn = input.timestampColumn ?? (fields ? chooseTimestampColumn(fields) : DEFAULT_TIMESTAMP_COLUMN);
    // The same rules as a first ingest: the timestamp field declared, others nullable unless said.
    const normalized = fields ? mergeSchema(null, fields, timestampColumn).fields : null;
    if (input.sortColumns?.length) checkSortColumns(input.sortColumns, normalized, timestampColumn);
    const target = input.storageTargetId ? await this.writableTarget(input.storageTargetId) : null;
    const named = await findDataset(this.o.sql, input.slug);
    if (named && named.slug !== input.slug) throw errors.slug_is_dataset_id(input.slug, named.slug);
    return this.o.sql.begin(async (tx) => {
      const dataset = await createDataset(tx, {
        slug: input.slug,
        name: input.name,
        description: input.description,
        status: input.status,
        timestampColumn,
        partitionWindowSeconds: input.partitionWindowSeconds,
        sortColumns: input.sortColumns,
        defaultStorageTargetId: target?.id ?? null,
        metadata: withIam(input.metadata ?? {}, input.iam),
      });
      const schema = normalized ? await recordSchemaVersion(tx, dataset.id, normalized, timestampColumn) : null;
      await recordAuditEvent(tx, {
        datasetId: dataset.id,
        action: 'dataset.created',
        actor,
        details: { by: 'admin', dataset: auditedFields(dataset), schemaVersion: schema?.version ?? null },
      });
      return { dataset: await getDataset(tx, dataset.id), schema };
    }) as Promise<DatasetDetail>;
  }

  async updateDataset(idOrSlug: string, patch: DatasetPatch, actor: string | null): Promise<DatasetDetail> {
    const { id } = await getDataset(this.o.sql, idOrSlug);
    const dataset = await this.o.sql.begin(async (tx) => {
      const before = await lockDataset(tx, id);
      if (patch.sortColumns?.length) {
        const schema = before.schemaVersion > 0 ? await getSchemaVersion(tx, id, before.schemaVersion) : null;
        checkSortColumns(patch.sortColumns, schema?.fields ?? null, before.timestampColumn);
      }
      const metadata =
        patch.metadata !== undefined || patch.iam !== undefined
          ? withIam(patch.metadata ?? withoutIam(before.metadata), patch.iam ?? before.metadata.iam)
          : undefined;
      const after = await updateDataset(tx, id, {
        name: patch.name,
        description: patch.description,
        status: patch.status,
        sortColumns: patch.sortColumns,
        metadata,
      });
      const changed = changedFields(auditedFields(before), auditedFields(after));
      if (Object.keys(changed.after).length > 0) {
        await recordAuditEvent(tx, { datasetId: id, action: 'dataset.updated', actor, details: changed });
      }
      return after;
    });
    const schema = dataset.schemaVersion > 0 ? await getSchemaVersion(this.o.sql, id, dataset.schemaVersion) : null;
    return { dataset, schema };
  }

  /** The partitions active at a manifest version (default: the current one), a page at a time. */
  async manifest(idOrSlug: string, options: { version?: number; limit: number; cursor?: string }): Promise<ManifestView> {
    const dataset = await getDataset(this.o.sql, idOrSlug);
    const version = options.version ?? dataset.manifestVersion;
    if (version > dataset.manifestVersion) {
      throw errors.unknown_manifest_version(dataset.slug, dataset.manifestVersion, version);
    }
    const manifest = await getManifestVersion(this.o.sql, dataset.id, version);
    if (!manifest) {
      if (version === 0) return { dataset, manifest: null, partitions: [], byStorageTarget: [], nextCursor: null };
      throw errors.manifest_version_gone(dataset.slug, version, dataset.manifestVersion);
    }
    const afterId = options.cursor ? decodeCursor(options.cursor, 'partition') : undefined;
    const rows = await listActivePartitions(this.o.sql, { datasetId: dataset.id, version, afterId: afterId as string | undefined, limit: options.limit + 1 });
    const partitions = rows.slice(0, options.limit);
    const byStorageTarget = await manifestTotalsByTarget(this.o.sql, dataset.id, version);
    const last = partitions.at(-1);
    return { dataset, manifest, partitions, byStorageTarget, nextCursor: rows.length > options.limit && last ? encodeCursor('partition', last.id) : null };
  }

  async retention(idOrSlug: string): Promise<RetentionView> {
    const dataset = await getDataset(this.o.sql, idOrSlug);
    const stored = await getRetentionPolicy(this.o.sql, dataset.id);
    return { dataset, stored, effective: effectiveRetention(stored?.policy ?? null, this.o.retentionDefaults) };
  }

  async putRetention(idOrSlug: string, policy: RetentionPolicy, actor: string | null): Promise<RetentionView> {
    const dataset = await getDataset(this.o.sql, idOrSlug);
    const stored = await putRetentionPolicy(this.o.sql, dataset.id, policy, actor);
    return { dataset, stored, effective: effectiveRetention(stored.policy, this.o.retentionDefaults) };
  }

  listStorageTargets(kind?: StorageTargetKind): Promise<StorageTarget[]> {
    return listStorageTargets(this.o.sql, kind);
  }

  /**
   * Registers a target whose prefix this catalog may own (empty, or holding its owner marker; else
   * 409 unless `adoptExistingObjects`), after a write probe shows this process can write to and
   * read from it; then writes the owner marker.
   */
  async registerStorageTarget(input: StorageTargetInput, actor: string | null, options: { adoptExistingObjects?: boolean } = {}): Promise<StorageTarget> {
    if (await findStorageTarget(this.o.sql, input.name)) {
      throw errors.storage_target_exists(input.name);
    }
    const owner = await catalogId(this.o.sql);
    let ownership: Ownership | undefined;
    await this.probe(
      input.name,
      () => this.o.drivers.uncached(input),
      async (driver) => {
        ownership = await ownershipOf(driver, owner);
        const problem = ownershipProblem(ownership);
        if (problem && !options.adoptExistingObjects) {
          throw errors.storage_target_not_owned(input.name, problem.found, problem.details, 'register it again with "adoptExistingObjects": true');
        }
        await probeRoundTrip(driver);
        if (ownership.state !== 'owned') await writeOwnerMarker(driver, owner, input.name);
      },
    );
    return this.o.sql.begin(async (tx) => {
      const target = await createStorageTarget(tx, { ...input, ownerMarked: true });
      await recordAuditEvent(tx, {
        datasetId: null,
        action: 'storage_target.registered',
        actor,
        details: {
          id: target.id,
          name: target.name,
          kind: target.kind,
          config: target.config,
          credentials: target.credentials ? 'stored' : 'none',
          // What was under the prefix before: empty, this catalog's marker, or (adopted) another's or none.
          found: ownership?.state,
          ...(ownership?.state === 'other_catalog' ? { previousOwner: ownership.marker.catalog } : {}),
        },
      });
      return target;
    }) as Promise<StorageTarget>;
  }

  /** Points the dataset's new partitions at another target; partitions already written stay where they are. */
  async setStorageTarget(idOrSlug: string, targetIdOrName: string, actor: string | null): Promise<DatasetDetail> {
    const { id } = await getDataset(this.o.sql, idOrSlug);
    const target = await this.writableTarget(targetIdOrName);
    await this.o.sql.begin(async (tx) => {
      const before = await lockDataset(tx, id);
      if (before.defaultStorageTargetId === target.id) return;
      await updateDataset(tx, id, { defaultStorageTargetId: target.id });
      await recordAuditEvent(tx, {
        datasetId: id,
        action: 'dataset.storage_target_changed',
        actor,
        details: { before: before.defaultStorageTargetId, after: target.id, name: target.name },
      });
    });
    return this.getDataset(id);
  }

  async auditEvents(idOrSlug: string, options: { limit: number; cursor?: string }): Promise<AuditPage> {
    const dataset = await getDataset(this.o.sql, idOrSlug);
    const beforeId = options.cursor ? Number(decodeCursor(options.cursor, 'audit')) : undefined;
    const rows = await listAuditEvents(this.o.sql, dataset.id, options.limit + 1, beforeId);
    const events = rows.slice(0, options.limit);
    const last = events.at(-1);
    return { events, nextCursor: rows.length > options.limit && last ? encodeCursor('audit', String(last.id)) : null };
  }

  /** Runs the dataset's lifecycle now; waits up to `waitMs` for it to finish. */
  async runLifecycle(idOrSlug: string, actor: string | null, waitMs: number): Promise<Job> {
    const dataset = await getDataset(this.o.sql, idOrSlug);
    const job = await this.o.startLifecycle(dataset.id, actor);
    return waitMs > 0 ? ((await this.o.waitForJob(job.id, waitMs)) ?? job) : job;
  }

  async job(id: string): Promise<Job> {
    const job = await getJob(this.o.sql, id);
    if (!job) throw errors.not_found('job', id);
    return job;
  }

  async listJobs(request: JobListRequest): Promise<JobPage> {
    const datasetId = request.dataset ? (await getDataset(this.o.sql, request.dataset)).id : undefined;
    return listJobs(this.o.sql, { state: request.state, datasetId, kind: request.kind, cursor: request.cursor, limit: request.limit });
  }

  /**
   * Queues a failed job again (due now, attempts reset, a new retry window), audited as
   * `job.retried`. A job whose staged batch is gone cannot succeed: 409 rather than a day of retries.
   */
  async retryJob(id: string, actor: string | null): Promise<Job> {
    const failed = await this.failedJob(id, 'retried');
    const body = stagedBodyOf(failed);
    if (body && !(await this.stagedBodyExists(body))) {
      throw errors.staged_body_missing(id, body.location);
    }
    let retried: Job;
    try {
      retried = (await this.o.sql.begin(async (tx) => {
        const row = await retryFailedJob(tx, id, this.o.jobRetryWindowMs);
        if (!row) throw notFailed((await getJob(tx, id)) ?? failed, 'retried');
        await recordAuditEvent(tx, { datasetId: row.datasetId, action: 'job.retried', actor, details: jobAudit(failed) });
        return row;
      })) as Job;
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        throw errors.job_key_busy(id, failed.jobKey);
      }
      throw err;
    }
    wakeLocalRunners(retried.queue);
    return retried;
  }

  /**
   * Deletes a failed job and its staged batch, audited as `job.deleted`. The batch goes first: when
   * its storage target cannot delete it, nothing is deleted (503) and the request can be repeated.
   */
  async deleteJob(id: string, actor: string | null): Promise<DeletedJob> {
    const failed = await this.failedJob(id, 'deleted');
    const body = stagedBodyOf(failed);
    // An object shared with other batches (group commit) stays while another job needs it; the
    // write of the last of them, or the orphan sweep, deletes it.
    if (body && !(sharesStagedObject(failed) && (await referencedLocations(this.o.sql, [body.location], [failed.id])).size > 0)) {
      // A failed delete is a StorageError: 503 storage_unavailable (http/errors.ts), nothing deleted.
      const target = await getStorageTarget(this.o.sql, body.storageTargetId);
      await this.o.drivers.forTarget(target).delete(body.location);
    }
    const job = (await this.o.sql.begin(async (tx) => {
      const row = await deleteFailedJob(tx, id);
      if (!row) throw notFailed((await getJob(tx, id)) ?? failed, 'deleted');
      await recordAuditEvent(tx, { datasetId: row.datasetId, action: 'job.deleted', actor, details: { ...jobAudit(row), stagedBody: body?.location ?? null } });
      return row;
    })) as Job;
    return { job, stagedBody: body };
  }

  private async failedJob(id: string, what: 'retried' | 'deleted'): Promise<Job> {
    const job = await this.job(id);
    if (job.state !== 'failed') throw notFailed(job, what);
    return job;
  }

  /** False only when the target says the object is not there; a target that cannot answer leaves it to the job's retries. */
  private async stagedBodyExists(body: { storageTargetId: string; location: string }): Promise<boolean> {
    try {
      const target = await getStorageTarget(this.o.sql, body.storageTargetId);
      return await this.o.drivers.forTarget(target).exists(body.location);
    } catch {
      return true;
    }
  }

  private async writableTarget(idOrName: string): Promise<StorageTarget> {
    const target = await findStorageTarget(this.o.sql, idOrName);
    if (!target) throw errors.storage_target_not_found(idOrName);
    await this.probe(target.name, () => this.o.drivers.forTarget(target));
    return target;
  }

  /**
   * Writes, reads back and deletes a small object (or runs `use` instead, which does so); a target
   * this server cannot use is a 422. A driver opened for a target not in the catalog is closed after.
   */
  private async probe(name: string, open: () => StorageDriver, use?: (driver: StorageDriver) => Promise<void>): Promise<void> {
    let driver: StorageDriver | undefined;
    try {
      driver = open();
      await (use ?? probeRoundTrip)(driver);
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw errors.storage_target_unwritable(name, describeProbeStep(err), err);
    } finally {
      if (use) driver?.close();
    }
  }
}

function notFailed(job: Job, what: 'retried' | 'deleted'): AppError {
  const now = job.state === 'succeeded' ? 'succeeded' : job.state === 'queued' ? `is queued (next attempt at ${job.runAt.toISOString()})` : 'is running';
  return errors.job_not_failed(job.id, job.state, now, what);
}

/** What an audit event records of a job that an operator retried or deleted. */
function jobAudit(job: Job): Record<string, unknown> {
  return {
    jobId: job.id,
    queue: job.queue,
    kind: job.kind,
    attempts: job.attempts,
    lastError: job.lastError,
    createdAt: job.createdAt.toISOString(),
    failedAt: job.finishedAt?.toISOString() ?? null,
  };
}

function withIam(metadata: Record<string, unknown>, iam: DatasetIam | undefined): DatasetMetadata {
  const rest = withoutIam(metadata);
  return iam && (iam.readScopes?.length || iam.writeScopes?.length) ? { ...rest, iam } : rest;
}

function withoutIam(metadata: Record<string, unknown>): Record<string, unknown> {
  const { iam: _iam, ...rest } = metadata;
  return rest;
}

/**
 * What an audit event records of a dataset: everything but its id, the version counters that move
 * with every publish, and the clocks, so a setting added to datasets is audited without a change here.
 */
function auditedFields(d: Dataset): Record<string, unknown> {
  const { id: _id, schemaVersion: _schema, manifestVersion: _manifest, createdAt: _created, updatedAt: _updated, ...audited } = d;
  return audited;
}

/** Sort columns must be distinct fields of the schema other than the timestamp. */
function checkSortColumns(columns: string[], fields: SchemaField[] | null, timestampColumn: string): void {
  const refuse = (message: string) => {
    throw errors.invalid_sort_columns(message, { sortColumns: columns });
  };
  if (!fields) refuse('sortColumns name fields of the schema: give the dataset a schema first (or in the same request)');
  const names = new Set(fields!.map((f) => f.name));
  const seen = new Set<string>();
  for (const column of columns) {
    if (column === timestampColumn) refuse(`sortColumns cannot name the timestamp column ${timestampColumn}: rows are always ordered by it last`);
    if (!names.has(column)) refuse(`sortColumns: ${column} is not a field of the schema (fields: ${[...names].join(', ')})`);
    if (seen.has(column)) refuse(`sortColumns names ${column} twice`);
    seen.add(column);
  }
}

function changedFields(before: Record<string, unknown>, after: Record<string, unknown>) {
  const changed = { before: {} as Record<string, unknown>, after: {} as Record<string, unknown> };
  for (const key of Object.keys(after)) {
    if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) {
      changed.before[key] = before[key];
      changed.after[key] = after[key];
    }
  }
  return changed;
}

function encodeCursor(kind: string, value: string): string {
  return Buffer.from(`${kind}:${value}`).toString('base64url');
}

function decodeCursor(cursor: string, kind: 'partition' | 'audit'): string {
  const decoded = Buffer.from(cursor, 'base64url').toString('utf8');
  const value = decoded.startsWith(`${kind}:`) ? decoded.slice(kind.length + 1) : '';
  const valid = kind === 'audit' ? /^\d{1,18}$/.test(value) : /^[0-9a-f-]{36}$/i.test(value);
  if (!valid) throw errors.invalid_cursor();
  return value;
}
