/** POST and GET /datasets/:datasetSlug/query (time-range reads and downsampling) and /latest (the latest row of every series). */
import { Elysia, type Static, t } from 'elysia';
import { type LatestRequest, latestRequestSchema, QueryParametersSchema, type QueryRequest, queryRequestSchema } from '../../model/query.ts';
import type { QueryAsked, QueryResult, QueryService, RequestContext } from '../../query/service.ts';
import { confirmedDatasetOf, datasetReadBy, type Scoped } from '../auth.ts';
import { keepOpenFor } from '../accepted.ts';
import { ErrorBody } from '../errors.ts';
import { requestTraceContext } from '../request-log.ts';

// Elysia's integer also takes an integer written as a string, as the other routes' bodies do.
const QueryBody = queryRequestSchema(t.Integer);
const LatestBody = latestRequestSchema(t.Integer);

const QueryAnswer = t.Object({
  mode: t.Union([t.Literal('raw'), t.Literal('downsampled'), t.Literal('latest')]),
  columns: t.Array(t.String()),
  columnTypes: t.Array(t.Object({ name: t.String(), type: t.String() })),
  rows: t.Array(t.Record(t.String(), t.Unknown())),
  manifestVersion: t.Integer({ description: 'The manifest version read from start to end (from the cache: the version its rows reflect).' }),
  partitions: t.Object({ scanned: t.Integer(), pruned: t.Integer() }),
  truncated: t.Boolean({ description: 'True when the limit cut the result.' }),
  source: t.Union([t.Literal('cache'), t.Literal('statistics'), t.Literal('files')], {
    description:
      '`cache`: answered from the latest-value cache without reading a file; `statistics`: counts answered from the statistics the catalog keeps of each partition, without reading a file (`partitions.scanned` is 0); `files`: by a scan of the partitions.',
  }),
});

const encoder = new TextEncoder();

/** Rows of at least this many JSON bytes are sent after the answer's head without being copied (see answerOf). */
const UNCOPIED_ROWS_BYTES = 64 * 1024;

/**
 * The JSON answer (QueryAnswer), with the rows spliced in as the service has them: JSON bytes.
 * Small answers go as one buffer with their length. Large ones go as three chunks (head, rows,
 * closing brace) so that the rows are not copied: copying a 444 KB answer into a fresh buffer for
 * each request kept the collector busy enough to triple a freshly started server's first
 * lastpoint answers (docs/performance.md, "Large answers sent without a copy").
 */
function answerOf(result: QueryResult): Response {
  const { rowsJson, rowCount: _, ...rest } = result;
  const head: Omit<Static<typeof QueryAnswer>, 'rows'> = { ...rest, columns: result.columns.map((c) => c.name), columnTypes: result.columns };
  const opening = `${JSON.stringify(head).slice(0, -1)},"rows":`;
  const headers = { 'content-type': 'application/json;charset=utf-8' };
  if (rowsJson.byteLength < UNCOPIED_ROWS_BYTES) return new Response(new Blob([opening, rowsJson, '}']), { headers });
  const parts = [encoder.encode(opening), rowsJson, encoder.encode('}')];
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const part of parts) controller.enqueue(part);
      controller.close();
    },
  });
  return new Response(body, { headers });
}

type StreamFormat = 'csv' | 'ndjson';

function streamFormat(accept: string | undefined): StreamFormat | null {
  if (!accept) return null;
  if (/\btext\/csv\b/i.test(accept)) return 'csv';
  if (/\bapplication\/(x-)?ndjson\b/i.test(accept)) return 'ndjson';
  return null;
}

function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : String(value);
  return /[",\r\n]/.test(text) || text === '' ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The request's trace, and the dataset row its scope check passed on (with the confirmation of that row when it was a recent one). */
function requestContext(http: Request): RequestContext {
  return { trace: requestTraceContext(http), dataset: datasetReadBy(http), confirmed: confirmedDatasetOf(http) };
}

/** The answer to a query, POST or GET: JSON, or rows streamed as CSV or NDJSON when `Accept` asks for them. */
async function answerQuery(service: QueryService, slug: string, asked: QueryAsked, accept: string | undefined, http: Request): Promise<Response> {
  const format = streamFormat(accept);
  const context = requestContext(http);
  if (!format) {
    // A Response on both paths (JSON here, a stream below) keeps the handler's type one thing.
    return answerOf(await service.query(slug, asked, context));
  }
  const { columns, batches } = await service.stream(slug, asked, context);
  const names = columns.map((c) => c.name);
  const lines = async function* () {
    if (format === 'csv') yield encoder.encode(`${names.map(csvField).join(',')}\r\n`);
    for await (const batch of batches) {
      const text =
        format === 'csv'
          ? batch.map((row) => `${names.map((n) => csvField(row[n])).join(',')}\r\n`).join('')
          : batch.map((row) => `${JSON.stringify(row)}\n`).join('');
      yield encoder.encode(text);
    }
  };
  const chunks = lines();
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const next = await chunks.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel() {
      await chunks.return(undefined);
      await batches.return(undefined); // when cancelled before the first row was asked for
    },
  });
  return new Response(stream, {
    headers: { 'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8' },
  });
}

export function queryRoutes(service: QueryService, scoped: Scoped) {
  return new Elysia({ name: 'timestore/query' }).use(scoped).post(
    '/datasets/:datasetSlug/query',
    ({ params, body, headers, request: http, server }) => {
      // Nothing is sent until the answer (or its first rows) is ready, which may take up to the query timeout.
      keepOpenFor(server, http, service.timeoutMs);
      const request: QueryRequest = body;
      return answerQuery(service, params.datasetSlug, request, headers.accept, http);
    },
    {
      scope: { rule: 'read', dataset: 'recent' },
      params: t.Object({ datasetSlug: t.String() }),
      body: QueryBody,
      response: { 200: QueryAnswer, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      detail: {
        tags: ['query'],
        summary: 'Query a time range, raw or downsampled',
        description: [
          'Raw mode returns the timestamp and the chosen columns ordered by time. With `downsample`, rows are grouped into buckets of `intervalSize` × `intervalUnit` aligned to the UNIX epoch in UTC and labelled by their start, one row per bucket (and per `groupBy` combination), with each aggregation as a column.',
          '`downsample.fill` answers the empty buckets too: every bucket of the range for every `groupBy` combination, an aggregation without a value there `null`, `previous` (the last value before it in the range), `linear` (interpolated; null at the edges) or a number; `fill` on one aggregation overrides it. Counts of an empty bucket are 0.',
          'Only partitions active at the current manifest version that overlap the time range, match `filters.partitionKey` and whose column statistics allow the filters are read; the answer says how many were scanned and pruned.',
          'Send `Accept: text/csv` or `Accept: application/x-ndjson` for a streamed answer (same rows, no envelope).',
          'A one-bucket downsample of `last` values (and `max`/`last` of the timestamp) grouped by series columns is answered from the latest-value cache when it gives the same rows (`source: "cache"`); POST /datasets/{datasetSlug}/latest asks for the same more directly.',
        ].join('\n\n'),
      },
    },
  ).get(
    '/datasets/:datasetSlug/query',
    ({ params, query, headers, request: http, server }) => {
      keepOpenFor(server, http, service.timeoutMs);
      return answerQuery(service, params.datasetSlug, { parameters: query }, headers.accept, http);
    },
    {
      scope: { rule: 'read', dataset: 'recent' },
      params: t.Object({ datasetSlug: t.String() }),
      query: QueryParametersSchema,
      response: { 200: QueryAnswer, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      detail: {
        tags: ['query'],
        summary: 'Query a time range from a URL (dashboards)',
        description: [
          'The question of POST /datasets/{datasetSlug}/query as query parameters, answered the same way (same rows, same errors, `Accept: text/csv` or `application/x-ndjson` streams): for tools that only send GETs, such as Grafana\'s Infinity data source with its macros: `from=${__from}&to=${__to}&interval=${__interval_ms}&agg=avg:usage_user&fill=null`.',
          '`from`/`to`: epoch milliseconds or ISO-8601. `interval`: milliseconds (rounded up to whole seconds, then the largest unit that divides them: 60000 is 1 minute) or `<n>s|m|h|d|w|M`. `agg`: `fn:column[:alias]`, comma-separated or repeated, `count` for rows, `p95:column` for a percentile. `groupBy`, `columns`: comma-separated. `filter=column:value`, repeated: equality, several values of one column match any. `fill`, `limit`, `order` as in the body. docs/grafana.md has a complete recipe.',
        ].join('\n\n'),
      },
    },
  ).post(
    '/datasets/:datasetSlug/latest',
    async ({ params, body, request: http, server }) => {
      keepOpenFor(server, http, service.timeoutMs);
      const request: LatestRequest = body;
      return answerOf(await service.latest(params.datasetSlug, request, requestContext(http)));
    },
    {
      scope: { rule: 'read', dataset: 'recent' },
      params: t.Object({ datasetSlug: t.String() }),
      body: LatestBody,
      response: { 200: QueryAnswer, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      detail: {
        tags: ['query'],
        summary: 'The latest row of every series',
        description: [
          "One row per series: the dataset's series key (its `sortColumns`, else its string fields), or the combinations of `by`. A series' latest row is the one with the greatest timestamp; among rows of equal timestamps, the one whose other fields, compared in schema order, are greatest (NULL lowest, strings by their UTF-8 bytes), so the answer never depends on how the rows are stored. Rows are ordered by `by` (NULLs last).",
          'With `timeRange`, only rows in `[start, end)` count; `filters` select rows as in POST /datasets/{datasetSlug}/query, before the latest row is picked.',
          'Answered from the latest-value cache (`source: "cache"`: no file read) when `by` names series-key columns only, the filters test series-key columns only (strings, numbers, booleans) and no partition key, and every series has its latest row before the end of `timeRange`; otherwise, or when the dataset has more series than TIMESTORE_QUERY_LATEST_CACHE_SERIES, from the files, with the same answer.',
        ].join('\n\n'),
      },
    },
  );
}
