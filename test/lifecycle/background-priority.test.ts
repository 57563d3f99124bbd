/**
 * Compaction runs in the background: the lifecycle lane's thread drops to the lowest CPU priority
 * (nice 19) and executes its DuckDB statements itself, so that on a busy machine it takes only
 * what ingest and queries leave. Read from /proc (test/harness/threads.ts): the nice value and CPU
 * time of every thread of the server's process (this one, or the binary's).
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';
import { threadsOf } from '../harness/threads.ts';

let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer({ TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400', TIMESTORE_COMPACTION_DELAY_SECONDS: '0' });
}, 60_000);
afterAll(async () => {
  await ts?.stop();
});

const cpuOf = (pid: number) => threadsOf(pid).reduce((sum, t) => sum + t.cpu, 0);

test('a compaction runs on one thread at nice 19 that does more of its work than any other thread; every other thread that works keeps the process\'s priority', async () => {
  const fields = [
    { name: 'timestamp', type: 'timestamp' },
    { name: 'host', type: 'string' },
    { name: 'usage', type: 'double' },
  ];
  for (let batch = 0; batch < 4; batch++) {
    const rows = Array.from({ length: 100_000 }, (_, i) => ({
      timestamp: new Date(Date.UTC(2026, 0, 1) + (batch * 100_000 + i) * 100).toISOString(),
      host: `host-${i % 97}`,
      usage: (i * 7919) % 1000 / 10,
    }));
    const res = await postJson(`${ts.url}/datasets/background/ingest?wait=true`, { schema: { fields }, partition: { key: {} }, rows });
    expect(res.status).toBe(201);
  }
  const before = new Map(threadsOf(ts.pid).map((t) => [t.tid, t.cpu]));
  const cpuBefore = cpuOf(ts.pid);
  const res = await postJson(`${ts.url}/admin/datasets/background/lifecycle?wait=true`, {});
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ state: 'succeeded' });
  const after = threadsOf(ts.pid);
  const spent = cpuOf(ts.pid) - cpuBefore;

  // In process, earlier test files' servers may have left idle threads behind: only those that
  // worked during the compaction count.
  const processNice = after.find((t) => t.tid === ts.pid)!.nice;
  const spentBy = (t: (typeof after)[number]) => t.cpu - (before.get(t.tid) ?? 0);
  const worked = after.filter((t) => spentBy(t) > 0);
  expect(worked.filter((t) => t.nice !== processNice).map((t) => t.nice)).toEqual([19]);
  expect(after.filter((t) => t.nice !== processNice && t.nice !== 19)).toEqual([]);
  // The merge of 400,000 rows (read, sort, Parquet) is the job's work: this thread does more of it
  // than any other. Were the statements run on Bun's native pool, a pool thread would do the most.
  // (Not "more than half of the process's": on a slow VM the allocator's scavenger, the collector
  // and the compilers, each small, add up to more than that.)
  const background = worked.find((t) => t.nice === 19)!;
  const others = worked.filter((t) => t !== background).map((t) => ({ thread: t.name, ticks: spentBy(t) }));
  expect(others.filter((o) => o.ticks >= spentBy(background))).toEqual([]);
  expect(spentBy(background)).toBeGreaterThan(spent / 4);

  const query = await postJson(`${ts.url}/datasets/background/query`, {
    timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' },
    downsample: { intervalUnit: 'day', aggregations: [{ fn: 'count', alias: 'n' }] },
  });
  expect(query.status).toBe(200);
  expect(query.body.rows.map((r: { n: number }) => r.n)).toEqual([400_000]);
}, 120_000);
