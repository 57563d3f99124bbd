/**
 * TIMESTORE_INGEST_MAX_FIELDS lowers the most fields a dataset may hold: a declaration over it, a
 * batch that would take a dataset past it, and POST /admin/datasets over it are refused with
 * `too_many_fields`, and nothing is stored for them.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { DateMillisecond, Float64, Table, tableToIPC, type Vector, vectorFromArray } from 'apache-arrow';
import { postIngest, postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
beforeAll(async () => {
  ts = await startTestServer({ TIMESTORE_INGEST_MAX_FIELDS: '4' });
});
afterAll(() => ts?.stop());

const T = '2026-01-01T00:00:00Z';
const fields = (count: number) => [
  { name: 'timestamp', type: 'timestamp' },
  ...Array.from({ length: count - 1 }, (_, i) => ({ name: `f${i + 1}`, type: 'double' })),
];

test('a JSON declaration of 5 fields is refused with 400 too_many_fields', async () => {
  const res = await postJson(`${ts.url}/datasets/five/ingest`, { schema: { fields: fields(5) }, partition: { key: {} }, rows: [{ timestamp: T }] });
  expect(res.status).toBe(400);
  expect(res.body.error).toMatchObject({ code: 'too_many_fields', details: { fields: 5, limit: 4 } });
  const missing = await fetch(`${ts.url}/admin/datasets/five`);
  expect(missing.status).toBe(404);
  expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('not_found');
});

test('an Arrow stream of 5 columns is refused the same way', async () => {
  const columns: Record<string, Vector> = { timestamp: vectorFromArray([new Date(T)], new DateMillisecond()) };
  for (let i = 1; i <= 4; i++) columns[`f${i}`] = vectorFromArray([1], new Float64());
  const res = await postIngest(ts.url, 'arrow-five', 'application/vnd.apache.arrow.stream', tableToIPC(new Table(columns), 'stream'));
  expect(res.status).toBe(400);
  expect(res.body.error.code).toBe('too_many_fields');
});

test('a batch that would take a dataset of 3 fields to 5 is refused with 409; one that reaches 4 is taken', async () => {
  const first = await postJson(`${ts.url}/datasets/grows/ingest?wait=true`, { schema: { fields: fields(3) }, partition: { key: {} }, rows: [{ timestamp: T, f1: 1 }] });
  expect(first.status).toBe(201);
  const wide = [...fields(3), { name: 'g1', type: 'double' }, { name: 'g2', type: 'double' }];
  const refused = await postJson(`${ts.url}/datasets/grows/ingest`, { schema: { fields: wide }, partition: { key: {} }, rows: [{ timestamp: T }] });
  expect(refused.status).toBe(400); // the declaration itself has 5
  const added = await postJson(`${ts.url}/datasets/grows/ingest?wait=true`, { schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'g1', type: 'double' }] }, partition: { key: {} }, rows: [{ timestamp: T, g1: 2 }] });
  expect(added.status).toBe(201);
  const past = await postJson(`${ts.url}/datasets/grows/ingest`, { schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'g2', type: 'double' }] }, partition: { key: {} }, rows: [{ timestamp: T, g2: 3 }] });
  expect(past.status).toBe(409);
  expect(past.body.error).toMatchObject({ code: 'too_many_fields', details: { fields: 4, added: 1, limit: 4 } });
});

test('POST /admin/datasets with 5 fields is refused', async () => {
  const res = await postJson(`${ts.url}/admin/datasets`, { slug: 'admin-five', schema: { fields: fields(5) } });
  expect(res.status).toBe(400);
  expect(res.body.error.code).toBe('too_many_fields');
});
