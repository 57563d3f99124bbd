/**
 * Jobs that fail for good, end to end on a real PostgreSQL and a local storage target: an ingest
 * job whose writes keep failing is retried, then failed for good once its window is spent; it
 * keeps its staged batch through an orphan sweep (orphan age 0) and a purge of finished jobs; an
 * operator finds it (GET /admin/jobs), retries it once storage is back (its rows land), or deletes
 * it with its batch; both audited. Also the 404/409 answers and the failed and overdue gauges.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { enqueueJob, getJob, type Job, stagedBodyOf } from '../../src/catalog/job-table.ts';
import { findStorageTarget } from '../../src/catalog/storage-targets.ts';
import { createLogger } from '../../src/log.ts';
import { createStorageDriver } from '../../src/storage/index.ts';
import { parsePrometheusText } from '../harness/prometheus.ts';
import { againstBinary, postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
const captured: Record<string, any>[] = [];
/** The server's log lines: captured in process, read from the process's output against the binary. */
const logLines = (): Record<string, any>[] =>
  againstBinary ? ts.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)) : captured;
const IDLE = 'nobody-runs-this';

beforeAll(async () => {
  const log = createLogger('info', new Writable({ write: (chunk, _enc, done) => (captured.push(JSON.parse(String(chunk))), done()) }));
  ts = await startTestServer(
    {
      TIMESTORE_GC_ORPHAN_MIN_AGE_MINUTES: '0',
      TIMESTORE_JOB_RETENTION_HOURS: '1',
      // One round at start (nothing to do yet), the next only when a test asks for one.
      TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400',
    },
    { log },
  );
  // The round a server starts with sweeps with orphan age 0 too: let it finish before files are planted.
  await until(async () => {
    const [row] = await sql()<{ done: boolean }[]>`
      SELECT bool_and(state = 'succeeded') AND count(*) > 0 AS done FROM jobs WHERE kind = 'maintenance'`;
    return row!.done === true;
  });
});
afterAll(() => ts?.stop());

const sql = () => ts.sql;
const partitionsRoot = () => join(ts.config.storageRoot, 'partitions');
const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'v', type: 'double' },
];
const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ timestamp: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString(), v: i }));

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${ts.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', 'x-iam-user': 'oncall' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function expectError(res: { status: number; body: any }, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.body.error.code).toBe(code);
  expect(typeof res.body.error.message).toBe('string');
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await Bun.sleep(20);
  }
}

/** Makes every partition write of the dataset fail (a file where its directory must go): staging still works. */
function breakStorage(slug: string): () => void {
  const blocker = join(partitionsRoot(), 'datasets', slug);
  mkdirSync(join(partitionsRoot(), 'datasets'), { recursive: true });
  writeFileSync(blocker, 'not a directory');
  return () => rmSync(blocker);
}

/**
 * Ingests a batch whose writes fail; after its first failed attempt the job's window is made to
 * end now (as a day of failures would), so the next failed attempt fails it for good.
 */
async function failedIngest(slug: string, count: number): Promise<Job> {
  const accepted = await postJson(`${ts.url}/datasets/${slug}/ingest`, { schema: { fields: FIELDS }, partition: { key: {} }, rows: rows(count) });
  expect(accepted.status).toBe(202);
  const id: string = accepted.body.jobId;
  await until(async () => (await getJob(sql(), id))!.retryUntil !== null);
  expect((await getJob(sql(), id))!.state).not.toBe('failed'); // a failed attempt is retried
  await sql()`UPDATE jobs SET retry_until = now() WHERE id = ${id}`;
  const failed = (await finished(id))!;
  expect(failed.state).toBe('failed');
  expect(failed.attempts).toBeGreaterThanOrEqual(2);
  return failed;
}

/** The job once it has succeeded or failed (read from the catalog, as any process would). */
async function finished(id: string): Promise<Job | null> {
  let job: Job | null = null;
  await until(async () => {
    job = await getJob(sql(), id);
    return job?.state === 'succeeded' || job?.state === 'failed';
  });
  return job;
}

async function runMaintenance(): Promise<any> {
  const jobs = await ts.server.lifecycle.enqueueRound();
  const maintenance = jobs.find((j) => j.kind === 'maintenance')!;
  const done = await ts.server.runner.waitForJob(maintenance.id, 60_000);
  expect(done?.state).toBe('succeeded');
  return done!.result;
}

const stagedPath = (job: Job) => fileURLToPath(stagedBodyOf(job)!.location);
const scrape = async () => parsePrometheusText(await (await fetch(`${ts.url}/metrics`)).text());

/** A job in a queue no runner serves, set to `state` directly. */
async function idleJob(state: 'queued' | 'running' | 'failed', extra: { payload?: unknown; jobKey?: string; kind?: string } = {}): Promise<Job> {
  const { job } = await enqueueJob(sql(), { queue: IDLE, kind: extra.kind ?? 'k', payload: extra.payload ?? {}, jobKey: extra.jobKey });
  if (state === 'running') {
    await sql()`UPDATE jobs SET state = 'running', attempts = 1, locked_by = 'elsewhere', locked_until = now() + interval '10 minutes' WHERE id = ${job.id}`;
  }
  if (state === 'failed') await sql()`UPDATE jobs SET state = 'failed', finished_at = now(), last_error = 'gave up' WHERE id = ${job.id}`;
  return (await getJob(sql(), job.id))!;
}

describe('an ingest job that fails for good', () => {
  let failed: Job;

  test('is retried while its window lasts, then failed, logged at error level and counted', async () => {
    breakStorage('stranded');
    failed = await failedIngest('stranded', 30);
    expect(failed.lastError).toMatch(/not a directory|ENOTDIR|EEXIST|exists/i);
    // The binary's output reaches this process a little after the catalog says `failed`.
    for (let i = 0; i < 100 && !logLines().some((l) => l.jobId === failed.id && l.level === 'error'); i++) await Bun.sleep(50);
    const retried = logLines().filter((l) => l.jobId === failed.id && l.level === 'warn');
    expect(retried.length).toBe(failed.attempts - 1);
    const final = logLines().filter((l) => l.jobId === failed.id && l.level === 'error');
    expect(final).toEqual([expect.objectContaining({ kind: 'ingest', datasetId: failed.datasetId, attempts: failed.attempts, error: failed.lastError })]);
    expect((await scrape()).value('timestore_jobs', { queue: ts.config.ingest.queueName, kind: 'ingest', state: 'failed' })).toBe(1);
  });

  // Runs a maintenance round inside the server (the binary's rounds are covered by test/lifecycle).
  test.skipIf(againstBinary)('keeps its staged batch through an orphan sweep of age 0 and a purge of finished jobs', async () => {
    expect(existsSync(stagedPath(failed))).toBe(true);
    // An unreferenced staged file beside it is swept: the sweep did run with orphan age 0.
    const leftover = join(partitionsRoot(), 'staging', 'stranded', `${randomUUID()}.json`);
    writeFileSync(leftover, '{}');
    // A staging log written to in the last minute may still take appends: kept whatever the age.
    const [openLog, oldLog] = [0, 1].map(() => join(partitionsRoot(), 'staging', 'stranded', `log-${randomUUID()}.ndjson`)) as [string, string];
    for (const log of [openLog, oldLog]) writeFileSync(log, '{}\n');
    const twoMinutesAgo = new Date(Date.now() - 120_000);
    utimesSync(oldLog, twoMinutesAgo, twoMinutesAgo);
    await sql()`UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = ${failed.id}`;
    const result = await runMaintenance();
    expect(result.orphans.local.files).toBeGreaterThanOrEqual(2);
    expect(existsSync(leftover)).toBe(false);
    expect([existsSync(openLog), existsSync(oldLog)]).toEqual([true, false]);
    expect(existsSync(stagedPath(failed))).toBe(true);
    expect(await getJob(sql(), failed.id)).toMatchObject({ state: 'failed' });
  });

  test('is listed by GET /admin/jobs?state=failed&dataset=…, by slug or id', async () => {
    const bySlug = await call('GET', '/admin/jobs?state=failed&dataset=stranded');
    expect(bySlug.status).toBe(200);
    expect(bySlug.body).toMatchObject({
      jobs: [{ id: failed.id, kind: 'ingest', state: 'failed', attempts: failed.attempts, lastError: failed.lastError, datasetId: failed.datasetId }],
      nextCursor: null,
    });
    expect(bySlug.body.jobs[0].retryUntil).toBe(failed.retryUntil!.toISOString());
    const byId = await call('GET', `/admin/jobs?state=failed&dataset=${failed.datasetId}&kind=ingest`);
    expect(byId.body.jobs.map((j: any) => j.id)).toEqual([failed.id]);
    expect((await call('GET', '/admin/jobs?state=succeeded&dataset=stranded&kind=ingest')).body.jobs).toEqual([]);
  });

  test('POST /admin/jobs/:id/retry once storage is back: its rows land, audited', async () => {
    expect((await postJson(`${ts.url}/datasets/stranded/query`, { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' } })).body.rows ?? []).toEqual([]);
    rmSync(join(partitionsRoot(), 'datasets', 'stranded'), { force: true }); // (the sweep above took it already)
    const retried = await call('POST', `/admin/jobs/${failed.id}/retry`);
    expect(retried.status).toBe(200);
    expect(retried.body).toMatchObject({ id: failed.id, state: 'queued', attempts: 0, leaseExpiries: 0, finishedAt: null });
    const window = Date.parse(retried.body.retryUntil) - Date.parse(retried.body.runAt);
    expect(window).toBe(ts.config.jobs.retryWindowMs);

    expect(await finished(failed.id)).toMatchObject({ state: 'succeeded', attempts: 1 });
    const answer = await postJson(`${ts.url}/datasets/stranded/query`, { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' } });
    expect(answer.status).toBe(200);
    expect(answer.body.rows.length).toBe(30);
    expect(existsSync(stagedPath(failed))).toBe(false); // published: the batch is no longer needed

    const audit = await call('GET', '/admin/datasets/stranded/audit');
    expect(audit.body.events[0]).toMatchObject({
      action: 'job.retried',
      actor: 'oncall',
      details: { jobId: failed.id, kind: 'ingest', attempts: failed.attempts, lastError: failed.lastError },
    });
    expectError(await call('POST', `/admin/jobs/${failed.id}/retry`), 409, 'job_not_failed');
    expectError(await call('DELETE', `/admin/jobs/${failed.id}`), 409, 'job_not_failed');
  });

  test('DELETE /admin/jobs/:id removes the job and its staged batch, audited', async () => {
    const repair = breakStorage('doomed');
    const doomed = await failedIngest('doomed', 5);
    repair();
    const body = stagedPath(doomed);
    expect(existsSync(body)).toBe(true);
    const deleted = await call('DELETE', `/admin/jobs/${doomed.id}`);
    expect(deleted.status).toBe(200);
    expect(deleted.body).toMatchObject({ job: { id: doomed.id, state: 'failed' }, stagedBody: stagedBodyOf(doomed)! });
    expect(existsSync(body)).toBe(false);
    expect(await getJob(sql(), doomed.id)).toBeNull();
    expectError(await call('GET', `/admin/jobs/${doomed.id}`), 404, 'not_found');
    expectError(await call('DELETE', `/admin/jobs/${doomed.id}`), 404, 'not_found');
    expectError(await call('POST', `/admin/jobs/${doomed.id}/retry`), 404, 'not_found');

    const audit = await call('GET', '/admin/datasets/doomed/audit');
    expect(audit.body.events[0]).toMatchObject({
      action: 'job.deleted',
      actor: 'oncall',
      details: { jobId: doomed.id, kind: 'ingest', lastError: doomed.lastError, stagedBody: stagedBodyOf(doomed)!.location },
    });
    // The batch is gone for good: no rows, and a new failed-job list without it.
    expect((await call('GET', '/admin/jobs?state=failed&dataset=doomed')).body.jobs).toEqual([]);
  });
});

describe('operator actions that are refused', () => {
  test('a queued or running job can be neither retried nor deleted (409), an unknown one is 404', async () => {
    for (const state of ['queued', 'running'] as const) {
      const job = await idleJob(state);
      for (const [method, path] of [['POST', `/admin/jobs/${job.id}/retry`], ['DELETE', `/admin/jobs/${job.id}`]] as const) {
        const res = await call(method, path);
        expectError(res, 409, 'job_not_failed');
        expect(res.body.error.details).toEqual({ jobId: job.id, state });
      }
      expect(await getJob(sql(), job.id)).toMatchObject({ state });
    }
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      expectError(await call('POST', `/admin/jobs/${id}/retry`), 404, 'not_found');
      expectError(await call('DELETE', `/admin/jobs/${id}`), 404, 'not_found');
    }
  });

  test('a job whose staged batch is gone is not retried (409 staged_body_missing) but can be deleted', async () => {
    const target = (await findStorageTarget(sql(), 'local'))!;
    const driver = createStorageDriver(target, ts.config.s3);
    const location = driver.locationOf('staging/vanished/batch.json');
    driver.close();
    const job = await idleJob('failed', { payload: { storageTargetId: target.id, staged: { location } } });
    expectError(await call('POST', `/admin/jobs/${job.id}/retry`), 409, 'staged_body_missing');
    expect(await getJob(sql(), job.id)).toMatchObject({ state: 'failed' });
    expect((await call('DELETE', `/admin/jobs/${job.id}`)).body).toMatchObject({ stagedBody: { location } });
  });

  test('a job whose staged batch lies outside its storage target is not deleted (503 storage_unavailable naming the target)', async () => {
    const target = (await findStorageTarget(sql(), 'local'))!;
    const location = 'file:///elsewhere/staging/stray/batch.json';
    const job = await idleJob('failed', { payload: { storageTargetId: target.id, staged: { location } } });
    const res = await call('DELETE', `/admin/jobs/${job.id}`);
    expectError(res, 503, 'storage_unavailable');
    expect(res.body.error.message).toContain(`${location} on target "local"`);
    expect(res.body.error.details).toEqual({ target: 'local' });
    expect(await getJob(sql(), job.id)).toMatchObject({ state: 'failed' });
  });

  test('a job whose key another queued job holds is not retried (409 job_key_busy)', async () => {
    const failed = await idleJob('failed', { jobKey: 'singleton' });
    await idleJob('queued', { jobKey: 'singleton' });
    expectError(await call('POST', `/admin/jobs/${failed.id}/retry`), 409, 'job_key_busy');
    expect(await getJob(sql(), failed.id)).toMatchObject({ state: 'failed' });
  });
});

describe('GET /admin/jobs', () => {
  test('pages through the failed jobs of a kind without gaps or repeats; bad input is a 4xx', async () => {
    const jobs: Job[] = [];
    for (let i = 0; i < 5; i++) jobs.push(await idleJob('failed', { kind: 'paged' }));
    // The listing's order: creation time to the millisecond, then id (jobs made within one
    // millisecond come in id order).
    const made = jobs
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((j) => j.id);
    await idleJob('queued', { kind: 'paged' });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await call('GET', `/admin/jobs?state=failed&kind=paged&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.status).toBe(200);
      expect(res.body.jobs.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.jobs.map((j: any) => j.id));
      cursor = res.body.nextCursor;
      pages += 1;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(made);
    expect((await call('GET', '/admin/jobs?kind=paged')).body.jobs.length).toBe(6);

    expectError(await call('GET', '/admin/jobs?cursor=bm9wZQ'), 400, 'invalid_cursor');
    expectError(await call('GET', '/admin/jobs?dataset=no-such-dataset'), 404, 'not_found');
    expectError(await call('GET', '/admin/jobs?state=lost'), 400, 'validation_failed');
    expectError(await call('GET', '/admin/jobs?limit=0'), 400, 'validation_failed');
  });
});

describe('/metrics', () => {
  test('counts failed jobs and jobs overdue (due, or past their lease, for 5 minutes) per queue and kind', async () => {
    const kind = 'gauged';
    const labels = { queue: IDLE, kind };
    for (let i = 0; i < 2; i++) await idleJob('failed', { kind });
    const late = await idleJob('queued', { kind });
    await idleJob('queued', { kind }); // due now: not overdue
    let m = await scrape();
    expect(m.value('timestore_jobs', { ...labels, state: 'failed' })).toBe(2);
    expect(m.value('timestore_jobs_overdue', labels)).toBe(0);
    expect(m.value('timestore_jobs_overdue', { queue: ts.config.ingest.queueName, kind: 'ingest' })).toBe(0);

    await sql()`UPDATE jobs SET run_at = now() - interval '6 minutes' WHERE id = ${late.id}`;
    const stuck = await idleJob('running', { kind });
    await sql()`UPDATE jobs SET locked_until = now() - interval '6 minutes' WHERE id = ${stuck.id}`;
    m = await scrape();
    expect(m.value('timestore_jobs_overdue', labels)).toBe(2);
    expect(m.value('timestore_jobs', { ...labels, state: 'queued' })).toBe(2);
  });
});
