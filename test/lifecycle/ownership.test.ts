/**
 * timestore deletes only what it owns, on a real radosgw bucket shared with objects timestore did
 * not write: a boot onto such a bucket is refused unless told to adopt it; registering a prefix
 * that holds foreign objects (or another catalog's marker) is refused without
 * `adoptExistingObjects`; the orphan sweep leaves foreign objects alone and sweeps nothing under a
 * prefix whose marker is another catalog's.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { randomUUID } from 'node:crypto';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { getStorageTarget } from '../../src/catalog/storage-targets.ts';
import { sweepOrphans } from '../../src/lifecycle/collector.ts';
import { StorageDrivers } from '../../src/storage/index.ts';
import { silentLog } from '../harness/catalog.ts';
import { createBucket, s3AdminClient, s3Available, s3ServerEnv, startS3Server, type S3Server } from '../harness/s3.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const skip = !process.env.CI && !s3Available();

let s3: S3Server;
let admin: S3Client;
let bucket = '';
let ts: TestServer | undefined;

/** Objects another application keeps in the bucket: some under timestore's own prefixes, none of timestore's shapes. */
const FOREIGN = [
  'notes/readme.txt',
  'datasets/report.csv',
  'staging/backup/data.json',
  'datasets/weather/_/2026-01-01T000000Z/orphan.parquet',
  '.timestore-probe/keep-me',
];

const put = (key: string, body = 'not timestore') => admin.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
async function keys(prefix = ''): Promise<string[]> {
  const page = await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (page.Contents ?? []).map((o) => o.Key!).sort();
}
async function marker(prefix = ''): Promise<{ catalog: string } | null> {
  try {
    const res = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: `${prefix}.timestore-owner` }));
    return JSON.parse(await res.Body!.transformToString());
  } catch {
    return null;
  }
}

beforeAll(async () => {
  if (skip) return;
  s3 = await startS3Server();
  admin = s3AdminClient(s3);
  bucket = await createBucket(s3, 'timestore-shared');
  for (const key of FOREIGN) await put(key);
}, 120_000);

afterAll(async () => {
  await ts?.stop();
  admin?.destroy();
  await s3?.stop();
});

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'v', type: 'double' },
];

describe.skipIf(skip)('a bucket shared with objects timestore did not write', () => {
  test('a boot onto it is refused, saying why and how to adopt it; nothing is written to the bucket', async () => {
    await expect(startTestServer(s3ServerEnv(s3, bucket))).rejects.toThrow(/storage target \\?"s3\\?": it holds objects that timestore did not write/);
    expect(await keys()).toEqual([...FOREIGN].sort());
  }, 120_000);

  test('with TIMESTORE_STORAGE_ADOPT_EXISTING=true it boots and writes its owner marker', async () => {
    ts = await startTestServer({ ...s3ServerEnv(s3, bucket), TIMESTORE_STORAGE_ADOPT_EXISTING: 'true' });
    const [identity] = await ts.sql<{ id: string }[]>`SELECT id FROM catalog_identity`;
    expect(await marker()).toMatchObject({ catalog: identity!.id, target: 's3' });
    const target = await getStorageTarget(ts.sql, 's3');
    expect(target.ownerMarkedAt).toBeInstanceOf(Date);
  }, 120_000);

  test('the sweep deletes its own orphans and leaves every foreign object, and every referenced file, alone', async () => {
    const res = await postJson(`${ts!.url}/datasets/weather/ingest?wait=true`, {
      schema: { fields: FIELDS },
      partition: { key: {} },
      rows: [{ timestamp: '2026-01-01T00:00:00Z', v: 1 }],
    });
    expect(res.status).toBe(201);
    const written = res.body.result.partitions.map((p: { location: string }) => p.location.replace(`s3://${bucket}/`, ''));
    const orphans = [`datasets/weather/_/2026-01-01T000000Z/${randomUUID()}.parquet`, `staging/weather/${randomUUID()}.json`, `.timestore-probe/${randomUUID()}`];
    for (const key of orphans) await put(key);

    const drivers = new StorageDrivers(ts!.config.s3);
    const swept = await sweepOrphans(
      { sql: ts!.sql, drivers, log: silentLog },
      await getStorageTarget(ts!.sql, 's3'),
      new Date(Date.now() + 60_000),
      new AbortController().signal,
    );
    drivers.close();
    expect(swept).toMatchObject({ files: orphans.length, notOwned: false, skipped: 4 });
    expect(await keys()).toEqual([...FOREIGN, ...written, '.timestore-owner'].sort());
  }, 60_000);

  const s3Config = (prefix: string) => ({ bucket, prefix, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true });

  test('registering a prefix that holds foreign objects is refused without adoptExistingObjects, taken with it', async () => {
    await put('elsewhere/report.csv');
    const refused = await postJson(`${ts!.url}/admin/storage-targets`, { name: 'elsewhere', kind: 's3', config: s3Config('elsewhere') });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'storage_target_not_owned', details: { reason: 'unmarked_objects', sample: 'report.csv' } });
    expect(refused.body.error.message).toContain('"adoptExistingObjects": true');
    expect(await keys('elsewhere/')).toEqual(['elsewhere/report.csv']);
    expect((await postJson(`${ts!.url}/admin/storage-targets`, { name: 'elsewhere', kind: 's3', config: s3Config('elsewhere') })).status).toBe(409);

    const taken = await postJson(`${ts!.url}/admin/storage-targets`, { name: 'elsewhere', kind: 's3', config: s3Config('elsewhere'), adoptExistingObjects: true });
    expect(taken.status).toBe(201);
    expect(taken.body.ownerMarkedAt).toEqual(expect.any(String));
    expect(await keys('elsewhere/')).toEqual(['elsewhere/.timestore-owner', 'elsewhere/report.csv']);
    const [event] = await ts!.sql<{ details: Record<string, unknown> }[]>`
      SELECT details FROM audit_events WHERE action = 'storage_target.registered' AND details->>'name' = 'elsewhere'`;
    expect(event!.details).toMatchObject({ found: 'unmarked_objects' });
  });

  test('an empty prefix is taken without the flag', async () => {
    const res = await postJson(`${ts!.url}/admin/storage-targets`, { name: 'fresh', kind: 's3', config: s3Config('fresh') });
    expect(res.status).toBe(201);
    expect(await keys('fresh/')).toEqual(['fresh/.timestore-owner']);
  });

  test("a prefix with another catalog's marker is refused, and the sweep deletes nothing under it", async () => {
    const other = randomUUID();
    await put('theirs/.timestore-owner', JSON.stringify({ catalog: other, target: 'lake', writtenAt: new Date().toISOString() }));
    const refused = await postJson(`${ts!.url}/admin/storage-targets`, { name: 'theirs', kind: 's3', config: s3Config('theirs') });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'storage_target_not_owned', details: { reason: 'other_catalog', ownerCatalog: other } });

    // Once another catalog takes a prefix this one had registered, this one's sweep stops there.
    const theirs = `fresh/staging/weather/${randomUUID()}.json`;
    await put(theirs);
    await put('fresh/.timestore-owner', JSON.stringify({ catalog: other, target: 'lake', writtenAt: new Date().toISOString() }));
    const drivers = new StorageDrivers(ts!.config.s3);
    const swept = await sweepOrphans(
      { sql: ts!.sql, drivers, log: silentLog },
      await getStorageTarget(ts!.sql, 'fresh'),
      new Date(Date.now() + 60_000),
      new AbortController().signal,
    );
    drivers.close();
    expect(swept).toMatchObject({ files: 0, notOwned: true });
    expect(await keys('fresh/')).toContain(theirs);
  });
});
