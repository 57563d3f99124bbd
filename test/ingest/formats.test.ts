/**
 * POST /datasets/:slug/ingest with NDJSON, CSV and Arrow IPC bodies, end to end through a real
 * server: HTTP → validation → staged body → job → DuckDB-written Parquet, read back row for row.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  Binary,
  Bool,
  DateDay,
  Dictionary,
  Float64,
  Int32,
  Int64,
  makeData,
  makeVector,
  Table,
  tableToIPC,
  TimestampMicrosecond,
  TimestampNanosecond,
  Utf8,
  type Vector,
  vectorFromArray,
} from 'apache-arrow';
import { findDataset } from '../../src/catalog/datasets.ts';
import { listSchemaVersions } from '../../src/catalog/schema-versions.ts';
import { readBack } from '../harness/read-back.ts';
import { postIngest, postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
beforeAll(async () => {
  ts = await startTestServer();
});
afterAll(() => ts.stop());

const NDJSON = 'application/x-ndjson';
const CSV = 'text/csv';
const ARROW = 'application/vnd.apache.arrow.stream';

const fields = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'temperature_c', type: 'double' },
  { name: 'status', type: 'string' },
  { name: 'reading_id', type: 'integer' },
  { name: 'ok', type: 'boolean' },
];

const send = (slug: string, contentType: string, body: string | Uint8Array, query = '', headers: Record<string, string> = {}) =>
  postIngest(ts.url, slug, contentType, body, query, headers);

/** A dataset with the fields above, created (and left empty of rows in range) by a JSON batch. */
async function createDataset(slug: string): Promise<void> {
  const res = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, {
    schema: { fields },
    partition: { key: { instrument: 'seed' } },
    rows: [{ timestamp: '2020-01-01T00:00:00Z', temperature_c: 0, status: 'seed', reading_id: 0, ok: true }],
  });
  expect(res.status).toBe(201);
}

const seedRow = { timestamp: '2020-01-01T00:00:00.000Z', temperature_c: 0, status: 'seed', reading_id: 0, ok: true };

// Ingest jobs only: a publish also queues its dataset's lifecycle job (TIMESTORE_COMPACTION_DELAY_SECONDS).
const jobCount = async () => Number((await ts.sql`SELECT count(*)::int AS n FROM jobs WHERE kind = 'ingest'`)[0]?.n);
const stagedFormat = async (jobId: string) =>
  (await ts.sql`SELECT payload->'staged'->>'format' AS f FROM jobs WHERE id = ${jobId}`)[0]?.f;
const stagingFiles = (slug: string) => {
  try {
    return readdirSync(join(ts.config.storageRoot, 'partitions/staging', slug));
  } catch {
    return [];
  }
};

/** An Arrow IPC stream of these columns. */
function arrow(columns: Record<string, Vector>): Uint8Array {
  return tableToIPC(new Table(columns), 'stream');
}

function micros(values: (bigint | null)[], type: TimestampMicrosecond | TimestampNanosecond = new TimestampMicrosecond('UTC')): Vector {
  const data = new BigInt64Array(values.map((v) => v ?? 0n));
  const nullBitmap = new Uint8Array(Math.ceil(values.length / 8));
  values.forEach((v, i) => {
    if (v !== null) nullBitmap[i >> 3]! |= 1 << (i & 7);
  });
  const nullCount = values.filter((v) => v === null).length;
  return makeVector(makeData({ type, length: values.length, data, nullBitmap, nullCount }));
}

const us = (iso: string, extraMicros = 0n) => BigInt(Date.parse(iso)) * 1000n + extraMicros;

describe('each format ingests and reads back row for row', () => {
  test('NDJSON (both media types): blank lines ignored, CRLF line ends, nulls and missing fields; staged as ndjson', async () => {
    await createDataset('nd');
    const body = [
      '{"timestamp":"2026-01-03T00:00:00Z","temperature_c":1.25,"status":"a, \\"b\\"","reading_id":1,"ok":true}',
      '',
      '   ',
      '{"timestamp":"2026-01-03T01:00:00.123+01:00","status":null,"reading_id":2}\r',
      '{"timestamp":"2026-01-03 00:02","temperature_c":-3,"status":"","reading_id":3,"ok":false}',
    ].join('\n');
    const res = await send('nd', NDJSON, body, 'wait=true&key.instrument=A');
    expect(res.status).toBe(201);
    expect(res.body.result).toMatchObject({ rowCount: 3, schemaVersion: 1 });
    expect(await stagedFormat(res.body.id)).toBe('ndjson');
    const second = await send('nd', 'application/ndjson; charset=utf-8', '{"timestamp":"2026-01-04T00:00:00Z","reading_id":4}\n', 'wait=true');
    expect(second.status).toBe(201);

    expect(await readBack(ts, 'nd')).toEqual([
      seedRow,
      { timestamp: '2026-01-03T00:00:00.000Z', temperature_c: 1.25, status: 'a, "b"', reading_id: 1, ok: true },
      { timestamp: '2026-01-03T00:00:00.123Z', temperature_c: null, status: null, reading_id: 2, ok: null },
      { timestamp: '2026-01-03T00:02:00.000Z', temperature_c: -3, status: '', reading_id: 3, ok: false },
      { timestamp: '2026-01-04T00:00:00.000Z', temperature_c: null, status: null, reading_id: 4, ok: null },
    ]);
    expect(stagingFiles('nd')).toEqual([]);
  });

  test('CSV: quoting (commas, doubled quotes, LF and CRLF inside quotes), null vs empty string, any column order, BOM, blank lines; staged as csv', async () => {
    await createDataset('csv');
    const body =
      '\ufeffstatus,timestamp,temperature_c,reading_id,ok\r\n' +
      '"comma, inside",2026-01-02T00:00:00Z,1.5,1,true\r\n' +
      '"quote ""inside""",2026-01-02T00:01:00Z,-2.5e1,2,FALSE\r\n' +
      '\r\n' +
      '"line\nbreak and\r\ncrlf",2026-01-02T00:02:00Z,,3,\r\n' +
      '"",2026-01-02T00:03:00.5Z,0,4,True\r\n' +
      ',2026-01-02 00:04:00+02:00,7,5.0,false'; // no line end after the last record
    const res = await send('csv', CSV, body, 'wait=true&key.instrument=A');
    expect(res.status).toBe(201);
    expect(res.body.result.rowCount).toBe(5);
    expect(await stagedFormat(res.body.id)).toBe('csv');

    expect(await readBack(ts, 'csv')).toEqual([
      seedRow,
      { timestamp: '2026-01-01T22:04:00.000Z', temperature_c: 7, status: null, reading_id: 5, ok: false },
      { timestamp: '2026-01-02T00:00:00.000Z', temperature_c: 1.5, status: 'comma, inside', reading_id: 1, ok: true },
      { timestamp: '2026-01-02T00:01:00.000Z', temperature_c: -25, status: 'quote "inside"', reading_id: 2, ok: false },
      { timestamp: '2026-01-02T00:02:00.000Z', temperature_c: null, status: 'line\nbreak and\r\ncrlf', reading_id: 3, ok: null },
      { timestamp: '2026-01-02T00:03:00.500Z', temperature_c: 0, status: '', reading_id: 4, ok: true },
    ]);

    // Columns left out of the header are null.
    const narrow = await send('csv', CSV, 'timestamp,reading_id\n2026-01-05T00:00:00Z,6\n', 'wait=true');
    expect(narrow.status).toBe(201);
    expect((await readBack(ts, 'csv')).at(-1)).toEqual({ timestamp: '2026-01-05T00:00:00.000Z', temperature_c: null, status: null, reading_id: 6, ok: null });
    expect(stagingFiles('csv')).toEqual([]);
  });

  test('Arrow creates the dataset from its schema (microseconds kept, nulls, dates, dictionaries), then adds a nullable column as schema v2; staged as ndjson', async () => {
    const stream = arrow({
      timestamp: micros([us('2026-02-01T00:00:00Z', 123_456n), us('2026-02-01T00:01:00Z'), us('2026-02-01T00:02:00Z', 1n)]),
      value: vectorFromArray([1.5, null, -0.25], new Float64()),
      site: vectorFromArray(['north', 'south', null], new Dictionary(new Utf8(), new Int32())),
      note: vectorFromArray(['x', null, 'é "q"'], new Utf8()),
      count: vectorFromArray([1n, null, 9007199254740991n], new Int64()),
      small: vectorFromArray([7, 8, null], new Int32()),
      flag: vectorFromArray([true, false, null], new Bool()),
      day: vectorFromArray([new Date('2026-02-01T00:00:00Z'), null, new Date('2026-02-03T00:00:00Z')], new DateDay()),
    });
    const res = await send('arrow-first', ARROW, stream, 'wait=true&key.instrument=A&datasetName=From%20Arrow');
    expect(res.status).toBe(201);
    expect(res.body.result).toMatchObject({ rowCount: 3, schemaVersion: 1, manifestVersion: 1 });
    expect(await stagedFormat(res.body.id)).toBe('ndjson');

    const dataset = await findDataset(ts.sql, 'arrow-first');
    expect(dataset).toMatchObject({ name: 'From Arrow', timestampColumn: 'timestamp', schemaVersion: 1 });
    const [v1] = await listSchemaVersions(ts.sql, dataset!.id);
    expect(v1?.fields.map((f) => [f.name, f.type])).toEqual([
      ['timestamp', 'timestamp'],
      ['value', 'double'],
      ['site', 'string'],
      ['note', 'string'],
      ['count', 'integer'],
      ['small', 'integer'],
      ['flag', 'boolean'],
      ['day', 'timestamp'],
    ]);
    expect(await readBack(ts, 'arrow-first', { micros: true })).toEqual([
      { timestamp: '2026-02-01T00:00:00.123456Z', value: 1.5, site: 'north', note: 'x', count: 1, small: 7, flag: true, day: '2026-02-01T00:00:00.000000Z' },
      { timestamp: '2026-02-01T00:01:00.000000Z', value: null, site: 'south', note: null, count: null, small: 8, flag: false, day: null },
      { timestamp: '2026-02-01T00:02:00.000001Z', value: -0.25, site: null, note: 'é "q"', count: 9007199254740991, small: null, flag: null, day: '2026-02-03T00:00:00.000000Z' },
    ]);

    // A later stream with fewer columns plus a new one (nanosecond timestamps this time).
    const wider = arrow({
      timestamp: micros([us('2026-02-01T00:03:00Z') * 1000n + 999n], new TimestampNanosecond()),
      value: vectorFromArray([2], new Float64()),
      humidity: vectorFromArray([0.5], new Float64()),
    });
    const evolved = await send('arrow-first', ARROW, wider, 'wait=true&key.instrument=A');
    expect(evolved.status).toBe(201);
    expect(evolved.body.result.schemaVersion).toBe(2);
    const back = await readBack(ts, 'arrow-first', { micros: true });
    expect(back.map((r) => [r.timestamp, r.value, r.humidity])).toEqual([
      ['2026-02-01T00:00:00.123456Z', 1.5, null],
      ['2026-02-01T00:01:00.000000Z', null, null],
      ['2026-02-01T00:02:00.000001Z', -0.25, null],
      ['2026-02-01T00:03:00.000000Z', 2, 0.5],
    ]);
  });

  test('Arrow into an existing dataset, two record batches: integers into a double field, ISO strings into the timestamp field', async () => {
    await createDataset('arrow-existing');
    const batch = (timestamp: string, temperature: number, status: string | null, id: bigint, ok: boolean) =>
      new Table({
        timestamp: vectorFromArray([timestamp], new Utf8()),
        temperature_c: vectorFromArray([temperature], new Int32()),
        status: vectorFromArray([status], new Utf8()),
        reading_id: vectorFromArray([id], new Int64()),
        ok: vectorFromArray([ok], new Bool()),
      });
    const table = batch('2026-03-01T00:00:00Z', 21, 'ok', 10n, true).concat(batch('2026-03-01T00:01:00.250Z', -4, null, 11n, false));
    expect(table.batches).toHaveLength(2);
    const res = await send('arrow-existing', ARROW, tableToIPC(table, 'stream'), 'wait=true');
    expect(res.status).toBe(201);
    expect(res.body.result.schemaVersion).toBe(1);
    expect(await readBack(ts, 'arrow-existing')).toEqual([
      seedRow,
      { timestamp: '2026-03-01T00:00:00.000Z', temperature_c: 21, status: 'ok', reading_id: 10, ok: true },
      { timestamp: '2026-03-01T00:01:00.250Z', temperature_c: -4, status: null, reading_id: 11, ok: false },
    ]);
  });
});

describe('first batch', () => {
  test('NDJSON and CSV to a missing dataset: 404 dataset_not_found, nothing stored', async () => {
    const jobsBefore = await jobCount();
    for (const [type, body] of [
      [NDJSON, '{"timestamp":"2026-01-01T00:00:00Z"}\n'],
      [CSV, 'timestamp\n2026-01-01T00:00:00Z\n'],
    ] as const) {
      const res = await send('nowhere', type, body, 'key.instrument=A');
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('dataset_not_found');
      expect(res.body.error.message).toContain('JSON batch');
    }
    expect(await jobCount()).toBe(jobsBefore);
    expect(await findDataset(ts.sql, 'nowhere')).toBeNull();
    expect(stagingFiles('nowhere')).toEqual([]);
  });
});

describe('validation names the row and field, and stores nothing', () => {
  const T = '2026-04-01T00:00:00Z';
  const good = `{"timestamp":"${T}","temperature_c":1,"reading_id":1}`;
  const header = 'timestamp,temperature_c,status,reading_id,ok';

  beforeAll(() => createDataset('strict'));

  /** title, content type, body, code, and the details expected (index: row, field, line). */
  const cases: [string, string, string | Uint8Array, string, Record<string, unknown>][] = [
    ['NDJSON: bad number', NDJSON, `${good}\n\n{"timestamp":"${T}","temperature_c":"warm"}\n`, 'invalid_type', { index: 1, field: 'temperature_c', line: 3 }],
    ['NDJSON: bad timestamp', NDJSON, `${good}\n${good}\n{"timestamp":"2026-02-30T00:00:00Z"}\n`, 'invalid_timestamp', { index: 2, field: 'timestamp', line: 3 }],
    ['NDJSON: unknown field', NDJSON, `{"timestamp":"${T}","colour":"red"}\n`, 'unknown_field', { index: 0, field: 'colour', line: 1 }],
    ['NDJSON: a line that is not JSON', NDJSON, `${good}\n{"timestamp":\n`, 'invalid_json', { index: 1, line: 2 }],
    ['NDJSON: a line that is not an object', NDJSON, `${good}\n[1,2]\n`, 'invalid_row', { index: 1, line: 2 }],
    ['NDJSON: no rows', NDJSON, '\n\n', 'empty_batch', {}],
    ['CSV: bad number', CSV, `${header}\n${T},1,a,1,true\n${T},warm,a,1,true\n`, 'invalid_type', { index: 1, field: 'temperature_c', line: 3 }],
    ['CSV: bad integer', CSV, `${header}\n${T},1,a,1.5,true\n`, 'invalid_type', { index: 0, field: 'reading_id', line: 2 }],
    ['CSV: NaN', CSV, `${header}\n${T},NaN,a,1,true\n`, 'non_finite_number', { index: 0, field: 'temperature_c', line: 2 }],
    ['CSV: a double that overflows', CSV, `${header}\n${T},1e400,a,1,true\n`, 'non_finite_number', { index: 0, field: 'temperature_c', line: 2 }],
    ['CSV: integer beyond 2^53', CSV, `${header}\n${T},1,a,9007199254740993,true\n`, 'integer_out_of_range', { index: 0, field: 'reading_id', line: 2 }],
    ['CSV: bad boolean', CSV, `${header}\n${T},1,a,1,yes\n`, 'invalid_type', { index: 0, field: 'ok', line: 2 }],
    ['CSV: quoted empty number', CSV, `${header}\n${T},"",a,1,true\n`, 'invalid_type', { index: 0, field: 'temperature_c', line: 2 }],
    ['CSV: bad timestamp after a quoted line break', CSV, `${header}\n${T},1,"a\nb",1,true\n2026-13-01T00:00:00Z,1,a,1,true\n`, 'invalid_timestamp', { index: 1, field: 'timestamp', line: 4 }],
    ['CSV: missing timestamp', CSV, `${header}\n,1,a,1,true\n`, 'missing_timestamp', { index: 0, field: 'timestamp', line: 2 }],
    ['CSV: no timestamp column', CSV, `time,reading_id\n${T},1\n`, 'missing_timestamp', { index: 0, field: 'timestamp', line: 2 }],
    ['CSV: unknown column', CSV, `${header},colour\n${T},1,a,1,true,red\n`, 'unknown_field', { index: 0, field: 'colour', line: 2 }],
    ['CSV: a record with too few fields', CSV, `${header}\n${T},1,a,1\n`, 'invalid_csv', { index: 0, line: 2 }],
    ['CSV: a quote in an unquoted field', CSV, `${header}\n${T},1,a"b,1,true\n`, 'invalid_csv', { line: 2 }],
    ['CSV: an unterminated quote', CSV, `${header}\n${T},1,"ab,1,true\n`, 'invalid_csv', { line: 2 }],
    ['CSV: a column named twice', CSV, `timestamp,status,status\n${T},a,b\n`, 'invalid_csv', { field: 'status', line: 1 }],
    ['CSV: header only', CSV, `${header}\n`, 'empty_batch', {}],
    ['CSV: not UTF-8', CSV, new Uint8Array([0x74, 0x0a, 0xff, 0xfe, 0x0a]), 'invalid_encoding', {}],
    ['Arrow: NaN', ARROW, arrow({ timestamp: micros([us(T), us(T)]), temperature_c: vectorFromArray([1, Number.NaN], new Float64()) }), 'non_finite_number', { index: 1, field: 'temperature_c' }],
    ['Arrow: integer beyond 2^53', ARROW, arrow({ timestamp: micros([us(T)]), reading_id: vectorFromArray([2n ** 60n], new Int64()) }), 'integer_out_of_range', { index: 0, field: 'reading_id' }],
    ['Arrow: null timestamp', ARROW, arrow({ timestamp: micros([us(T), null]) }), 'missing_timestamp', { index: 1, field: 'timestamp' }],
    ['Arrow: bad timestamp string', ARROW, arrow({ timestamp: vectorFromArray([T, T, 'yesterday'], new Utf8()) }), 'invalid_timestamp', { index: 2, field: 'timestamp' }],
    ['Arrow: timestamp after year 9999', ARROW, arrow({ timestamp: micros([us(T), 253402300800n * 1_000_000n]) }), 'timestamp_out_of_range', { index: 1, field: 'timestamp' }],
    ['Arrow: unsupported type', ARROW, arrow({ timestamp: micros([us(T)]), blob: vectorFromArray([new Uint8Array([1])], new Binary()) }), 'unsupported_arrow_type', { field: 'blob', arrowType: 'Binary' }],
    ['Arrow: unsafe column name', ARROW, arrow({ timestamp: micros([us(T)]), 'drop table': vectorFromArray([1], new Float64()) }), 'invalid_field_name', { field: 'drop table' }],
    ['Arrow: not Arrow', ARROW, new TextEncoder().encode('timestamp\n2026-01-01\n'), 'invalid_arrow', {}],
  ];

  test.each(cases)('%s', async (_title, type, body, code, details) => {
    const jobsBefore = await jobCount();
    const res = await send('strict', type, body, 'key.instrument=A');
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(code);
    const got = res.body.error.details ?? {};
    const { index, field, line } = details;
    expect({ index: got.index, field: got.field, line: got.line }).toEqual({ index, field, line });
    expect(got).toMatchObject(details);
    if (code !== 'invalid_csv' && typeof details.index === 'number') expect(res.body.error.message).toStartWith(`row ${details.index}: `);
    expect(await jobCount()).toBe(jobsBefore);
    expect(stagingFiles('strict')).toEqual([]);
  });

  test('Arrow changing a field type is a 409 naming the field; NDJSON/CSV rows outside timeRange are refused', async () => {
    const conflict = await send('strict', ARROW, arrow({ timestamp: micros([us(T)]), status: vectorFromArray([1.5], new Float64()) }));
    expect(conflict.status).toBe(409);
    expect(conflict.body.error).toMatchObject({ code: 'field_type_conflict', details: { field: 'status', existingType: 'string', declaredType: 'double' } });

    const range = 'timeRange.start=2026-04-01T00:00:00Z&timeRange.end=2026-04-01T00:01:00Z';
    const late = `{"timestamp":"${T}"}\n{"timestamp":"2026-04-01T00:01:00Z"}\n`;
    const nd = await send('strict', NDJSON, late, range);
    expect(nd.status).toBe(400);
    expect(nd.body.error).toMatchObject({ code: 'timestamp_out_of_range', details: { index: 1, field: 'timestamp', line: 2 } });
    const csv = await send('strict', CSV, `timestamp\n${T}\n2026-03-31T23:59:59Z\n`, range);
    expect(csv.body.error).toMatchObject({ code: 'timestamp_out_of_range', details: { index: 1, field: 'timestamp', line: 3 } });
    expect(stagingFiles('strict')).toEqual([]);
  });
});

describe('query parameters', () => {
  test('the partition key comes from key.<name> parameters; timeRange, datasetName and storageTargetId too', async () => {
    await createDataset('keyed');
    const res = await send(
      'keyed',
      CSV,
      'timestamp,reading_id\n2026-05-01T00:00:00Z,1\n',
      'wait=true&key.instrument=B&key.site=x&timeRange.start=2026-05-01T00:00:00Z&timeRange.end=2026-05-02T00:00:00Z&storageTargetId=local',
    );
    expect(res.status).toBe(201);
    expect(res.body.result.partitions).toHaveLength(1);
    expect(res.body.result.partitions[0].partitionKey).toEqual({ instrument: 'B', site: 'x' });
    expect(res.body.result.partitions[0].location).toContain('instrument=B,site=x');

    const unkeyed = await send('keyed', NDJSON, '{"timestamp":"2026-05-01T00:01:00Z","reading_id":2}', 'wait=true');
    expect(unkeyed.status).toBe(201);
    expect(unkeyed.body.result.partitions.map((p: any) => p.partitionKey)).toContainEqual({});
  });

  test.each([
    ['instrument=A', 'invalid_query_parameter'],
    ['key.instrument=A&key.instrument=B', 'invalid_query_parameter'],
    ['key.bad%20name=A', 'invalid_partition_key'],
    ['timeRange.start=2026-05-01T00:00:00Z', 'invalid_time_range'],
    ['timeRange.start=2026-05-02T00:00:00Z&timeRange.end=2026-05-01T00:00:00Z', 'invalid_time_range'],
  ])('?%s → 400 %s', async (query, code) => {
    const res = await send('keyed', NDJSON, '{"timestamp":"2026-05-01T00:00:00Z"}\n', query);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(code);
  });

  test('with a JSON body the batch parameters are refused (the body carries them); an unknown content type is a 415 listing the accepted ones', async () => {
    const json = await postJson(`${ts.url}/datasets/keyed/ingest?key.instrument=A`, {
      schema: { fields },
      partition: { key: {} },
      rows: [{ timestamp: '2026-05-01T00:00:00Z' }],
    });
    expect(json.status).toBe(400);
    expect(json.body.error).toMatchObject({ code: 'invalid_query_parameter', details: { parameter: 'key.instrument' } });

    const res = await send('keyed', 'application/xml', '<rows/>');
    expect(res.status).toBe(415);
    expect(res.body.error.code).toBe('unsupported_media_type');
    expect(res.body.error.details.accepted).toEqual(['application/json', NDJSON, 'application/ndjson', CSV, ARROW]);
    const latin = await send('keyed', 'text/csv; charset=iso-8859-1', 'timestamp\n');
    expect(latin.status).toBe(415);
  });
});

describe('idempotency', () => {
  test('same key and body: the first job, written once; same key and another body, or the same body for another partition key: 409', async () => {
    await createDataset('idem-formats');
    const csv = 'timestamp,reading_id\n2026-06-01T00:00:00Z,1\n2026-06-01T00:01:00Z,2\n';
    const first = await send('idem-formats', CSV, csv, 'wait=true&key.instrument=A', { 'Idempotency-Key': 'csv-1' });
    expect(first.status).toBe(201);
    const again = await send('idem-formats', CSV, csv, 'key.instrument=A', { 'Idempotency-Key': 'csv-1' });
    expect(again.status).toBe(201);
    expect(again.body).toMatchObject({ id: first.body.id, replayed: true });
    const otherBody = await send('idem-formats', CSV, csv.replace(',2\n', ',3\n'), 'key.instrument=A', { 'Idempotency-Key': 'csv-1' });
    expect(otherBody.status).toBe(409);
    expect(otherBody.body.error.code).toBe('idempotency_key_reused');
    const otherKey = await send('idem-formats', CSV, csv, 'key.instrument=B', { 'Idempotency-Key': 'csv-1' });
    expect(otherKey.status).toBe(409);

    const nd = '{"timestamp":"2026-06-02T00:00:00Z","reading_id":3}\n';
    const ndFirst = await send('idem-formats', NDJSON, nd, 'wait=true', { 'Idempotency-Key': 'nd-1' });
    const ndAgain = await send('idem-formats', NDJSON, nd, '', { 'Idempotency-Key': 'nd-1' });
    expect(ndAgain.body).toMatchObject({ id: ndFirst.body.id, replayed: true });

    const stream = arrow({ timestamp: micros([us('2026-06-03T00:00:00Z')]), reading_id: vectorFromArray([4n], new Int64()) });
    const arrowFirst = await send('idem-formats', ARROW, stream, 'wait=true', { 'Idempotency-Key': 'arrow-1' });
    const arrowAgain = await send('idem-formats', ARROW, stream, '', { 'Idempotency-Key': 'arrow-1' });
    expect(arrowAgain.body).toMatchObject({ id: arrowFirst.body.id, replayed: true });

    // Concurrent duplicates become one job.
    const nd2 = '{"timestamp":"2026-06-04T00:00:00Z","reading_id":5}\n';
    const answers = await Promise.all(Array.from({ length: 4 }, () => send('idem-formats', NDJSON, nd2, 'wait=true', { 'Idempotency-Key': 'nd-race' })));
    expect(new Set(answers.map((a) => a.body.id ?? a.body.jobId)).size).toBe(1);

    expect((await readBack(ts, 'idem-formats')).map((r) => r.reading_id)).toEqual([0, 1, 2, 3, 4, 5]);
  });
});

test('the OpenAPI document describes the four body formats', async () => {
  const doc = (await (await fetch(`${ts.url}/openapi.json`)).json()) as any;
  const content = doc.paths['/datasets/{datasetSlug}/ingest'].post.requestBody.content;
  expect(Object.keys(content)).toEqual(['application/json', NDJSON, 'application/ndjson', CSV, ARROW]);
  expect(content['application/json'].schema.properties.rows).toBeDefined();
  expect(content[CSV].example).toStartWith('timestamp,');
  expect(content[ARROW].schema).toMatchObject({ type: 'string', format: 'binary' });
});
