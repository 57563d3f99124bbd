/** POST /datasets/:datasetSlug/ingest and GET /ingestion/jobs/:jobId. */
import { Elysia, t } from 'elysia';
import type { Job } from '../../catalog/jobs.ts';
import { errors } from '../../errors.ts';
import type { IngestService } from '../../ingest/service.ts';
import { actorOf, type Scoped } from '../auth.ts';
import { ErrorBody } from '../errors.ts';

const FieldType = t.Union([t.Literal('timestamp'), t.Literal('string'), t.Literal('double'), t.Literal('integer'), t.Literal('boolean')]);

const EXAMPLE = {
  schema: {
    fields: [
      { name: 'timestamp', type: 'timestamp' },
      { name: 'temperature_c', type: 'double' },
      { name: 'status', type: 'string' },
    ],
  },
  partition: { key: { instrument: 'A' } },
  rows: [
    { timestamp: '2026-01-01T00:00:00Z', temperature_c: 21.5, status: 'ok' },
    { timestamp: '2026-01-01T00:01:00Z', temperature_c: 21.7, status: 'ok' },
  ],
};

export const IngestBody = t.Object(
  {
    schema: t.Object({
      fields: t.Array(
        t.Object({
          name: t.String({ description: 'Letters, digits and _, starting with a letter or _.' }),
          type: FieldType,
          nullable: t.Optional(t.Boolean({ description: 'Default true (the timestamp column is never null).' })),
        }),
        { minItems: 1, maxItems: 1024 },
      ),
    }),
    partition: t.Object({
      key: t.Record(t.String(), t.String(), { description: 'Partition key, e.g. {"instrument":"A"}: rows with the same key share files.' }),
      timeRange: t.Optional(
        t.Object(
          { start: t.String({ format: 'date-time' }), end: t.String({ format: 'date-time' }) },
          { description: 'When given, every row must fall in [start, end).' },
        ),
      ),
    }),
    rows: t.Array(t.Record(t.String(), t.Unknown()), { description: 'Row objects; timestamps as ISO-8601 strings.' }),
    datasetName: t.Optional(t.String({ description: 'Display name when this batch creates the dataset.' })),
    storageTargetId: t.Optional(t.String({ description: 'Storage target (id or name) for this batch; default: the dataset\'s, else the server\'s.' })),
    idempotencyKey: t.Optional(t.String({ minLength: 1, maxLength: 200, description: 'Same as the Idempotency-Key header (the header wins).' })),
  },
  { example: EXAMPLE },
);

const JobView = t.Object({
  id: t.String(),
  kind: t.String(),
  state: t.Union([t.Literal('queued'), t.Literal('running'), t.Literal('succeeded'), t.Literal('failed')]),
  attempts: t.Integer(),
  maxAttempts: t.Integer(),
  datasetId: t.Nullable(t.String()),
  lastError: t.Nullable(t.String()),
  result: t.Unknown({ description: 'When succeeded: the manifest version and partitions written.' }),
  createdAt: t.String({ format: 'date-time' }),
  finishedAt: t.Nullable(t.String({ format: 'date-time' })),
});

const Accepted = t.Object({
  jobId: t.String(),
  state: t.String(),
  statusUrl: t.String(),
  replayed: t.Boolean({ description: 'True when an earlier request with this idempotency key was answered instead.' }),
});

export function jobView(job: Job) {
  return {
    id: job.id,
    kind: job.kind,
    state: job.state,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    datasetId: job.datasetId,
    lastError: job.lastError,
    result: job.result ?? null,
    createdAt: job.createdAt.toISOString(),
    finishedAt: job.finishedAt?.toISOString() ?? null,
  };
}

/** `Prefer: wait=N` (seconds) or `?wait=true`: how long the client will wait for the batch to be published. */
function requestedWaitMs(prefer: string | null, wait: string | undefined, inline: boolean, cap: number): number {
  const match = prefer ? /(?:^|[\s,;])wait=(\d+)/i.exec(prefer) : null;
  if (match) return Math.min(Number(match[1]) * 1000, cap);
  if (wait === 'true' || wait === '1' || inline) return cap;
  return 0;
}

const MAX_WAIT_MS = 60_000;

export function ingestRoutes(service: IngestService, scoped: Scoped) {
  return new Elysia({ name: 'timestore/ingest' })
    .use(scoped)
    .post(
      '/datasets/:datasetSlug/ingest',
      async ({ params, body, headers, query, request, set }) => {
        const outcome = await service.ingest({
          datasetSlug: params.datasetSlug,
          batch: body,
          rawBody: service.rawBody(request),
          idempotencyKey: headers['idempotency-key'] ?? body.idempotencyKey ?? null,
          actor: actorOf(headers),
          traceParent: headers.traceparent ?? null,
          waitMs: requestedWaitMs(headers.prefer ?? null, query.wait, service.inline, MAX_WAIT_MS),
        });
        if (outcome.job.state === 'succeeded') {
          set.status = 201;
          return { ...jobView(outcome.job), replayed: outcome.replayed };
        }
        if (outcome.job.state === 'failed') {
          set.status = 500;
          return {
            error: { code: 'ingest_failed', message: `the batch was accepted but could not be written: ${outcome.job.lastError}`, details: jobView(outcome.job) },
          };
        }
        set.status = 202;
        set.headers.location = `/ingestion/jobs/${outcome.job.id}`;
        return { jobId: outcome.job.id, state: outcome.job.state, statusUrl: `/ingestion/jobs/${outcome.job.id}`, replayed: outcome.replayed };
      },
      {
        scope: 'write',
        params: t.Object({ datasetSlug: t.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' }) }),
        query: t.Object({ wait: t.Optional(t.String({ description: '`true`: wait (up to 60 s) until the batch is queryable, then answer 201.' })) }),
        body: IngestBody,
        parse: (ctx) => service.parseBody(ctx.request),
        response: {
          201: t.Object({ ...JobView.properties, replayed: t.Boolean() }),
          202: Accepted,
          400: ErrorBody,
          409: ErrorBody,
          413: ErrorBody,
          500: ErrorBody,
        },
        detail: {
          tags: ['ingest'],
          summary: 'Ingest a batch of rows',
          description: [
            'Validates every row against the dataset schema (creating the dataset and schema version 1 on the first batch, and the next schema version when new nullable fields appear), stages the batch durably and queues it.',
            'Answers **202** with the job once the batch is durable, or **201** with the manifest version and partitions once it is published when the server runs with `TIMESTORE_INGEST_MODE=inline`, or the client sends `?wait=true` or `Prefer: wait=<seconds>`.',
            'Headers: `Idempotency-Key` (same key and body → the first answer; same key, other body → 409), `x-iam-user`/`x-user-id` (the actor recorded on the job and audit events).',
          ].join('\n\n'),
        },
      },
    )
    .get(
      '/ingestion/jobs/:jobId',
      async ({ params }) => {
        const job = await service.job(params.jobId);
        if (!job) throw errors.notFound('job', params.jobId);
        return jobView(job);
      },
      {
        scope: 'write',
        params: t.Object({ jobId: t.String() }),
        response: { 200: JobView, 404: ErrorBody },
        detail: { tags: ['ingest'], summary: 'State of an ingestion job', description: 'State, attempts, last error, and the result once succeeded.' },
      },
    );
}
