/**
 * Footers read ahead (WorkerPool.warmFooters): each thread that answers queries reads the footers
 * of the files it is sent into its own DuckDB, skipping files it cannot read; and the query
 * service sends the files of the partitions its snapshots gain.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkerPool } from '../../src/engine/pool.ts';
import { testDuckDB } from '../harness/duckdb.ts';
import { againstBinary, postJson, startTestServer } from '../harness/server.ts';

let pool: WorkerPool;
const dir = mkdtempSync(join(tmpdir(), 'ts-footers-'));

beforeAll(async () => {
  pool = await WorkerPool.start(
    { lanes: { ingest: { threads: 1, maxQueue: 8 }, query: { threads: 2, maxQueue: 8, eager: true }, stream: { threads: 1, maxQueue: 8 }, lifecycle: { threads: 1, maxQueue: 8 } } },
    join(tmpdir(), 'timestore-runtime'),
  );
  const db = await testDuckDB();
  for (const n of [1, 2, 3]) await db.run(`COPY (SELECT range AS x FROM range(1000)) TO '${join(dir, `${n}.parquet`)}' (FORMAT parquet)`);
});
afterAll(() => pool.close());

/** What each of the two query threads has read ahead, once both report `expected` (a broadcast arrives when it arrives). */
async function bothReach(expected: number): Promise<number[]> {
  let counts: number[] = [];
  for (let i = 0; i < 200; i++) {
    // Two tasks sent together go to the two idle threads: each answers for itself.
    counts = await Promise.all([pool.footersWarmed(), pool.footersWarmed()]);
    if (counts.every((n) => n === expected)) break;
    await Bun.sleep(25);
  }
  return counts;
}

describe('footers read ahead', () => {
  test('every query thread reads the files it is sent, once, and skips what it cannot read', async () => {
    expect(await bothReach(0)).toEqual([0, 0]); // both threads up and listening
    pool.warmFooters([join(dir, '1.parquet'), join(dir, '2.parquet'), join(dir, 'missing.parquet')]);
    expect(await bothReach(2)).toEqual([2, 2]);
    pool.warmFooters([join(dir, '2.parquet'), join(dir, '3.parquet')]);
    expect(await bothReach(3)).toEqual([3, 3]);
  });

  test('closing the pool while its threads read ahead waits for them; no abort', () => {
    const child = Bun.spawnSync([process.execPath, join(import.meta.dir, 'fixtures/close-while-reading-ahead.ts')], { stdout: 'pipe', stderr: 'pipe' });
    const stderr = child.stderr.toString();
    expect({ exitCode: child.exitCode, aborted: stderr.includes('terminate called') }).toEqual({ exitCode: 0, aborted: false });
    expect(JSON.parse(child.stdout.toString())).toEqual({ closed: [4, 8, 12, 16, 20, 24] });
  }, 120_000);

  test.skipIf(againstBinary)('the query service sends the files of the partitions a query finds new', async () => {
    const ts = await startTestServer({ TIMESTORE_WORKER_THREADS: '2' });
    try {
      const fields = [
        { name: 'timestamp', type: 'timestamp' },
        { name: 'v', type: 'double' },
      ];
      for (const day of [1, 2]) {
        const rows = [{ timestamp: `2026-05-0${day}T00:00:00Z`, v: day }];
        expect((await postJson(`${ts.url}/datasets/d/ingest?wait=true`, { schema: { fields }, partition: { key: {} }, rows })).status).toBe(201);
      }
      const before = await ts.server.pool.footersWarmed();
      const asked = await postJson(`${ts.url}/datasets/d/query`, { timeRange: { start: '2026-05-01T00:00:00Z', end: '2026-05-03T00:00:00Z' } });
      expect(asked.body.rows).toHaveLength(2);
      let read = 0;
      for (let i = 0; i < 200 && read < 2; i++, await Bun.sleep(25)) read = (await ts.server.pool.footersWarmed()) - before;
      expect(read).toBe(2);
    } finally {
      await ts.stop();
    }
  });
});
