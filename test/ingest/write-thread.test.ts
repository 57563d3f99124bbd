/**
 * An ingest write executes its DuckDB statements on the ingest lane's own thread rather than on
 * Bun's native pool, which staging's file I/O (writes, fsyncs) and every other lane's
 * asynchronous DuckDB calls share (src/engine/own-thread.ts). Read from /proc
 * (test/harness/threads.ts), in the server's process (this one, or the binary's).
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';
import { cpuByThreadName } from '../harness/threads.ts';

let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({ TIMESTORE_LIFECYCLE_ENABLED: 'false' });
}, 60_000);
afterAll(async () => {
  await ts?.stop();
});

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'usage', type: 'double' },
];

async function ingest(count: number): Promise<void> {
  const rows = Array.from({ length: count }, (_, i) => ({
    timestamp: new Date(Date.UTC(2026, 0, 1) + i * 100).toISOString(),
    host: `host-${i % 97}`,
    usage: ((i * 7919) % 1000) / 10,
  }));
  const res = await postJson(`${ts.url}/datasets/threads/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: {} }, rows });
  expect(res.status).toBe(201);
}

test('a write of 200,000 rows spends its CPU on a worker thread, not on Bun\'s native pool', async () => {
  await ingest(10); // the ingest thread has started and loaded DuckDB
  const spent = await cpuByThreadName(ts.pid, () => ingest(200_000));
  const pool = [...spent].filter(([name]) => name.startsWith('Bun Pool')).reduce((sum, [, ticks]) => sum + ticks, 0);
  const workers = spent.get('Worker') ?? 0;
  // The write (JSON read, sort, Parquet) is tens of ticks; the pool keeps the staging's file I/O
  // (copying the 13 MB body into the page cache, its fsync), about half as much on a machine whose
  // DuckDB is fast. With the write on the pool, as before, it was 1 tick against 35.
  expect(workers).toBeGreaterThan(pool);
}, 60_000);
