/**
 * Generators (fast-check arbitraries) of HTTP requests for the fuzz test: random and mutated
 * bodies, headers and query strings for the ingest, query and admin routes. Valid bodies of every
 * format are the starting points, so mutations reach deep validation rather than stopping at the
 * first parse.
 */
import fc from 'fast-check';
import { Bool, Float64, Int32, Int64, Table, tableFromArrays, tableToIPC, TimestampMillisecond, Utf8, type Vector, vectorFromArray } from 'apache-arrow';

export interface FuzzRequest {
  /** What the request is after: the route family (for messages and the rules of the check). */
  family: string;
  method: string;
  /** Path and query string, already encoded (possibly badly, on purpose). */
  target: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
}

/** What the requests act on: made by the test before the runs. */
export interface FuzzWorld {
  /** A dataset with a schema (timestamp, v double, host string, n integer, ok boolean) and rows. */
  slug: string;
  datasetId: string;
  /** A dataset the admin routes may change (archive, retention, target) without starving the rest. */
  adminSlug: string;
  jobId: string;
  tokenId: string;
  /** A directory under which a storage target may be registered. */
  scratch: string;
}

export const VALID_BATCH = {
  schema: {
    fields: [
      { name: 'timestamp', type: 'timestamp' },
      { name: 'v', type: 'double' },
      { name: 'host', type: 'string' },
      { name: 'n', type: 'integer' },
      { name: 'ok', type: 'boolean' },
    ],
  },
  partition: { key: { site: 'a' } },
  rows: [
    { timestamp: '2026-01-01T00:00:00Z', v: 1.5, host: 'h1', n: 1, ok: true },
    { timestamp: '2026-01-01T00:30:00Z', v: 2.5, host: 'h2', n: 2, ok: false },
  ],
};

const VALID_QUERY = {
  timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' },
  columns: ['v', 'host'],
  filters: { partitionKey: { site: ['a'] }, columns: { v: { gte: 0 }, host: { in: ['h1', 'h2'] } } },
  downsample: { intervalUnit: 'hour', intervalSize: 1, groupBy: ['host'], aggregations: [{ fn: 'avg', column: 'v' }, { fn: 'percentile', column: 'v', percentile: 0.9 }, { fn: 'count' }] },
  limit: 100,
  order: 'desc',
};

// ---- strings ----

const asciiText = (maxLength = 40) => fc.string({ unit: 'grapheme-ascii', maxLength });
const anyText = (maxLength = 40) => fc.string({ unit: 'binary', maxLength });
/** Strings that tend to break parsers and limits: edges of the documented grammar and worse. */
const nasty = fc.constantFrom(
  '', ' ', '\u0000', 'a\u0000b', '\ud800', '\uffff', '🙂', '%', '%zz', '%00', '..', '../..', '/', '\\', '"', "'", ',', '\n', '\r\n',
  'null', 'true', '-1', '0', '1e400', 'NaN', 'Infinity', '9007199254740993', '-0', '1.5', '0x10',
  '2026-01-01', '2026-01-01T00:00Z', '2026-02-30T00:00:00Z', '0000-01-01T00:00:00Z', '+010000-01-01T00:00:00Z', '9999-12-31T23:59:59.9999999Z',
  'x'.repeat(64), 'x'.repeat(129), 'x'.repeat(300), 'timestamp', 'TIMESTAMP', 'Host', 'select', '__proto__', 'constructor',
);
const text = fc.oneof({ weight: 3, arbitrary: asciiText() }, { weight: 2, arbitrary: nasty }, { weight: 1, arbitrary: anyText() });

// ---- JSON mutation ----

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const jsonLeaf: fc.Arbitrary<Json> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(1e308, -1e308, 2 ** 53, -(2 ** 53), 2 ** 63, 0.1, -0),
  text,
);
const jsonReplacement: fc.Arbitrary<Json> = fc.oneof({ weight: 4, arbitrary: jsonLeaf }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<Json> });

/** One edit of a JSON document: where (an index into its nodes, taken modulo their number) and what. */
type Edit =
  | { op: 'replace'; at: number; value: Json }
  | { op: 'delete'; at: number }
  | { op: 'add'; at: number; key: string; value: Json }
  | { op: 'duplicate'; at: number }
  | { op: 'wrap'; at: number };

const edit: fc.Arbitrary<Edit> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('replace' as const), at: fc.nat(), value: jsonReplacement }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('add' as const), at: fc.nat(), key: text, value: jsonReplacement }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('wrap' as const), at: fc.nat() }) },
);

interface Node {
  parent: Json[] | { [key: string]: Json } | null;
  key: string | number;
}

function nodesOf(root: Json): Node[] {
  const out: Node[] = [{ parent: null, key: '' }];
  const walk = (value: Json) => {
    if (Array.isArray(value)) {
      value.forEach((child, i) => {
        out.push({ parent: value, key: i });
        walk(child);
      });
    } else if (value !== null && typeof value === 'object') {
      for (const [k, child] of Object.entries(value)) {
        out.push({ parent: value, key: k });
        walk(child);
      }
    }
  };
  walk(root);
  return out;
}

function applyEdits(start: unknown, edits: Edit[]): Json {
  let root = structuredClone(start) as Json;
  for (const e of edits) {
    const nodes = nodesOf(root);
    const node = nodes[e.at % nodes.length] as Node;
    const get = (): Json => (node.parent === null ? root : (node.parent as Record<string | number, Json>)[node.key] as Json);
    const set = (value: Json) => {
      if (node.parent === null) root = value;
      else (node.parent as Record<string | number, Json>)[node.key] = value;
    };
    const current = get();
    if (e.op === 'replace') set(e.value);
    else if (e.op === 'wrap') set([current]);
    else if (e.op === 'duplicate') {
      if (Array.isArray(node.parent)) node.parent.push(structuredClone(current));
      else if (Array.isArray(current)) current.push(structuredClone(current[0] ?? null));
    } else if (e.op === 'delete') {
      if (Array.isArray(node.parent)) node.parent.splice(node.key as number, 1);
      else if (node.parent) delete node.parent[node.key as string];
    } else if (e.op === 'add') {
      if (Array.isArray(current)) current.push(e.value);
      else if (current !== null && typeof current === 'object') current[e.key] = e.value;
    }
  }
  return root;
}

/** A valid document with 0 to 4 edits (0 keeps some requests valid, so later ones meet stored data). */
export const mutatedJson = (valid: unknown): fc.Arbitrary<Json> => fc.array(edit, { maxLength: 4 }).map((edits) => applyEdits(valid, edits));

// ---- text and byte mutation ----

type ByteEdit = { op: 'flip' | 'insert' | 'delete' | 'truncate'; at: number; byte: number };
const byteEdit: fc.Arbitrary<ByteEdit> = fc.record({ op: fc.constantFrom('flip', 'insert', 'delete', 'truncate'), at: fc.nat(), byte: fc.nat(255) });

function applyByteEdits(bytes: Uint8Array, edits: ByteEdit[]): Uint8Array {
  let out = Array.from(bytes);
  for (const e of edits) {
    const at = out.length ? e.at % out.length : 0;
    if (e.op === 'flip' && out.length) out[at] = (out[at] as number) ^ (1 << e.byte % 8);
    else if (e.op === 'insert') out.splice(at, 0, e.byte);
    else if (e.op === 'delete') out.splice(at, 1);
    else if (e.op === 'truncate') out = out.slice(0, at);
  }
  return Uint8Array.from(out);
}

/** Mostly the valid bytes; sometimes a few bytes flipped, inserted, deleted or cut off. */
const mutatedBytes = (valid: fc.Arbitrary<Uint8Array>) =>
  fc.tuple(valid, fc.oneof({ weight: 2, arbitrary: fc.constant([] as ByteEdit[]) }, { weight: 3, arbitrary: fc.array(byteEdit, { minLength: 1, maxLength: 4 }) })).map(([bytes, edits]) =>
    applyByteEdits(bytes, edits),
  );

const utf8 = (s: string) => new TextEncoder().encode(s);

// ---- bodies by format ----

const row = mutatedJson(VALID_BATCH.rows[0]);

const ndjson = fc
  .tuple(fc.array(row, { minLength: 0, maxLength: 4 }), fc.constantFrom('\n', '\r\n', '\n\n'), fc.boolean())
  .map(([rows, eol, trailing]) => rows.map((r) => JSON.stringify(r)).join(eol) + (trailing ? eol : ''));

const csvCell = fc.oneof(fc.constantFrom('2026-01-01T00:00:00Z', '1.5', '3', 'true', 'h1', '', '""', '"a,b"', '"x""y"', '"unterminated'), text);
const csvHeader = fc.oneof(
  { weight: 3, arbitrary: fc.constant(['timestamp', 'v', 'host', 'n', 'ok']) },
  { weight: 1, arbitrary: fc.shuffledSubarray(['timestamp', 'v', 'host', 'n', 'ok', 'extra', 'HOST', 'timestamp']) },
  { weight: 1, arbitrary: fc.array(text, { maxLength: 6 }) },
);
const csv = fc
  .tuple(csvHeader, fc.array(fc.array(csvCell, { maxLength: 6 }), { maxLength: 4 }), fc.constantFrom('\n', '\r\n', '\r'))
  .map(([header, rows, eol]) => [header.join(','), ...rows.map((cells) => cells.join(','))].join(eol) + eol);

/** An Arrow IPC stream of 1 to 4 columns of the supported types (and one that is not), 0 to 3 rows. */
const arrowTable: fc.Arbitrary<Uint8Array> = fc
  .record({
    names: fc.array(fc.oneof(fc.constantFrom('timestamp', 'v', 'host', 'n', 'ok', 'Timestamp', 'V'), text), { minLength: 1, maxLength: 4 }),
    kinds: fc.array(fc.constantFrom('timestamp', 'double', 'int32', 'int64', 'utf8', 'bool', 'nulls'), { minLength: 4, maxLength: 4 }),
    rows: fc.nat(3),
    values: fc.array(fc.double(), { minLength: 3, maxLength: 3 }),
    strings: fc.array(text, { minLength: 3, maxLength: 3 }),
    format: fc.constantFrom('stream', 'file') as fc.Arbitrary<'stream' | 'file'>,
  })
  .map(({ names, kinds, rows, values, strings, format }) => {
    const n = rows;
    const columns: Record<string, Vector<any>> = {};
    names.forEach((name, i) => {
      const kind = kinds[i] as string;
      const nums = values.slice(0, n);
      if (kind === 'timestamp') columns[name] = vectorFromArray(nums.map((x) => (Number.isFinite(x) ? Math.trunc(x) % 8.64e15 : Date.UTC(2026, 0, 1))), new TimestampMillisecond());
      else if (kind === 'double') columns[name] = vectorFromArray(nums, new Float64());
      else if (kind === 'int32') columns[name] = vectorFromArray(nums.map((x) => (Number.isFinite(x) ? Math.trunc(x) | 0 : null)), new Int32());
      else if (kind === 'int64') columns[name] = vectorFromArray(nums.map((x) => (Number.isFinite(x) ? BigInt(Math.trunc(x % 1e18)) : 2n ** 62n)), new Int64());
      else if (kind === 'utf8') columns[name] = vectorFromArray(strings.slice(0, n), new Utf8());
      else if (kind === 'bool') columns[name] = vectorFromArray(nums.map((x) => x > 0), new Bool());
      else columns[name] = vectorFromArray(nums.map(() => null), new Float64());
    });
    let table: Table<any>;
    try {
      table = new Table(columns);
    } catch {
      table = tableFromArrays({ timestamp: [new Date(Date.UTC(2026, 0, 1))] });
    }
    return tableToIPC(table, format);
  });

const validArrow = tableToIPC(
  new Table({
    timestamp: vectorFromArray([Date.UTC(2026, 0, 1, 1), Date.UTC(2026, 0, 1, 2)], new TimestampMillisecond()),
    v: vectorFromArray([3, 4], new Float64()),
    host: vectorFromArray(['h1', 'h3'], new Utf8()),
  }),
  'stream',
);

const arrow = mutatedBytes(fc.oneof(fc.constant(validArrow), arrowTable));

/** Bytes with no structure at all, and text that is almost JSON. */
const junk: fc.Arbitrary<string | Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  anyText(80),
  fc.constantFrom('{', '[', '{"rows":', '{}', '[]', 'null', '"x"', '{"a":1}{"a":2}', '\ufeff{}', '{"a":"\\ud800"}', '{"a":1e400}', '{"__proto__":{"x":1}}'),
);

// ---- headers ----

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'application/x-ndjson',
  'application/ndjson',
  'text/csv',
  'text/csv; charset=latin1',
  'application/vnd.apache.arrow.stream',
  'application/vnd.apache.arrow.file',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  'APPLICATION/JSON',
  'application/json;;',
];

/** A header value fetch will send (printable ASCII, no line breaks). */
const headerValue = fc.oneof(asciiText(60), fc.constantFrom('', ' ', 'x'.repeat(300), 'wait=5', 'wait=-1', 'wait=1e9', 'Bearer ', 'Bearer ts_x', '*/*'));

function headersFor(contentType: fc.Arbitrary<string>, auth: fc.Arbitrary<Record<string, string>>): fc.Arbitrary<Record<string, string>> {
  // Mostly what a client would send (the right type, sometimes a key or a wait), so the body is read.
  const clean = fc.record(
    {
      'content-type': contentType,
      'idempotency-key': fc.stringMatching(/^[A-Za-z0-9-]{1,40}$/),
      prefer: fc.constantFrom('wait=0', 'wait=1', 'wait=5'),
      accept: fc.constantFrom('application/json', 'text/csv', 'application/x-ndjson'),
    },
    { requiredKeys: ['content-type'] },
  );
  const noisy = fc.record(
    {
      'content-type': fc.oneof({ weight: 3, arbitrary: contentType }, { weight: 1, arbitrary: fc.constantFrom(...CONTENT_TYPES) }, { weight: 1, arbitrary: headerValue }),
      'idempotency-key': headerValue,
      prefer: fc.oneof(fc.constantFrom('wait=0', 'wait=1', 'wait=60', 'wait=61', 'wait=abc', 'respond-async'), headerValue),
      accept: fc.constantFrom('application/json', 'text/csv', 'application/x-ndjson', 'text/html', '*/*', 'image/png;q=0.1'),
      'x-iam-user': headerValue,
      'x-iam-scopes': headerValue,
      'content-encoding': fc.constantFrom('gzip', 'br', 'identity', 'x-unknown'),
      traceparent: fc.oneof(fc.constant('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), headerValue),
    },
    { requiredKeys: [] },
  );
  return fc.tuple(fc.oneof({ weight: 4, arbitrary: clean }, { weight: 1, arbitrary: noisy }), auth).map(([headers, a]) => ({ ...headers, ...a }));
}

// ---- query strings ----

/** Mostly parameters the route knows with values it accepts; sometimes odd values, unknown names or a broken string. */
function queryString(known: Record<string, fc.Arbitrary<string>>): fc.Arbitrary<string> {
  const names = Object.keys(known);
  const unknownPair = fc.tuple(text, text);
  const knownPair = names.length ? fc.constantFrom(...names).chain((k) => fc.tuple(fc.constant(k), known[k] as fc.Arbitrary<string>)) : null;
  const oddPair = knownPair ? fc.oneof(knownPair, fc.constantFrom(...names).chain((k) => fc.tuple(fc.constant(k), text)), unknownPair) : unknownPair;
  const encode = (pairs: [string, string][]) => new URLSearchParams(pairs).toString();
  return fc
    .oneof(
      { weight: 4, arbitrary: knownPair ? fc.array(knownPair, { maxLength: 3 }).map(encode) : fc.constant('') },
      { weight: 1, arbitrary: fc.array(oddPair, { maxLength: 4 }).map(encode) },
      // Written by hand: stray `%`, `&&`, `=` without a name, names twice.
      { weight: 1, arbitrary: fc.array(fc.oneof(asciiText(12), fc.constantFrom('%', '%zz', '&', '=', 'wait', 'key.', 'key.site=a', 'a=%ff%fe')), { maxLength: 6 }).map((parts) => parts.join('').replace(/[#\s]/g, '')) },
    )
    .map((q) => (q ? `?${q}` : ''));
}

const WAIT = { wait: fc.constantFrom('true', 'false') };
/** The batch settings NDJSON, CSV and Arrow take from the query string (JSON has them in the body). */
const ROWS_QUERY = {
  ...WAIT,
  'key.site': fc.constantFrom('a', 'b', 'c-1'),
  'key.other': fc.constantFrom('x', 'y.z'),
  'timeRange.start': fc.constantFrom('2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z', '2026-01-01'),
  'timeRange.end': fc.constantFrom('2026-01-02T00:00:00Z', '2025-01-01T00:00:00Z'),
  datasetName: fc.constantFrom('Fuzz', 'x'.repeat(300)),
  storageTargetId: fc.constantFrom('local', 'nope'),
};

// ---- paths ----

/** A path segment for any string (lone surrogates as the replacement character); raw bad escapes come from the lists. */
const pathSegment = (s: string) => encodeURIComponent(s.toWellFormed());

/** The slug in a path: the fixture dataset mostly, else a new, odd or invalid one (encoded, or raw). */
function slugIn(world: FuzzWorld, fixture: string): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constant(fixture) },
    { weight: 1, arbitrary: fc.constant(world.datasetId) },
    { weight: 1, arbitrary: fc.stringMatching(/^[a-z][a-z0-9_.-]{0,20}$/).map((s) => `fuzz-${s}`) },
    { weight: 1, arbitrary: text.map(pathSegment) },
    { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '%2F', '..', '.', 'a%00b', 'x'.repeat(129), '%F0%9F%99%82', '%ED%A0%80', '%FF', 'a%C0%80') },
  );
}

const idIn = (real: string) => fc.oneof({ weight: 2, arbitrary: fc.constant(real) }, { weight: 1, arbitrary: fc.uuid() }, { weight: 1, arbitrary: text.map(pathSegment) });

/** The Authorization (or x-iam) headers a request carries: `tokens` gives the valid one mostly. */
export type AuthChoice = fc.Arbitrary<Record<string, string>>;

export function fuzzRequests(world: FuzzWorld, auth: AuthChoice): fc.Arbitrary<FuzzRequest> {
  const req = (family: string, method: string, path: fc.Arbitrary<string>, query: fc.Arbitrary<string>, contentType: fc.Arbitrary<string>, body: fc.Arbitrary<string | Uint8Array | undefined>) =>
    fc.record({ path, query, headers: headersFor(contentType, auth), body }).map(({ path, query, headers, body }) => ({ family, method, target: `${path}${query}`, headers, body }));
  const json = (valid: unknown) => fc.oneof({ weight: 5, arbitrary: mutatedJson(valid).map((v) => JSON.stringify(v)) }, { weight: 1, arbitrary: junk });
  const ingestPath = slugIn(world, world.slug).map((s) => `/datasets/${s}/ingest`);
  const jsonQuery = queryString(WAIT);
  const ingestQuery = queryString(ROWS_QUERY);
  const ds = (fixture: string) => slugIn(world, fixture);
  const noBody = fc.constant(undefined);
  const noQuery = fc.constant('');
  const jsonType = fc.constant('application/json');

  return fc.oneof(
    // Ingest, in each format.
    { weight: 5, arbitrary: req('ingest json', 'POST', ingestPath, jsonQuery, jsonType, json(VALID_BATCH)) },
    { weight: 3, arbitrary: req('ingest ndjson', 'POST', ingestPath, ingestQuery, fc.constant('application/x-ndjson'), fc.oneof({ weight: 5, arbitrary: ndjson }, { weight: 1, arbitrary: ndjson.map(utf8).chain((b) => mutatedBytes(fc.constant(b))) })) },
    { weight: 3, arbitrary: req('ingest csv', 'POST', ingestPath, ingestQuery, fc.constant('text/csv'), fc.oneof({ weight: 5, arbitrary: csv }, { weight: 1, arbitrary: csv.map(utf8).chain((b) => mutatedBytes(fc.constant(b))) })) },
    { weight: 3, arbitrary: req('ingest arrow', 'POST', ingestPath, ingestQuery, fc.constant('application/vnd.apache.arrow.stream'), arrow) },
    { weight: 1, arbitrary: req('ingest junk', 'POST', ingestPath, ingestQuery, fc.constantFrom(...CONTENT_TYPES), junk) },
    // Queries.
    { weight: 4, arbitrary: req('query', 'POST', ds(world.slug).map((s) => `/datasets/${s}/query`), queryString({}), jsonType, json(VALID_QUERY)) },
    { weight: 2, arbitrary: req('latest', 'POST', ds(world.slug).map((s) => `/datasets/${s}/latest`), queryString({}), jsonType, json({ columns: ['v'], filters: { columns: { host: { eq: 'h1' } } }, timeRange: VALID_QUERY.timeRange, limit: 10 })) },
    { weight: 1, arbitrary: req('job', 'GET', idIn(world.jobId).map((id) => `/ingestion/jobs/${id}`), noQuery, jsonType, noBody) },
    // Administration.
    { weight: 2, arbitrary: req('admin list', 'GET', fc.constantFrom('/admin/datasets', '/admin/jobs', '/admin/storage-targets', '/admin/tokens'), queryString({ search: text, cursor: text, limit: fc.constantFrom('1', '0', '-1', '1000', 'x'), state: fc.constantFrom('failed', 'queued', 'nope'), kind: text, revoked: fc.constantFrom('true', 'false', 'yes'), status: fc.constantFrom('active', 'archived', 'x') }), jsonType, noBody) },
    { weight: 2, arbitrary: req('admin read', 'GET', fc.tuple(ds(world.adminSlug), fc.constantFrom('', '/manifest', '/retention', '/audit')).map(([s, tail]) => `/admin/datasets/${s}${tail}`), queryString({ cursor: text, limit: fc.constantFrom('1', '0', '-5', 'many'), version: fc.constantFrom('1', '0', '99', 'x'), action: text }), jsonType, noBody) },
    { weight: 2, arbitrary: req('admin create dataset', 'POST', fc.constant('/admin/datasets'), noQuery, jsonType, json({ slug: 'fuzz-made', name: 'Made', description: 'd', schema: { fields: VALID_BATCH.schema.fields }, timestampColumn: 'timestamp', metadata: { allowUnknownFields: true } })) },
    { weight: 2, arbitrary: req('admin patch dataset', 'PATCH', ds(world.adminSlug).map((s) => `/admin/datasets/${s}`), noQuery, jsonType, json({ name: 'n', description: 'd', status: 'active', metadata: { iam: { readScopes: ['r'] } }, schema: { fields: [{ name: 'extra', type: 'string' }] } })) },
    { weight: 2, arbitrary: req('admin retention', 'PUT', ds(world.adminSlug).map((s) => `/admin/datasets/${s}/retention`), noQuery, jsonType, json({ rules: { maxAgeHours: 24, maxTotalBytes: 1e9, deleteGraceMinutes: 5 } })) },
    { weight: 1, arbitrary: req('admin dataset target', 'PUT', ds(world.adminSlug).map((s) => `/admin/datasets/${s}/storage-target`), noQuery, jsonType, json({ storageTargetId: 'local' })) },
    { weight: 1, arbitrary: req('admin lifecycle', 'POST', ds(world.adminSlug).map((s) => `/admin/datasets/${s}/lifecycle`), queryString({ wait: fc.constantFrom('true', 'false') }), jsonType, noBody) },
    { weight: 1, arbitrary: req('admin job', 'GET', idIn(world.jobId).map((id) => `/admin/jobs/${id}`), noQuery, jsonType, noBody) },
    { weight: 1, arbitrary: req('admin job retry', 'POST', idIn(world.jobId).map((id) => `/admin/jobs/${id}/retry`), noQuery, jsonType, noBody) },
    { weight: 1, arbitrary: req('admin job delete', 'DELETE', fc.oneof(fc.uuid(), text.map(pathSegment)).map((id) => `/admin/jobs/${id}`), noQuery, jsonType, noBody) },
    // A storage target's root stays under the scratch directory: a registration writes a probe there.
    { weight: 1, arbitrary: req('admin storage target', 'POST', fc.constant('/admin/storage-targets'), noQuery, jsonType, storageTargetBody(world)) },
    { weight: 2, arbitrary: req('admin create token', 'POST', fc.constant('/admin/tokens'), noQuery, jsonType, json({ name: 'fuzz-token', scopes: ['read', 'write:fuzz'], expiresInSeconds: 3600 })) },
    { weight: 1, arbitrary: req('admin token', 'GET', idIn(world.tokenId).map((id) => `/admin/tokens/${id}`), noQuery, jsonType, noBody) },
    { weight: 1, arbitrary: req('admin revoke token', 'DELETE', fc.oneof(fc.uuid(), text.map(pathSegment)).map((id) => `/admin/tokens/${id}`), noQuery, jsonType, noBody) },
  );
}

function storageTargetBody(world: FuzzWorld): fc.Arbitrary<string> {
  const root = fc.stringMatching(/^[a-z0-9]{1,12}$/).map((s) => `${world.scratch}/${s}`);
  return fc
    .record({
      name: fc.oneof(fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/), text),
      kind: fc.oneof({ weight: 4, arbitrary: fc.constant('local') }, { weight: 1, arbitrary: fc.constantFrom('s3', 'ftp', '', 'LOCAL') }),
      config: fc.oneof(
        { weight: 4, arbitrary: root.map((r) => ({ root: r }) as Json) },
        { weight: 1, arbitrary: fc.constantFrom<Json>(null, {}, [], 'x', { root: 7 }, { root: '' }) },
        { weight: 1, arbitrary: root.map((r) => ({ root: r, extra: true }) as Json) },
      ),
      credentials: fc.option(fc.constantFrom<Json>({}, { accessKeyId: 'a' }, 'x'), { nil: undefined }),
    })
    .map((body) => JSON.stringify(body));
}
