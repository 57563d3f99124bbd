/**
 * POST /sql and GET /sql?q=…: one read-only SQL statement over datasets (query/sql.ts), answered
 * as JSON, CSV, NDJSON or an Arrow IPC stream by `Accept`, every form streamed in batches (a
 * small JSON answer in one piece).
 */
import { Bool, Field, Float64, Int64, RecordBatch, Schema, Struct, TimestampMicrosecond, type DataType, Utf8, makeData, tableToIPC, Table, vectorFromArray } from 'apache-arrow';
import { Elysia, t } from 'elysia';
import type { QueryColumn, QueryRow } from '../../engine/query.ts';
import { errors } from '../../model/errors.ts';
import type { SqlAnswer } from '../../query/sql.ts';
import type { QueryService } from '../../query/service.ts';
import { datasetRuleOf, type Scoped } from '../auth.ts';
import { keepOpenFor } from '../accepted.ts';
import { ErrorBody } from '../errors.ts';
import { requestTraceContext } from '../request-log.ts';

const SqlParamSchema = t.Union([t.String(), t.Number(), t.Boolean(), t.Null()]);

const EXAMPLE_SQL =
  "SELECT time_bucket(INTERVAL 1 HOUR, ts) AS hour, host, avg(usage) AS avg_usage FROM cpu WHERE ts >= '2026-01-01' AND ts < '2026-01-02' GROUP BY ALL ORDER BY hour, host";

/** Every minute of the hour, each host's average usage, interpolated where a minute has no rows. */
const GAP_FILL_SQL =
  "WITH a AS (SELECT bucket(INTERVAL 1 MINUTE, ts) AS bucket, host, avg(usage) AS usage FROM cpu WHERE ts >= $1 AND ts < $2 GROUP BY ALL) SELECT b.bucket, h.host, interpolate(a.usage, b.bucket, h.host) AS usage FROM buckets(INTERVAL 1 MINUTE, $1, $2) AS b CROSS JOIN (SELECT DISTINCT host FROM a) AS h LEFT JOIN a ON a.bucket = b.bucket AND a.host = h.host ORDER BY ALL";

const SqlBody = t.Object(
  {
    sql: t.String({ minLength: 1, maxLength: 100_000, description: 'One SELECT statement (WITH, UNION, VALUES and subqueries included).' }),
    params: t.Optional(t.Array(SqlParamSchema, { maxItems: 1000, description: 'Values of the placeholders `$1`, `$2`, … (or `?`), in order.' })),
  },
  {
    examples: [
      { sql: EXAMPLE_SQL },
      { sql: "SELECT count(*) AS n FROM dataset('cpu-usage') WHERE host = $1", params: ['h1'] },
      { sql: GAP_FILL_SQL, params: ['2026-01-01T00:00:00Z', '2026-01-01T01:00:00Z'] },
    ],
  },
);

const SqlQuery = t.Object({
  q: t.String({ minLength: 1, maxLength: 100_000, description: 'The statement.', examples: [EXAMPLE_SQL] }),
  params: t.Optional(t.String({ description: 'The placeholders\' values as a JSON array, e.g. `["h1", 0.5]`.' })),
});

const SqlAnswerBody = t.Object({
  columns: t.Array(t.String()),
  columnTypes: t.Array(t.Object({ name: t.String(), type: t.String() })),
  manifestVersions: t.Record(t.String(), t.Integer(), { description: 'The manifest version each dataset was read at, by slug.' }),
  rows: t.Array(t.Record(t.String(), t.Unknown())),
  truncated: t.Boolean({ description: 'True when TIMESTORE_QUERY_MAX_ROWS cut the answer.' }),
});

type Format = 'json' | 'csv' | 'ndjson' | 'arrow';

function formatOf(accept: string | undefined): Format {
  if (!accept) return 'json';
  if (/\btext\/csv\b/i.test(accept)) return 'csv';
  if (/\bapplication\/(x-)?ndjson\b/i.test(accept)) return 'ndjson';
  if (/\bapplication\/vnd\.apache\.arrow\.stream\b/i.test(accept)) return 'arrow';
  return 'json';
}

const CONTENT_TYPES: Record<Format, string> = {
  json: 'application/json;charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
  arrow: 'application/vnd.apache.arrow.stream',
};

function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : String(value);
  return /[",\r\n]/.test(text) || text === '' ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The answer's bytes in `format`, batch by batch. */
async function* encode(format: Format, answer: SqlAnswer): AsyncGenerator<Uint8Array> {
  const encoder = new TextEncoder();
  const names = answer.columns.map((c) => c.name);
  if (format === 'arrow') {
    yield* arrowStream(answer.columns, answer.batches);
    return;
  }
  if (format === 'json') {
    const head = JSON.stringify({ columns: names, columnTypes: answer.columns, manifestVersions: answer.manifestVersions });
    yield encoder.encode(`${head.slice(0, -1)},"rows":[`);
    let first = true;
    for await (const batch of answer.batches) {
      const text = batch.map((row) => JSON.stringify(row)).join(',');
      yield encoder.encode(first ? text : `,${text}`);
      first = false;
    }
    yield encoder.encode(`],"truncated":${answer.truncated()}}`);
    return;
  }
  if (format === 'csv') yield encoder.encode(`${names.map(csvField).join(',')}\r\n`);
  for await (const batch of answer.batches) {
    const text =
      format === 'csv'
        ? batch.map((row) => `${names.map((n) => csvField(row[n])).join(',')}\r\n`).join('')
        : batch.map((row) => `${JSON.stringify(row)}\n`).join('');
    yield encoder.encode(text);
  }
}

const ARROW_TYPES: Record<string, () => DataType> = {
  timestamp: () => new TimestampMicrosecond('UTC'),
  integer: () => new Int64(),
  double: () => new Float64(),
  boolean: () => new Bool(),
  string: () => new Utf8(),
};

/** Microseconds since the epoch of an answer's ISO timestamp (`…00.000001Z`), as Arrow's builder takes it: milliseconds with a fraction. */
function epochMillis(iso: string): number {
  const ms = Date.parse(iso);
  const micros = /\.\d{3}(\d{3})Z$/.exec(iso)?.[1];
  return micros ? ms + Number(micros) / 1000 : ms;
}

function arrowValue(type: string, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (type === 'timestamp') return epochMillis(String(value));
  if (type === 'integer') return BigInt(value as number | string);
  return value;
}

/**
 * One Arrow IPC stream: the schema message, a record batch per batch of rows, the end-of-stream
 * marker. Each batch is encoded alone (`tableToIPC`) and its own schema message and end marker cut.
 */
async function* arrowStream(columns: QueryColumn[], batches: AsyncIterable<QueryRow[]>): AsyncGenerator<Uint8Array> {
  const schema = new Schema(columns.map((c) => new Field(c.name, (ARROW_TYPES[c.type] ?? ARROW_TYPES.string!)(), true)));
  const tableOf = (rows: QueryRow[]) => {
    const children = columns.map((c, i) =>
      vectorFromArray(rows.map((r) => arrowValue(c.type, r[c.name])), schema.fields[i]!.type).data[0]!,
    );
    const data = makeData({ type: new Struct(schema.fields), length: rows.length, nullCount: 0, children });
    return new Table([new RecordBatch(schema, data)]);
  };
  const EOS = 8;
  let sentSchema = false;
  for await (const rows of batches) {
    const bytes = tableToIPC(tableOf(rows), 'stream');
    const schemaBytes = 8 + new DataView(bytes.buffer, bytes.byteOffset + 4, 4).getInt32(0, true);
    yield bytes.subarray(sentSchema ? schemaBytes : 0, bytes.length - EOS);
    sentSchema = true;
  }
  if (!sentSchema) {
    yield tableToIPC(new Table(schema), 'stream');
    return;
  }
  yield new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
}

/** A JSON answer up to this size is sent in one piece, with its length; a longer one streams on from there. */
const ONE_PIECE_BYTES = 256 * 1024;

/**
 * The answer's response. A JSON answer's first bytes are read before answering: a small one (most
 * dashboard statements) goes out whole, as the JSON query's does, rather than as a chunked stream,
 * and a statement that fails before that point is an error answer rather than a 200 with a cut-off
 * document. CSV, NDJSON and Arrow answers start at once: each row is of use to their readers as it comes.
 */
async function respond(format: Format, answer: SqlAnswer): Promise<Response> {
  const chunks = encode(format, answer);
  const versions = Object.entries(answer.manifestVersions).map(([slug, v]) => `${encodeURIComponent(slug)}=${v}`).join(', ');
  const headers = { 'content-type': CONTENT_TYPES[format], ...(versions ? { 'x-timestore-manifest-versions': versions } : {}) };
  const first: Uint8Array[] = [];
  let size = 0;
  try {
    while (format === 'json' && size < ONE_PIECE_BYTES) {
      const next = await chunks.next();
      if (next.done) return new Response(first.length === 1 ? first[0]! : new Blob(first), { headers });
      first.push(next.value);
      size += next.value.length;
    }
  } catch (error) {
    await answer.batches.return(undefined);
    throw error;
  }
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const held = first.shift();
      if (held) {
        controller.enqueue(held);
        return;
      }
      const next = await chunks.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    async cancel() {
      await chunks.return(undefined);
      await answer.batches.return(undefined);
    },
  });
  return new Response(stream, { headers });
}

function paramsOf(text: string | undefined): (string | number | boolean | null)[] {
  if (text === undefined) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw errors.sql_error('params must be a JSON array of strings, numbers, booleans and nulls');
  }
  if (!Array.isArray(parsed) || !parsed.every((v) => v === null || ['string', 'number', 'boolean'].includes(typeof v))) {
    throw errors.sql_error('params must be a JSON array of strings, numbers, booleans and nulls');
  }
  return parsed as (string | number | boolean | null)[];
}

const DESCRIPTION = [
  'One read-only statement in DuckDB\'s SQL. Datasets are tables named by their slug (`FROM cpu`, `FROM "cpu-usage"`, or `FROM dataset(\'cpu-usage\')`); joins, window functions, CTEs and subqueries work as in DuckDB. Each dataset is read at one manifest version for the whole statement (`manifestVersions`).',
  'Refused with 400 `sql_not_allowed`: anything but one SELECT (COPY, ATTACH, SET, PRAGMA, INSTALL, LOAD, CREATE, INSERT, …), table functions other than `dataset`, `range`, `generate_series` and `unnest` (no file reader), names qualified with a schema or catalog. DuckDB\'s own refusals (syntax, an unknown column) are 400 `sql_error` with DuckDB\'s message and `details.position` (0-based), `line` and `column`.',
  'The caller needs the `read` rule of every dataset the statement names. Partitions are chosen by the comparisons of the timestamp column (and statistics of other columns) with constants in the WHERE clause of the SELECT that reads the dataset.',
  'Answers: JSON (default) with `columns`, `columnTypes`, `manifestVersions`, `rows` and `truncated`; `Accept: text/csv`, `application/x-ndjson` or `application/vnd.apache.arrow.stream` for those forms. Every form is streamed. At most TIMESTORE_QUERY_MAX_ROWS rows; TIMESTORE_QUERY_TIMEOUT_MS and TIMESTORE_QUERY_MEMORY_LIMIT_BYTES apply.',
].join('\n\n');

export function sqlRoutes(service: QueryService, scoped: Scoped) {
  return new Elysia({ name: 'timestore/sql' })
    .use(scoped)
    .post(
      '/sql',
      async ({ body, headers, request, server }) => {
        keepOpenFor(server, request, service.timeoutMs);
        const answer = await service.statements.stream(body.sql, body.params ?? [], datasetRuleOf(request).check, requestTraceContext(request));
        return respond(formatOf(headers.accept), answer);
      },
      {
        scope: { rule: 'read', datasets: 'known-to-handler' },
        body: SqlBody,
        response: { 200: SqlAnswerBody, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
        detail: { tags: ['query'], summary: 'Read-only SQL over datasets', description: DESCRIPTION },
      },
    )
    .get(
      '/sql',
      async ({ query, headers, request, server }) => {
        keepOpenFor(server, request, service.timeoutMs);
        const answer = await service.statements.stream(query.q, paramsOf(query.params), datasetRuleOf(request).check, requestTraceContext(request));
        return respond(formatOf(headers.accept), answer);
      },
      {
        scope: { rule: 'read', datasets: 'known-to-handler' },
        query: SqlQuery,
        response: { 200: SqlAnswerBody, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
        detail: { tags: ['query'], summary: 'Read-only SQL over datasets, for tools that send GETs', description: `The same as POST /sql, the statement in \`q\` and its parameters in \`params\` (a JSON array).\n\n${DESCRIPTION}` },
      },
    );
}
