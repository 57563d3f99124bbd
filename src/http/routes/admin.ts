/**
 * The administrative API under /admin: datasets, manifests, retention policies, storage targets,
 * audit events, and jobs (failed ones retried or deleted). Every route needs the admin scope; the
 * handlers only translate HTTP to AdminService.
 */
import { Elysia, t } from 'elysia';
import type { AdminService, DatasetDetail, ManifestView, RetentionView } from '../../admin/service.ts';
import type { AuditEvent, Dataset, Partition, StorageTarget } from '../../model/records.ts';
import { accepted, acceptedBody, keepOpenFor, requestedWaitMs } from '../accepted.ts';
import { actorOf, type Scoped } from '../auth.ts';
import { ErrorBody } from '../errors.ts';
import { FieldTypeSchema } from '../../model/field-types.ts';
import { JobView, jobView } from '../job-view.ts';

const SLUG = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$';
const Scopes = t.Array(t.String({ minLength: 1, maxLength: 200 }), { maxItems: 50 });
const Iam = t.Object(
  { readScopes: t.Optional(Scopes), writeScopes: t.Optional(Scopes) },
  { additionalProperties: false, description: "The dataset's own scopes: when they name any, they replace the server-wide read/write scope for this dataset." },
);
const Status = t.Union([t.Literal('active'), t.Literal('inactive'), t.Literal('archived')], {
  description: '`inactive`: refuses ingest, still answers queries; `archived`: refuses both.',
});
const Metadata = t.Record(t.String(), t.Unknown(), {
  description: 'Free-form metadata (`allowUnknownFields: true` makes ingestion ignore fields the schema lacks); `iam` is set with the `iam` field.',
});
const DatasetParams = t.Object({ datasetId: t.String({ description: 'Dataset id or slug.' }) });
const JobParams = t.Object({ jobId: t.String() });
const JobState = t.Union([t.Literal('queued'), t.Literal('running'), t.Literal('succeeded'), t.Literal('failed')]);
const Limit = (max: number, fallback: number) => t.Optional(t.Integer({ minimum: 1, maximum: max, default: fallback }));
const Cursor = t.Optional(t.String({ description: '`nextCursor` of the previous page.' }));
const Timestamp = t.String({ format: 'date-time' });
const SortColumns = t.Array(t.String(), {
  maxItems: 8,
  description:
    'Fields that rows are ordered by inside each partition file, before the timestamp (a clustering key, e.g. `["hostname"]`): queries filtering on them read fewer row groups. Applies to files written from then on (ingest and compaction); `[]`: time order only.',
});

const DatasetView = t.Object({
  id: t.String(),
  slug: t.String(),
  name: t.String(),
  description: t.Nullable(t.String()),
  status: Status,
  timestampColumn: t.String(),
  partitionWindowSeconds: t.Integer(),
  sortColumns: t.Array(t.String()),
  defaultStorageTargetId: t.Nullable(t.String({ description: 'Where new partitions go; null: the server default (TIMESTORE_STORAGE_DRIVER).' })),
  iam: Iam,
  metadata: Metadata,
  schemaVersion: t.Integer(),
  manifestVersion: t.Integer(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});

const DatasetDetailView = t.Object({
  ...DatasetView.properties,
  schema: t.Nullable(
    t.Object({
      version: t.Integer(),
      timestampColumn: t.String(),
      fields: t.Array(t.Object({ name: t.String(), type: FieldTypeSchema, nullable: t.Optional(t.Boolean()) })),
    }),
  ),
});

const PartitionView = t.Object({
  id: t.String(),
  location: t.String({ description: 'file:// or s3:// URI.' }),
  storageTargetId: t.String(),
  partitionKey: t.Record(t.String(), t.String()),
  schemaVersion: t.Integer(),
  startTime: Timestamp,
  endTime: Timestamp,
  rowCount: t.Integer(),
  sizeBytes: t.Integer(),
  checksum: t.String(),
  addedVersion: t.Integer(),
});

const Totals = t.Object({ partitions: t.Integer(), rowCount: t.Integer(), sizeBytes: t.Integer() });

const ManifestBody = t.Object({
  datasetId: t.String(),
  version: t.Integer({ description: '0 before the first publish.' }),
  latestVersion: t.Integer(),
  reason: t.Nullable(t.String({ description: 'What published this version (ingest, retention, compaction).' })),
  createdAt: t.Nullable(Timestamp),
  totals: Totals,
  byStorageTarget: t.Array(t.Object({ storageTargetId: t.String(), ...Totals.properties })),
  partitions: t.Array(PartitionView, { description: 'Oldest first, a page at a time (see `nextCursor`).' }),
  nextCursor: t.Nullable(t.String()),
});

const RetentionRules = t.Object(
  {
    maxAgeHours: t.Optional(
      t.Nullable(t.Number({ exclusiveMinimum: 0, maximum: 876_000, description: 'Remove partitions whose newest row is older than this (wall-clock). null: no limit.' })),
    ),
    maxTotalBytes: t.Optional(
      t.Nullable(t.Integer({ minimum: 1, description: 'Remove the oldest partitions while the dataset is larger than this. null: no limit.' })),
    ),
  },
  { additionalProperties: false, description: 'A rule left out inherits the server default.' },
);
const RetentionBody = t.Object(
  {
    rules: RetentionRules,
    deleteGraceMinutes: t.Optional(
      t.Integer({ minimum: 0, maximum: 10_080, description: 'How long the files of removed partitions are kept after their removal (default: the server\'s); files a running query or stream reads are kept until it ends anyway.' }),
    ),
  },
  { additionalProperties: false, example: { rules: { maxAgeHours: 8760 }, deleteGraceMinutes: 5 } },
);
const Rule = (value: ReturnType<typeof t.Number> | ReturnType<typeof t.Nullable>) =>
  t.Object({ value, source: t.Union([t.Literal('dataset'), t.Literal('server'), t.Literal('none')]) });
const RetentionViewBody = t.Object({
  datasetId: t.String(),
  stored: t.Nullable(t.Object({ policy: RetentionBody, updatedBy: t.Nullable(t.String()), updatedAt: Timestamp })),
  effective: t.Object({
    maxAgeHours: Rule(t.Nullable(t.Number())),
    maxTotalBytes: Rule(t.Nullable(t.Number())),
    deleteGraceMinutes: Rule(t.Number()),
  }),
});

const LocalConfig = t.Object({ root: t.String({ pattern: '^/', description: 'Absolute directory on this machine.' }) }, { additionalProperties: false });
const S3Config = t.Object(
  {
    bucket: t.String({ pattern: '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' }),
    prefix: t.Optional(t.String({ maxLength: 512 })),
    endpoint: t.Optional(t.Nullable(t.String({ pattern: '^https?://', description: 'S3-compatible endpoint; default: TIMESTORE_S3_ENDPOINT, else AWS.' }))),
    region: t.Optional(t.Nullable(t.String({ maxLength: 64 }))),
    forcePathStyle: t.Optional(t.Boolean()),
  },
  { additionalProperties: false },
);
const StorageTargetView = t.Object({
  id: t.String(),
  name: t.String(),
  kind: t.Union([t.Literal('local'), t.Literal('s3')]),
  description: t.Nullable(t.String()),
  config: t.Union([LocalConfig, S3Config]),
  hasCredentials: t.Boolean({ description: 'True when the target carries its own S3 keys (never shown).' }),
  ownerMarkedAt: t.Nullable(t.String({ format: 'date-time', description: "When this catalog wrote its owner marker (`.timestore-owner`) under the target; null until then (a target registered before markers existed is marked at the next boot). The orphan sweep skips a target without this catalog's marker." })),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
const TargetName = t.String({ pattern: SLUG, description: 'Letters, digits and _ . - (at most 128).' });
const Credentials = t.Object(
  { accessKeyId: t.String({ minLength: 1 }), secretAccessKey: t.String({ minLength: 1 }), sessionToken: t.Optional(t.String()) },
  { additionalProperties: false, description: "The target's own keys, stored in the catalog and never returned; default: the server's TIMESTORE_S3_* credentials." },
);
const AdoptExistingObjects = t.Optional(
  t.Boolean({
    description:
      "Take the prefix although it holds objects timestore did not write (no owner marker) or another catalog's marker: this catalog's marker is written over it. " +
      'Without it such a prefix is refused (409 `storage_target_not_owned`). The sweep still deletes only keys of the exact shapes timestore writes.',
  }),
);
const NewStorageTarget = t.Union(
  [
    t.Object(
      { name: TargetName, kind: t.Literal('local'), description: t.Optional(t.String()), config: LocalConfig, adoptExistingObjects: AdoptExistingObjects },
      { additionalProperties: false },
    ),
    t.Object(
      {
        name: TargetName,
        kind: t.Literal('s3'),
        description: t.Optional(t.String()),
        config: S3Config,
        credentials: t.Optional(Credentials),
        adoptExistingObjects: AdoptExistingObjects,
      },
      { additionalProperties: false },
    ),
  ],
  { example: { name: 'archive', kind: 'local', description: 'Second disk', config: { root: '/tmp/timestore-archive' } } },
);

const AuditEventView = t.Object({
  id: t.Integer(),
  action: t.String({ description: 'e.g. dataset.created, dataset.updated, schema.evolved, schema.repaired, retention.updated, dataset.storage_target_changed.' }),
  actor: t.Nullable(t.String({ description: "The API token's name, or x-iam-user / x-user-id in header mode." })),
  details: t.Record(t.String(), t.Unknown()),
  createdAt: Timestamp,
});

const NewDataset = t.Object(
  {
    slug: t.String({ pattern: SLUG }),
    name: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
    description: t.Optional(t.Nullable(t.String({ maxLength: 2000 }))),
    status: t.Optional(t.Union([t.Literal('active'), t.Literal('inactive')])),
    schema: t.Optional(
      t.Object({
        fields: t.Array(t.Object({ name: t.String(), type: FieldTypeSchema, nullable: t.Optional(t.Boolean()) }), { minItems: 1, maxItems: 1024 }),
      }),
    ),
    timestampColumn: t.Optional(t.String({ description: 'Default: `timestamp`, or the first timestamp field of `schema`.' })),
    partitionWindowSeconds: t.Optional(
      t.Integer({ minimum: 60, maximum: 31_622_400, description: 'Time window of one partition file (default 86400, one day UTC).' }),
    ),
    sortColumns: t.Optional(SortColumns),
    storageTargetId: t.Optional(t.String({ description: 'Storage target (id or name) for new partitions; it must pass a write probe.' })),
    iam: t.Optional(Iam),
    metadata: t.Optional(Metadata),
  },
  {
    additionalProperties: false,
    example: {
      slug: 'weather',
      name: 'Weather stations',
      schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'temperature_c', type: 'double' }, { name: 'station', type: 'string' }] },
      iam: { readScopes: ['weather:read'], writeScopes: ['weather:write'] },
    },
  },
);

const DatasetPatchBody = t.Object(
  {
    name: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
    description: t.Optional(t.Nullable(t.String({ maxLength: 2000 }))),
    status: t.Optional(Status),
    sortColumns: t.Optional(SortColumns),
    iam: t.Optional(Iam),
    metadata: t.Optional(Metadata),
  },
  { additionalProperties: false, minProperties: 1, example: { status: 'inactive', description: 'Replaced by weather-v2' } },
);

function datasetView(d: Dataset) {
  const { iam, ...metadata } = d.metadata;
  return {
    id: d.id,
    slug: d.slug,
    name: d.name,
    description: d.description,
    status: d.status,
    timestampColumn: d.timestampColumn,
    partitionWindowSeconds: d.partitionWindowSeconds,
    sortColumns: d.sortColumns,
    defaultStorageTargetId: d.defaultStorageTargetId,
    iam: iam ?? {},
    metadata,
    schemaVersion: d.schemaVersion,
    manifestVersion: d.manifestVersion,
    createdAt: d.createdAt.toISOString(),
    updatedAt: d.updatedAt.toISOString(),
  };
}

function detailView({ dataset, schema }: DatasetDetail) {
  return {
    ...datasetView(dataset),
    schema: schema ? { version: schema.version, timestampColumn: schema.timestampColumn, fields: schema.fields } : null,
  };
}

function partitionView(p: Partition) {
  return {
    id: p.id,
    location: p.location,
    storageTargetId: p.storageTargetId,
    partitionKey: p.partitionKey,
    schemaVersion: p.schemaVersion,
    startTime: p.startTime.toISOString(),
    endTime: p.endTime.toISOString(),
    rowCount: p.rowCount,
    sizeBytes: p.sizeBytes,
    checksum: p.checksum,
    addedVersion: p.addedVersion,
  };
}

function manifestView(v: ManifestView) {
  return {
    datasetId: v.dataset.id,
    version: v.manifest?.version ?? 0,
    latestVersion: v.dataset.manifestVersion,
    reason: v.manifest?.reason ?? null,
    createdAt: v.manifest?.createdAt.toISOString() ?? null,
    totals: { partitions: v.manifest?.partitionCount ?? 0, rowCount: v.manifest?.rowCount ?? 0, sizeBytes: v.manifest?.sizeBytes ?? 0 },
    byStorageTarget: v.byStorageTarget.map((b) => ({ storageTargetId: b.storageTargetId, partitions: b.partitions, rowCount: b.rowCount, sizeBytes: b.sizeBytes })),
    partitions: v.partitions.map(partitionView),
    nextCursor: v.nextCursor,
  };
}

function retentionView(v: RetentionView) {
  return {
    datasetId: v.dataset.id,
    stored: v.stored ? { policy: v.stored.policy, updatedBy: v.stored.updatedBy, updatedAt: v.stored.updatedAt.toISOString() } : null,
    effective: v.effective,
  };
}

function storageTargetView(s: StorageTarget) {
  return {
    id: s.id,
    name: s.name,
    kind: s.kind,
    description: s.description,
    config: s.config,
    hasCredentials: s.credentials !== null,
    ownerMarkedAt: s.ownerMarkedAt?.toISOString() ?? null,
    createdAt: s.createdAt.toISOString(),
    updatedAt: s.updatedAt.toISOString(),
  };
}

function auditEventView(e: AuditEvent) {
  return { id: e.id, action: e.action, actor: e.actor, details: e.details, createdAt: e.createdAt.toISOString() };
}

const errorsOf = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorBody]));
const detail = (summary: string, description: string) => ({ tags: ['admin'], summary, description });

export function adminRoutes(service: AdminService, scoped: Scoped) {
  return new Elysia({ name: 'timestore/admin', prefix: '/admin' })
    .use(scoped)
    .get(
      '/datasets',
      async ({ query }) => {
        const page = await service.listDatasets({ status: query.status, search: query.search, cursor: query.cursor, limit: query.limit ?? 50 });
        return { datasets: page.datasets.map(datasetView), nextCursor: page.nextCursor };
      },
      {
        scope: 'admin',
        query: t.Object({
          status: t.Optional(Status),
          search: t.Optional(t.String({ maxLength: 200, description: 'Case-insensitive substring of the slug or name.' })),
          cursor: Cursor,
          limit: Limit(200, 50),
        }),
        response: { 200: t.Object({ datasets: t.Array(DatasetView), nextCursor: t.Nullable(t.String()) }), ...errorsOf(400, 401, 403) },
        detail: detail('List datasets', 'Oldest first; pages are stable while datasets are added (keyset pagination on creation time and id).'),
      },
    )
    .post(
      '/datasets',
      async ({ body, request, set }) => {
        const created = await service.createDataset(body, actorOf(request));
        set.status = 201;
        set.headers.location = `/admin/datasets/${created.dataset.id}`;
        return detailView(created);
      },
      {
        scope: 'admin',
        body: NewDataset,
        response: { 201: DatasetDetailView, ...errorsOf(400, 401, 403, 404, 409, 422) },
        detail: detail(
          'Create a dataset',
          'Creates a dataset explicitly (datasets also appear on their first ingest). With `schema`, schema version 1 is recorded. 409 `dataset_exists` when the slug is taken; 422 when the storage target fails a write probe.',
        ),
      },
    )
    .get('/datasets/:datasetId', async ({ params }) => detailView(await service.getDataset(params.datasetId)), {
      scope: 'admin',
      params: DatasetParams,
      response: { 200: DatasetDetailView, ...errorsOf(401, 403, 404) },
      detail: detail('Get a dataset', 'By id or slug, with its latest schema version.'),
    })
    .patch(
      '/datasets/:datasetId',
      async ({ params, body, request }) => detailView(await service.updateDataset(params.datasetId, body, actorOf(request))),
      {
        scope: 'admin',
        params: DatasetParams,
        body: DatasetPatchBody,
        response: { 200: DatasetDetailView, ...errorsOf(400, 401, 403, 404) },
        detail: detail(
          'Change a dataset',
          'Name, description, status, sort columns and scopes (`iam` replaces the dataset\'s scopes; `metadata` replaces the free-form metadata). Writes a `dataset.updated` audit event with the values before and after.',
        ),
      },
    )
    .get(
      '/datasets/:datasetId/manifest',
      async ({ params, query }) =>
        manifestView(await service.manifest(params.datasetId, { version: query.version, limit: query.limit ?? 1000, cursor: query.cursor })),
      {
        scope: 'admin',
        params: DatasetParams,
        query: t.Object({
          version: t.Optional(t.Integer({ minimum: 0, description: 'An earlier manifest version (default: the current one).' })),
          cursor: Cursor,
          limit: Limit(10_000, 1000),
        }),
        response: { 200: ManifestBody, ...errorsOf(400, 401, 403, 404) },
        detail: detail('The partitions of a manifest version', 'The current (or `?version=N`) manifest: its partitions, oldest first, and totals overall and per storage target.'),
      },
    )
    .get('/datasets/:datasetId/retention', async ({ params }) => retentionView(await service.retention(params.datasetId)), {
      scope: 'admin',
      params: DatasetParams,
      response: { 200: RetentionViewBody, ...errorsOf(401, 403, 404) },
      detail: detail('Retention policy', "The dataset's stored policy and the effective one: each rule's value and where it came from (`dataset`, `server` default, or `none`)."),
    })
    .put(
      '/datasets/:datasetId/retention',
      async ({ params, body, request }) => retentionView(await service.putRetention(params.datasetId, body, actorOf(request))),
      {
        scope: 'admin',
        params: DatasetParams,
        body: RetentionBody,
        response: { 200: RetentionViewBody, ...errorsOf(400, 401, 403, 404) },
        detail: detail('Set the retention policy', 'Replaces the stored policy and writes a `retention.updated` audit event with the policy before and after.'),
      },
    )
    .put(
      '/datasets/:datasetId/storage-target',
      async ({ params, body, request }) => detailView(await service.setStorageTarget(params.datasetId, body.storageTargetId, actorOf(request))),
      {
        scope: 'admin',
        params: DatasetParams,
        body: t.Object({ storageTargetId: t.String({ description: 'Target id or name.' }) }, { example: { storageTargetId: 'local' } }),
        response: { 200: DatasetDetailView, ...errorsOf(400, 401, 403, 404, 422) },
        detail: detail(
          'Set where new partitions go',
          'New partitions of the dataset are written to this target; existing partitions stay where they are. 404 for an unknown target, 422 when it fails a write probe.',
        ),
      },
    )
    .get(
      '/datasets/:datasetId/audit',
      async ({ params, query }) => {
        const page = await service.auditEvents(params.datasetId, { limit: query.limit ?? 50, cursor: query.cursor });
        return { events: page.events.map(auditEventView), nextCursor: page.nextCursor };
      },
      {
        scope: 'admin',
        params: DatasetParams,
        query: t.Object({ cursor: Cursor, limit: Limit(500, 50) }),
        response: { 200: t.Object({ events: t.Array(AuditEventView), nextCursor: t.Nullable(t.String()) }), ...errorsOf(400, 401, 403, 404) },
        detail: detail('Audit events of a dataset', 'Newest first, a page at a time.'),
      },
    )
    .post(
      '/datasets/:datasetId/lifecycle',
      async ({ params, query, headers, request, set, server }) => {
        const waitMs = requestedWaitMs(headers.prefer, query.wait);
        keepOpenFor(server, request, waitMs);
        const job = await service.runLifecycle(params.datasetId, actorOf(request), waitMs);
        if (job.state === 'succeeded' || job.state === 'failed') return jobView(job);
        const statusUrl = accepted(set, `/admin/jobs/${job.id}`);
        return { ...jobView(job), jobId: job.id, statusUrl };
      },
      {
        scope: 'admin',
        params: DatasetParams,
        query: t.Object({
          wait: t.Optional(t.String({ description: '`true`: wait (up to 60 s) for the job to finish, then answer 200; also `Prefer: wait=<seconds>`.' })),
        }),
        response: {
          200: JobView,
          202: acceptedBody(JobView.properties, 'The job is queued or running (or still running when the wait ran out).'),
          ...errorsOf(400, 401, 403, 404, 503),
        },
        detail: detail(
          'Run the lifecycle of a dataset now',
          [
            "Queues the dataset's lifecycle job (or returns the one already queued or running): retention, then compaction, then deleting the files earlier versions removed once their grace period is over and no running query reads them.",
            '**202** with the job, a `Location` header and `statusUrl` (`/admin/jobs/{jobId}`); with `?wait=true` or `Prefer: wait=<seconds>` (at most 60 s), **200** once it has finished, or 202 as usual when the wait runs out first. Its `result` says what was done.',
            'On a server started with `TIMESTORE_LIFECYCLE_ENABLED=false` the job is queued only when another process (`timestore lifecycle`, or a `serve` with the lifecycle on) has run lifecycle work within the last two lifecycle intervals; otherwise **503** `lifecycle_not_running` and nothing is queued.',
          ].join('\n\n'),
        ),
      },
    )
    .get(
      '/jobs',
      async ({ query }) => {
        const page = await service.listJobs({ state: query.state, dataset: query.dataset, kind: query.kind, cursor: query.cursor, limit: query.limit ?? 50 });
        return { jobs: page.jobs.map(jobView), nextCursor: page.nextCursor };
      },
      {
        scope: 'admin',
        query: t.Object({
          state: t.Optional(JobState),
          dataset: t.Optional(t.String({ description: 'Dataset id or slug (404 when there is none).' })),
          kind: t.Optional(t.String({ maxLength: 200, description: 'e.g. `ingest`, `lifecycle`, `maintenance`.' })),
          cursor: Cursor,
          limit: Limit(500, 50),
        }),
        response: { 200: t.Object({ jobs: t.Array(JobView), nextCursor: t.Nullable(t.String()) }), ...errorsOf(400, 401, 403, 404) },
        detail: detail(
          'List jobs',
          'Oldest first, a page at a time, filtered by state, dataset and kind. `?state=failed` lists the jobs that failed for good: each keeps its staged batch until it is retried or deleted.',
        ),
      },
    )
    .get('/jobs/:jobId', async ({ params }) => jobView(await service.job(params.jobId)), {
      scope: 'admin',
      params: JobParams,
      response: { 200: JobView, ...errorsOf(401, 403, 404) },
      detail: detail('A job', 'Any job of the job table (ingest, lifecycle, maintenance): state, attempts, last error and result.'),
    })
    .post('/jobs/:jobId/retry', async ({ params, request }) => jobView(await service.retryJob(params.jobId, actorOf(request))), {
      scope: 'admin',
      params: JobParams,
      response: { 200: JobView, ...errorsOf(401, 403, 404, 409) },
      detail: detail(
        'Retry a failed job',
        'Queues a failed job again: due now, attempts reset, retried for another TIMESTORE_JOB_RETRY_WINDOW_HOURS. Writes a `job.retried` audit event. 409 `job_not_failed` for a job that is not failed, `staged_body_missing` when its staged batch is gone, `job_key_busy` when another job with its key is queued or running.',
      ),
    })
    .delete(
      '/jobs/:jobId',
      async ({ params, request }) => {
        const deleted = await service.deleteJob(params.jobId, actorOf(request));
        return { job: jobView(deleted.job), stagedBody: deleted.stagedBody };
      },
      {
        scope: 'admin',
        params: JobParams,
        response: {
          200: t.Object({
            job: JobView,
            stagedBody: t.Nullable(t.Object({ storageTargetId: t.String(), location: t.String() }, { description: 'The staged batch deleted with the job.' })),
          }),
          ...errorsOf(401, 403, 404, 409, 503),
        },
        detail: detail(
          'Delete a failed job',
          'Deletes a failed job and its staged batch (its rows are then never written). Writes a `job.deleted` audit event. 409 `job_not_failed` for a queued, running or succeeded job; 503 `storage_unavailable` when the batch could not be deleted (then nothing was).',
        ),
      },
    )
    .get('/storage-targets', async ({ query }) => ({ storageTargets: (await service.listStorageTargets(query.kind)).map(storageTargetView) }), {
      scope: 'admin',
      query: t.Object({ kind: t.Optional(t.Union([t.Literal('local'), t.Literal('s3')])) }),
      response: { 200: t.Object({ storageTargets: t.Array(StorageTargetView) }), ...errorsOf(400, 401, 403) },
      detail: detail('List storage targets', 'By name; credentials are never returned.'),
    })
    .post(
      '/storage-targets',
      async ({ body, request, set }) => {
        const { adoptExistingObjects, ...input } = body;
        const target = await service.registerStorageTarget(input, actorOf(request), { adoptExistingObjects: adoptExistingObjects === true });
        set.status = 201;
        return storageTargetView(target);
      },
      {
        scope: 'admin',
        body: NewStorageTarget,
        response: { 201: StorageTargetView, ...errorsOf(400, 401, 403, 409, 422) },
        detail: detail(
          'Register a storage target',
          'A local directory or an S3 bucket and prefix. The prefix must be empty or hold this catalog\'s owner marker (`.timestore-owner`); one that holds objects timestore did not write, or another catalog\'s marker, is refused with 409 `storage_target_not_owned` unless the body says `"adoptExistingObjects": true`. ' +
            'The server writes, reads back and deletes a probe object (422 `storage_target_unwritable` when that fails), then writes this catalog\'s owner marker. Credentials, when given, are stored and never returned.',
        ),
      },
    );
}
