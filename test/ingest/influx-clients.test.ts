/**
 * InfluxDB line protocol end to end: the official clients (`@influxdata/influxdb-client` for the
 * v2 API, `influx` for v1) write through a real timestore with API tokens, and the rows come back
 * exact through the JSON query API; then what the clients do not exercise: gzip, InfluxDB 3's
 * path, refusals naming the line (nothing stored), one request writing several datasets at once,
 * schema evolution, the series key, and the write rule per dataset.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { gzipSync } from 'node:zlib';
import { HttpError, InfluxDB, Point, setLogger } from '@influxdata/influxdb-client';
import * as Influx from 'influx';
import { findDataset, updateDataset } from '../../src/catalog/datasets.ts';
import { TokenService } from '../../src/tokens/service.ts';
import { silentLog } from '../harness/catalog.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

// The client logs every failed write; the refusals here are on purpose.
setLogger({ error: () => {}, warn: () => {} });

let ts: TestServer;
const secret: Record<string, string> = {};

beforeAll(async () => {
  // Inline: the 204 comes once the rows are published, so they can be read back at once.
  ts = await startTestServer({ TIMESTORE_AUTH: 'tokens', TIMESTORE_INGEST_MODE: 'inline', TIMESTORE_REQUIRE_WRITE_SCOPE: 'write', TIMESTORE_REQUIRE_SCOPE: 'read' });
  const tokens = new TokenService({ sql: ts.sql, log: silentLog, cacheMs: 0 });
  for (const [name, scopes] of Object.entries({ writer: ['write', 'read'], 'weather-only': ['write:weather'], reader: ['read'] })) {
    secret[name] = (await tokens.create({ name, scopes }, 'test')).secret;
  }
});
afterAll(() => ts.stop());

const auth = (name = 'writer') => ({ authorization: `Token ${secret[name]}` });

async function query(slug: string): Promise<Record<string, unknown>[]> {
  const answer = await postJson(
    `${ts.url}/datasets/${slug}/query`,
    { timeRange: { start: '1970-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' } },
    { authorization: `Bearer ${secret.writer}` },
  );
  expect(answer.status).toBe(200);
  return answer.body.rows;
}

async function write(path: string, body: string | Uint8Array, headers: Record<string, string> = auth()): Promise<{ status: number; body: any }> {
  const res = await fetch(`${ts.url}${path}`, { method: 'POST', headers: { 'content-type': 'text/plain; charset=utf-8', ...headers }, body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

describe('official clients', () => {
  test('@influxdata/influxdb-client (v2 API, Token header, gzip): every field type, escapes, nanosecond timestamps', async () => {
    const client = new InfluxDB({ url: ts.url, token: secret.writer, timeout: 30_000 });
    const writer = client.getWriteApi('my-org', 'my-bucket', 'ns', { gzipThreshold: 1, maxRetries: 0 });
    writer.writePoint(
      new Point('weather')
        .tag('station', 'north, "east"=1')
        .tag('site', 'a b')
        .floatField('temperature', 21.5)
        .intField('readings', -42)
        .uintField('serial', 9007199254740991)
        .stringField('note', 'say "hi", \\ back\nslash')
        .booleanField('ok', true)
        .timestamp('1767225600123456000'),
    );
    writer.writePoint(new Point('weather').tag('station', 's2').floatField('temperature', -0.25).booleanField('ok', false).timestamp('1767225601000000000'));
    await writer.close();

    expect(await query('weather')).toEqual([
      { time: '2026-01-01T00:00:00.123456Z', station: 'north, "east"=1', site: 'a b', temperature: 21.5, readings: -42, serial: 9007199254740991, note: 'say "hi", \\ back\nslash', ok: true },
      { time: '2026-01-01T00:00:01.000Z', station: 's2', site: null, temperature: -0.25, readings: null, serial: null, note: null, ok: false },
    ]);
    const dataset = await findDataset(ts.sql, 'weather');
    expect(dataset).toMatchObject({ timestampColumn: 'time', sortColumns: ['site', 'station'] });
  });

  test('influx (v1 API, user and password as query parameters): points with a schema, second precision', async () => {
    const client = new Influx.InfluxDB({
      host: new URL(ts.url).hostname,
      port: Number(new URL(ts.url).port),
      database: 'telegraf',
      username: 'anyone',
      password: secret.writer,
      schema: [
        {
          measurement: 'cpu_v1',
          tags: ['host', 'region'],
          fields: { usage: Influx.FieldType.FLOAT, procs: Influx.FieldType.INTEGER, state: Influx.FieldType.STRING, up: Influx.FieldType.BOOLEAN },
        },
      ],
    });
    await client.writePoints(
      [
        { measurement: 'cpu_v1', tags: { host: 'h1', region: 'eu' }, fields: { usage: 12.75, procs: 230, state: 'running, "ok"', up: true }, timestamp: new Date('2026-01-01T00:00:00Z') },
        { measurement: 'cpu_v1', tags: { host: 'h2', region: 'eu' }, fields: { usage: 3, procs: 7, state: '', up: false }, timestamp: new Date('2026-01-01T00:00:10Z') },
      ],
      { precision: 's' },
    );
    expect(await query('cpu_v1')).toEqual([
      { time: '2026-01-01T00:00:00.000Z', host: 'h1', region: 'eu', usage: 12.75, procs: 230, state: 'running, "ok"', up: true },
      { time: '2026-01-01T00:00:10.000Z', host: 'h2', region: 'eu', usage: 3, procs: 7, state: '', up: false },
    ]);
  });

  test('the v2 client sees a type conflict as a 400 naming the line, and nothing of the request is stored', async () => {
    const writer = new InfluxDB({ url: ts.url, token: secret.writer }).getWriteApi('o', 'b', 's', { maxRetries: 0 });
    writer.writeRecords(['weather,station=s3 temperature=1 1767225700', 'weather,station=s3 temperature="warm" 1767225701']);
    const error = await writer.close().then(
      () => null,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(HttpError);
    expect((error as HttpError).statusCode).toBe(400);
    const body = JSON.parse((error as HttpError).body ?? 'null');
    expect(body.error).toMatchObject({ code: 'field_type_conflict', details: { line: 2, field: 'temperature' } });
    expect((await query('weather')).length).toBe(2);
  });
});

describe('line protocol over HTTP', () => {
  test('InfluxDB 3 write_lp with automatic precision, gzip by hand, comments and blank lines', async () => {
    const body = ['# sensors', '', 'sensor,id=a value=1i 1767225600', 'sensor,id=b value=2i 1767225600000', 'sensor,id=c value=3i 1767225600000000', 'sensor,id=d value=4i 1767225600000000000', ''].join('\n');
    const res = await write('/api/v3/write_lp?db=anything', gzipSync(body), { ...auth(), 'content-encoding': 'gzip' });
    expect(res.status).toBe(204);
    expect((await query('sensor')).map((r) => [r.id, r.time, r.value])).toEqual([
      ['a', '2026-01-01T00:00:00.000Z', 1],
      ['b', '2026-01-01T00:00:00.000Z', 2],
      ['c', '2026-01-01T00:00:00.000Z', 3],
      ['d', '2026-01-01T00:00:00.000Z', 4],
    ]);
  });

  test('one request writes several datasets, all or nothing; a missing timestamp is the server time', async () => {
    const before = Date.now();
    expect((await write('/api/v2/write?bucket=b&precision=ms', 'disk,dev=sda used=1 1767225600000\nnet,if=eth0 bytes=5i\n')).status).toBe(204);
    expect(await query('disk')).toEqual([{ time: '2026-01-01T00:00:00.000Z', dev: 'sda', used: 1 }]);
    const [net] = await query('net');
    expect(Date.parse(net!.time as string)).toBeGreaterThanOrEqual(before - 1);

    // The second measurement's line is refused: the first one's dataset is not created either.
    const refused = await write('/write?db=x', 'fresh_one v=1 1\nnet,if=eth0 bytes=1.5 2\n');
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: 'field_type_conflict', details: { line: 2, field: 'bytes' } });
    expect(await findDataset(ts.sql, 'fresh_one')).toBeNull();
    expect((await query('net')).length).toBe(1);
  });

  test('an Idempotency-Key queues a request once: the same body is a replay, another body a 409', async () => {
    const body = 'idem_a,host=h v=1 1767225600\nidem_b,host=h v=2 1767225600\n';
    const send = async (text: string, key: string) => {
      const res = await fetch(`${ts.url}/api/v2/write?precision=s`, { method: 'POST', headers: { ...auth(), 'idempotency-key': key }, body: text });
      return { status: res.status, replayed: res.headers.get('x-timestore-replayed'), body: (res.status === 204 ? null : await res.json()) as any };
    };
    expect(await send(body, 'lp-key-1')).toEqual({ status: 204, replayed: null, body: null });
    expect(await send(body, 'lp-key-1')).toEqual({ status: 204, replayed: 'true', body: null });
    expect((await query('idem_a')).length).toBe(1);
    expect((await query('idem_b')).length).toBe(1);
    // Another body under the same key, also one naming a measurement the first did not.
    for (const other of ['idem_a,host=h v=3 1767225601\nidem_b,host=h v=4 1767225601\n', 'idem_a,host=h v=1 1767225600\nidem_c,host=h v=5 1\n']) {
      const reused = await send(other, 'lp-key-1');
      expect(reused.status).toBe(409);
      expect(reused.body.error.code).toBe('idempotency_key_reused');
    }
    expect(await findDataset(ts.sql, 'idem_c')).toBeNull();
    expect((await query('idem_a')).length).toBe(1);
  });

  test('new tags and fields add a schema version; new tags join the series key', async () => {
    expect((await write('/api/v2/write?precision=s', 'evolve,host=a v=1 1767225600')).status).toBe(204);
    expect((await write('/api/v2/write?precision=s', 'evolve,host=a,rack=r1 v=2,w="x" 1767225660')).status).toBe(204);
    const dataset = await findDataset(ts.sql, 'evolve');
    expect(dataset).toMatchObject({ schemaVersion: 2, sortColumns: ['host', 'rack'] });
    expect(await query('evolve')).toEqual([
      { time: '2026-01-01T00:00:00.000Z', host: 'a', v: 1, rack: null, w: null },
      { time: '2026-01-01T00:01:00.000Z', host: 'a', v: 2, rack: 'r1', w: 'x' },
    ]);
    const conflict = await write('/api/v2/write?precision=s', '\nevolve,host=a v=3i 1767225720');
    expect(conflict.status).toBe(400);
    expect(conflict.body.error).toMatchObject({ code: 'field_type_conflict', details: { line: 2, field: 'v', existingType: 'double', declaredType: 'integer' } });
  });

  test('refusals name the line and store nothing', async () => {
    for (const [body, code, line] of [
      ['ok v=1 1\nbad line', 'invalid_line_protocol', 2],
      ['m,t=a v=1 1\nm,host-name=x v=1 1', 'invalid_field_name', 2],
      ['m v=9007199254740993i 1', 'integer_out_of_range', 1],
      ['m v=1 99999999999999999999', 'timestamp_out_of_range', 1],
      ['m v=1 1e3', 'invalid_line_protocol', 1],
    ] as const) {
      const res = await write('/api/v2/write?precision=s', body);
      expect(res.status, body).toBe(400);
      expect(res.body.error, body).toMatchObject({ code, details: { line } });
    }
    expect((await write('/api/v2/write?precision=s', 'm,time=a v=1 1')).body.error).toMatchObject({ code: 'field_type_conflict', details: { line: 1 } });
    expect((await write('/api/v2/write?precision=minutes', 'm v=1 1')).body.error.code).toBe('invalid_query_parameter');
    expect((await write('/api/v2/write', '# nothing\n')).body.error.code).toBe('empty_batch');
    expect((await write('/api/v2/write', 'm v=1', { ...auth(), 'content-encoding': 'br' })).status).toBe(415);
    expect((await write('/api/v2/write', 'not gzip', { ...auth(), 'content-encoding': 'gzip' })).status).toBe(415);
    expect(await findDataset(ts.sql, 'm')).toBeNull();
    expect(await findDataset(ts.sql, 'ok')).toBeNull();
  });

  test('a gzip body that decompresses beyond the body limit is a 413', async () => {
    const limit = ts.config.ingest.maxBodyBytes;
    const res = await write('/api/v2/write', gzipSync(Buffer.alloc(limit + 1, 'a')), { ...auth(), 'content-encoding': 'gzip' });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
  });

  test('tokens: Token, Bearer, Basic and ?p=; the write rule of every dataset the body names', async () => {
    const line = 'weather,station=t temperature=5 1767225800000000000';
    expect((await write('/api/v2/write', line, {})).status).toBe(401);
    expect((await write('/api/v2/write', line, { authorization: 'Token nonsense' })).status).toBe(401);
    expect((await write('/api/v2/write', line, { authorization: `Bearer ${secret.writer}` })).status).toBe(204);
    expect((await write('/write?db=x', line, { authorization: `Basic ${btoa(`user:${secret.writer}`)}` })).status).toBe(204);
    expect((await write(`/write?db=x&u=user&p=${secret.writer}`, line, {})).status).toBe(204);
    // A token without the write rule of the datasets a body names is refused before anything is
    // stored; a body that names none (it does not parse) is refused for what it is.
    expect((await write('/api/v2/write', line, auth('reader'))).status).toBe(403);
    expect((await write('/api/v2/write', 'not line protocol', auth('reader'))).status).toBe(400);
    // write:weather writes weather, and nothing else, even together with weather.
    expect((await write('/api/v2/write', line, auth('weather-only'))).status).toBe(204);
    const both = await write('/api/v2/write', `${line}\nnet,if=x bytes=1i 1`, auth('weather-only'));
    expect(both.status).toBe(403);
    // A dataset's own write scopes replace the server-wide one.
    const dataset = await findDataset(ts.sql, 'sensor');
    await updateDataset(ts.sql, dataset!.id, { metadata: { iam: { writeScopes: ['sensors:write'] } } });
    expect((await write('/api/v2/write', 'sensor,id=z value=9i 1', auth())).status).toBe(403);
    expect((await query('weather')).length).toBe(6);
  });
});
