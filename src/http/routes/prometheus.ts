/**
 * POST /api/v1/write: Prometheus remote write 1.0, so that Prometheus (and every agent that speaks
 * remote write) stores its samples in timestore with no glue. The route checks the protocol's
 * headers and reads the body; the ingest service decodes it and accepts one batch per metric
 * (ingest/remote-write.ts, ingest/formats/remote-write.ts).
 *
 * Answers as the remote-write spec asks, since the sender acts on the status alone: 204 once every
 * metric is durable and queued; 4xx when the request cannot be stored (the sender drops it); 5xx
 * when storage or catalog failed (the sender retries it), 503 with `Retry-After`.
 */
import { Elysia, t } from 'elysia';
import type { IngestService } from '../../ingest/service.ts';
import { refuse } from '../../model/constraints.ts';
import { actorOf, datasetRuleOf, type Scoped } from '../auth.ts';
import { ErrorBody, toAppError } from '../errors.ts';
import { requestTraceparent } from '../request-log.ts';

/** Seconds a sender is asked to wait before retrying a request answered 503. */
const RETRY_AFTER_SECONDS = 5;

const DESCRIPTION = [
  'The [Prometheus remote write 1.0](https://prometheus.io/docs/specs/remote_write_spec/) receiver: point a `remote_write` url at this path (docs/integrations.md has the block).',
  'The body is a snappy-compressed protobuf `prometheus.WriteRequest` (`Content-Encoding: snappy`, `Content-Type: application/x-protobuf`); remote write 2.0 bodies are a 415, after which a 2.0 sender falls back to 1.0.',
  '**Mapping**: each metric name is a dataset, `<datasetPrefix><name>` with `:` written `.` (created by its first request, `datasetName` the metric name); each other label a string field (together the series key); each sample a row with `timestamp` (its milliseconds) and `value` (double). New labels add nullable fields, as new fields of a JSON batch do. Labels named `timestamp` or `value` are stored as `label_timestamp` and `label_value`; an empty label value is no label.',
  '**Values**: staleness markers are dropped; any other NaN and ±Inf is stored as a null `value`. Exemplars and metadata are ignored; native histograms are a 400 (not part of remote write 1.0).',
  '**Answers**: **204** once every metric of the request is durable and queued. **400** `invalid_remote_write` when the body or a series is malformed: nothing of the request is stored. A metric that its dataset refuses (a type conflict with an existing dataset of that name, an archived dataset) is that refusal\'s 4xx, naming the refused metrics; the others are stored. Storage or catalog failures are 5xx (**503** with `Retry-After`): the sender retries the same body, and the metrics queued by the first attempt are replayed (idempotency keys derived from the body), not written twice.',
  'Scopes: the `write` rule, for each metric\'s dataset (its own `metadata.iam.writeScopes` when it names any, else TIMESTORE_REQUIRE_WRITE_SCOPE; or `write:<slug>`), checked for every metric after the body is decoded and before any metric is stored; missing credentials are a 401 before the body is read. With TIMESTORE_AUTH=tokens, Prometheus sends the token with `authorization: {credentials: ts_…}`.',
].join('\n\n');

export function prometheusRoutes(service: IngestService, scoped: Scoped) {
  return new Elysia({ name: 'timestore/prometheus' }).use(scoped).post(
    '/api/v1/write',
    async ({ headers, query, request, set }) => {
      try {
        checkRemoteWriteHeaders(headers['content-type'], headers['content-encoding']);
        const limit = service.maxBodyBytes;
        if (Number(headers['content-length'] ?? Number.NaN) > limit) throw refuse('body_size', limit);
        await service.remoteWrite({
          body: new Uint8Array(await request.arrayBuffer()),
          datasetPrefix: query.datasetPrefix ?? '',
          actor: actorOf(request),
          traceParent: requestTraceparent(request),
          authorizeDataset: datasetRuleOf(request).check,
        });
        return new Response(null, { status: 204 });
      } catch (err) {
        const error = toAppError('UNKNOWN', err, request);
        if (error.status === 503) set.headers['retry-after'] = String(RETRY_AFTER_SECONDS);
        throw error;
      }
    },
    {
      scope: { rule: 'write', body: 'read-by-handler', datasets: 'known-to-handler' },
      query: t.Object({
        datasetPrefix: t.Optional(
          t.String({ description: 'Prepended to every dataset slug, e.g. `prom.` (letters, digits and `_ . -`, at most 64): to keep one Prometheus\'s metrics apart, or to store metric names that start with `_`.' }),
        ),
      }),
      response: { 204: t.Void(), 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 409: ErrorBody, 413: ErrorBody, 415: ErrorBody, 500: ErrorBody, 503: ErrorBody },
      detail: {
        tags: ['ingest'],
        summary: 'Prometheus remote write',
        description: DESCRIPTION,
        requestBody: {
          required: true,
          description: 'A snappy block (not the framed format) holding a protobuf `prometheus.WriteRequest`.',
          content: { 'application/x-protobuf': { schema: { type: 'string', format: 'binary' } } },
        } as never,
        responses: { 204: { description: 'Every metric of the request is durable and queued.' } } as never,
      },
    },
  );
}

/** Remote write 1.0's headers: snappy, protobuf, and not 2.0's message (a 2.0 sender retries with 1.0 on a 415). */
function checkRemoteWriteHeaders(contentType: string | undefined, contentEncoding: string | undefined): void {
  const [mediaType, ...parameters] = (contentType ?? '').split(';').map((part) => part.trim().toLowerCase());
  const proto = parameters.find((p) => p.startsWith('proto='))?.slice('proto='.length);
  if (mediaType !== 'application/x-protobuf' || (proto !== undefined && proto !== 'prometheus.writerequest')) {
    throw refuse(
      'remote_write_media_type',
      `Content-Type must be application/x-protobuf (remote write 1.0's prometheus.WriteRequest), not ${contentType ?? 'none'}`,
      { contentType: contentType ?? null },
    );
  }
  if ((contentEncoding ?? '').trim().toLowerCase() !== 'snappy') {
    throw refuse('remote_write_media_type', `Content-Encoding must be snappy, not ${contentEncoding ?? 'none'}`, { contentEncoding: contentEncoding ?? null });
  }
}
