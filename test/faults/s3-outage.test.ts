/**
 * The S3 server (radosgw) stopped for longer than the old 15 s retry window while batches are
 * acknowledged onto an S3 target, then started again: every acknowledged row becomes queryable,
 * none twice. While S3 is down new batches are refused with 503 storage_unavailable (nothing is
 * acknowledged that could not be staged) and jobs acknowledged before the outage retry.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { countRows, runLoad, settle } from '../harness/ingest-load.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { type ProcessUnderTest, startProcessUnderTest } from '../harness/process-under-test.ts';
import { createBucket, s3Available, type S3Server, s3ServerEnv, startS3Server } from '../harness/s3.ts';

const BATCHES = 120;
const ROWS = 200;
const OUTAGE_MS = 25_000;

let s3: S3Server | undefined;
let server: ProcessUnderTest | undefined;

beforeAll(async () => {
  if (s3Available()) s3 = await startS3Server();
}, 180_000);
afterAll(async () => {
  await server?.stop();
  await s3?.stop();
});

describe.skipIf(!s3Available())('an S3 outage during ingest', () => {
  test(`radosgw down for ${OUTAGE_MS / 1000} s: 0 rows lost, 0 duplicated`, async () => {
    server = await startProcessUnderTest({
      TIMESTORE_DATABASE_URL: await createTestDatabase('s3outage'),
      ...s3ServerEnv(s3!, await createBucket(s3!, 'outage')),
      TIMESTORE_WORKER_THREADS: '1',
      // Retries come back quickly once S3 does; the window stays the default (hours).
      TIMESTORE_JOB_RETRY_MAX_DELAY_SECONDS: '2',
    });
    const running = server;
    let outage: Promise<void> | undefined;
    let down = false;
    const report = await runLoad({
      url: running.url,
      slug: 'outage',
      batches: BATCHES,
      rowsPerBatch: ROWS,
      clients: 4,
      onAcknowledged: (count) => {
        // Right after a burst of acknowledgements, so some of their jobs are still to be written.
        if (count !== 30 || outage) return;
        down = true;
        outage = s3!
          .halt()
          .then(() => Bun.sleep(OUTAGE_MS))
          .then(() => s3!.resume())
          .finally(() => {
            down = false;
          });
      },
    });
    await outage;
    expect(down).toBe(false);

    const states = await settle(running.catalog!.sql, 'outage');
    const counted = await countRows(running.url, 'outage');
    const [retried] = await running.catalog!.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM jobs WHERE kind = 'ingest' AND attempts > 1`;
    console.log(
      `s3-outage: ${BATCHES} batches × ${ROWS} rows, ${OUTAGE_MS / 1000} s outage, ${report.requests} requests, ` +
        `refusals ${JSON.stringify([...report.refusals])}, jobs ${JSON.stringify(states)}, retried jobs ${retried!.n}, ` +
        `rows ${counted.rows}/${BATCHES * ROWS}, duplicates ${counted.rows - counted.distinct}`,
    );
    expect(report.acknowledged).toBe(BATCHES);
    expect(report.refusals.get('503 storage_unavailable') ?? 0).toBeGreaterThan(0);
    expect([...report.refusals.keys()].filter((k) => k.startsWith('500'))).toEqual([]);
    expect(states.failed ?? 0).toBe(0);
    expect(counted).toEqual({ rows: BATCHES * ROWS, distinct: BATCHES * ROWS });
  }, 300_000);
});
