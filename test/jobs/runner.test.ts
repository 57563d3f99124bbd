/** The job runner (src/jobs/runner.ts) on a real PostgreSQL. */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import { Writable } from 'node:stream';
import type { Catalog } from '../../src/catalog/connection.ts';
import { createDataset } from '../../src/catalog/datasets.ts';
import { type Job, claimJobs, completeJobs, enqueueJob, getJob, retryFailedJob } from '../../src/catalog/job-table.ts';
import { wakeLocalRunners } from '../../src/jobs/local-signals.ts';
import { type JobRunnerOptions, JobRunner, LeaseLostError, PermanentJobError } from '../../src/jobs/runner.ts';
import { createLogger } from '../../src/log.ts';
import { openTestCatalog, silentLog } from '../harness/catalog.ts';
import { createTestDatabase } from '../harness/postgres.ts';

let a: Catalog; // two catalogs on one database: two processes
let b: Catalog;
let url: string;
let queueSeq = 0;
const newQueue = () => `rq${++queueSeq}`;
const runners: JobRunner[] = [];

beforeAll(async () => {
  url = await createTestDatabase('runner');
  a = await openTestCatalog({ databaseUrl: url });
  b = await openTestCatalog({ databaseUrl: url });
});
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.stop(1_000)));
});
afterAll(async () => {
  await a.close();
  await b.close();
});

function runner(catalog: Catalog, options: Partial<JobRunnerOptions> = {}): JobRunner {
  const r = new JobRunner({ catalog, log: silentLog, concurrency: 2, pollIntervalMs: 100, ...options });
  runners.push(r);
  return r;
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await Bun.sleep(10);
  }
}

describe('job runner', () => {
  test('two runners in two processes run every job exactly once', async () => {
    const queue = newQueue();
    const runs: string[] = [];
    const handler = async (jobs: Job[]) => {
      await Bun.sleep(2);
      for (const j of jobs) runs.push(j.id);
    };
    const r1 = runner(a, { concurrency: 4 }).register('k', handler, { queue });
    const r2 = runner(b, { concurrency: 4 }).register('k', handler, { queue });
    const ids = await a.sql.begin(async (tx) => {
      const out: string[] = [];
      for (let i = 0; i < 100; i++) out.push((await enqueueJob(tx, { queue, kind: 'k', payload: { i } })).job.id);
      return out;
    });
    await Promise.all([r1.start(), r2.start()]);
    await until(async () => (await a.sql`SELECT 1 FROM jobs WHERE queue = ${queue} AND state <> 'succeeded'`).length === 0);
    expect(runs.length).toBe(100);
    expect(new Set(runs)).toEqual(new Set(ids));
  });

  test('a coalescing handler gets batches of one dataset and completes them in its own transaction', async () => {
    const queue = newQueue();
    const d1 = await createDataset(a.sql, { slug: `rd1-${queue}` });
    const d2 = await createDataset(a.sql, { slug: `rd2-${queue}` });
    const batches: Job[][] = [];
    const r = runner(a, { concurrency: 1 }).register(
      'ingest',
      async (jobs, ctx) => {
        batches.push(jobs);
        await a.sql.begin(async (tx) => {
          await tx`UPDATE datasets SET manifest_version = manifest_version + 1 WHERE id = ${jobs[0]!.datasetId}`;
          await ctx.complete(tx, Object.fromEntries(jobs.map((j) => [j.id, { batch: jobs.length }])));
        });
      },
      { queue, coalesce: { maxJobs: 3 } },
    );
    for (const d of [d1, d2, d1, d1, d2, d1]) await enqueueJob(a.sql, { queue, kind: 'ingest', datasetId: d.id, payload: {} });
    await r.start();
    await until(async () => (await a.sql`SELECT 1 FROM jobs WHERE queue = ${queue} AND state <> 'succeeded'`).length === 0);
    expect(batches.map((jobs) => jobs.length)).toEqual([3, 2, 1]);
    for (const jobs of batches) expect(new Set(jobs.map((j) => j.datasetId)).size).toBe(1);
    expect((await getJob(a.sql, batches[0]![0]!.id))!.result).toEqual({ batch: 3 });
  });

  test('heartbeats keep a job that outlives its lease', async () => {
    const queue = newQueue();
    const r = runner(a, { leaseMs: 200 }).register('k', async () => void (await Bun.sleep(700)), { queue });
    await r.start();
    const { job } = await r.enqueue({ queue, kind: 'k', payload: {} });
    await Bun.sleep(300);
    expect(await claimJobs(b.sql, { queue, workerId: 'other', limit: 1, leaseMs: 1_000 })).toEqual([]);
    expect(await r.waitForJob(job.id, 5_000)).toMatchObject({ state: 'succeeded', attempts: 1 });
  });

  test('complete() refuses a job whose lease was taken over, rolling back the handler transaction', async () => {
    const queue = newQueue();
    const d = await createDataset(a.sql, { slug: `lease-${queue}` });
    let seen: unknown;
    let signalled: unknown;
    const r = runner(a, { leaseMs: 300 }).register(
      'k',
      async (jobs, ctx) => {
        // Simulate a stall past the lease: another worker takes the job over.
        await a.sql`UPDATE jobs SET locked_by = 'thief' WHERE id = ${jobs[0]!.id}`;
        await until(() => ctx.signal.aborted);
        signalled = ctx.signal.reason;
        try {
          await a.sql.begin(async (tx) => {
            await tx`UPDATE datasets SET manifest_version = 99 WHERE id = ${d.id}`;
            await ctx.complete(tx);
          });
        } catch (err) {
          seen = err;
          throw err;
        }
      },
      { queue },
    );
    const { job } = await r.enqueue({ queue, kind: 'k', payload: {} });
    await r.start();
    await until(() => seen !== undefined);
    expect(signalled).toBeInstanceOf(LeaseLostError);
    expect(seen).toBeInstanceOf(LeaseLostError);
    const [row] = await a.sql`SELECT manifest_version FROM datasets WHERE id = ${d.id}`;
    expect(row!.manifestVersion).toBe(0);
    await Bun.sleep(50);
    expect(await getJob(a.sql, job.id)).toMatchObject({ state: 'running', lockedBy: 'thief' }); // untouched by the loser
  });

  test('a failing job retries with growing jittered backoff until its window is spent, then fails with last_error, logged at error level', async () => {
    const queue = newQueue();
    const startedAt: number[] = [];
    const lines: Record<string, any>[] = [];
    const log = createLogger('info', new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) }));
    const r = runner(a, { retryBaseMs: 100, retryWindowMs: 3_000, pollIntervalMs: 20, log }).register(
      'k',
      async () => {
        startedAt.push(Date.now());
        throw new Error(`boom ${startedAt.length}`);
      },
      { queue },
    );
    await r.start();
    const { job } = await r.enqueue({ queue, kind: 'k', payload: {}, maxAttempts: 1 });
    const done = (await r.waitForJob(job.id, 10_000))!;
    // max_attempts bounds lost leases only: failed attempts went on while the window lasted.
    expect(done).toMatchObject({ state: 'failed', lastError: `boom ${startedAt.length}`, attempts: startedAt.length, leaseExpiries: 0 });
    expect(startedAt.length).toBeGreaterThanOrEqual(4);
    expect(done.retryUntil!.getTime() - done.createdAt.getTime()).toBe(3_000);
    const gaps = startedAt.slice(1).map((t, i) => t - startedAt[i]!);
    // Delays are 50–100, 100–200, 200–400 ms, … (the poll adds at most 25 ms).
    expect(gaps[0]).toBeGreaterThanOrEqual(45);
    expect(gaps[1]).toBeGreaterThanOrEqual(95);
    expect(gaps[2]).toBeGreaterThanOrEqual(195);

    const retried = lines.filter((l) => l.msg === 'jobs: attempt failed; retrying');
    expect(retried.length).toBe(startedAt.length - 1);
    expect(retried.every((l) => l.level === 'warn' && l.jobId === job.id)).toBe(true);
    const final = lines.filter((l) => l.level === 'error');
    expect(final).toEqual([
      expect.objectContaining({ jobId: job.id, kind: 'k', datasetId: null, attempts: startedAt.length, error: done.lastError, state: 'failed' }),
    ]);
    expect(final[0]!.msg).toContain(`POST /admin/jobs/${job.id}/retry`);
  });

  test('an operator retry runs a failed job again, in a new window', async () => {
    const queue = newQueue();
    let broken = true;
    const r = runner(a, { retryBaseMs: 10, retryWindowMs: 200, pollIntervalMs: 20 }).register(
      'k',
      async () => {
        if (broken) throw new Error('storage unavailable');
      },
      { queue },
    );
    await r.start();
    const { job } = await r.enqueue({ queue, kind: 'k', payload: {} });
    expect(await r.waitForJob(job.id, 5_000)).toMatchObject({ state: 'failed', lastError: 'storage unavailable' });
    broken = false;
    expect(await retryFailedJob(a.sql, job.id, 60_000)).toMatchObject({ state: 'queued', attempts: 0 });
    wakeLocalRunners(queue);
    expect(await r.waitForJob(job.id, 5_000)).toMatchObject({ state: 'succeeded', attempts: 1 });
  });

  test('per-job errors fail only their job; a PermanentJobError is not retried', async () => {
    const queue = newQueue();
    const d = await createDataset(a.sql, { slug: `perjob-${queue}` });
    const r = runner(a).register(
      'k',
      async (jobs) => Object.fromEntries(jobs.map((j) => [j.id, (j.payload as { bad?: boolean }).bad ? new PermanentJobError('bad row') : 'ok'])),
      { queue, coalesce: { maxJobs: 10 } },
    );
    const good = (await enqueueJob(a.sql, { queue, kind: 'k', datasetId: d.id, payload: {} })).job;
    const bad = (await enqueueJob(a.sql, { queue, kind: 'k', datasetId: d.id, payload: { bad: true } })).job;
    await r.start();
    expect(await r.waitForJob(bad.id, 5_000)).toMatchObject({ state: 'failed', attempts: 1, lastError: 'bad row' });
    expect(await r.waitForJob(good.id, 5_000)).toMatchObject({ state: 'succeeded', result: 'ok' });
  });

  test('a job whose worker died is run again by another runner, once', async () => {
    const queue = newQueue();
    const runs: string[] = [];
    const { job } = await enqueueJob(a.sql, { queue, kind: 'k', payload: {} });
    await claimJobs(a.sql, { queue, workerId: 'dead', limit: 1, leaseMs: 200 }); // then never heartbeats
    const r = runner(b, { pollIntervalMs: 50 }).register('k', async (jobs) => void runs.push(...jobs.map((j) => j.id)), { queue });
    await r.start();
    expect(await r.waitForJob(job.id, 5_000)).toMatchObject({ state: 'succeeded', attempts: 2 });
    await Bun.sleep(300);
    expect(runs).toEqual([job.id]);
  });

  test('a job whose workers keep dying is failed unrun once its lost leases reach max_attempts', async () => {
    const queue = newQueue();
    let ran = false;
    const { job } = await enqueueJob(a.sql, { queue, kind: 'k', payload: {}, maxAttempts: 2 });
    for (const worker of ['dead-1', 'dead-2']) {
      await claimJobs(a.sql, { queue, workerId: worker, limit: 1, leaseMs: 100 });
      await Bun.sleep(150);
    }
    const r = runner(b).register('k', async () => void (ran = true), { queue });
    await r.start();
    const done = await r.waitForJob(job.id, 5_000);
    expect(done).toMatchObject({ state: 'failed', leaseExpiries: 2, attempts: 3 });
    expect(done!.lastError).toStartWith('lease of dead-2 expired; its lease was lost 2 times');
    expect(ran).toBe(false);
  });

  test('NOTIFY wakes an idle runner of another process well under the poll interval', async () => {
    const queue = newQueue();
    let ranAt = 0;
    const r = runner(a, { pollIntervalMs: 10_000 }).register('k', async () => void (ranAt = Date.now()), { queue });
    await r.start();
    await Bun.sleep(200); // let the first poll pass; the runner now sleeps for ~10 s
    const latencies: number[] = [];
    for (let i = 0; i < 3; i++) {
      ranAt = 0;
      const sentAt = Date.now();
      await enqueueJob(b.sql, { queue, kind: 'k', payload: {} }); // from the other process: no in-process signal
      await until(() => ranAt > 0, 2_000);
      latencies.push(ranAt - sentAt);
    }
    console.log(`NOTIFY wake latency (ms): ${latencies.join(', ')}`);
    expect(Math.max(...latencies)).toBeLessThan(250);
  });

  test('an in-process enqueue wakes the local runner without NOTIFY', async () => {
    const queue = newQueue();
    let ranAt = 0;
    const r = runner(a, { pollIntervalMs: 10_000, notifications: false }).register('k', async () => void (ranAt = Date.now()), { queue });
    await r.start();
    await Bun.sleep(200);
    let sentAt = Date.now();
    await r.enqueue({ queue, kind: 'k', payload: {} });
    await until(() => ranAt > 0, 2_000);
    const viaEnqueue = ranAt - sentAt;
    // Enqueued in a caller's transaction, then woken after commit.
    ranAt = 0;
    sentAt = Date.now();
    await a.sql.begin((tx) => enqueueJob(tx, { queue, kind: 'k', payload: {} }));
    wakeLocalRunners(queue);
    await until(() => ranAt > 0, 2_000);
    console.log(`in-process wake latency (ms): ${viaEnqueue}, ${ranAt - sentAt}`);
    expect(Math.max(viaEnqueue, ranAt - sentAt)).toBeLessThan(250);
  });

  test('a coalescing budget: the runner wakes itself when a held-back dataset falls due, without NOTIFY or poll', async () => {
    const queue = newQueue();
    const d = await createDataset(a.sql, { slug: `budget-${queue}` });
    const batches: string[][] = [];
    const r = runner(a, { pollIntervalMs: 600_000, notifications: false }).register(
      'ingest',
      async (jobs) => void batches.push(jobs.map((j) => j.id)),
      { queue, coalesce: { maxJobs: 10, weightField: 'rowCount', minWeight: 1_000, maxWaitMs: 300 } },
    );
    await r.start();
    await Bun.sleep(100); // the first claim found nothing; the next poll is minutes away
    // Both visible at once, below the budget: the wake-up from the enqueue finds nothing to claim.
    const ids = await a.sql.begin(async (tx) => [
      (await enqueueJob(tx, { queue, kind: 'ingest', datasetId: d.id, payload: { rowCount: 10 } })).job.id,
      (await enqueueJob(tx, { queue, kind: 'ingest', datasetId: d.id, payload: { rowCount: 10 } })).job.id,
    ]);
    wakeLocalRunners(queue);
    for (const id of ids) expect(await r.waitForJob(id, 5_000)).toMatchObject({ state: 'succeeded', attempts: 1 });
    expect(batches.map((b) => b.sort())).toEqual([ids.sort()]);
  });

  test('while a budget holds jobs back, a job enqueued, here or by another process, wakes the runner only if it may be claimable sooner', async () => {
    const queue = newQueue();
    const d = await createDataset(a.sql, { slug: `held-${queue}` });
    const catalog = await openTestCatalog({ databaseUrl: url }); // its statements counted
    let claims = 0;
    (catalog.sql.options as { debug?: unknown }).debug = (_: number, query: string) => void (query.includes('SKIP LOCKED') && claims++);
    try {
      const batches: string[][] = [];
      const r = runner(catalog, { pollIntervalMs: 600_000 }).register('ingest', async (jobs) => void batches.push(jobs.map((j) => j.id).sort()), {
        queue,
        coalesce: { maxJobs: 10, weightField: 'rowCount', minWeight: 100, maxWaitMs: 60_000, promptField: 'awaited' },
      });
      await r.start();
      const enqueue = async (from: Catalog, payload: object) => {
        const { job } = await enqueueJob(from.sql, { queue, kind: 'ingest', datasetId: d.id, payload });
        if (from === catalog) wakeLocalRunners(queue, [job]);
        return job.id;
      };
      const settled = async () => {
        let seen = -1;
        while (seen !== claims) {
          seen = claims;
          await Bun.sleep(300);
        }
        return claims;
      };

      // The first job is measured against the budget: 90 rows short, due in a minute.
      const held = [await enqueue(catalog, { rowCount: 10 })];
      let before = await settled();
      // Jobs that leave it short wake nothing, neither in-process nor by their own NOTIFY's echo.
      for (let i = 0; i < 3; i++) held.push(await enqueue(catalog, { rowCount: 10 }));
      expect(await settled()).toBe(before);
      // One that fills it is claimed at once, with the others.
      held.push(await enqueue(catalog, { rowCount: 60 }));
      await until(() => batches.length === 1);
      expect(batches[0]).toEqual(held.sort());

      // A job whose client waits for it goes at once too.
      const small = await enqueue(catalog, { rowCount: 1 });
      before = await settled();
      expect(batches.length).toBe(1);
      const awaited = await enqueue(catalog, { rowCount: 1, awaited: true });
      await until(() => batches.length === 2);
      expect(batches[1]).toEqual([small, awaited].sort());
      expect(claims).toBeGreaterThan(before);

      // Another process's jobs, heard by their NOTIFYs, are weighed alike.
      const quiet = await enqueue(catalog, { rowCount: 1 });
      before = await settled();
      const others = [await enqueue(b, { rowCount: 1 })];
      expect(await settled()).toBe(before);
      others.push(await enqueue(b, { rowCount: 98 }));
      await until(() => batches.length === 3);
      expect(batches[2]).toEqual([quiet, ...others].sort());
    } finally {
      await Promise.all(runners.splice(0).map((r) => r.stop(1_000)));
      await catalog.close();
    }
  });

  test('a coalescing budget needs a weight to count minWeight in', () => {
    expect(() => runner(a).register('k', async () => {}, { queue: newQueue(), coalesce: { maxJobs: 10, minWeight: 5, maxWaitMs: 100 } })).toThrow(
      'coalesce.minWeight needs a weightField',
    );
  });

  test('stop lets running handlers finish and claims nothing more', async () => {
    const queue = newQueue();
    const r = runner(a, { concurrency: 1 }).register('k', async () => void (await Bun.sleep(300)), { queue });
    const first = (await r.enqueue({ queue, kind: 'k', payload: {} })).job;
    const second = (await r.enqueue({ queue, kind: 'k', payload: {} })).job;
    await r.start();
    await until(async () => (await getJob(a.sql, first.id))!.state === 'running');
    const t = Date.now();
    await r.stop(5_000);
    expect(Date.now() - t).toBeGreaterThanOrEqual(200);
    expect(await getJob(a.sql, first.id)).toMatchObject({ state: 'succeeded' });
    expect(await getJob(a.sql, second.id)).toMatchObject({ state: 'queued', attempts: 0 });
  });

  test('stop past its timeout aborts the handler and releases the job uncounted for another runner', async () => {
    const queue = newQueue();
    let aborted = false;
    const r1 = runner(a).register(
      'k',
      (_jobs, ctx) => new Promise<void>((_, reject) => ctx.signal.addEventListener('abort', () => ((aborted = true), reject(ctx.signal.reason)))),
      { queue },
    );
    const { job } = await r1.enqueue({ queue, kind: 'k', payload: {} });
    await r1.start();
    await until(async () => (await getJob(a.sql, job.id))!.state === 'running');
    await r1.stop(100);
    expect(aborted).toBe(true);
    expect(await getJob(a.sql, job.id)).toMatchObject({ state: 'queued', attempts: 0, lockedBy: null });
    const r2 = runner(b).register('k', async () => {}, { queue });
    await r2.start();
    expect(await r2.waitForJob(job.id, 5_000)).toMatchObject({ state: 'succeeded', attempts: 1 });
  });

  test('waitForJob: at once for local jobs, by polling for jobs another process runs, and the job as-is at the timeout', async () => {
    const queue = newQueue();
    const r = runner(a).register('k', async (jobs) => ({ [jobs[0]!.id]: 42 }), { queue });
    await r.start();
    const local = (await r.enqueue({ queue, kind: 'k', payload: {} })).job;
    expect(await r.waitForJob(local.id, 5_000)).toMatchObject({ state: 'succeeded', result: 42 });

    // Finished by "another process" (statements on b, no in-process announcement): found by polling.
    const remote = (await enqueueJob(b.sql, { queue: 'elsewhere', kind: 'k', payload: {} })).job;
    setTimeout(async () => {
      await claimJobs(b.sql, { queue: 'elsewhere', workerId: 'remote', limit: 1, leaseMs: 30_000 });
      await completeJobs(b.sql, [remote.id], 'remote', { [remote.id]: 'far' });
    }, 150);
    let t = Date.now();
    expect(await r.waitForJob(remote.id, 5_000)).toMatchObject({ state: 'succeeded', result: 'far' });
    console.log(`waitForJob of a job finished elsewhere after 150 ms: ${Date.now() - t} ms`);

    const pending = (await enqueueJob(a.sql, { queue: 'nobody', kind: 'k', payload: {} })).job;
    t = Date.now();
    expect(await r.waitForJob(pending.id, 300)).toMatchObject({ state: 'queued' });
    expect(Date.now() - t).toBeLessThan(600);
    expect(await r.waitForJob('00000000-0000-0000-0000-000000000000', 100)).toBeNull();
  });
});
