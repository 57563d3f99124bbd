/** The job table's statements (src/catalog/jobs.ts) on a real PostgreSQL. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { Catalog } from '../../src/catalog/connection.ts';
import { createDataset } from '../../src/catalog/datasets.ts';
import {
  claimJobs, completeJobs, countJobs, enqueueJob, failJob, getJob, heartbeatJobs, purgeFinishedJobs, releaseJobs,
} from '../../src/catalog/jobs.ts';
import { openTestCatalog } from '../harness/catalog.ts';
import { createTestDatabase } from '../harness/postgres.ts';

let a: Catalog; // two catalogs on one database: two processes
let b: Catalog;
let queueSeq = 0;
const newQueue = () => `q${++queueSeq}`;
const lease = { leaseMs: 30_000 };

beforeAll(async () => {
  const url = await createTestDatabase('jobs');
  a = await openTestCatalog({ databaseUrl: url });
  b = await openTestCatalog({ databaseUrl: url });
});
afterAll(async () => {
  await a.close();
  await b.close();
});

describe('job table', () => {
  test('enqueue returns the queued job of the same key instead of failing, also inside a transaction', async () => {
    const queue = newQueue();
    const first = await enqueueJob(a.sql, { queue, kind: 'gc', jobKey: 'singleton', payload: { n: 1 } });
    const again = await a.sql.begin((tx) => enqueueJob(tx, { queue, kind: 'gc', jobKey: 'singleton', payload: { n: 2 } }));
    expect(first.created).toBe(true);
    expect(again).toEqual({ job: first.job, created: false });
    // Once it finished, the key is free again.
    const [claimed] = await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    await completeJobs(a.sql, [claimed!.id], 'w');
    expect((await enqueueJob(a.sql, { queue, kind: 'gc', jobKey: 'singleton', payload: {} })).created).toBe(true);
    expect(await getJob(a.sql, 'not-a-uuid')).toBeNull();
  });

  test('concurrent claims from two processes never hand one job to both', async () => {
    const queue = newQueue();
    for (let i = 0; i < 200; i++) await enqueueJob(a.sql, { queue, kind: 'k', payload: { i } });
    const claims = Array.from({ length: 40 }, (_, i) =>
      claimJobs(i % 2 ? a.sql : b.sql, { queue, workerId: `w${i}`, limit: 7, ...lease }),
    );
    const ids = (await Promise.all(claims)).flat().map((j) => j.id);
    expect(ids.length).toBe(200);
    expect(new Set(ids).size).toBe(200);
  });

  test('plain claims take the oldest due jobs of the asked kinds; future jobs wait', async () => {
    const queue = newQueue();
    const first = (await enqueueJob(a.sql, { queue, kind: 'x', payload: {} })).job;
    await enqueueJob(a.sql, { queue, kind: 'y', payload: {} });
    await enqueueJob(a.sql, { queue, kind: 'x', payload: {}, runAt: new Date(Date.now() + 60_000) });
    const claimed = await claimJobs(a.sql, { queue, kinds: ['x'], workerId: 'w', limit: 5, ...lease });
    expect(claimed.map((j) => j.id)).toEqual([first.id]);
    expect(claimed[0]).toMatchObject({ state: 'running', lockedBy: 'w', attempts: 1 });
  });

  test('coalescing claims the oldest job and more of its dataset and kind only, within the weight budget', async () => {
    const queue = newQueue();
    const d1 = await createDataset(a.sql, { slug: `coalesce-1-${queue}` });
    const d2 = await createDataset(a.sql, { slug: `coalesce-2-${queue}` });
    const add = (datasetId: string, rowCount: number, kind = 'ingest') =>
      enqueueJob(a.sql, { queue, kind, datasetId, payload: { rowCount } }).then((r) => r.job);
    const j1 = await add(d1.id, 10);
    await add(d2.id, 10);
    await add(d1.id, 10, 'other');
    const j4 = await add(d1.id, 10);
    const j5 = await add(d1.id, 30);
    const j6 = await add(d1.id, 10);

    const byBudget = await claimJobs(a.sql, { queue, kinds: ['ingest'], workerId: 'w', limit: 10, coalesce: { weightField: 'rowCount', maxWeight: 25 }, ...lease });
    expect(byBudget.map((j) => j.id).sort()).toEqual([j1.id, j4.id].sort());

    const byCount = await claimJobs(a.sql, { queue, kinds: ['ingest'], workerId: 'w', limit: 2, coalesce: true, ...lease });
    expect(byCount.map((j) => j.datasetId)).toEqual([d2.id]); // the oldest left is d2's, alone
    const rest = await claimJobs(a.sql, { queue, kinds: ['ingest'], workerId: 'w', limit: 5, coalesce: true, ...lease });
    expect(rest.map((j) => j.id).sort()).toEqual([j5.id, j6.id].sort());
  });

  test('an expired lease makes the job claimable again and it completes exactly once', async () => {
    const queue = newQueue();
    const { job } = await enqueueJob(a.sql, { queue, kind: 'k', payload: {} });
    await claimJobs(a.sql, { queue, workerId: 'dead', limit: 1, leaseMs: 200 }); // never heartbeats
    expect(await claimJobs(b.sql, { queue, workerId: 'alive', limit: 1, ...lease })).toEqual([]);
    await Bun.sleep(300);
    const [again] = await claimJobs(b.sql, { queue, workerId: 'alive', limit: 1, ...lease });
    expect(again).toMatchObject({ id: job.id, attempts: 2, lockedBy: 'alive', lastError: 'lease of dead expired' });
    // The dead worker comes back: every write it tries is refused.
    expect(await heartbeatJobs(a.sql, [job.id], 'dead', 30_000)).toBe(false);
    expect(await completeJobs(a.sql, [job.id], 'dead', { [job.id]: 'stale' })).toEqual([]);
    expect(await failJob(a.sql, job.id, 'dead', 'stale', null)).toBeNull();
    expect(await heartbeatJobs(b.sql, [job.id], 'alive', 30_000)).toBe(true);
    expect(await completeJobs(b.sql, [job.id], 'alive', { [job.id]: { ok: 1 } })).toEqual([job.id]);
    expect(await completeJobs(b.sql, [job.id], 'alive')).toEqual([]); // not twice
    expect(await getJob(a.sql, job.id)).toMatchObject({ state: 'succeeded', result: { ok: 1 }, lockedBy: null });
  });

  test('failJob retries after the delay while attempts remain, then fails for good', async () => {
    const queue = newQueue();
    const { job } = await enqueueJob(a.sql, { queue, kind: 'k', payload: {}, maxAttempts: 2 });
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    const retried = await failJob(a.sql, job.id, 'w', 'boom 1', 60_000);
    expect(retried).toMatchObject({ state: 'queued', lastError: 'boom 1', lockedBy: null });
    expect(retried!.runAt.getTime() - Date.now()).toBeGreaterThan(55_000);
    await a.sql`UPDATE jobs SET run_at = now() WHERE id = ${job.id}`; // skip the wait
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    expect(await failJob(a.sql, job.id, 'w', 'boom 2', 1_000)).toMatchObject({ state: 'failed', attempts: 2, lastError: 'boom 2' });
  });

  test('release hands a job back without counting the attempt; purge and counts', async () => {
    const queue = newQueue();
    const { job } = await enqueueJob(a.sql, { queue, kind: 'k', payload: {} });
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    expect(await releaseJobs(a.sql, [job.id], 'other')).toEqual([]);
    expect(await releaseJobs(a.sql, [job.id], 'w')).toEqual([job.id]);
    expect(await getJob(a.sql, job.id)).toMatchObject({ state: 'queued', attempts: 0, lockedBy: null });
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    await completeJobs(a.sql, [job.id], 'w');
    await enqueueJob(a.sql, { queue, kind: 'k', payload: {} });
    expect(await countJobs(a.sql, queue)).toEqual([
      { queue, kind: 'k', state: 'queued', count: 1 },
      { queue, kind: 'k', state: 'succeeded', count: 1 },
    ]);
    expect(await purgeFinishedJobs(a.sql, 60_000)).toBe(0);
    await a.sql`UPDATE jobs SET finished_at = now() - interval '2 minutes' WHERE id = ${job.id}`;
    expect(await purgeFinishedJobs(a.sql, 60_000)).toBe(1);
    expect(await getJob(a.sql, job.id)).toBeNull();
  });
});
