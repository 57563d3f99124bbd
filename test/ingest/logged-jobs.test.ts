/**
 * Replaying a staging log (src/ingest/logged-jobs.ts) on a real PostgreSQL and a real local disk:
 * the jobs of batches acknowledged on their records are inserted once, from the records past the
 * log's mark only (those before it had rows, which may be purged since), up to a torn record.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Catalog } from '../../src/catalog/connection.ts';
import { createDataset } from '../../src/catalog/datasets.ts';
import { enqueueLoggedJobs, getJob, type NewJob } from '../../src/catalog/job-table.ts';
import { jobOfRecord } from '../../src/ingest/accept.ts';
import { JobGroups } from '../../src/ingest/job-groups.ts';
import { LoggedJobs } from '../../src/ingest/logged-jobs.ts';
import { readStagingLogRecords, stagingLogRecord } from '../../src/model/staging-log-records.ts';
import { LocalStorageDriver, StorageDrivers } from '../../src/storage/index.ts';
import { openTestCatalog, silentLog } from '../harness/catalog.ts';
import { createTestDatabase } from '../harness/postgres.ts';

let catalog: Catalog;
let root: string;
let driver: LocalStorageDriver;
let replays: LoggedJobs;
let seq = 0;

beforeAll(async () => {
  catalog = await openTestCatalog({ databaseUrl: await createTestDatabase('logged_jobs') });
  root = mkdtempSync(join(tmpdir(), 'timestore-logged-jobs-'));
  driver = new LocalStorageDriver('local', { root });
  replays = new LoggedJobs({ sql: catalog.sql, drivers: new StorageDrivers(null), jobs: new JobGroups(catalog.sql), wake: () => {}, log: silentLog });
});
afterAll(async () => {
  await catalog.close();
  rmSync(root, { recursive: true, force: true });
});

const text = (s: string) => new TextEncoder().encode(s);
/** A job as accept.ts writes it into a record: with an id, without its body's place. */
const loggedJob = (datasetId: string, n: number): NewJob & { id: string } => ({
  id: crypto.randomUUID(),
  queue: 'logged-test',
  kind: 'ingest',
  datasetId,
  payload: { n, staged: { format: 'ndjson', sizeBytes: 8 } },
});

/** A log holding a record for each job, then the first bytes of one more (a torn append). */
async function writeLog(jobs: NewJob[]): Promise<{ location: string; bytes: Uint8Array }> {
  const log = await driver.openLog(`staging/ds/log-${++seq}.ndjson`);
  for (const [i, job] of jobs.entries()) await log.append(stagingLogRecord(text(`{"n":${i}}\n`), job));
  await log.append([stagingLogRecord(text('{"n":"torn"}\n'), { id: 'torn' })[0]!.subarray(0, 20)]);
  await log.close();
  return { location: log.location, bytes: await driver.read(log.location) };
}

test('a replay inserts the job of every whole record once, each naming its body in the log', async () => {
  const dataset = await createDataset(catalog.sql, { slug: `logged-${++seq}` });
  const jobs = [1, 2, 3].map((n) => loggedJob(dataset.id, n));
  const { location, bytes } = await writeLog(jobs);
  expect(await replays.replay(driver, location)).toBe(3);
  const records = readStagingLogRecords(bytes);
  for (const [i, job] of jobs.entries()) {
    const row = await getJob(catalog.sql, job.id);
    expect(row?.state).toBe('queued');
    const staged = (row!.payload as { staged: { location: string; range: { offset: number; length: number } } }).staged;
    expect(staged.location).toBe(location);
    expect(staged.range).toEqual({ offset: records[i]!.offset, length: records[i]!.length });
    expect(new TextDecoder().decode(bytes.subarray(staged.range.offset, staged.range.offset + staged.range.length))).toBe(`{"n":${i}}\n`);
  }
  // Again: every job has its row, and the mark is past them all.
  expect(await replays.replay(driver, location)).toBe(0);
});

test('records before the mark are not replayed, even once their jobs are gone; a job whose dataset is gone is not inserted', async () => {
  const dataset = await createDataset(catalog.sql, { slug: `logged-${++seq}` });
  const jobs = [1, 2, 3].map((n) => loggedJob(dataset.id, n));
  const gone = loggedJob(crypto.randomUUID(), 4);
  const { location, bytes } = await writeLog([...jobs, gone]);
  const records = readStagingLogRecords(bytes);
  // The process that appended them inserted the first job, with the mark after its record; the job
  // then succeeded and was purged.
  await enqueueLoggedJobs(catalog.sql, location, records[0]!.end, [jobOfRecord(jobs[0]!, location, records[0]!)]);
  await catalog.sql`DELETE FROM jobs WHERE id = ${jobs[0]!.id}`;
  expect(await replays.replay(driver, location)).toBe(2);
  expect(await getJob(catalog.sql, jobs[0]!.id)).toBeNull();
  expect((await getJob(catalog.sql, jobs[1]!.id))?.state).toBe('queued');
  expect((await getJob(catalog.sql, jobs[2]!.id))?.state).toBe('queued');
  expect(await getJob(catalog.sql, gone.id)).toBeNull();
  const [mark] = await catalog.sql<{ through: string }[]>`SELECT jobs_through::text AS through FROM staging_log_progress WHERE location = ${location}`;
  expect(Number(mark!.through)).toBe(records[3]!.end);
});
