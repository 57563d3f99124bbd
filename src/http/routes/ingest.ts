/**
 * POST /datasets/:datasetSlug/ingest and GET /ingestion/jobs/:jobId. The route reads the body's
 * bytes and the headers; the service decodes every format (ingest/formats/decodeBody).
 */
import { Elysia, t } from 'elysia';
import { AppError, errors } from '../../model/errors.ts';
import { IngestBody } from '../../ingest/formats/json.ts';
import type { IngestService } from '../../ingest/service.ts';
import { accepted, acceptedBody, keepOpenFor, requestedWaitMs } from '../accepted.ts';
import { actorOf, checkAgain, checkedOnRememberedRow, datasetReadBy, mayAdminister, type Scoped } from '../auth.ts';
import { ErrorBody, errorBody } from '../errors.ts';
import { JobView, jobView } from '../job-view.ts';
import { requestTraceparent } from '../request-log.ts';

const NDJSON_EXAMPLE = [
  '{"timestamp":"2026-01-01T00:02:00Z","temperature_c":21.9,"status":"ok"}',
  '{"timestamp":"2026-01-01T00:03:00Z","temperature_c":22.1,"status":null}',
  '',
].join('\n');

const CSV_EXAMPLE = ['timestamp,temperature_c,status', '2026-01-01T00:04:00Z,22.0,ok', '2026-01-01T00:05:00Z,,"warm, ""rising"""', ''].join('\n');

const FROM_DATASET =
  "The schema is the existing dataset's (404 `dataset_not_found` when there is none); the partition key and other batch parameters are query parameters (`?key.instrument=A`).";

/**
 * Written out rather than derived from a `body` schema: @elysiajs/swagger 1.3.1 gives every content
 * type the one body schema and replaces `detail.requestBody` whenever the route has one.
 */
const REQUEST_BODY = {
  required: true,
  description: 'The batch, in the format named by `Content-Type`.',
  content: {
    'application/json': { schema: IngestBody },
    'application/x-ndjson': {
      schema: { type: 'string', description: `One JSON row object per line; blank lines are ignored. ${FROM_DATASET}` },
      example: NDJSON_EXAMPLE,
    },
    'application/ndjson': { schema: { type: 'string', description: 'Same as application/x-ndjson.' }, example: NDJSON_EXAMPLE },
    'text/csv': {
      schema: {
        type: 'string',
        description:
          'RFC 4180, UTF-8: a header line naming the columns, then one record per row (quoted fields may hold commas, line breaks and quotes as `""`). ' +
          'An empty unquoted field is null, `""` the empty string; values are converted per the dataset schema (numbers, `true`/`false`, ISO-8601 timestamps). ' +
          FROM_DATASET,
      },
      example: CSV_EXAMPLE,
    },
    'application/vnd.apache.arrow.stream': {
      schema: {
        type: 'string',
        format: 'binary',
        description:
          'An Arrow IPC stream. Its schema declares the fields (Timestamp/Date → timestamp, Utf8 → string, Float → double, Int → integer, Bool → boolean; other types are a 400), ' +
          'so it may create the dataset; the partition key and other batch parameters are query parameters.',
      },
    },
  },
};

const Accepted = acceptedBody(
  { replayed: t.Boolean({ description: 'True when an earlier request with this idempotency key was answered instead.' }) },
  'The batch is durable and queued (or still being written when the wait ran out).',
);

export function ingestRoutes(service: IngestService, scoped: Scoped) {
  return new Elysia({ name: 'timestore/ingest' })
    .use(scoped)
    .post(
      '/datasets/:datasetSlug/ingest',
      async ({ params, headers, query, request, set, server }) => {
        const waitMs = requestedWaitMs(headers.prefer, query.wait, service.inline);
        keepOpenFor(server, request, waitMs);
        // Asked before the body is read: a declared length over the limit is refused unread.
        const format = service.bodyFormat(headers['content-type'], headers['content-length']);
        const body = new Uint8Array(await request.arrayBuffer());
        const ingest = () =>
          service.ingest({
            datasetSlug: params.datasetSlug,
            dataset: datasetReadBy(request),
            format,
            body,
            query: new URL(request.url).searchParams,
            idempotencyKey: headers['idempotency-key'] ?? null,
            actor: actorOf(request),
            // The request's own span (a child of the caller's `traceparent`): the job's span is its child.
            traceParent: requestTraceparent(request),
            waitMs,
            mayChooseTarget: mayAdminister(request),
          });
        // The check may have passed on the row this process read for an earlier batch. The job's
        // INSERT confirms that row; when the dataset has changed since, or the batch was refused on
        // that row (its status or schema may be old), the batch is checked and taken again on the
        // current row (a second change meanwhile is answered 409 dataset_changed).
        const outcome = await ingest().catch(async (err: unknown) => {
          if (!(err instanceof AppError && (err.code === 'dataset_changed' || checkedOnRememberedRow(request)))) throw err;
          await checkAgain(request);
          return ingest();
        });
        if (outcome.job.state === 'succeeded') {
          set.status = 201;
          return { ...jobView(outcome.job), replayed: outcome.replayed };
        }
        if (outcome.job.state === 'failed') {
          const error = errors.ingest_failed(outcome.job.lastError, jobView(outcome.job));
          set.status = error.status;
          return errorBody(error);
        }
        const statusUrl = accepted(set, `/ingestion/jobs/${outcome.job.id}`);
        return { jobId: outcome.job.id, state: outcome.job.state, statusUrl, replayed: outcome.replayed };
      },
      {
        scope: { rule: 'write', body: 'read-by-handler', dataset: 'remembered' },
        params: t.Object({ datasetSlug: t.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$' }) }),
        query: t.Object({
          wait: t.Optional(t.String({ description: '`true`: wait (up to 60 s) until the batch is queryable, then answer 201.' })),
          'timeRange.start': t.Optional(t.String({ description: 'NDJSON, CSV, Arrow: with `timeRange.end`, every row must fall in [start, end).' })),
          'timeRange.end': t.Optional(t.String({ description: 'NDJSON, CSV, Arrow: see `timeRange.start`.' })),
          datasetName: t.Optional(t.String({ description: 'NDJSON, CSV, Arrow: display name when this batch creates the dataset.' })),
          storageTargetId: t.Optional(
            t.String({ description: "NDJSON, CSV, Arrow: storage target (id or name) for this batch; another than the dataset's needs the admin scope (403)." }),
          ),
        }, { additionalProperties: true, description: 'Plus `key.<name>=<value>` for each partition-key field (NDJSON, CSV, Arrow); the batch decoder refuses unknown ones.' }),
        response: {
          201: t.Object({ ...JobView.properties, replayed: t.Boolean() }),
          202: Accepted,
          400: ErrorBody,
          403: ErrorBody,
          404: ErrorBody,
          409: ErrorBody,
          413: ErrorBody,
          415: ErrorBody,
          500: ErrorBody,
        },
        detail: {
          tags: ['ingest'],
          summary: 'Ingest a batch of rows',
          description: [
            'Validates every row against the dataset schema (creating the dataset and schema version 1 on the first batch, and the next schema version when new nullable fields appear), stages the batch durably and queues it.',
            'Answers **202** with the job, a `Location` header and `statusUrl` once the batch is durable, or **201** with the manifest version and partitions once it is published when the server runs with `TIMESTORE_INGEST_MODE=inline`, or the client sends `?wait=true` or `Prefer: wait=<seconds>` (at most 60 s; a batch not yet published by then is answered 202).',
            'Headers: `Idempotency-Key` (same key and body → the first answer; same key, other body → 409). The actor recorded on the job and audit events is the API token\'s name (in header mode `x-iam-user`/`x-user-id`).',
            "A batch is queued only if the dataset, as the catalog holds it then, accepts it (scopes, status, storage target); one that meets a change is checked again on the current dataset, and a second change within the request is 409 `dataset_changed` (nothing stored: send it again).",
            '**Body formats**, chosen by `Content-Type` (any other is a 415 listing these):',
            [
              '- `application/json`: `{schema, partition, rows, datasetName?, storageTargetId?, idempotencyKey?}` (the example below).',
              "- `application/x-ndjson` or `application/ndjson`: one row object per line. The schema is the dataset's, so the dataset must exist (else 404 `dataset_not_found`).",
              '- `text/csv`: RFC 4180 with a header line; an empty unquoted field is null, `""` the empty string; values are converted per the dataset schema, NaN and Infinity refused (`non_finite_number`). The dataset must exist.',
              '- `application/vnd.apache.arrow.stream`: an Arrow IPC stream whose schema declares the fields (Timestamp/Date → timestamp, Utf8 → string, Float → double, Int → integer, Bool → boolean), so it may create the dataset or add nullable fields; where the dataset already defines a column, integers are read into a double field and strings into a timestamp field. Staged as NDJSON.',
            ].join('\n'),
            'For NDJSON, CSV and Arrow the batch parameters are **query parameters**: the partition key as one `key.<name>=<value>` per key field (`?key.instrument=A&key.site=x` is the key `{"instrument":"A","site":"x"}`; none is the empty key), `timeRange.start` and `timeRange.end` (both or neither), `datasetName`, `storageTargetId`; the idempotency key is the `Idempotency-Key` header. With these formats an unknown query parameter is a 400; with a JSON body these batch parameters are a 400 (the body carries them).',
            'Every format is checked with the same rules; an error names the row index (0-based, counting rows only: no CSV header, no blank lines), the field, and for NDJSON and CSV the line.',
          ].join('\n\n'),
          requestBody: REQUEST_BODY as never,
        },
      },
    )
    .get(
      '/ingestion/jobs/:jobId',
      async ({ params }) => {
        const job = await service.job(params.jobId);
        if (!job) throw errors.not_found('job', params.jobId);
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
