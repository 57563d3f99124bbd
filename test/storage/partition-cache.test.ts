// PartitionCache against a real S3 server (Ceph radosgw from test/harness/s3.ts) and a local
// target. The S3 part is skipped when no S3 server can be had, except under CI, where it must run.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { statusOf } from '../../src/model/errors.ts';
import type { StorageTarget } from '../../src/model/records.ts';
import { PartitionCache, PartitionCacheError, type CachePartition } from '../../src/storage/partition-cache.ts';
import { createStorageDriver, LocalStorageDriver, type StorageDriver } from '../../src/storage/index.ts';
import { s3Available, startS3Server, type S3Server } from '../harness/s3.ts';

const checksumOf = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

function target(name: string, kind: 'local' | 's3', config: StorageTarget['config']): StorageTarget {
  return { id: `${name}-id`, name, kind, description: null, config, credentials: null, ownerMarkedAt: null, createdAt: new Date(), updatedAt: new Date() };
}

/** Counts materialize calls (one GetObject each) on a driver, optionally slowing them down. */
function counting(driver: StorageDriver, delayMs = 0): StorageDriver & { calls: string[] } {
  const calls: string[] = [];
  const wrapped = Object.create(driver) as StorageDriver & { calls: string[] };
  wrapped.calls = calls;
  wrapped.materialize = async (location: string, dest: string) => {
    calls.push(location);
    if (delayMs) await Bun.sleep(delayMs);
    return driver.materialize(location, dest);
  };
  return wrapped;
}

async function rejection(promise: Promise<unknown>): Promise<PartitionCacheError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PartitionCacheError);
  return err as PartitionCacheError;
}

/** The file at path holds exactly the partition's bytes. */
const expectContent = (path: string, partition: CachePartition) => expect(checksumOf(readFileSync(path))).toBe(partition.checksum);

/** Cache files in dir (not the tmp folder). */
const cacheFiles = (dir: string) => readdirSync(dir).filter((n) => n !== 'tmp').sort();
const tmpFiles = (dir: string) => (existsSync(join(dir, 'tmp')) ? readdirSync(join(dir, 'tmp')) : []);

const dirs: string[] = [];
function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'timestore-cache-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

// Under CI the S3 server must be there: do not skip, let startS3Server fail loudly.
describe.skipIf(!process.env.CI && !s3Available())('partition cache: s3 (radosgw)', () => {
  const SIZE = 64 * 1024;
  let server: S3Server;
  let admin: S3Client;
  let bucket: string;
  let s3: StorageDriver;
  const parts: Record<string, CachePartition & { bytes: Uint8Array }> = {};

  beforeAll(async () => {
    server = await startS3Server();
    bucket = `timestore-cache-${randomBytes(6).toString('hex')}`;
    admin = new S3Client({
      endpoint: server.endpoint,
      region: server.region,
      forcePathStyle: true,
      credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    });
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    s3 = createStorageDriver(target('s3-cache', 's3', { bucket, prefix: 'ts/', endpoint: server.endpoint, region: server.region, forcePathStyle: true }), {
      accessKeyId: server.accessKeyId,
      secretAccessKey: server.secretAccessKey,
      sessionToken: null,
      region: server.region,
      endpoint: server.endpoint,
      forcePathStyle: true,
    });
    for (const name of ['a', 'b', 'c', 'd', 'e']) {
      const bytes = new Uint8Array(randomBytes(SIZE));
      const stored = await s3.putBytes(`datasets/ds/${name}.parquet`, bytes);
      parts[name] = { location: stored.location, sizeBytes: stored.sizeBytes, checksum: checksumOf(bytes), bytes };
    }
  }, 120_000);

  afterAll(async () => {
    try {
      if (admin) {
        const page = await admin.send(new ListObjectsV2Command({ Bucket: bucket }));
        for (const o of page.Contents ?? []) await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
        await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
      }
    } finally {
      s3?.close();
      admin?.destroy();
      await server?.stop();
    }
  }, 60_000);

  const p = (name: string) => {
    const { location, sizeBytes, checksum } = parts[name]!;
    return { location, sizeBytes, checksum };
  };

  test('a miss downloads and verifies, a hit reuses the file', async () => {
    const dir = freshDir();
    const driver = counting(s3);
    const cache = new PartitionCache({ dir, maxBytes: 10 * SIZE, enabled: true });

    const first = await cache.acquire(p('a'), driver);
    expect(first.path.startsWith(dir)).toBe(true);
    expect(first.path.endsWith('.parquet')).toBe(true);
    expectContent(first.path, parts.a!);
    first.release();
    first.release(); // harmless

    const second = await cache.acquire(p('a'), driver);
    expect(second.path).toBe(first.path);
    second.release();
    (await cache.acquire(p('b'), driver)).release();

    expect(driver.calls).toEqual([parts.a!.location, parts.b!.location]);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2, fetches: 2, bytesFetched: 2 * SIZE, currentBytes: 2 * SIZE, files: 2, pinnedFiles: 0, evictions: 0 });
    expect(tmpFiles(dir)).toEqual([]);
  });

  test('10 concurrent acquires of one file download it once', async () => {
    const dir = freshDir();
    const driver = counting(s3, 50);
    const cache = new PartitionCache({ dir, maxBytes: 10 * SIZE, enabled: true });

    const handles = await Promise.all(Array.from({ length: 10 }, () => cache.acquire(p('c'), driver)));
    expect(driver.calls).toHaveLength(1);
    expect(new Set(handles.map((h) => h.path)).size).toBe(1);
    expectContent(handles[0]!.path, parts.c!);
    expect(cache.stats()).toMatchObject({ misses: 1, coalesced: 9, fetches: 1, bytesFetched: SIZE, files: 1, pinnedFiles: 1 });

    for (const h of handles) h.release();
    expect(cache.stats().pinnedFiles).toBe(0);
  });

  test('eviction keeps the cache within maxBytes, least recently used first', async () => {
    const dir = freshDir();
    const cache = new PartitionCache({ dir, maxBytes: 3 * SIZE, enabled: true });
    const use = async (name: string) => (await cache.acquire(p(name), s3)).release();
    const names = () => new Set(cacheFiles(dir));
    const fileOf = async (name: string) => {
      const h = await cache.acquire(p(name), s3);
      h.release();
      return h.path.slice(dir.length + 1);
    };

    await use('a');
    await use('b');
    await use('c');
    const [a, b, c] = [await fileOf('a'), await fileOf('b'), await fileOf('c')]; // hits; order a, b, c again
    expect(names()).toEqual(new Set([a, b, c]));
    await use('a'); // a is now the most recently used: b is the least

    await use('d');
    const d = await fileOf('d');
    expect(names()).toEqual(new Set([a, c, d]));
    expect(cache.stats()).toMatchObject({ evictions: 1, evictedBytes: SIZE, currentBytes: 3 * SIZE, files: 3 });

    await use('e'); // c is now the least recently used
    const e = await fileOf('e');
    expect(names()).toEqual(new Set([a, d, e]));
    expect(cache.stats()).toMatchObject({ evictions: 2, currentBytes: 3 * SIZE });
  });

  test('files held by a query are not evicted; the excess goes once they are released', async () => {
    const dir = freshDir();
    const cache = new PartitionCache({ dir, maxBytes: 2 * SIZE, enabled: true });

    const held = [await cache.acquire(p('a'), s3), await cache.acquire(p('b'), s3)];
    const c = await cache.acquire(p('c'), s3); // everything is pinned: temporarily over the limit
    for (const h of [...held, c]) expect(existsSync(h.path)).toBe(true);
    expect(cache.stats()).toMatchObject({ currentBytes: 3 * SIZE, files: 3, pinnedFiles: 3, evictions: 0 });

    held[1]!.release(); // b is the only unpinned file: it goes
    expect(existsSync(held[1]!.path)).toBe(false);
    expect(existsSync(held[0]!.path)).toBe(true);
    expect(cache.stats()).toMatchObject({ currentBytes: 2 * SIZE, files: 2, evictions: 1 });

    held[0]!.release();
    c.release();
    expect(cache.stats()).toMatchObject({ currentBytes: 2 * SIZE, files: 2, pinnedFiles: 0 });
    expectContent(c.path, parts.c!);
  });

  test('a checksum or size that differs from the catalog fails and caches nothing', async () => {
    const dir = freshDir();
    const cache = new PartitionCache({ dir, maxBytes: 10 * SIZE, enabled: true });

    const wrongSum = { ...p('a'), checksum: checksumOf(parts.b!.bytes) };
    const err = await rejection(cache.acquire(wrongSum, s3));
    expect(err.code).toBe('partition_corrupt');
    expect(statusOf(err.code)).toBe(500); // answered by the HTTP layer with the catalogue's status
    expect(err.message).toContain(parts.a!.location);
    expect(err.message).toMatch(/sha256 is [0-9a-f]{64} but the catalog records [0-9a-f]{64}/);

    const wrongSize = await rejection(cache.acquire({ ...p('a'), sizeBytes: SIZE - 1 }, s3));
    expect(wrongSize.code).toBe('partition_corrupt');
    expect(wrongSize.message).toContain(`${SIZE} bytes but the catalog records ${SIZE - 1}`);

    const unusable = await rejection(cache.acquire({ ...p('a'), checksum: 'md5:abc' }, s3));
    expect(unusable.code).toBe('partition_corrupt');

    expect(cacheFiles(dir)).toEqual([]);
    expect(tmpFiles(dir)).toEqual([]);
    expect(cache.stats()).toMatchObject({ currentBytes: 0, files: 0, integrityFailures: 2 });

    // The right catalog values still work afterwards.
    const ok = await cache.acquire(p('a'), s3);
    expectContent(ok.path, parts.a!);
    ok.release();
  });

  test('a failed download fails every waiter once and is retried by the next acquire', async () => {
    const dir = freshDir();
    const driver = counting(s3, 30);
    const cache = new PartitionCache({ dir, maxBytes: 10 * SIZE, enabled: true });
    const bad = { ...p('d'), checksum: checksumOf(parts.e!.bytes) };
    const errors = await Promise.all(Array.from({ length: 5 }, () => rejection(cache.acquire(bad, driver))));
    expect(errors.map((e) => e.code)).toEqual(Array(5).fill('partition_corrupt'));
    expect(driver.calls).toHaveLength(1);
    expect(cacheFiles(dir)).toEqual([]);
    await rejection(cache.acquire(bad, driver));
    expect(driver.calls).toHaveLength(2); // a failure is not cached
  });

  test('a partition missing from the bucket is partition_missing', async () => {
    const dir = freshDir();
    const cache = new PartitionCache({ dir, maxBytes: 10 * SIZE, enabled: true });
    const err = await rejection(cache.acquire({ ...p('a'), location: s3.locationOf('datasets/ds/nope.parquet') }, s3));
    expect(err.code).toBe('partition_missing');
    expect(err.message).toContain('nope.parquet');
    expect(cacheFiles(dir)).toEqual([]);
    expect(tmpFiles(dir)).toEqual([]);
  });

  test('disabled cache: a private temporary file per acquire, deleted on release', async () => {
    const dir = freshDir();
    const driver = counting(s3);
    const cache = new PartitionCache({ dir, maxBytes: 10 * SIZE, enabled: false });

    const one = await cache.acquire(p('a'), driver);
    const two = await cache.acquire(p('a'), driver);
    expect(one.path).not.toBe(two.path);
    expectContent(one.path, parts.a!);
    expect(driver.calls).toHaveLength(2);
    one.release();
    expect(existsSync(one.path)).toBe(false);
    expect(existsSync(two.path)).toBe(true);
    two.release();
    expect(existsSync(two.path)).toBe(false);
    expect(cacheFiles(dir)).toEqual([]);
    expect(tmpFiles(dir)).toEqual([]);
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 0, fetches: 2, uncachedFetches: 2, currentBytes: 0 });

    // Integrity is still checked.
    expect((await rejection(cache.acquire({ ...p('a'), checksum: checksumOf(parts.b!.bytes) }, driver))).code).toBe('partition_corrupt');
    expect(tmpFiles(dir)).toEqual([]);
  });

  test('a file larger than maxBytes is read through a private temporary file', async () => {
    const dir = freshDir();
    const cache = new PartitionCache({ dir, maxBytes: SIZE - 1, enabled: true });
    const h = await cache.acquire(p('a'), s3);
    expectContent(h.path, parts.a!);
    expect(cache.stats()).toMatchObject({ uncachedFetches: 1, currentBytes: 0, files: 0 });
    h.release();
    expect(existsSync(h.path)).toBe(false);
    expect(cacheFiles(dir)).toEqual([]);
  });

  test('a restart indexes the files already there (mtime is the LRU order) and removes partial downloads', async () => {
    const dir = freshDir();
    const first = new PartitionCache({ dir, maxBytes: 10 * SIZE, enabled: true });
    const paths: Record<string, string> = {};
    for (const name of ['a', 'b', 'c']) {
      const h = await first.acquire(p(name), s3);
      paths[name] = h.path;
      h.release();
    }
    // Make b the oldest, then c, then a; leave partial downloads behind as a crash would.
    utimesSync(paths.b!, new Date(1_000_000), new Date(1_000_000));
    utimesSync(paths.c!, new Date(2_000_000), new Date(2_000_000));
    utimesSync(paths.a!, new Date(3_000_000), new Date(3_000_000));
    writeFileSync(join(dir, 'tmp', 'partial-download'), 'x');
    mkdirSync(join(dir, 'tmp', 'nested'));
    writeFileSync(join(dir, '.something.parquet.tmp-abc123'), 'x');
    writeFileSync(join(dir, 'README'), 'not ours'); // left alone

    // A smaller limit at restart: the oldest file (b) goes at once.
    const driver = counting(s3);
    const second = new PartitionCache({ dir, maxBytes: 2 * SIZE, enabled: true });
    await second.init();
    expect(second.stats()).toMatchObject({ files: 2, currentBytes: 2 * SIZE, evictions: 1 });
    expect(existsSync(paths.b!)).toBe(false);
    expect(tmpFiles(dir)).toEqual([]);
    expect(existsSync(join(dir, '.something.parquet.tmp-abc123'))).toBe(false);
    expect(existsSync(join(dir, 'README'))).toBe(true);

    const a = await second.acquire(p('a'), driver);
    const c = await second.acquire(p('c'), driver);
    expect([a.path, c.path]).toEqual([paths.a!, paths.c!]);
    expect(driver.calls).toEqual([]); // both hits
    a.release();
    c.release();
    expect(second.stats()).toMatchObject({ hits: 2, misses: 0 });

    // A cache file truncated behind our back is fetched again.
    writeFileSync(paths.a!, 'short');
    const third = new PartitionCache({ dir, maxBytes: 2 * SIZE, enabled: true });
    const again = await third.acquire(p('a'), driver);
    expectContent(again.path, parts.a!);
    expect(driver.calls).toEqual([parts.a!.location]);
    again.release();
    expect(third.stats()).toMatchObject({ misses: 1, currentBytes: 2 * SIZE });
  });
});

describe('partition cache: local target', () => {
  let root: string;
  let local: LocalStorageDriver;
  beforeAll(() => {
    root = freshDir();
    local = new LocalStorageDriver('local-cache', { root });
  });

  test('local partitions are read in place, never copied', async () => {
    const dir = join(freshDir(), 'cache');
    const cache = new PartitionCache({ dir, maxBytes: 1024, enabled: true });
    const bytes = new Uint8Array(randomBytes(10_000)); // larger than maxBytes: irrelevant in place
    const stored = await local.putBytes('datasets/ds/x.parquet', bytes);

    const h = await cache.acquire({ location: stored.location, sizeBytes: stored.sizeBytes, checksum: checksumOf(bytes) }, local);
    expect(h.path).toBe(fileURLToPath(stored.location));
    h.release();
    expect(existsSync(h.path)).toBe(true);
    expect(existsSync(dir)).toBe(false); // the cache directory was not even created
    expect(cache.stats()).toMatchObject({ localReads: 1, fetches: 0, currentBytes: 0 });

    const wrongSize = await rejection(cache.acquire({ location: stored.location, sizeBytes: 9_999, checksum: checksumOf(bytes) }, local));
    expect(wrongSize.code).toBe('partition_corrupt');
    expect(wrongSize.message).toContain(stored.location);
    expect(wrongSize.message).toContain('10000 bytes but the catalog records 9999');

    const missing = await rejection(cache.acquire({ location: local.locationOf('datasets/ds/gone.parquet'), sizeBytes: 1, checksum: checksumOf(bytes) }, local));
    expect(missing.code).toBe('partition_missing');
    expect(missing.message).toContain('gone.parquet');
  });
});
