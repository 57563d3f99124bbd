/** Ingestion onto an S3 target (a real radosgw) and onto a second target of the same server. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { getStorageTarget } from '../../src/catalog/storage-targets.ts';
import { StorageDrivers } from '../../src/storage/index.ts';
import { testDuckDB } from '../harness/duckdb.ts';
import { createBucket, s3AdminClient, s3Available, s3ServerEnv, startS3Server, type S3Server } from '../harness/s3.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

// Under CI the S3 server must be there: the suite runs and fails loudly if it cannot start.
const skip = !process.env.CI && !s3Available();

let s3: S3Server;
let ts: TestServer;
let admin: S3Client;
let bucket = '';

beforeAll(async () => {
  if (skip) return;
  s3 = await startS3Server();
  admin = s3AdminClient(s3);
  bucket = await createBucket(s3, 'timestore-ingest');
  ts = await startTestServer({
    ...s3ServerEnv(s3, bucket),
  });
}, 120_000);

afterAll(async () => {
  await ts?.stop();
  admin?.destroy();
  await s3?.stop();
});

const rows = Array.from({ length: 20 }, (_, i) => ({
  timestamp: new Date(Date.UTC(2026, 2, 1, 23, 50) + i * 60_000).toISOString(), // crosses midnight: two windows
  value: i * 1.5,
  host: `h${i % 3}`,
}));
const body = (extra: Record<string, unknown> = {}) => ({
  schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'value', type: 'double' }, { name: 'host', type: 'string' }] },
  partition: { key: { site: 'north' } },
  rows,
  ...extra,
});

async function readBackFromS3(locations: string[]): Promise<unknown[]> {
  const sql = ts.sql;
  const drivers = new StorageDrivers(ts.config.s3);
  const driver = drivers.forTarget(await getStorageTarget(sql, 's3'));
  const dir = mkdtempSync(join(tmpdir(), 'ts-s3-read-'));
  const paths = await Promise.all(locations.map((loc, i) => driver.materialize(loc, join(dir, `${i}.parquet`))));
  drivers.close();
  const reader = await (await testDuckDB()).runAndReadAll(
    `SELECT strftime(timestamp AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%gZ') AS timestamp, value, host
     FROM read_parquet([${paths.map((p) => `'${p}'`).join(', ')}]) ORDER BY timestamp`,
  );
  return reader.getRowObjectsJson();
}

describe.skipIf(skip)('ingest onto S3', () => {
  test('partitions land in the bucket as s3:// locations, one per window, and read back row for row; the staged body is removed', async () => {
    const res = await postJson(`${ts.url}/datasets/remote/ingest`, body(), { prefer: 'wait=30' });
    expect(res.status).toBe(201);
    const done = await postJson(`${ts.url}/datasets/remote/ingest`, body({ rows: rows.slice(0, 1).map((r) => ({ ...r, timestamp: '2026-03-03T00:00:00Z' })) }), { prefer: 'wait=30' });
    expect(done.status).toBe(201);

    const sql = ts.sql;
    const partitions = await sql<{ location: string; rowCount: number }[]>`
      SELECT p.location, p.row_count FROM partitions p JOIN datasets d ON d.id = p.dataset_id
      WHERE d.slug = 'remote' AND p.removed_version IS NULL ORDER BY p.start_time`;
    expect(partitions.map((p) => p.rowCount)).toEqual([10, 10, 1]);
    for (const p of partitions) expect(p.location).toStartWith(`s3://${bucket}/datasets/remote/site=north/`);
    expect(await readBackFromS3(partitions.slice(0, 2).map((p) => p.location))).toEqual(rows);

    const staged = await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'staging/' }));
    expect(staged.KeyCount ?? 0).toBe(0);
  });

  test('a batch may name another target: storageTargetId "local" writes to local disk on the same server', async () => {
    const res = await postJson(`${ts.url}/datasets/mixed/ingest`, body({ storageTargetId: 'local' }), { prefer: 'wait=30' });
    expect(res.status).toBe(201);
    for (const p of res.body.result.partitions) expect(p.location).toStartWith(`file://${ts.config.storageRoot}/partitions/`);
  });

  test('an unknown storage target is a 404 and stores nothing', async () => {
    const res = await postJson(`${ts.url}/datasets/nowhere/ingest`, body({ storageTargetId: 'tape' }));
    expect(res.status).toBe(404);
    expect(res.body.error.message).toContain('storage target "tape"');
  });
});
