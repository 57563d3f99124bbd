/**
 * Group commit of jobs (src/ingest/job-groups.ts) on a real PostgreSQL: jobs of one dataset that
 * arrive while an insert of theirs is in flight go together in the next statement, which holds only
 * while the dataset's row is still the one they were checked on; a failed statement fails each of
 * its jobs, and the next ones go on.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import type { Catalog } from '../../src/catalog/connection.ts';
import { createDataset, getDataset, updateDataset } from '../../src/catalog/datasets.ts';
import { getJob, type JobNotification, JOBS_CHANNEL, type NewJob, parseJobNotification } from '../../src/catalog/job-table.ts';
import { JobGroups } from '../../src/ingest/job-groups.ts';
import { openTestCatalog } from '../harness/catalog.ts';
import { createTestDatabase } from '../harness/postgres.ts';

let catalog: Catalog;
let seq = 0;

beforeAll(async () => {
  catalog = await openTestCatalog({ databaseUrl: await createTestDatabase('job_groups') });
});
afterAll(() => catalog.close());

const jobOf = (datasetId: string, n: number): NewJob => ({ queue: 'ingest-groups', kind: 'ingest', datasetId, payload: { n } });

test('jobs arriving while an insert is in flight share the next statement; each gets its own job', async () => {
  const dataset = await createDataset(catalog.sql, { slug: `groups-${++seq}` });
  const groups = new JobGroups(catalog.sql);
  const jobs = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => groups.enqueue(jobOf(dataset.id, n), dataset)));
  expect(jobs.map((j) => (j?.payload as { n: number }).n)).toEqual([1, 2, 3, 4, 5, 6]);
  for (const job of jobs) expect(await getJob(catalog.sql, job!.id)).toEqual(job);
  // The first went at once and alone; the five that came during it, together: one transaction's now().
  const statements = new Set(jobs.map((j) => j!.createdAt.getTime()));
  expect(statements.size).toBe(2);
  expect(jobs[0]!.createdAt).not.toEqual(jobs[1]!.createdAt);
  expect(new Set(jobs.slice(1).map((j) => j!.createdAt.getTime())).size).toBe(1);
});

test('none of the jobs is inserted once the dataset row is no longer the one they were checked on', async () => {
  const checked = await createDataset(catalog.sql, { slug: `groups-${++seq}` });
  await updateDataset(catalog.sql, checked.id, { status: 'inactive' });
  const groups = new JobGroups(catalog.sql);
  const jobs = await Promise.all([1, 2, 3].map((n) => groups.enqueue(jobOf(checked.id, n), checked)));
  expect(jobs).toEqual([null, null, null]);
  const [row] = await catalog.sql<{ count: number }[]>`SELECT count(*)::int AS count FROM jobs WHERE dataset_id = ${checked.id}`;
  expect(row?.count).toBe(0);
  // Checked on the row as it is now, a job goes in.
  const current = await getDataset(catalog.sql, checked.id);
  expect(await groups.enqueue(jobOf(checked.id, 4), current)).not.toBeNull();
});

test('a statement that fails fails each of its jobs, and the jobs after it go on', async () => {
  const dataset = await createDataset(catalog.sql, { slug: `groups-${++seq}` });
  const groups = new JobGroups(catalog.sql);
  // PostgreSQL's jsonb holds no U+0000: a payload with one fails the statement it is in.
  const bad: NewJob = { ...jobOf(dataset.id, 0), payload: { text: 'a\u0000b' } };
  const outcomes = await Promise.allSettled([
    groups.enqueue(jobOf(dataset.id, 1), dataset), // alone
    groups.enqueue(jobOf(dataset.id, 2), dataset), // with the bad one
    groups.enqueue(bad, dataset),
    groups.enqueue(jobOf(dataset.id, 3), dataset),
  ]);
  expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'rejected']);
  const after = await groups.enqueue(jobOf(dataset.id, 4), dataset);
  expect((after?.payload as { n: number }).n).toBe(4);
  const rows = await catalog.sql<{ n: number }[]>`SELECT (payload->>'n')::int AS n FROM jobs WHERE dataset_id = ${dataset.id} ORDER BY 1`;
  expect(rows.map((r) => r.n)).toEqual([1, 4]);
});

test('other processes hear of the jobs inserted within the notice interval in one notification, not from each insert', async () => {
  const dataset = await createDataset(catalog.sql, { slug: `groups-${++seq}` });
  const heard: JobNotification[] = [];
  const { unlisten } = await catalog.sql.listen(JOBS_CHANNEL, (text) => {
    const notification = parseJobNotification(text);
    if (notification.jobs?.some((job) => job.datasetId === dataset.id)) heard.push(notification);
  });
  try {
    // Nothing where nobody can listen (the embedded catalog): not from the inserts either.
    const quiet = await Promise.all([1, 2, 3].map((n) => new JobGroups(catalog.sql).enqueue(jobOf(dataset.id, n), dataset)));
    expect(quiet.every((job) => job !== null)).toBe(true);
    await Bun.sleep(300);
    expect(heard).toEqual([]);

    // An interval long enough for both inserts, however slow the machine.
    const groups = new JobGroups(catalog.sql, { notify: true, noticeIntervalMs: 1_000 });
    const jobs = await Promise.all([4, 5, 6, 7, 8, 9].map((n) => groups.enqueue(jobOf(dataset.id, n), dataset)));
    expect(new Set(jobs.map((j) => j!.createdAt.getTime())).size).toBe(2); // two inserts
    const deadline = Date.now() + 5_000;
    while (heard.flatMap((n) => n.jobs!).length < jobs.length && Date.now() < deadline) await Bun.sleep(10);
    expect(heard.flatMap((n) => n.jobs!)).toEqual(jobs.map((j) => ({ kind: 'ingest', datasetId: dataset.id, payload: j!.payload })));
    expect(heard.every((n) => n.queue === 'ingest-groups' && n.notifier === catalog.notifier)).toBe(true);
    expect(heard.length).toBe(1);
  } finally {
    await unlisten();
  }
});
