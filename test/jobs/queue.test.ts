/** The job table's statements (src/catalog/job-table.ts) on a real PostgreSQL. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { Catalog } from '../../src/catalog/connection.ts';
import { createDataset } from '../../src/catalog/datasets.ts';
import {
  claimJobs, completeJobs, countJobs, countOverdueJobs, deleteFailedJob, enqueueJob, enqueueJobsIf, failJob, getJob, heartbeatJobs, JOB_NOTIFICATIONS_SETTING, JOBS_CHANNEL, type Job, listJobs,
  budgetDue, type JobNotification, notifyJobs, parseJobNotification, purgeFinishedJobs, releaseJobs, retryFailedJob, stagedBodyOf,
} from '../../src/catalog/job-table.ts';
import { referencedLocations } from '../../src/catalog/lifecycle.ts';
import { openTestCatalog } from '../harness/catalog.ts';
import { createTestDatabase } from '../harness/postgres.ts';

let a: Catalog; // two catalogs on one database: two processes
let b: Catalog;
let queueSeq = 0;
const newQueue = () => `q${++queueSeq}`;
const lease = { leaseMs: 30_000 };

async function until(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await Bun.sleep(10);
  }
}

/** The notifications of `queue` that process `b` hears from now on. */
async function hear(queue: string): Promise<{ heard: JobNotification[]; unlisten: () => Promise<void> }> {
  const heard: JobNotification[] = [];
  const { unlisten } = await b.sql.listen(JOBS_CHANNEL, (text) => {
    const notification = parseJobNotification(text);
    if (notification.queue === queue) heard.push(notification);
  });
  return { heard, unlisten };
}

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

  test('enqueueJobsIf inserts several jobs in one statement, answers in order, notifies each with what a runner weighs it by; nothing where its condition fails', async () => {
    const queue = newQueue();
    const { heard, unlisten } = await hear(queue);
    const d = await createDataset(a.sql, { slug: `notified-${queue}` });
    const held = await enqueueJob(a.sql, { queue, kind: 'gc', jobKey: 'held', payload: {} });
    const runAt = new Date(Date.now() + 60_000);
    const jobs = await enqueueJobsIf(a.sql, [
      { queue, kind: 'ingest', payload: { n: 1, nested: { list: [1, 'two'] } }, actor: 'alice', traceParent: '00-abc-def-01' },
      { queue, kind: 'gc', jobKey: 'held', payload: { n: 2 } }, // its key names a queued job: not inserted
      { queue, kind: 'ingest', datasetId: d.id, payload: { n: 3, long: 'x'.repeat(5_000) }, runAt, retryWindowMs: 120_000, maxAttempts: 2 },
    ], a.sql`true`);
    expect(jobs.map((j) => (j ? (j.payload as { n: number }).n : null))).toEqual([1, null, 3]);
    expect(jobs[0]).toEqual(await getJob(a.sql, jobs[0]!.id));
    expect(jobs[0]!.payload).toEqual({ n: 1, nested: { list: [1, 'two'] } });
    expect([jobs[0]!.actor, jobs[0]!.traceParent, jobs[0]!.state]).toEqual(['alice', '00-abc-def-01', 'queued']);
    expect(jobs[2]!.runAt).toEqual(runAt);
    expect(jobs[2]!.maxAttempts).toBe(2);
    expect(jobs[2]!.retryUntil!.getTime() - jobs[2]!.createdAt.getTime()).toBe(120_000);
    expect(jobs[0]!.createdAt).toEqual(jobs[2]!.createdAt); // one statement
    const queued = async () => (await countJobs(a.sql, queue)).reduce((sum, c) => sum + (c.state === 'queued' ? c.count : 0), 0);
    expect(await queued()).toBe(3); // `held` and the two new ones
    await until(async () => heard.length >= 3);
    await Bun.sleep(100);
    // `held`'s, then one per job of the statement. Each names the process (the catalog) that sent
    // it, so that its own runners can tell their echo, and the job, its payload only when short.
    expect(heard).toEqual([
      { queue, notifier: a.notifier, jobs: [{ kind: 'gc', datasetId: null, payload: {} }] },
      { queue, notifier: a.notifier, jobs: [{ kind: 'ingest', datasetId: null, payload: { n: 1, nested: { list: [1, 'two'] } } }] },
      { queue, notifier: a.notifier, jobs: [{ kind: 'ingest', datasetId: d.id, payload: null }] },
    ]);
    expect(a.notifier).not.toBe(b.notifier);
    // As earlier versions sent: a bare queue name, then a notification per job.
    expect(parseJobNotification(queue)).toEqual({ queue, notifier: null });
    const job = { kind: 'gc', datasetId: null, payload: {} };
    expect(parseJobNotification(JSON.stringify({ queue, notifier: 'p', job }))).toEqual({ queue, notifier: 'p', jobs: [job] });
    expect(parseJobNotification(JSON.stringify({ queue, notifier: 'p', job: null }))).toEqual({ queue, notifier: 'p' });

    expect(await enqueueJobsIf(a.sql, [{ queue, kind: 'ingest', payload: {} }, { queue, kind: 'ingest', payload: {} }], a.sql`false`)).toEqual([null, null]);
    expect(await queued()).toBe(3);
    expect(held.created).toBe(true);
    await unlisten();
  });

  test('jobs enqueued without their notifications are told of later, in as few notifications as hold them', async () => {
    const queue = newQueue();
    const { heard, unlisten } = await hear(queue);
    const d = await createDataset(a.sql, { slug: `told-${queue}` });
    const inputs = Array.from({ length: 30 }, (_, n) => ({ queue, kind: 'ingest', datasetId: d.id, payload: { n, pad: 'x'.repeat(500) } }));
    const jobs = (await enqueueJobsIf(a.sql, inputs, a.sql`true`, { notify: false })).map((job) => job!);
    await Bun.sleep(200);
    expect(heard).toEqual([]);
    const long = { kind: 'ingest', datasetId: d.id, payload: { long: 'y'.repeat(5_000) } };
    await notifyJobs(a.sql, queue, [...jobs, long]);
    await until(async () => heard.flatMap((n) => n.jobs ?? []).length === 31);
    // 31 jobs of about 560 bytes: three notifications, none over PostgreSQL's 8,000 bytes.
    expect(heard.length).toBe(3);
    expect(heard.every((n) => n.notifier === a.notifier && JSON.stringify(n).length < 8000)).toBe(true);
    expect(heard.flatMap((n) => n.jobs!)).toEqual([
      ...jobs.map(({ kind, datasetId, payload }) => ({ kind, datasetId, payload })),
      { ...long, payload: null }, // too long to send
    ]);
    await unlisten();
  });

  test('a session that says nobody listens enqueues and releases jobs without a NOTIFY; others notify', async () => {
    const queue = newQueue();
    const { heard, unlisten } = await hear(queue);
    const quiet = await a.sql.reserve();
    try {
      await quiet`SELECT set_config(${JOB_NOTIFICATIONS_SETTING}, 'off', false)`;
      expect((await enqueueJob(quiet, { queue, kind: 'gc', payload: {} })).created).toBe(true);
      const [claimed] = await claimJobs(quiet, { queue, workerId: 'w', limit: 1, ...lease });
      expect(await releaseJobs(quiet, [claimed!.id], 'w')).toEqual([claimed!.id]);
      await Bun.sleep(300);
      expect(heard).toEqual([]);
    } finally {
      await quiet`SELECT set_config(${JOB_NOTIFICATIONS_SETTING}, 'on', false)`; // the pool's connection again
      quiet.release();
    }
    await enqueueJob(a.sql, { queue, kind: 'gc', payload: {} });
    await until(async () => heard.length > 0);
    expect(heard.map((n) => [n.notifier, n.jobs?.[0]?.kind])).toEqual([[a.notifier, 'gc']]);
    await unlisten();
  });

  test('enqueue of a queued key due later brings that job forward, never back', async () => {
    const queue = newQueue();
    const later = await enqueueJob(a.sql, { queue, kind: 'gc', jobKey: 'soon', payload: {}, runAt: new Date(Date.now() + 3_600_000) });
    expect(await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease })).toEqual([]);
    const sooner = await enqueueJob(a.sql, { queue, kind: 'gc', jobKey: 'soon', payload: {}, runAt: new Date(Date.now() + 60_000) });
    expect(sooner.created).toBe(false);
    expect(sooner.job.id).toBe(later.job.id);
    expect(sooner.job.runAt.getTime()).toBeLessThan(later.job.runAt.getTime());
    const notLater = await enqueueJob(a.sql, { queue, kind: 'gc', jobKey: 'soon', payload: {}, runAt: new Date(Date.now() + 7_200_000) });
    expect(notLater.job.runAt).toEqual(sooner.job.runAt);
    const now = await enqueueJob(a.sql, { queue, kind: 'gc', jobKey: 'soon', payload: {} });
    expect(now.job.id).toBe(later.job.id);
    expect((await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease })).map((j) => j.id)).toEqual([later.job.id]);
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

  test('coalescing also stops at maxSize, summed over a payload path (the leader always goes)', async () => {
    const queue = newQueue();
    const d1 = await createDataset(a.sql, { slug: `size-1-${queue}` });
    const add = (sizeBytes: number) => enqueueJob(a.sql, { queue, kind: 'ingest', datasetId: d1.id, payload: { rowCount: 1, staged: { sizeBytes } } }).then((r) => r.job);
    const big = await add(300);
    const j2 = await add(40);
    const j3 = await add(50);
    const j4 = await add(20);
    const claim = () =>
      claimJobs(a.sql, { queue, workerId: 'w', limit: 10, coalesce: { weightField: 'rowCount', maxWeight: 1_000, sizePath: ['staged', 'sizeBytes'], maxSize: 100 }, ...lease });
    // The leader alone is over the bound: it goes by itself.
    expect((await claim()).map((j) => j.id)).toEqual([big.id]);
    // 40 + 50 fit within 100; with 20 more they would not.
    expect((await claim()).map((j) => j.id).sort()).toEqual([j2.id, j3.id].sort());
    expect((await claim()).map((j) => j.id)).toEqual([j4.id]);
  });

  test('under a budget, a dataset whose queued bytes reach maxSize is ready at once', async () => {
    const queue = newQueue();
    const d1 = await createDataset(a.sql, { slug: `size-ready-${queue}` });
    const add = (sizeBytes: number) => enqueueJob(a.sql, { queue, kind: 'ingest', datasetId: d1.id, payload: { rowCount: 1, staged: { sizeBytes } } }).then((r) => r.job);
    const claim = () =>
      claimJobs(a.sql, {
        queue,
        workerId: 'w',
        limit: 10,
        coalesce: { weightField: 'rowCount', minWeight: 1_000, sizePath: ['staged', 'sizeBytes'], maxSize: 100, maxWaitMs: 3_600_000 },
        ...lease,
      });
    const j1 = await add(60);
    expect(await claim()).toEqual([]);
    const j2 = await add(40);
    expect((await claim()).map((j) => j.id).sort()).toEqual([j1.id, j2.id].sort());
  });

  test('a coalescing budget holds a dataset\'s jobs until their rows reach minWeight or the oldest has waited maxWaitMs', async () => {
    const queue = newQueue();
    const d1 = await createDataset(a.sql, { slug: `budget-1-${queue}` });
    const d2 = await createDataset(a.sql, { slug: `budget-2-${queue}` });
    const add = (datasetId: string, rowCount: number, kind = 'ingest') =>
      enqueueJob(a.sql, { queue, kind, datasetId, payload: { rowCount } }).then((r) => r.job);
    const claim = (maxWaitMs: number) =>
      claimJobs(b.sql, { queue, kinds: ['ingest'], workerId: 'w', limit: 10, coalesce: { weightField: 'rowCount', maxWeight: 1_000, minWeight: 50, maxWaitMs }, ...lease });
    const j1 = await add(d1.id, 10);
    const j2 = await add(d1.id, 10);
    const j3 = await add(d2.id, 10);
    await add(d1.id, 100, 'other'); // another kind weighs nothing here

    expect(await claim(60_000)).toEqual([]);
    const due = await budgetDue(a.sql, { queue, kinds: ['ingest'], weightField: 'rowCount', minWeight: 50, maxWaitMs: 60_000 });
    expect(due!.dueInMs).toBeGreaterThan(0);
    expect(due!.dueInMs).toBeLessThanOrEqual(60_000);
    // d1 lacks 30 rows, d2 40: the least is what a new job may fill; no size budget.
    expect({ ...due, dueInMs: 0, datasets: due!.datasets.sort() }).toEqual({ dueInMs: 0, weightShort: 30, sizeShort: null, datasets: [d1.id, d2.id].sort() });

    // d1 reaches 50 rows: its jobs are claimed at once, as one batch; d2's 10 still wait.
    const j4 = await add(d1.id, 30);
    const batch = await claim(60_000);
    expect(batch.map((j) => j.id).sort()).toEqual([j1.id, j2.id, j4.id].sort());
    expect(await claim(60_000)).toEqual([]);

    // d2's job has waited 200 ms (by the database's clock): due, and claimed alone.
    await until(async () => (await budgetDue(a.sql, { queue, kinds: ['ingest'], maxWaitMs: 200 }))!.dueInMs <= 0);
    expect((await claim(200)).map((j) => j.id)).toEqual([j3.id]);
    expect(await budgetDue(a.sql, { queue, kinds: ['ingest'], maxWaitMs: 200 })).toBeNull();
  });

  test("while a dataset's write runs, its queued jobs wait twice the budget's wait; its row budget and a waiting client still make it ready at once", async () => {
    const queue = newQueue();
    const written = await createDataset(a.sql, { slug: `budget-inflight-${queue}` });
    const idle = await createDataset(a.sql, { slug: `budget-idle-${queue}` });
    const budget = { weightField: 'rowCount', maxWeight: 1_000, minWeight: 50, maxWaitMs: 1_000, promptField: 'awaited' };
    const claim = async () => (await claimJobs(b.sql, { queue, kinds: ['ingest'], workerId: 'w', limit: 10, coalesce: budget, ...lease })).map((j) => j.id);
    const add = (datasetId: string, rowCount: number, payload: object = {}) =>
      enqueueJob(a.sql, { queue, kind: 'ingest', datasetId, payload: { rowCount, ...payload } }).then((r) => r.job);
    const waited = async (id: string, ms: number) =>
      (await a.sql<{ due: boolean }[]>`SELECT now() - created_at >= ${ms} * interval '1 millisecond' AS due FROM jobs WHERE id = ${id}`)[0]!.due;

    const running = await add(written.id, 1, { awaited: true });
    expect(await claim()).toEqual([running.id]); // the write in flight
    const next = await add(written.id, 1);
    const other = await add(idle.id, 1);
    await until(() => waited(other.id, 1_000));
    // Both waited the budget's wait: the idle dataset's job goes; the other waits for its write.
    expect(await claim()).toEqual([other.id]);
    expect(await claim()).toEqual([]);
    const { dueInMs } = (await budgetDue(a.sql, { queue, kinds: ['ingest'], ...budget }))!;
    expect(dueInMs).toBeGreaterThan(0);
    expect(dueInMs).toBeLessThanOrEqual(1_000);
    // Twice the wait: it goes, though the write still runs.
    await until(() => waited(next.id, 2_000));
    expect(await claim()).toEqual([next.id]);

    // Writes in flight again (the two claims'): rows reaching the budget go at once, and so does
    // a batch whose client waits for it.
    const many = await add(written.id, 60);
    expect(await claim()).toEqual([many.id]);
    const awaited = await add(written.id, 1, { awaited: true });
    expect(await claim()).toEqual([awaited.id]);
    expect(await budgetDue(a.sql, { queue, kinds: ['ingest'], ...budget })).toBeNull();
  });

  test('under a coalescing budget, a job whose client waits for it makes its dataset ready at once', async () => {
    const queue = newQueue();
    const d1 = await createDataset(a.sql, { slug: `budget-awaited-${queue}` });
    const d2 = await createDataset(a.sql, { slug: `budget-unawaited-${queue}` });
    const budget = { weightField: 'rowCount', maxWeight: 1_000, minWeight: 1_000, maxWaitMs: 3_600_000, promptField: 'awaited' };
    const claim = () => claimJobs(b.sql, { queue, workerId: 'w', limit: 10, coalesce: budget, ...lease });
    const add = (datasetId: string, payload: object) => enqueueJob(a.sql, { queue, kind: 'ingest', datasetId, payload: { rowCount: 1, ...payload } }).then((r) => r.job);

    const earlier = await add(d1.id, {});
    await add(d2.id, { awaited: false });
    expect(await claim()).toEqual([]);
    const awaited = await add(d1.id, { awaited: true });
    // The waiting client's batch goes now, with what its dataset had queued before it.
    expect((await claim()).map((j) => j.id).sort()).toEqual([earlier.id, awaited.id].sort());
    expect(await claim()).toEqual([]);
  });

  test('under a coalescing budget, a job whose lease expired, a retried job and a job without a dataset are claimable at once', async () => {
    const queue = newQueue();
    const d1 = await createDataset(a.sql, { slug: `budget-expired-${queue}` });
    const d2 = await createDataset(a.sql, { slug: `budget-retried-${queue}` });
    const budget = { weightField: 'rowCount', maxWeight: 1_000_000, minWeight: 1_000_000, maxWaitMs: 3_600_000 };
    const claim = () => claimJobs(b.sql, { queue, workerId: 'alive', limit: 10, coalesce: budget, ...lease });
    const add = (datasetId: string | null) => enqueueJob(a.sql, { queue, kind: 'ingest', datasetId, payload: { rowCount: 1 } }).then((r) => r.job);

    const expired = await add(d1.id);
    const retried = await add(d2.id);
    await claimJobs(a.sql, { queue, workerId: 'dead', limit: 1, ...lease }); // the oldest: expired
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease }); // the next: retried
    await failJob(a.sql, retried.id, 'w', 'transient', { delayMs: 0, windowMs: 3_600_000 });
    await a.sql`UPDATE jobs SET locked_until = now() - interval '1 second' WHERE id = ${expired.id}`;
    const waiting = await add(d1.id);
    const unowned = await add(null);

    expect(await claim()).toMatchObject([{ id: expired.id, leaseExpiries: 1, attempts: 2 }]);
    expect(await claim()).toMatchObject([{ id: retried.id, attempts: 2 }]);
    expect(await claim()).toMatchObject([{ id: unowned.id, attempts: 1 }]);
    expect(await claim()).toEqual([]);
    expect(await getJob(a.sql, waiting.id)).toMatchObject({ state: 'queued', attempts: 0 });
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

  test('failJob retries while the retry falls due within the window from created_at, then fails for good', async () => {
    const queue = newQueue();
    const { job } = await enqueueJob(a.sql, { queue, kind: 'k', payload: {} });
    expect(job.retryUntil).toBeNull();
    const hour = 3_600_000;
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    const retried = await failJob(a.sql, job.id, 'w', 'boom 1', { delayMs: 60_000, windowMs: hour });
    expect(retried).toMatchObject({ state: 'queued', lastError: 'boom 1', lockedBy: null, finishedAt: null });
    // The deadline is fixed at the first failure, from created_at, in the database's clock.
    expect(retried!.retryUntil!.getTime() - job.createdAt.getTime()).toBe(hour);
    expect(retried!.runAt.getTime() - retried!.updatedAt.getTime()).toBe(60_000);

    // Another process with a shorter window does not move the deadline.
    await a.sql`UPDATE jobs SET run_at = now() WHERE id = ${job.id}`; // skip the wait
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    expect(await failJob(a.sql, job.id, 'w', 'boom 2', { delayMs: 60_000, windowMs: 1 })).toMatchObject({ state: 'queued', retryUntil: retried!.retryUntil });

    // The window is nearly spent: a retry that would fall due after it is not made.
    await a.sql`UPDATE jobs SET run_at = now(), retry_until = now() + interval '30 seconds' WHERE id = ${job.id}`;
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    const failed = await failJob(a.sql, job.id, 'w', 'boom 3', { delayMs: 60_000, windowMs: hour });
    expect(failed).toMatchObject({ state: 'failed', attempts: 3, lastError: 'boom 3', lockedBy: null });
    expect(failed!.finishedAt).not.toBeNull();
  });

  test('a job may carry its own window; a permanent error fails it at once', async () => {
    const queue = newQueue();
    const { job } = await enqueueJob(a.sql, { queue, kind: 'k', payload: {}, retryWindowMs: 10_000 });
    expect(job.retryUntil!.getTime() - job.createdAt.getTime()).toBe(10_000);
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    expect(await failJob(a.sql, job.id, 'w', 'later', { delayMs: 20_000, windowMs: 3_600_000 })).toMatchObject({ state: 'failed', retryUntil: job.retryUntil });

    const other = (await enqueueJob(a.sql, { queue, kind: 'k', payload: {} })).job;
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    expect(await failJob(a.sql, other.id, 'w', 'bad payload', null)).toMatchObject({ state: 'failed', attempts: 1, retryUntil: null });
  });

  test('only a claim from an expired lease counts as a lease expiry; such a job is claimed alone', async () => {
    const queue = newQueue();
    const d = await createDataset(a.sql, { slug: `suspect-${queue}` });
    const add = () => enqueueJob(a.sql, { queue, kind: 'ingest', datasetId: d.id, payload: {} }).then((r) => r.job);
    const suspect = await add();
    const innocent = [await add(), await add()];
    await claimJobs(a.sql, { queue, workerId: 'dead', limit: 1, leaseMs: 100 }); // the oldest: suspect
    await Bun.sleep(150);
    const alone = await claimJobs(b.sql, { queue, workerId: 'alive', limit: 10, coalesce: true, ...lease });
    expect(alone.map((j) => [j.id, j.leaseExpiries, j.attempts])).toEqual([[suspect.id, 1, 2]]);

    // A failed attempt is no lease expiry, and the suspect stays out of others' batches.
    await failJob(b.sql, suspect.id, 'alive', 'transient', { delayMs: 0, windowMs: 3_600_000 });
    const together = await claimJobs(b.sql, { queue, workerId: 'alive', limit: 10, coalesce: true, ...lease });
    expect(together.map((j) => j.id).sort()).toEqual(innocent.map((j) => j.id).sort());
    expect(together.every((j) => j.leaseExpiries === 0)).toBe(true);
    expect(await claimJobs(b.sql, { queue, workerId: 'alive', limit: 10, coalesce: true, ...lease })).toMatchObject([
      { id: suspect.id, leaseExpiries: 1, attempts: 3 },
    ]);
  });

  test('a failed job is retried by an operator with a new window, or deleted; nothing else is', async () => {
    const queue = newQueue();
    const { job } = await enqueueJob(a.sql, { queue, kind: 'k', payload: {}, maxAttempts: 1 });
    await claimJobs(a.sql, { queue, workerId: 'dead', limit: 1, leaseMs: 1 });
    await Bun.sleep(5);
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    expect(await retryFailedJob(a.sql, job.id, 60_000)).toBeNull(); // running
    await failJob(a.sql, job.id, 'w', 'gave up', null);

    const retried = await retryFailedJob(a.sql, job.id, 60_000);
    expect(retried).toMatchObject({ state: 'queued', attempts: 0, leaseExpiries: 0, finishedAt: null, lastError: 'gave up' });
    expect(retried!.retryUntil!.getTime() - retried!.updatedAt.getTime()).toBe(60_000);
    expect(retried!.runAt.getTime()).toBe(retried!.updatedAt.getTime());
    expect(await deleteFailedJob(a.sql, job.id)).toBeNull(); // queued again
    expect(await retryFailedJob(a.sql, 'not-a-uuid', 60_000)).toBeNull();

    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    await failJob(a.sql, job.id, 'w', 'again', null);
    expect((await deleteFailedJob(a.sql, job.id))?.id).toBe(job.id);
    expect(await getJob(a.sql, job.id)).toBeNull();
  });

  test('a failed job keeps its staged batch referenced; a succeeded one does not', async () => {
    const queue = newQueue();
    const staged = (n: string) => ({ storageTargetId: '00000000-0000-4000-8000-000000000001', staged: { location: `file:///staging/${queue}/${n}.json` } });
    const failed = (await enqueueJob(a.sql, { queue, kind: 'k', payload: staged('failed') })).job;
    const done = (await enqueueJob(a.sql, { queue, kind: 'k', payload: staged('done') })).job;
    const waiting = (await enqueueJob(a.sql, { queue, kind: 'k', payload: staged('waiting'), runAt: new Date(Date.now() + 60_000) })).job;
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 2, ...lease });
    await failJob(a.sql, failed.id, 'w', 'gave up', null);
    await completeJobs(a.sql, [done.id], 'w');
    const locations = [failed, done, waiting].map((j) => stagedBodyOf(j)!.location);
    expect(await referencedLocations(a.sql, locations)).toEqual(new Set([locations[0]!, locations[2]!]));
    expect(stagedBodyOf({ payload: {} })).toBeNull();
  });

  test('purge deletes old succeeded jobs and keeps failed ones, except those of the queues named', async () => {
    const queue = newQueue();
    const other = newQueue();
    const finish = async (q: string, how: 'succeeded' | 'failed'): Promise<Job> => {
      const { job } = await enqueueJob(a.sql, { queue: q, kind: 'k', payload: {} });
      await claimJobs(a.sql, { queue: q, workerId: 'w', limit: 1, ...lease });
      if (how === 'succeeded') await completeJobs(a.sql, [job.id], 'w');
      else await failJob(a.sql, job.id, 'w', 'gave up', null);
      await a.sql`UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = ${job.id}`;
      return job;
    };
    const succeeded = await finish(queue, 'succeeded');
    const failed = await finish(queue, 'failed');
    const disposable = await finish(other, 'failed');
    await purgeFinishedJobs(a.sql, 3_600_000, { failedOfQueues: [other] });
    expect(await getJob(a.sql, succeeded.id)).toBeNull();
    expect(await getJob(a.sql, failed.id)).toMatchObject({ state: 'failed' });
    expect(await getJob(a.sql, disposable.id)).toBeNull();
  });

  test('listJobs filters by state, dataset and kind and pages without gaps or repeats while jobs change', async () => {
    const queue = newQueue();
    const d1 = await createDataset(a.sql, { slug: `list-1-${queue}` });
    const d2 = await createDataset(a.sql, { slug: `list-2-${queue}` });
    const made: Job[] = [];
    for (let i = 0; i < 7; i++) {
      const { job } = await enqueueJob(a.sql, { queue, kind: i % 3 === 0 ? 'other' : 'k', datasetId: i % 2 ? d2.id : d1.id, payload: { i } });
      made.push(job);
    }
    // In the listing's order: creation time to the millisecond, then id (jobs made within one
    // millisecond come in id order).
    const listed = (jobs: Job[]) =>
      [...jobs].sort((x, y) => x.createdAt.getTime() - y.createdAt.getTime() || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0)).map((j) => j.id);
    await a.sql`UPDATE jobs SET state = 'failed', finished_at = now() WHERE queue = ${queue}`;
    const pages: string[][] = [];
    let cursor: string | null = null;
    do {
      const page = await listJobs(a.sql, { state: 'failed', datasetId: d1.id, cursor, limit: 2 });
      pages.push(page.jobs.map((j) => j.id));
      cursor = page.nextCursor;
      // A job leaving the list between pages does not shift the next page.
      if (pages.length === 1) await a.sql`UPDATE jobs SET state = 'queued' WHERE id = ${pages[0]![0]!}`;
    } while (cursor);
    expect(pages.map((p) => p.length)).toEqual([2, 2]);
    expect(pages.flat()).toEqual(listed(made.filter((_, i) => i % 2 === 0)));
    const kinds = await listJobs(a.sql, { state: 'failed', kind: 'other', limit: 10 }); // the first listed is queued again (above)
    expect(kinds.jobs.filter((j) => j.queue === queue).map((j) => j.id)).toEqual(listed(made.filter((j, i) => i % 3 === 0 && j.id !== pages[0]![0])));
    expect(kinds.nextCursor).toBeNull();
    await expect(listJobs(a.sql, { cursor: 'bm90IGEgY3Vyc29y', limit: 1 })).rejects.toMatchObject({ status: 400, code: 'invalid_cursor' });
  });

  test('overdue: queued and due, or running past the lease, for longer than the grace', async () => {
    const queue = newQueue();
    const late = (await enqueueJob(a.sql, { queue, kind: 'late', payload: {}, runAt: new Date(Date.now() - 600_000) })).job;
    await enqueueJob(a.sql, { queue, kind: 'late', payload: {} }); // due now: not overdue yet
    await enqueueJob(a.sql, { queue, kind: 'stuck', payload: {}, runAt: new Date(Date.now() - 700_000) });
    await claimJobs(a.sql, { queue, kinds: ['stuck'], workerId: 'dead', limit: 1, leaseMs: 1 });
    await a.sql`UPDATE jobs SET locked_until = now() - interval '10 minutes' WHERE queue = ${queue} AND kind = 'stuck'`;
    const mine = async () => (await countOverdueJobs(a.sql, 300_000)).filter((c) => c.queue === queue);
    expect(await mine()).toEqual([
      { queue, kind: 'late', count: 1 },
      { queue, kind: 'stuck', count: 1 },
    ]);
    await claimJobs(a.sql, { queue, kinds: ['late'], workerId: 'w', limit: 1, ...lease });
    expect(await getJob(a.sql, late.id)).toMatchObject({ state: 'running' });
    expect(await mine()).toEqual([{ queue, kind: 'stuck', count: 1 }]);
  });

  test('a statement over a list of jobs or locations is one statement whatever the list holds', async () => {
    // Each text is a statement PostgreSQL prepares (with a round trip to describe it) and keeps for
    // the connection's life: one per list length would make thousands.
    const queue = newQueue();
    const texts: string[] = [];
    const options = a.sql.options as { debug?: unknown };
    const listed = async (ids: string[]) => {
      options.debug = (_: number, query: string) => void texts.push(query);
      try {
        await heartbeatJobs(a.sql, ids, 'w', 30_000);
        await releaseJobs(a.sql, ids, 'w');
        await claimJobs(a.sql, { queue, workerId: 'w', limit: ids.length, ...lease });
        await completeJobs(a.sql, ids, 'w');
        await referencedLocations(a.sql, ids.map((id) => `file:///staged/${id}`), ids);
      } finally {
        options.debug = false;
      }
      return texts.splice(0).filter((text) => !text.includes('SKIP LOCKED'));
    };
    const enqueue = async (n: number) =>
      Promise.all(Array.from({ length: n }, async () => (await enqueueJob(a.sql, { queue, kind: 'k', payload: {} })).job.id));
    const one = await enqueue(1);
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 1, ...lease });
    const first = await listed(one);
    const three = await enqueue(3);
    await claimJobs(a.sql, { queue, workerId: 'w', limit: 3, ...lease });
    expect(await listed(three)).toEqual(first);
    expect(first.length).toBeGreaterThanOrEqual(4);
    expect((await countJobs(a.sql, queue)).find((c) => c.state === 'succeeded')?.count).toBe(4);
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
