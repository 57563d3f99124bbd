/**
 * Every rule of src/model/constraints.ts, broken on purpose, in every body format it applies to,
 * against a real server: the answer is the rule's 4xx and code, nothing is staged or queued, and the
 * dataset then still takes a batch and answers queries. A rule added to the list without a case here
 * fails the first test; a refusal whose code is not in the list fails its case, and ingestion may
 * build refusals only through the list (last test).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  Bool,
  DateMillisecond,
  Field,
  Float64,
  Int64,
  makeData,
  makeVector,
  Null,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableToIPC,
  Utf8,
  type Vector,
  vectorFromArray,
} from 'apache-arrow';
import { CatalogCache } from '../../src/catalog/lookup-cache.ts';
import { createDatasetIfMissing, findDataset, updateDataset } from '../../src/catalog/datasets.ts';
import type { Dataset, SchemaField } from '../../src/model/records.ts';
import { AppError } from '../../src/model/errors.ts';
import { acceptBatch } from '../../src/ingest/accept.ts';
import { type ConstraintId, type ConstraintScope, INGEST_CONSTRAINTS, INGEST_REFUSAL_CODES } from '../../src/model/constraints.ts';
import { decodeBody } from '../../src/ingest/formats/index.ts';
import { checkObjectKeys } from '../../src/ingest/object-key-limits.ts';
import { type StorageDriver, StorageDrivers, S3StorageDriver } from '../../src/storage/index.ts';
import { REMOTE_WRITE_HEADERS, remoteWriteBody } from '../harness/remote-write.ts';
import { type Answer, postIngest, postJson, startTestServer, type TestServer } from '../harness/server.ts';

const MAX_BODY = 1024 * 1024;
const MAX_ROWS = 1000;
let ts: TestServer;
beforeAll(async () => {
  // Only administration needs a scope: a batch that names another storage target than its dataset's is refused without it.
  ts = await startTestServer({
    TIMESTORE_INGEST_MAX_BODY_BYTES: String(MAX_BODY),
    TIMESTORE_INGEST_MAX_BATCH_ROWS: String(MAX_ROWS),
    TIMESTORE_ADMIN_SCOPE: ADMIN.scope,
  });
});
afterAll(() => ts.stop());

const NDJSON = 'application/x-ndjson';
const CSV = 'text/csv';
const ARROW = 'application/vnd.apache.arrow.stream';
const TYPES: Record<Exclude<ConstraintScope, 'admin'>, string> = {
  json: 'application/json',
  ndjson: NDJSON,
  csv: CSV,
  arrow: ARROW,
  prometheus: REMOTE_WRITE_HEADERS['content-type'],
  'line-protocol': 'text/plain',
};

const FIELDS: SchemaField[] = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'temp', type: 'double' },
  { name: 'n', type: 'integer' },
  { name: 's', type: 'string' },
  { name: 'ok', type: 'boolean' },
  { name: 'at', type: 'timestamp' },
  { name: 'site', type: 'string', nullable: false },
];
const UNTIMED = FIELDS.filter((f) => f.type !== 'timestamp');
const T = '2026-01-01T00:00:00Z';
const row = (over: Record<string, unknown> = {}) => ({ timestamp: T, temp: 1.5, n: 1, s: 'x', ok: true, at: T, site: 'a', ...over });
const jsonBody = (rows: unknown[], over: Record<string, unknown> = {}) => ({ schema: { fields: FIELDS }, partition: { key: { k: 'v' } }, rows, ...over });
const ndjson = (...rows: unknown[]) => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n';
const CSV_HEADER = 'timestamp,temp,n,s,ok,at,site';
const csv = (...records: string[]) => [CSV_HEADER, ...records].join('\n') + '\n';
const CSV_ROW = `${T},1.5,1,x,true,${T},a`;

const send = (slug: string, contentType: string, body: string | Uint8Array, query = '', headers: Record<string, string> = {}) =>
  postIngest(ts.url, slug, contentType, body, query, headers);
/** A Prometheus remote write request whose one metric is named `slug` (so that it goes to that dataset). */
const sendRemoteWrite = async (body: Uint8Array, headers: Record<string, string> = {}): Promise<Answer> => {
  const res = await fetch(`${ts.url}/api/v1/write`, { method: 'POST', headers: { ...REMOTE_WRITE_HEADERS, ...headers }, body });
  return { status: res.status, body: await res.json().catch(() => null) };
};
const remoteWriteRow = (slug: string, labels: [string, string][] = []) =>
  remoteWriteBody([{ labels: [['__name__', slug], ['site', 'a'], ...labels], samples: [{ value: 1.5, timestamp: Date.parse(T) }] }]);
const ADMIN = { scope: 'ts-admin', headers: { 'x-iam-scopes': 'ts-admin' } };
const createDataset = (body: unknown) => postJson(`${ts.url}/admin/datasets`, body, ADMIN.headers);
/** Line protocol through the InfluxDB v2 write route: the measurement `slug` is the dataset. */
async function sendLines(body: string | Uint8Array, query = 'precision=s', headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${ts.url}/api/v2/write?${query}`, { method: 'POST', headers: { 'content-type': 'text/plain', ...headers }, body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
/** A good line for a seeded dataset (`site` is required there), at T. */
const LINE_T = Date.parse('2026-01-01T00:00:00Z') / 1000;
const goodLine = (slug: string, fields = 'temp=1.5', at: number | string = LINE_T) => `${slug},site=a ${fields} ${at}\n`;
const sendJson = (slug: string, body: unknown, query = '', headers: Record<string, string> = {}) =>
  send(slug, TYPES.json, typeof body === 'string' ? body : JSON.stringify(body), query, headers);

function arrow(columns: Record<string, Vector>): Uint8Array {
  return tableToIPC(new Table(columns), 'stream');
}
const dates = (...values: (number | null)[]) => vectorFromArray(values.map((v) => (v === null ? null : new Date(v))), new DateMillisecond());
const arrowRow = (over: Record<string, Vector> = {}) =>
  arrow({ timestamp: dates(Date.parse(T)), temp: vectorFromArray([1.5], new Float64()), site: vectorFromArray(['a'], new Utf8()), ...over });

/** An Arrow stream whose schema names `names` (repeats allowed), each a Float64 column, after a timestamp column. */
function arrowWithNames(names: string[]): Uint8Array {
  const columns = [dates(Date.parse(T)), ...names.map(() => vectorFromArray([1], new Float64()))];
  const fields = [new Field('timestamp', new DateMillisecond()), ...names.map((name) => new Field(name, new Float64()))];
  const data = makeData({ type: new Struct(fields), length: 1, nullCount: 0, children: columns.map((c) => c.data[0]!) });
  return tableToIPC(new Table(new RecordBatch(new Schema(fields), data)), 'stream');
}

/** A dataset with FIELDS and one row, made by a JSON batch. */
async function seed(slug: string): Promise<void> {
  const res = await sendJson(slug, jsonBody([row({ timestamp: '2026-01-01T12:00:00Z' })]), 'wait=true');
  expect(res.status).toBe(201);
}

async function adminCreate(body: Record<string, unknown>): Promise<void> {
  const res = await createDataset(body);
  expect(res.status).toBe(201);
}

async function queryRows(slug: string): Promise<Answer> {
  return postJson(`${ts.url}/datasets/${slug}/query`, { timeRange: { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' } });
}

const setStatus = (status: 'active' | 'inactive' | 'archived') => async (slug: string) => {
  const dataset = await findDataset(ts.sql, slug);
  await updateDataset(ts.sql, dataset!.id, { status });
};

/** A dataset of `count` fields: the timestamp and f1… doubles. */
const wideFields = (count: number): SchemaField[] => [
  { name: 'timestamp', type: 'timestamp' },
  ...Array.from({ length: count - 1 }, (_, i) => ({ name: `f${i + 1}`, type: 'double' as const })),
];

/**
 * `acceptBatch` itself with `meanwhile` run while the batch's body is being staged: a race a request
 * cannot be made to lose on cue through HTTP. `dataset`: the row the request's scope check passed on.
 */
async function acceptWhileStaging(
  slug: string,
  format: Exclude<ConstraintScope, 'admin' | 'line-protocol' | 'prometheus'>,
  body: string | Uint8Array,
  meanwhile: () => Promise<unknown>,
  dataset?: Dataset,
): Promise<Answer> {
  const real = new StorageDrivers(null);
  const drivers = {
    forTarget(target: Parameters<StorageDrivers['forTarget']>[0]): StorageDriver {
      const driver = real.forTarget(target);
      return new Proxy(driver, {
        get(d, name, receiver) {
          if (name !== 'putBytes') return Reflect.get(d, name, receiver);
          return async (key: string, bytes: Uint8Array) => {
            await meanwhile();
            return d.putBytes(key, bytes);
          };
        },
      });
    },
  } as unknown as StorageDrivers;
  const raw = typeof body === 'string' ? new TextEncoder().encode(body) : body;
  const batch = decodeBody(format, raw, new URLSearchParams());
  const sql = ts.sql;
  try {
    await acceptBatch(
      {
        sql,
        drivers,
        queue: ts.config.ingest.queueName,
        defaultTargetName: ts.config.storageDriver,
        idempotencyTtlSeconds: 3600,
        wake() {},
        catalogCache: new CatalogCache(sql),
      },
      { datasetSlug: slug, dataset, batch, idempotencyKey: null, actor: null, traceParent: null },
    );
  } catch (err) {
    if (err instanceof AppError) return { status: err.status, body: { error: { code: err.code, message: err.message, details: err.details } } };
    throw err;
  } finally {
    real.close();
  }
  return { status: 202, body: {} };
}

/**
 * A first batch that loses the race to create its dataset: another request creates it (with another
 * timestamp column) while this one stages its body, as two first batches sent at once do.
 */
function raceToCreate(slug: string, format: 'json' | 'arrow'): Promise<Answer> {
  const body = format === 'json' ? JSON.stringify(jsonBody([row()])) : arrowRow();
  return acceptWhileStaging(slug, format, body, () => createDatasetIfMissing(ts.sql, { slug, timestampColumn: 'ts' }));
}

/**
 * A batch checked on its dataset's row, whose metadata another request changes while the batch is
 * staged: its job's INSERT finds the row no longer the one the check passed on.
 */
async function raceToChange(slug: string, format: 'json' | 'ndjson' | 'csv' | 'arrow'): Promise<Answer> {
  const checkedOn = (await findDataset(ts.sql, slug))!;
  const change = () => updateDataset(ts.sql, checkedOn.id, { metadata: { ...checkedOn.metadata, changedBy: 'another request' } });
  return acceptWhileStaging(slug, format, goodBody(format), change, checkedOn);
}

interface Case {
  constraint: ConstraintId;
  format: ConstraintScope;
  title: string;
  /** Makes the dataset (default: `seed`). */
  setup?: (slug: string) => Promise<void>;
  /** Requests that must succeed before the refused one (an idempotency key's first use). */
  prepare?: (slug: string) => Promise<void>;
  /** The refused request. */
  send: (slug: string) => Promise<Answer>;
  /** Lets the dataset take batches again (e.g. makes it active). */
  restore?: (slug: string) => Promise<void>;
  /** The batch sent afterwards (default: FIELDS and one good row) and the rows queried before it (default 1). */
  followUp?: { fields: SchemaField[]; row: Record<string, unknown>; rowsBefore: number };
}

const c = (constraint: ConstraintId, format: ConstraintScope, title: string, rest: Omit<Case, 'constraint' | 'format' | 'title'>): Case => ({
  constraint,
  format,
  title,
  ...rest,
});
const fresh = { setup: async () => {}, followUp: { fields: FIELDS, row: row(), rowsBefore: 0 } };
const tooBig = (format: Exclude<ConstraintScope, 'admin'>) => c('body_size', format, 'a body over the limit', { send: (slug) => send(slug, TYPES[format], new Uint8Array(MAX_BODY + 1)) });
const longKey = '0123456789'.repeat(21); // 210 bytes: 255 less the temporary name is 237 for a file, 255 for a directory

const CASES: Case[] = [
  ...(['json', 'ndjson', 'csv', 'arrow'] as const).map(tooBig),
  c('remote_write_media_type', 'prometheus', 'remote write 2.0', {
    send: (slug) => sendRemoteWrite(remoteWriteRow(slug), { 'content-type': 'application/x-protobuf;proto=io.prometheus.write.v2.Request' }),
  }),
  c('remote_write_body', 'prometheus', 'a body that is not snappy', { send: () => sendRemoteWrite(new Uint8Array([0xff, 0xff, 0xff, 0xff])) }),
  c('remote_write_series', 'prometheus', 'a series with a label twice', { send: (slug) => sendRemoteWrite(remoteWriteRow(slug, [['site', 'b']])) }),
  c('media_type', 'ndjson', 'NDJSON in UTF-16', { send: (slug) => send(slug, `${NDJSON}; charset=utf-16`, ndjson(row())) }),
  c('media_type', 'csv', 'CSV in Latin-1', { send: (slug) => send(slug, `${CSV}; charset=latin1`, csv(CSV_ROW)) }),
  c('body_shape', 'json', 'rows is not an array', { send: (slug) => sendJson(slug, { ...jsonBody([]), rows: 'no' }) }),
  c('body_shape', 'admin', 'a schema of 1,025 fields', { ...fresh, send: (slug) => createDataset({ slug, schema: { fields: wideFields(1025) } }) }),
  c('json_syntax', 'json', 'a body that is not JSON', { send: (slug) => sendJson(slug, '{"schema":') }),
  c('json_syntax', 'ndjson', 'a line that is not JSON', { send: (slug) => send(slug, NDJSON, ndjson(row(), '{"timestamp":')) }),
  c('encoding', 'json', 'a JSON body that is not UTF-8', {
    send: (slug) => {
      const bytes = new TextEncoder().encode(JSON.stringify(jsonBody([row({ s: 'XY' })])));
      bytes[bytes.indexOf(0x58)] = 0xff;
      return send(slug, TYPES.json, bytes);
    },
  }),
  c('encoding', 'ndjson', 'an NDJSON body that is not UTF-8', { send: (slug) => send(slug, NDJSON, new Uint8Array([0x7b, 0xff, 0x7d, 0x0a])) }),
  c('encoding', 'csv', 'a CSV body that is not UTF-8', { send: (slug) => send(slug, CSV, new Uint8Array([...new TextEncoder().encode(`${CSV_HEADER}\n`), 0xc3, 0x28, 0x0a])) }),
  c('unicode', 'json', 'a lone surrogate in datasetName', { send: (slug) => sendJson(slug, JSON.stringify(jsonBody([row()], { datasetName: 'x\ud800' }))) }),
  c('unicode', 'json', 'a lone surrogate in a string value', { send: (slug) => sendJson(slug, JSON.stringify(jsonBody([row(), row({ s: '\udc00' })]))) }),
  c('unicode', 'ndjson', 'a lone surrogate in a key that is not a field', { setup: looseDataset, send: (slug) => send(slug, NDJSON, ndjson(row(), '{"timestamp":"2026-01-01T00:00:00Z","site":"a","x\\ud83d":1}')) }),
  c('csv_syntax', 'csv', 'records ending in \\r\\n and \\n', { send: (slug) => send(slug, CSV, `${CSV_HEADER}\r\n${CSV_ROW}\r\n${CSV_ROW}\n`) }),
  c('csv_syntax', 'csv', 'a record with too few fields', { send: (slug) => send(slug, CSV, csv(`${T},1.5`)) }),
  c('arrow_stream', 'arrow', 'a body that is not Arrow', { send: (slug) => send(slug, ARROW, 'timestamp\n2026-01-01\n') }),
  c('arrow_stream', 'arrow', 'a record batch that declares ten million rows in a few hundred bytes', {
    send: (slug) => send(slug, ARROW, tableToIPC(new Table({ timestamp: makeVector(makeData({ type: new Null(), length: 10_000_000 })) }), 'stream')),
  }),
  c('arrow_type', 'arrow', 'a list column', { send: (slug) => send(slug, ARROW, arrowRow({ tags: vectorFromArray([[1, 2]]) })) }),
  c('query_parameter', 'json', 'a partition key as a query parameter with a JSON body', { send: (slug) => sendJson(slug, jsonBody([row()]), 'key.k=v') }),
  c('query_parameter', 'ndjson', 'an unknown query parameter', { send: (slug) => send(slug, NDJSON, ndjson(row()), 'colour=red') }),
  c('query_parameter', 'csv', 'a key given twice', { send: (slug) => send(slug, CSV, csv(CSV_ROW), 'key.k=a&key.k=b') }),
  c('query_parameter', 'arrow', 'an unknown query parameter', { send: (slug) => send(slug, ARROW, arrowRow(), 'format=parquet') }),
  ...(['json', 'ndjson', 'csv', 'arrow'] as const).map((format) =>
    c('idempotency_key', format, 'an Idempotency-Key of 201 characters', {
      send: (slug) => send(slug, TYPES[format], goodBody(format), '', { 'idempotency-key': 'k'.repeat(201) }),
    }),
  ),
  c('nul_character', 'json', 'U+0000 in a string value', { send: (slug) => sendJson(slug, jsonBody([row({ s: 'a\u0000b' })])) }),
  c('nul_character', 'ndjson', 'U+0000 in a string value', { send: (slug) => send(slug, NDJSON, ndjson(row({ s: '\u0000' }))) }),
  c('nul_character', 'csv', 'U+0000 in a string value', { send: (slug) => send(slug, CSV, csv(`${T},1.5,1,a\u0000b,true,${T},a`)) }),
  c('nul_character', 'arrow', 'U+0000 in a string value', { send: (slug) => send(slug, ARROW, arrowRow({ s: vectorFromArray(['a\u0000'], new Utf8()) })) }),
  c('nul_character', 'ndjson', 'U+0000 in datasetName', { send: (slug) => send(slug, NDJSON, ndjson(row()), 'datasetName=a%00b') }),

  c('field_name', 'json', 'a name with a space', { send: (slug) => sendJson(slug, jsonBody([row()], { schema: { fields: [...FIELDS, { name: 'a b', type: 'double' }] } })) }),
  c('field_name', 'arrow', 'a column name with a dash', { send: (slug) => send(slug, ARROW, arrowRow({ 'a-b': vectorFromArray([1], new Float64()) })) }),
  c('field_name', 'admin', 'a timestampColumn that is no field name', { ...fresh, send: (slug) => createDataset({ slug, timestampColumn: 'time of day' }) }),
  c('duplicate_field', 'json', 'a field declared twice', { send: (slug) => sendJson(slug, jsonBody([row()], { schema: { fields: [...FIELDS, FIELDS[1]] } })) }),
  c('duplicate_field', 'arrow', 'a column named twice', { send: (slug) => send(slug, ARROW, arrowWithNames(['temp', 'temp'])) }),
  c('duplicate_field', 'admin', 'a field declared twice', { ...fresh, send: (slug) => createDataset({ slug, schema: { fields: [...FIELDS, FIELDS[2]] } }) }),
  c('field_case_in_declaration', 'json', 'Temp beside temp in a first batch', {
    ...fresh,
    send: (slug) => sendJson(slug, jsonBody([row()], { schema: { fields: [...FIELDS, { name: 'Temp', type: 'double' }] } })),
  }),
  c('field_case_in_declaration', 'arrow', 'columns Temp and temp', { send: (slug) => send(slug, ARROW, arrowWithNames(['temp', 'Temp'])) }),
  c('field_case_in_declaration', 'admin', 'Temp beside temp', { ...fresh, send: (slug) => createDataset({ slug, schema: { fields: [...FIELDS, { name: 'TEMP', type: 'double' }] } }) }),
  c('field_case_with_dataset', 'json', 'Temp added to a dataset with temp', {
    send: (slug) => sendJson(slug, jsonBody([row()], { schema: { fields: [FIELDS[0], FIELDS[6], { name: 'Temp', type: 'double' }] } })),
  }),
  c('field_case_with_dataset', 'arrow', 'a column Temp in a dataset with temp', {
    send: (slug) => send(slug, ARROW, arrow({ timestamp: dates(Date.parse(T)), site: vectorFromArray(['a'], new Utf8()), Temp: vectorFromArray([2], new Float64()) })),
  }),
  c('field_case_with_dataset', 'json', 'Timestamp added to a dataset timed by timestamp', {
    send: (slug) => sendJson(slug, jsonBody([row({ Timestamp: T })], { schema: { fields: [FIELDS[6], { name: 'Timestamp', type: 'timestamp' }] } })),
  }),
  c('timestamp_field', 'json', 'a first batch without a timestamp field', { ...fresh, send: (slug) => sendJson(slug, jsonBody([row()], { schema: { fields: UNTIMED } })) }),
  c('timestamp_field', 'arrow', 'a first stream without a timestamp column', { ...fresh, send: (slug) => send(slug, ARROW, arrow({ temp: vectorFromArray([1], new Float64()) })) }),
  c('timestamp_field', 'admin', 'a schema without a timestamp field', { ...fresh, send: (slug) => createDataset({ slug, schema: { fields: UNTIMED } }) }),
  c('field_type', 'json', 'temp declared as a string', { send: (slug) => sendJson(slug, jsonBody([row({ temp: 'warm' })], { schema: { fields: FIELDS.map((f) => (f.name === 'temp' ? { ...f, type: 'string' } : f)) } })) }),
  c('field_type', 'arrow', 'temp sent as Utf8', { send: (slug) => send(slug, ARROW, arrowRow({ temp: vectorFromArray(['warm'], new Utf8()) })) }),
  c('nullable_addition', 'json', 'a new field declared nullable: false', {
    send: (slug) => sendJson(slug, jsonBody([row({ extra: 1 })], { schema: { fields: [...FIELDS, { name: 'extra', type: 'double', nullable: false }] } })),
  }),
  ...lineProtocolCases(),
  c('field_count_in_declaration', 'arrow', 'a stream of 1,025 columns', {
    ...fresh,
    send: (slug) => send(slug, ARROW, arrowWithNames(wideFields(1025).slice(1).map((f) => f.name))),
  }),
  ...(['json', 'arrow'] as const).map((format) =>
    c('field_count_with_dataset', format, 'a field added to a dataset of 1,024', {
      setup: (slug) => adminCreate({ slug, schema: { fields: wideFields(1024) } }),
      send: (slug) =>
        format === 'json'
          ? sendJson(slug, { schema: { fields: [FIELDS[0], { name: 'extra', type: 'double' }] }, partition: { key: {} }, rows: [{ timestamp: T }] })
          : send(slug, ARROW, arrow({ timestamp: dates(Date.parse(T)), extra: vectorFromArray([1], new Float64()) })),
      followUp: { fields: [FIELDS[0]!], row: { timestamp: T }, rowsBefore: 0 },
    }),
  ),

  ...(['ndjson', 'csv'] as const).map((format) =>
    c('dataset_missing', format, 'a batch for a dataset that does not exist', { ...fresh, send: (slug) => send(slug, TYPES[format], goodBody(format)) }),
  ),
  ...(['ndjson', 'csv'] as const).map((format) =>
    c('dataset_without_schema', format, 'a batch for a dataset created without a schema', {
      setup: (slug) => adminCreate({ slug }),
      send: (slug) => send(slug, TYPES[format], goodBody(format)),
      followUp: { fields: FIELDS, row: row(), rowsBefore: 0 },
    }),
  ),
  ...(['json', 'ndjson', 'csv', 'arrow'] as const).flatMap((format) => [
    c('dataset_inactive', format, 'a batch for an inactive dataset', {
      setup: async (slug) => {
        await seed(slug);
        await setStatus('inactive')(slug);
      },
      send: (slug) => send(slug, TYPES[format], goodBody(format)),
      restore: setStatus('active'),
    }),
    c('dataset_archived', format, 'a batch for an archived dataset', {
      setup: async (slug) => {
        await seed(slug);
        await setStatus('archived')(slug);
      },
      send: (slug) => send(slug, TYPES[format], goodBody(format)),
      restore: setStatus('active'),
    }),
  ]),
  ...(['json', 'arrow'] as const).map((format) =>
    c('concurrent_creation', format, 'a first batch whose dataset another request creates meanwhile', {
      setup: async () => {},
      send: (slug) => raceToCreate(slug, format),
      followUp: { fields: [{ name: 'ts', type: 'timestamp' }, { name: 'temp', type: 'double' }], row: { ts: T, temp: 1 }, rowsBefore: 0 },
    }),
  ),
  ...(['json', 'ndjson', 'csv', 'arrow'] as const).map((format) =>
    c('dataset_changed', format, 'a batch whose dataset another request changes while it is accepted', { send: (slug) => raceToChange(slug, format) }),
  ),
  c('storage_target_choice', 'json', "a writer's storageTargetId of another target", { send: (slug) => sendJson(slug, jsonBody([row()], { storageTargetId: 'nowhere' })) }),
  ...(['ndjson', 'csv', 'arrow'] as const).map((format) =>
    c('storage_target_choice', format, "a writer's storageTargetId of another target", { send: (slug) => send(slug, TYPES[format], goodBody(format), 'storageTargetId=nowhere') }),
  ),
  c('storage_target', 'json', "an administrator's storageTargetId of no target", {
    send: (slug) => sendJson(slug, jsonBody([row()], { storageTargetId: 'nowhere' }), '', ADMIN.headers),
  }),
  ...(['ndjson', 'csv', 'arrow'] as const).map((format) =>
    c('storage_target', format, "an administrator's storageTargetId of no target", {
      send: (slug) => send(slug, TYPES[format], goodBody(format), 'storageTargetId=nowhere', ADMIN.headers),
    }),
  ),
  ...(['json', 'ndjson', 'csv', 'arrow'] as const).flatMap((format) => [
    c('idempotency_reused', format, 'a key sent again with another body', {
      prepare: async (slug) => expect((await send(slug, TYPES[format], goodBody(format), 'wait=true', { 'idempotency-key': 'once' })).status).toBe(201),
      send: (slug) => send(slug, TYPES[format], goodBody(format, '2026-01-01T00:09:00Z'), '', { 'idempotency-key': 'once' }),
      followUp: { fields: FIELDS, row: row({ timestamp: '2026-01-01T00:05:00Z' }), rowsBefore: 2 },
    }),
    c('idempotency_expired', format, 'a key whose job is gone', {
      prepare: async (slug) => {
        const first = await send(slug, TYPES[format], goodBody(format), 'wait=true', { 'idempotency-key': 'gone' });
        expect(first.status).toBe(201);
        await ts.sql`DELETE FROM jobs WHERE id = ${first.body.id}`;
      },
      send: (slug) => send(slug, TYPES[format], goodBody(format), '', { 'idempotency-key': 'gone' }),
      followUp: { fields: FIELDS, row: row({ timestamp: '2026-01-01T00:05:00Z' }), rowsBefore: 2 },
    }),
  ]),

  c('empty_batch', 'json', 'rows: []', { send: (slug) => sendJson(slug, jsonBody([])) }),
  c('empty_batch', 'ndjson', 'blank lines only', { send: (slug) => send(slug, NDJSON, '\n \n') }),
  c('empty_batch', 'csv', 'a header only', { send: (slug) => send(slug, CSV, csv()) }),
  c('empty_batch', 'arrow', 'a stream without rows', { send: (slug) => send(slug, ARROW, arrow({ timestamp: dates(), site: vectorFromArray([], new Utf8()) })) }),
  c('invalid_row', 'json', 'a row that is an array', { send: (slug) => sendJson(slug, jsonBody([row(), [1, 2]])) }),
  c('invalid_row', 'ndjson', 'a line that is a number', { send: (slug) => send(slug, NDJSON, ndjson(row(), '42')) }),
  c('missing_timestamp', 'json', 'a row without its timestamp', { send: (slug) => sendJson(slug, jsonBody([row({ timestamp: null })])) }),
  c('missing_timestamp', 'ndjson', 'a row without its timestamp', { send: (slug) => send(slug, NDJSON, ndjson({ temp: 1, site: 'a' })) }),
  c('missing_timestamp', 'csv', 'an empty timestamp', { send: (slug) => send(slug, CSV, csv(`,1.5,1,x,true,${T},a`)) }),
  c('missing_timestamp', 'arrow', 'a null timestamp', { send: (slug) => send(slug, ARROW, arrowRow({ timestamp: dates(null) })) }),
  c('invalid_timestamp', 'json', 'an offset after hh:mm (DuckDB refuses it)', { send: (slug) => sendJson(slug, jsonBody([row({ timestamp: '2026-01-01T00:00Z' })])) }),
  c('invalid_timestamp', 'ndjson', 'a date with an offset', { send: (slug) => send(slug, NDJSON, ndjson(row({ timestamp: '2026-01-01+01:00' }))) }),
  c('invalid_timestamp', 'csv', 'February 30th', { send: (slug) => send(slug, CSV, csv(`2026-02-30T00:00:00Z,1.5,1,x,true,${T},a`)) }),
  c('invalid_timestamp', 'arrow', 'a Utf8 timestamp without seconds but with Z', { send: (slug) => send(slug, ARROW, arrowRow({ timestamp: vectorFromArray(['2026-01-01T10:00Z'], new Utf8()) })) }),
  c('timestamp_out_of_storable_range', 'json', 'year 0 once the offset is applied', { send: (slug) => sendJson(slug, jsonBody([row({ timestamp: '0001-01-01T00:30:00+01:00' })])) }),
  c('timestamp_out_of_storable_range', 'json', 'year 10000 in a timestamp field that is not the timestamp column', {
    send: (slug) => sendJson(slug, jsonBody([row({ at: '9999-12-31T23:30:00-01:00' })])),
  }),
  c('timestamp_out_of_storable_range', 'ndjson', 'year 0 once the offset is applied', { send: (slug) => send(slug, NDJSON, ndjson(row({ timestamp: '0001-01-01T00:00:00+00:01' }))) }),
  c('timestamp_out_of_storable_range', 'csv', 'year 10000 once the offset is applied', { send: (slug) => send(slug, CSV, csv(`9999-12-31T23:59:59-00:01,1.5,1,x,true,${T},a`)) }),
  c('timestamp_out_of_storable_range', 'csv', 'year 0 in a timestamp field that is not the timestamp column', { send: (slug) => send(slug, CSV, csv(`${T},1.5,1,x,true,0001-01-01T00:00:00+01,a`)) }),
  c('timestamp_out_of_storable_range', 'arrow', 'a date in year 10000', { send: (slug) => send(slug, ARROW, arrowRow({ timestamp: dates(253_402_300_800_000) })) }),
  ...(['json', 'ndjson', 'csv', 'arrow'] as const).map((format) =>
    c('timestamp_outside_time_range', format, 'a row after partition.timeRange', {
      send: (slug) =>
        format === 'json'
          ? sendJson(slug, jsonBody([row()], { partition: { key: {}, timeRange: { start: '2025-01-01T00:00:00Z', end: '2025-01-02T00:00:00Z' } } }))
          : send(slug, TYPES[format], goodBody(format), 'timeRange.start=2025-01-01T00:00:00Z&timeRange.end=2025-01-02T00:00:00Z'),
    }),
  ),
  c('invalid_type', 'json', 'a string for a double', { send: (slug) => sendJson(slug, jsonBody([row({ temp: '1.5' })])) }),
  c('invalid_type', 'ndjson', 'a fraction for an integer', { send: (slug) => send(slug, NDJSON, ndjson(row({ n: 1.5 }))) }),
  c('invalid_type', 'csv', 'yes for a boolean', { send: (slug) => send(slug, CSV, csv(`${T},1.5,1,x,yes,${T},a`)) }),
  c('invalid_type', 'arrow', 'text in a timestamp field', { send: (slug) => send(slug, ARROW, arrowRow({ at: vectorFromArray(['soon'], new Utf8()) })) }),
  c('missing_field', 'json', 'no site', { send: (slug) => sendJson(slug, jsonBody([row({ site: null })])) }),
  c('missing_field', 'ndjson', 'no site', { send: (slug) => send(slug, NDJSON, ndjson({ timestamp: T })) }),
  c('missing_field', 'csv', 'an empty site', { send: (slug) => send(slug, CSV, csv(`${T},1.5,1,x,true,${T},`)) }),
  c('missing_field', 'arrow', 'a null site', { send: (slug) => send(slug, ARROW, arrowRow({ site: vectorFromArray([null], new Utf8()) })) }),
  c('non_finite_number', 'json', '1e400', { send: (slug) => sendJson(slug, JSON.stringify(jsonBody([row()])).replace('"temp":1.5', '"temp":1e400')) }),
  c('non_finite_number', 'ndjson', '-1e999', { send: (slug) => send(slug, NDJSON, ndjson(row()).replace('"temp":1.5', '"temp":-1e999')) }),
  c('non_finite_number', 'csv', 'NaN', { send: (slug) => send(slug, CSV, csv(`${T},NaN,1,x,true,${T},a`)) }),
  c('non_finite_number', 'arrow', 'Infinity', { send: (slug) => send(slug, ARROW, arrowRow({ temp: vectorFromArray([Number.POSITIVE_INFINITY], new Float64()) })) }),
  c('integer_out_of_range', 'json', '2^53', { send: (slug) => sendJson(slug, jsonBody([row({ n: 2 ** 53 })])) }),
  c('integer_out_of_range', 'ndjson', '-2^60', { send: (slug) => send(slug, NDJSON, ndjson(row({ n: -(2 ** 60) }))) }),
  c('integer_out_of_range', 'csv', '12345678901234567890', { send: (slug) => send(slug, CSV, csv(`${T},1.5,12345678901234567890,x,true,${T},a`)) }),
  c('integer_out_of_range', 'arrow', 'an Int64 of 2^60', { send: (slug) => send(slug, ARROW, arrowRow({ n: vectorFromArray([2n ** 60n], new Int64()) })) }),
  c('unknown_field', 'json', 'a key that is no field', { send: (slug) => sendJson(slug, jsonBody([row({ colour: 'red' })])) }),
  c('unknown_field', 'ndjson', 'a key that is no field', { send: (slug) => send(slug, NDJSON, ndjson(row({ colour: 'red' }))) }),
  c('unknown_field', 'csv', 'a column that is no field', { send: (slug) => send(slug, CSV, `${CSV_HEADER},colour\n${CSV_ROW},red\n`) }),
  c('key_case_conflict', 'json', 'a row key Temp, with allowUnknownFields', { setup: looseDataset, send: (slug) => sendJson(slug, jsonBody([row({ Temp: 'warm' })])) }),
  c('key_case_conflict', 'ndjson', 'a row key SITE, with allowUnknownFields', { setup: looseDataset, send: (slug) => send(slug, NDJSON, ndjson(row({ SITE: 'b' }))) }),
  c('key_case_conflict', 'csv', 'a column Temp, with allowUnknownFields', { setup: looseDataset, send: (slug) => send(slug, CSV, `${CSV_HEADER},Temp\n${CSV_ROW},2\n`) }),
  c('key_case_conflict', 'json', 'a row key Temp in a strict dataset', { send: (slug) => sendJson(slug, jsonBody([row({ Temp: 2 })])) }),

  c('partition_key', 'json', 'a value with a slash', { send: (slug) => sendJson(slug, jsonBody([row()], { partition: { key: { k: 'a/b' } } })) }),
  c('partition_key', 'ndjson', 'nine key fields', { send: (slug) => send(slug, NDJSON, ndjson(row()), Array.from({ length: 9 }, (_, i) => `key.k${i}=v`).join('&')) }),
  c('partition_key', 'csv', 'an empty value', { send: (slug) => send(slug, CSV, csv(CSV_ROW), 'key.k=') }),
  c('partition_key', 'arrow', 'a value of 129 characters', { send: (slug) => send(slug, ARROW, arrowRow(), `key.k=${'v'.repeat(129)}`) }),
  c('time_range', 'json', 'start after end', { send: (slug) => sendJson(slug, jsonBody([row()], { partition: { key: {}, timeRange: { start: '2026-01-02T00:00:00Z', end: '2026-01-01T00:00:00Z' } } })) }),
  c('time_range', 'ndjson', 'start without end', { send: (slug) => send(slug, NDJSON, ndjson(row()), 'timeRange.start=2026-01-01T00:00:00Z') }),
  c('time_range', 'csv', 'an end in year 10000', { send: (slug) => send(slug, CSV, csv(CSV_ROW), 'timeRange.start=2026-01-01T00:00:00Z&timeRange.end=9999-12-31T23:59:59-01:00') }),
  c('time_range', 'arrow', 'a start that is no timestamp', { send: (slug) => send(slug, ARROW, arrowRow(), 'timeRange.start=soon&timeRange.end=2027-01-01T00:00:00Z') }),
  c('object_key_length', 'json', 'eight key fields of 128 + 128 characters: a key over 1,024 bytes', {
    send: (slug) =>
      sendJson(slug, jsonBody([row()], { partition: { key: Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`${i}`.padEnd(128, 'k'), 'v'.repeat(128)])) } })),
  }),
  c('object_key_length', 'ndjson', 'a directory name over 255 bytes', { send: (slug) => send(slug, NDJSON, ndjson(row()), `key.${longKey.slice(0, 128)}=${longKey.slice(0, 128)}&key.b=${'v'.repeat(20)}`) }),
  c('object_key_length', 'csv', 'a directory name over 255 bytes', { send: (slug) => send(slug, CSV, csv(CSV_ROW), `key.a=${'v'.repeat(128)}&key.b=${'w'.repeat(128)}`) }),
  c('object_key_length', 'arrow', 'a directory name over 255 bytes', { send: (slug) => send(slug, ARROW, arrowRow(), `key.a=${'v'.repeat(128)}&key.b=${'w'.repeat(128)}`) }),
  ...(['json', 'ndjson', 'csv', 'arrow'] as const).map((format) =>
    c('window_span', format, 'rows 1,001 days apart (daily windows)', {
      send: (slug) => {
        const late = new Date(Date.parse(T) + 1000 * 86_400_000).toISOString();
        if (format === 'json') return sendJson(slug, jsonBody([row(), row({ timestamp: late })]));
        if (format === 'ndjson') return send(slug, NDJSON, ndjson(row(), row({ timestamp: late })));
        if (format === 'csv') return send(slug, CSV, csv(CSV_ROW, `${late},1.5,1,x,true,${T},a`));
        return send(slug, ARROW, arrowRow({ timestamp: dates(Date.parse(T), Date.parse(late)), temp: vectorFromArray([1, 2], new Float64()), site: vectorFromArray(['a', 'b'], new Utf8()) }));
      },
    }),
  ),
  ...(['json', 'ndjson', 'csv', 'arrow'] as const).map((format) =>
    c('batch_rows', format, `${MAX_ROWS + 1} rows, one more than TIMESTORE_INGEST_MAX_BATCH_ROWS`, {
      send: (slug) => {
        const rows = Array.from({ length: MAX_ROWS + 1 }, () => row());
        if (format === 'json') return sendJson(slug, jsonBody(rows));
        if (format === 'ndjson') return send(slug, NDJSON, ndjson(...rows));
        if (format === 'csv') return send(slug, CSV, csv(...rows.map(() => CSV_ROW)));
        return send(slug, ARROW, arrow({
          timestamp: dates(...rows.map(() => Date.parse(T))),
          temp: vectorFromArray(rows.map(() => 1.5), new Float64()),
          site: vectorFromArray(rows.map(() => 'a'), new Utf8()),
        }));
      },
    }),
  ),
];

/** Every rule line protocol can break, broken through POST /api/v2/write. */
function lineProtocolCases(): Case[] {
  const lp = (constraint: ConstraintId, title: string, rest: Omit<Case, 'constraint' | 'format' | 'title'>) => c(constraint, 'line-protocol', title, rest);
  const statusCase = (status: 'inactive' | 'archived') =>
    lp(status === 'inactive' ? 'dataset_inactive' : 'dataset_archived', `a line for an ${status} dataset`, {
      setup: async (slug) => {
        await seed(slug);
        await setStatus(status)(slug);
      },
      send: (slug) => sendLines(goodLine(slug)),
      restore: setStatus('active'),
    });
  return [
    lp('body_size', 'a body over the limit', { send: () => sendLines(new Uint8Array(MAX_BODY + 1)) }),
    lp('body_size', 'a gzip body that decompresses beyond the limit', { send: () => sendLines(gzipSync(new Uint8Array(MAX_BODY + 1)), 'precision=s', { 'content-encoding': 'gzip' }) }),
    lp('content_encoding', 'a brotli body', { send: (slug) => sendLines(goodLine(slug), 'precision=s', { 'content-encoding': 'br' }) }),
    lp('encoding', 'bytes that are not UTF-8', { send: (slug) => sendLines(new Uint8Array([...new TextEncoder().encode(`${slug},site=a s="`), 0xff, 0x22, 0x0a])) }),
    lp('query_parameter', 'an unknown precision', { send: (slug) => sendLines(goodLine(slug), 'precision=fortnights') }),
    lp('line_protocol_syntax', 'a field without a value', { send: (slug) => sendLines(goodLine(slug, 'temp')) }),
    lp('line_measurement', 'a measurement that cannot be a slug', { send: (slug) => sendLines(`${goodLine(slug)}weird/name,site=a temp=1 ${LINE_T}\n`) }),
    lp('nul_character', 'a string field holding U+0000', { send: (slug) => sendLines(goodLine(slug, 's="a\0b"')) }),
    lp('field_name', 'a tag key with a dash', { send: (slug) => sendLines(goodLine(slug, 'temp=1').replace(',site=a', ',site=a,host-name=x')) }),
    lp('field_case_in_declaration', 'two keys that differ only in case', { send: (slug) => sendLines(goodLine(slug, 'Extra=1,extra=2')) }),
    lp('field_case_with_dataset', 'a key that differs only in case from a field', { send: (slug) => sendLines(goodLine(slug, 'TEMP=1')) }),
    lp('field_count_in_declaration', '1,025 keys for a new dataset', {
      ...fresh,
      send: (slug) => sendLines(`${slug} ${Array.from({ length: 1025 }, (_, i) => `f${i}=1`).join(',')} ${LINE_T}\n`),
    }),
    lp('field_count_with_dataset', '1,018 new fields for a dataset of 7', {
      send: (slug) => sendLines(goodLine(slug, Array.from({ length: 1018 }, (_, i) => `f${i}=1`).join(','))),
    }),
    lp('line_field_type', "a string for the dataset's double", { send: (slug) => sendLines(goodLine(slug, 'temp="warm"')) }),
    lp('line_field_type', 'a key whose type changes from line to line', { send: (slug) => sendLines(goodLine(slug, 'extra=1') + goodLine(slug, 'extra=1i')) }),
    statusCase('inactive'),
    statusCase('archived'),
    lp('empty_batch', 'only a comment', { send: () => sendLines('# nothing to write\n') }),
    lp('timestamp_out_of_storable_range', 'a timestamp in year 10000', { send: (slug) => sendLines(goodLine(slug, 'temp=1', 253402300800)) }),
    lp('missing_field', 'a line without the required field', { send: (slug) => sendLines(`${goodLine(slug)}${slug} temp=2 ${LINE_T}\n`) }),
    lp('non_finite_number', 'a float beyond the double range', { send: (slug) => sendLines(goodLine(slug, 'temp=1e400')) }),
    lp('integer_out_of_range', 'an integer beyond 2^53', { send: (slug) => sendLines(goodLine(slug, 'n=9007199254740993i')) }),
    lp('window_span', 'lines 1,001 days apart (daily windows)', { send: (slug) => sendLines(goodLine(slug) + goodLine(slug, 'temp=2', LINE_T + 1000 * 86_400)) }),
  ];
}

/** A good batch of one row, in a format. */
function goodBody(format: Exclude<ConstraintScope, 'admin'>, timestamp = T): string | Uint8Array {
  switch (format) {
    case 'json':
      return JSON.stringify(jsonBody([row({ timestamp })]));
    case 'ndjson':
      return ndjson(row({ timestamp }));
    case 'csv':
      return csv(`${timestamp},1.5,1,x,true,${T},a`);
    case 'arrow':
      return arrowRow({ timestamp: dates(Date.parse(timestamp)), ok: vectorFromArray([true], new Bool()) });
    case 'prometheus':
      return remoteWriteBody([{ labels: [['__name__', 'good'], ['site', 'a']], samples: [{ value: 1.5, timestamp: Date.parse(timestamp) }] }]);
    case 'line-protocol':
      throw new Error('line protocol names its dataset in the body: use goodLine(slug)');
  }
}

/** A dataset with FIELDS that ignores unknown fields, and one row. */
async function looseDataset(slug: string): Promise<void> {
  await adminCreate({ slug, schema: { fields: FIELDS }, metadata: { allowUnknownFields: true } });
  await seed(slug);
}

const stagedFiles = (slug: string): number => {
  try {
    return readdirSync(join(ts.config.storageRoot, 'partitions/staging', slug)).length;
  } catch {
    return 0;
  }
};
/**
 * The staged files once the batches already published have had theirs deleted: a writer deletes
 * a body just after the publish that answered the waiting request, so it may still be there.
 */
async function settledStagedFiles(slug: string): Promise<number> {
  for (const deadline = Date.now() + 10_000; ; await Bun.sleep(20)) {
    const [row] = await ts.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM jobs j JOIN datasets d ON d.id = j.dataset_id WHERE d.slug = ${slug} AND j.kind = 'ingest' AND j.state <> 'succeeded'`;
    const staged = stagedFiles(slug);
    if (staged === row!.n || Date.now() > deadline) return staged;
  }
}
// Ingest jobs only: a publish also queues its dataset's lifecycle job (TIMESTORE_COMPACTION_DELAY_SECONDS).
const jobsOf = async (slug: string) =>
  Number((await ts.sql`SELECT count(*)::int AS n FROM jobs j JOIN datasets d ON d.id = j.dataset_id WHERE d.slug = ${slug} AND j.kind = 'ingest'`)[0]?.n ?? 0);

test('every constraint has a case in each format it applies to, and every case breaks a listed constraint in a format it names', () => {
  const missing: string[] = [];
  for (const [id, constraint] of Object.entries(INGEST_CONSTRAINTS)) {
    for (const scope of constraint.scopes) {
      if (!CASES.some((k) => k.constraint === id && k.format === scope)) missing.push(`${id} (${scope})`);
    }
  }
  expect(missing).toEqual([]);
  for (const k of CASES) expect(INGEST_CONSTRAINTS[k.constraint].scopes as readonly string[]).toContain(k.format);
});

describe('each constraint, broken: its 4xx and code, nothing stored, and the dataset still ingests and answers queries', () => {
  test.each(CASES.map((k, i) => [`${k.constraint} (${k.format}): ${k.title}`, k, i] as const))('%s', async (_title, k, i) => {
    const slug = `c${i}-${k.format}`;
    await (k.setup ?? seed)(slug);
    await k.prepare?.(slug);
    const [jobs, staged] = [await jobsOf(slug), await settledStagedFiles(slug)];

    const answer = await k.send(slug);
    const expected = INGEST_CONSTRAINTS[k.constraint];
    expect(INGEST_REFUSAL_CODES.has(answer.body?.error?.code)).toBe(true);
    expect({ status: answer.status, code: answer.body.error.code }).toEqual({ status: expected.status, code: expected.code });
    expect(typeof answer.body.error.message).toBe('string');
    expect([await jobsOf(slug), stagedFiles(slug)]).toEqual([jobs, staged]);

    await k.restore?.(slug);
    const followUp = k.followUp ?? { fields: FIELDS, row: row({ timestamp: '2026-01-01T00:05:00Z' }), rowsBefore: 1 };
    expect((await queryRows(slug)).body.rows?.length ?? 0).toBe(followUp.rowsBefore);
    const good = await sendJson(slug, { schema: { fields: followUp.fields }, partition: { key: { k: 'v' } }, rows: [followUp.row] }, 'wait=true');
    expect(good.status).toBe(201);
    const answered = await queryRows(slug);
    expect(answered.status).toBe(200);
    expect(answered.body.rows).toHaveLength(followUp.rowsBefore + 1);
  });
});

test('S3: a prefix and key over 1,024 bytes is refused before anything is stored', () => {
  const driver = new S3StorageDriver('long', { bucket: 'b', prefix: 'p'.repeat(900) }, { accessKeyId: 'x', secretAccessKey: 'y', region: 'us-east-1' });
  try {
    const error = (() => {
      try {
        checkObjectKeys(driver, 'weather', { instrument: 'A'.repeat(100) }, 'json');
      } catch (err) {
        return err;
      }
    })();
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ status: 400, code: 'object_key_too_long', details: { storageTarget: 'long' } });
    expect(() => checkObjectKeys(driver, 'weather', { instrument: 'A' }, 'json')).not.toThrow();
  } finally {
    driver.close();
  }
});

test('ingestion builds refusals only through the list (no other AppError under src/ingest/)', () => {
  const root = join(import.meta.dir, '../../src/ingest');
  const offenders: string[] = [];
  for (const file of readdirSync(root, { recursive: true }).map(String).filter((f) => f.endsWith('.ts') && f !== 'constraints.ts')) {
    const text = readFileSync(join(root, file), 'utf8');
    if (/new AppError\(|\berrors\.\w+\(|\bappError\(/.test(text)) offenders.push(file);
  }
  expect(offenders).toEqual([]);
});

test('docs/api.md lists every constraint code under "What a batch must satisfy"', () => {
  const api = readFileSync(join(import.meta.dir, '../../docs/api.md'), 'utf8');
  const start = api.indexOf('### What a batch must satisfy');
  expect(start).toBeGreaterThan(0);
  const section = api.slice(start, api.indexOf('\n### ', start + 1));
  const missing = [...INGEST_REFUSAL_CODES].filter((code) => !section.includes(`\`${code}\``));
  expect(missing).toEqual([]);
});
