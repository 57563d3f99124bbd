/**
 * Poison isolation: batches that cannot be written, claimed together with good ones, fail alone
 * with their reason while every good batch lands (each row once); a failure of the moment
 * (a deadlock in the publish) fails the whole claim unsplit, and it retries.
 *
 * The batches that cannot be written are inserted as jobs directly (staged body + job row), not
 * through the HTTP route, so the test keeps its meaning however strict validation becomes: it is
 * about what the writer does when a write fails, whatever let the batch in.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { findDataset } from '../../src/catalog/datasets.ts';
import { enqueueJob, getJob } from '../../src/catalog/job-table.ts';
import { findStorageTarget } from '../../src/catalog/storage-targets.ts';
import type { Db } from '../../src/catalog/db.ts';
import type { Dataset } from '../../src/model/records.ts';
import { INGEST_JOB_KIND, type IngestJobPayload } from '../../src/ingest/accept.ts';
import { createStorageDriver, type StorageDriver } from '../../src/storage/index.ts';
import { createLogger } from '../../src/log.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';
import { holdDatasetLock } from '../harness/catalog.ts';

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'seq', type: 'integer' },
];
const RANGE = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };

let ts: TestServer;
let driver: StorageDriver;
const sql = () => ts.sql;

beforeAll(async () => {
  // One ingest slot: a job held in its publish keeps the next ones queued, to be claimed together.
  ts = await startTestServer({ TIMESTORE_INGEST_CONCURRENCY: '1' }, process.env.DEBUG_LOG ? { log: createLogger('debug') } : {});
  driver = createStorageDriver((await findStorageTarget(sql(), 'local'))!, ts.config.s3);
}, 60_000);
afterAll(async () => {
  driver?.close();
  await ts?.stop();
});

const rows = (seq0: number, count: number) =>
  Array.from({ length: count }, (_, i) => ({ timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, seq0 + i)).toISOString(), host: 'h', seq: seq0 + i }));

async function ingest(slug: string, seq0: number, count: number, wait = false): Promise<string> {
  const res = await postJson(`${ts.url}/datasets/${slug}/ingest${wait ? '?wait=true' : ''}`, { schema: { fields: FIELDS }, partition: { key: {} }, rows: rows(seq0, count) });
  expect(res.status).toBe(wait ? 201 : 202);
  return wait ? res.body.id : res.body.jobId;
}

/** A job whose staged body is `body` (or, with null, a body that was never stored), as acceptance would queue it. */
async function insertJob(dataset: Dataset, body: unknown | null, rowCount = 1, db: Db = sql()): Promise<string> {
  const key = `staging/${dataset.slug}/${crypto.randomUUID()}.json`;
  const staged = body === null
    ? { location: driver.locationOf(key), sizeBytes: 0 }
    : await driver.putBytes(key, new TextEncoder().encode(JSON.stringify(body)));
  const payload: IngestJobPayload = {
    datasetSlug: dataset.slug,
    schemaVersion: dataset.schemaVersion,
    partitionKey: {},
    storageTargetId: (await findStorageTarget(sql(), 'local'))!.id,
    staged: { location: staged.location, format: 'json-document', sizeBytes: staged.sizeBytes },
    rowCount,
    minTime: '2026-01-01T00:00:00.000Z',
    maxTime: '2026-01-01T00:00:00.000Z',
  };
  const { job } = await enqueueJob(db, { queue: ts.config.ingest.queueName, kind: INGEST_JOB_KIND, datasetId: dataset.id, payload });
  return job.id;
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await Bun.sleep(50);
  }
}

const stateOf = async (id: string) => (await getJob(sql(), id))!.state;
const jobsOf = async (ids: string[]) => Promise.all(ids.map(async (id) => (await getJob(sql(), id))!));
const settled = (ids: string[]) => until(async () => (await jobsOf(ids)).every((j) => j.state === 'succeeded' || j.state === 'failed'), 'the jobs finished');

async function seqsOf(slug: string): Promise<number[]> {
  const res = await postJson(`${ts.url}/datasets/${slug}/query`, { timeRange: RANGE, columns: ['seq'], limit: 100_000 });
  expect(res.status).toBe(200);
  return res.body.rows.map((r: { seq: number }) => r.seq).sort((a: number, b: number) => a - b);
}

const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);

describe('a batch that cannot be written, coalesced with good ones', () => {
  test('fails alone with its reason; every good batch lands once, in the same claim', async () => {
    await ingest('poisoned', 0, 5, true);
    const dataset = (await findDataset(sql(), 'poisoned'))!;

    // The first queued batch is claimed alone and waits in its publish while the lock is held.
    const lock = await holdDatasetLock(sql(), dataset.id);
    const leader = await ingest('poisoned', 100, 10);
    await until(async () => (await stateOf(leader)) === 'running', 'the first batch is claimed');

    const good: string[] = [];
    for (let i = 0; i < 3; i++) good.push(await ingest('poisoned', 1000 + i * 100, 20 + i));
    // DuckDB cannot read it: a timestamp that is no time.
    const unreadable = await insertJob(dataset, { rows: [{ timestamp: 'not a time', host: 'h', seq: -1 }] });
    // DuckDB writes it, the catalog refuses it: the instant, after its offset, is in year 0.
    const outOfRange = await insertJob(dataset, { rows: [{ timestamp: '0001-01-01T00:30:00+01:00', host: 'h', seq: -2 }] });
    // Its staged body is gone.
    const missing = await insertJob(dataset, null);
    for (let i = 3; i < 6; i++) good.push(await ingest('poisoned', 1000 + i * 100, 20 + i));
    const poisoned = [unreadable, outOfRange, missing];
    for (const job of await jobsOf([...good, ...poisoned])) expect(job.state).toBe('queued');

    await lock.release();
    await settled([leader, ...good, ...poisoned]);

    const [unreadableJob, outOfRangeJob, missingJob] = await jobsOf(poisoned);
    for (const job of [unreadableJob!, outOfRangeJob!, missingJob!]) {
      expect(job).toMatchObject({ state: 'failed', attempts: 1 }); // failed for good, without retries
      expect(job.lastError).toStartWith('the batch cannot be written: ');
    }
    expect(unreadableJob!.lastError).toContain('writing Parquet failed');
    expect(unreadableJob!.lastError).toContain('not a time');
    expect(outOfRangeJob!.lastError).toContain('publishing the manifest version failed');
    expect(outOfRangeJob!.lastError).toContain('out of range');
    expect(missingJob!.lastError).toContain('reading the staged batch failed');
    // A failed batch keeps its staged body (for an operator to look at, or to retry).
    expect(await driver.exists((unreadableJob!.payload as IngestJobPayload).staged.location)).toBe(true);

    const written = await jobsOf([leader, ...good]);
    for (const job of written) expect(job).toMatchObject({ state: 'succeeded', attempts: 1 });
    // The good batches were claimed together with the three that fail.
    for (const job of written.slice(1)) expect((job.result as { claimedJobs: number }).claimedJobs).toBe(good.length + poisoned.length);

    const expected = [...range(0, 5), ...range(100, 10), ...range(0, 6).flatMap((i) => range(1000 + i * 100, 20 + i))];
    expect(await seqsOf('poisoned')).toEqual(expected.sort((a, b) => a - b));
  }, 120_000);
});

describe('a failure of the moment', () => {
  test('fails the whole claim unsplit; it is retried and every row lands once', async () => {
    await ingest('interrupted', 0, 3, true);
    const dataset = (await findDataset(sql(), 'interrupted'))!;
    const datasetLock = await holdDatasetLock(sql(), dataset.id);
    // Queued in one transaction: the runner claims all four together.
    const ids = await sql().begin(async (tx) => {
      const out: string[] = [];
      for (let i = 0; i < 4; i++) out.push(await insertJob(dataset, { rows: rows(100 + i * 10, 5) }, 5, tx));
      return out;
    });
    const lockWaits = async () =>
      (await sql()<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)[0]!.n;
    await until(async () => (await lockWaits()) === 1, 'the publish waits for the dataset lock');
    for (const job of await jobsOf(ids)) expect(job.state).toBe('running');

    // A deadlock, a catalog failure that says nothing about the data: a second transaction holds
    // the job rows the publish completes at its end, then asks for the dataset row and waits behind
    // the publish. Released, the publish takes the dataset row and closes the cycle when it asks
    // for the job rows. PostgreSQL checks each waiter once, deadlock_timeout after it began to
    // wait; the rival's check is put off, so the publish is the one it cancels (were the rival's
    // check first, or the cycle closed after the publish's check, the rival would be).
    let jobsLocked!: (pid: number) => void;
    const jobsHeld = new Promise<number>((r) => (jobsLocked = r));
    const rival = sql().begin(async (tx) => {
      await tx`SET LOCAL deadlock_timeout = '60s'`;
      await tx`SELECT id FROM jobs WHERE id IN ${tx(ids)} FOR UPDATE`;
      jobsLocked((await tx<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]!.pid);
      await tx`SELECT id FROM datasets WHERE id = ${dataset.id} FOR UPDATE`;
    });
    const rivalPid = await jobsHeld;
    const rivalWaits = async () => (await sql()`SELECT 1 FROM pg_stat_activity WHERE pid = ${rivalPid} AND wait_event_type = 'Lock'`).length === 1;
    await until(rivalWaits, 'the rival waits for the dataset row too');
    await datasetLock.release();
    await rival;
    await settled(ids);

    for (const job of await jobsOf(ids)) {
      // One failed attempt each (the claim was not split into single writes), then success.
      expect(job).toMatchObject({ state: 'succeeded', attempts: 2 });
      expect(job.lastError).toContain('publishing the manifest version failed: deadlock detected');
    }
    expect(await seqsOf('interrupted')).toEqual([...range(0, 3), ...range(0, 4).flatMap((i) => range(100 + i * 10, 5))]);
  }, 120_000);
});
