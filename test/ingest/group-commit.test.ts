/**
 * Group commit through HTTP (src/ingest/staging-groups.ts): small JSON and NDJSON batches sent at
 * once are staged together, several to one object with each job naming its byte range (on local
 * disk, a staging log); every row is written exactly once, whether a write has all the batches of
 * an object (and reads it whole) or some (and copies their ranges out); and the shared objects are
 * gone once their batches are published. On local disk and on S3 (radosgw).
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createBucket, s3AdminClient, s3Available, s3ServerEnv, startS3Server, type S3Server } from '../harness/s3.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'seq', type: 'integer' },
];
const BATCHES = 48;
const ROWS = 20;
// One write at a time: a shared object's last batch is then always published after the others
// are marked done, so the write that publishes it deletes it (two writes finishing together may
// both leave it to the orphan sweep).
const ONE_WRITER = { TIMESTORE_INGEST_CONCURRENCY: '1' };

const rowsOf = (batch: number) =>
  Array.from({ length: ROWS }, (_, i) => ({ timestamp: new Date(Date.UTC(2026, 4, 1) + (batch * ROWS + i) * 1000).toISOString(), seq: batch * ROWS + i }));

/**
 * Creates the dataset, then sends BATCHES small batches at once: JSON documents on one line, JSON
 * documents spread over lines, and NDJSON (the last without its final line break), in turn.
 */
async function sendAtOnce(ts: TestServer, slug: string): Promise<string[]> {
  const document = (batch: number) => ({ schema: { fields: FIELDS }, partition: { key: {} }, rows: rowsOf(batch) });
  const created = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, document(0));
  expect(created.status).toBe(201);
  const answers = await Promise.all(
    Array.from({ length: BATCHES - 1 }, async (_, k) => {
      const batch = k + 1;
      const [contentType, body] =
        batch % 3 === 0
          ? ['application/json', JSON.stringify(document(batch))]
          : batch % 3 === 1
            ? ['application/json', JSON.stringify(document(batch), null, 2)]
            : ['application/x-ndjson', rowsOf(batch).map((r) => JSON.stringify(r)).join('\n') + (batch === BATCHES - 1 ? '' : '\n')];
      const res = await fetch(`${ts.url}/datasets/${slug}/ingest`, { method: 'POST', headers: { 'content-type': contentType }, body });
      return { status: res.status, body: (await res.json()) as { jobId: string } };
    }),
  );
  expect(answers.map((a) => a.status)).toEqual(Array(BATCHES - 1).fill(202));
  return answers.map((a) => a.body.jobId);
}

async function waitForJobs(ts: TestServer, ids: string[]): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const [row] = await ts.sql<{ done: number; failed: number }[]>`
      SELECT count(*) FILTER (WHERE state = 'succeeded')::int AS done, count(*) FILTER (WHERE state = 'failed')::int AS failed
      FROM jobs WHERE id = ANY(${ids}::uuid[])`;
    if (row!.failed > 0) throw new Error(`${row!.failed} jobs failed`);
    if (row!.done === ids.length) return;
    await Bun.sleep(100);
  }
  throw new Error('jobs not finished in 60 s');
}

/** Every row once, and how many of the batches were staged as ranges of shared objects (and in how many objects). */
async function check(ts: TestServer, slug: string, ids: string[]) {
  const answer = await postJson(`${ts.url}/datasets/${slug}/query`, {
    timeRange: { start: '2026-05-01T00:00:00Z', end: '2026-05-02T00:00:00Z' },
    columns: ['seq'],
    limit: 10_000,
  });
  expect(answer.status).toBe(200);
  expect(answer.body.rows.map((r: { seq: number }) => r.seq)).toEqual(Array.from({ length: BATCHES * ROWS }, (_, i) => i));
  const [shared] = await ts.sql<{ batches: number; objects: number; logs: number }[]>`
    SELECT count(*)::int AS batches, count(DISTINCT payload -> 'staged' ->> 'location')::int AS objects,
      count(DISTINCT payload -> 'staged' ->> 'location') FILTER (WHERE payload -> 'staged' ->> 'location' LIKE '%/log-%')::int AS logs
    FROM jobs WHERE id = ANY(${ids}::uuid[]) AND payload -> 'staged' ? 'range'`;
  return shared!;
}

const SENT_AT_ONCE = 'batches sent at once share staged objects, are written once each, and leave no staged object behind';

/**
 * The test of each storage: `stagedObjects` counts what is left under `staging/`; `logs` says
 * whether the target's groups go to staging logs (local disk) or to objects of their own (S3).
 */
async function sentAtOnce(ts: TestServer, stagedObjects: () => Promise<number>, logs: boolean): Promise<void> {
  const ids = await sendAtOnce(ts, 'grouped');
  await waitForJobs(ts, ids);
  const shared = await check(ts, 'grouped', ids);
  // Dozens of requests at once on two cores: most find the writes in flight and wait for the next.
  expect(shared.batches).toBeGreaterThan(shared.objects);
  expect(shared.logs).toBe(logs ? shared.objects : 0);
  // A staging log goes once it is closed (after STAGING_LOG_OPEN_MS) and its batches are written.
  for (let i = 0; i < 50 && (await stagedObjects()) > 0; i++) await Bun.sleep(100);
  expect(await stagedObjects()).toBe(0);
}

describe.each([
  ['writes that take every queued batch', {}],
  // At most 1 KiB of staged bodies per write: one batch each, so each shared object's batches
  // are written apart.
  ['writes of one batch each', { TIMESTORE_INGEST_COALESCE_MAX_BYTES: '1024' }],
])('on local disk, %s', (_, env) => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({ ...ONE_WRITER, ...env });
  }, 60_000);
  afterAll(async () => {
    await ts?.stop();
  });

  test(SENT_AT_ONCE, async () => {
    const staging = join(ts.config.storageRoot, 'staging', 'grouped');
    await sentAtOnce(ts, async () => (existsSync(staging) ? readdirSync(staging).length : 0), true);
  }, 120_000);

  test('a batch acknowledged on its staging log record before its job row exists: its job is there to ask for at once', async () => {
    const ids = await sendAtOnce(ts, 'asked-at-once');
    const asked = await Promise.all(ids.map(async (id) => (await fetch(`${ts.url}/ingestion/jobs/${id}`)).status));
    expect(asked).toEqual(ids.map(() => 200));
    // Some of them were acknowledged so: their log has a mark, moved by their job rows' inserts.
    const [marked] = await ts.sql<{ logs: number }[]>`SELECT count(*)::int AS logs FROM staging_log_progress WHERE location LIKE '%/staging/asked-at-once/log-%'`;
    expect(marked!.logs).toBeGreaterThan(0);
    await waitForJobs(ts, ids);
  }, 120_000);
});

describe.skipIf(!s3Available())('on S3', () => {
  let s3: S3Server;
  let admin: S3Client;
  let bucket = '';
  let ts: TestServer;
  beforeAll(async () => {
    s3 = await startS3Server();
    admin = s3AdminClient(s3);
    bucket = await createBucket(s3, 'timestore-group-commit');
    ts = await startTestServer({ ...s3ServerEnv(s3, bucket), ...ONE_WRITER });
  }, 120_000);
  afterAll(async () => {
    await ts?.stop();
    admin?.destroy();
    await s3?.stop();
  });

  test(SENT_AT_ONCE, async () => {
    await sentAtOnce(ts, async () => (await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'staging/' }))).KeyCount ?? 0, false);
  }, 120_000);
});
