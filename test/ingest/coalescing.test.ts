/**
 * The coalescing budget through HTTP: batches wait (queued, acknowledged) until their dataset has
 * enough rows or the oldest has waited long enough, and are then written together; a batch whose
 * client waits for it (`?wait=true`, `Prefer: wait`) does not wait for the budget, and takes its
 * dataset's queued batches with it.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { getJob } from '../../src/catalog/job-table.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'seq', type: 'integer' },
];

let ts: TestServer;

beforeAll(async () => {
  // A budget no test reaches by rows or by time: only a waiting client releases a batch.
  ts = await startTestServer({ TIMESTORE_INGEST_COALESCE_ROWS: '1000000', TIMESTORE_INGEST_COALESCE_WAIT_MS: '60000' });
}, 60_000);
afterAll(async () => {
  await ts?.stop();
});

const batch = (seq0: number, count: number) => ({
  schema: { fields: FIELDS },
  partition: { key: {} },
  rows: Array.from({ length: count }, (_, i) => ({ timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, seq0 + i)).toISOString(), seq: seq0 + i })),
});

test('queued batches wait for the budget; a waiting client releases its dataset, and all are written in one publish', async () => {
  const first = await postJson(`${ts.url}/datasets/budget/ingest`, batch(0, 3));
  const second = await postJson(`${ts.url}/datasets/budget/ingest`, batch(10, 4));
  expect([first.status, second.status]).toEqual([202, 202]);
  // The runner was woken by both and claimed neither: they wait for more rows or time.
  await Bun.sleep(300);
  expect((await getJob(ts.sql, first.body.jobId))?.state).toBe('queued');

  const waited = await postJson(`${ts.url}/datasets/budget/ingest?wait=true`, batch(20, 2));
  expect(waited.status).toBe(201);
  expect(waited.body.result).toMatchObject({ coalescedJobs: 3, rowCount: 2 });
  for (const id of [first.body.jobId, second.body.jobId]) expect(await getJob(ts.sql, id)).toMatchObject({ state: 'succeeded' });

  const count = await postJson(`${ts.url}/datasets/budget/query`, { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' }, limit: 100 });
  expect(count.body.rows.map((r: { seq: number }) => r.seq)).toEqual([0, 1, 2, 10, 11, 12, 13, 20, 21]);
}, 60_000);
