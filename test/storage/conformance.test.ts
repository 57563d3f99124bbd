// One conformance suite for every storage driver: local (a temporary directory) and S3 (a real
// Ceph radosgw from test/harness/s3.ts). The S3 part is skipped when no S3 server can be had,
// except under CI, where it must run (and fails when radosgw is missing).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import {
  CreateBucketCommand,
  ListMultipartUploadsCommand,
  UploadPartCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStorageDriver, StorageDrivers, StorageError, type ListedObject, type StorageDriver } from '../../src/storage/index.ts';
import type { StorageTarget } from '../../src/model/records.ts';
import { s3Available, startS3Server, type S3Server } from '../harness/s3.ts';

const MiB = 1024 * 1024;

interface Fixture {
  /** A working driver on a fresh, empty target. */
  driver: StorageDriver;
  /** A driver whose target cannot be written (its probe must fail). */
  broken: StorageDriver;
  /** The probe failure names this. */
  brokenHint: RegExp;
  /** Checks that an object written by putFile went through a multipart upload (S3 only). */
  assertMultipart?: (location: string) => Promise<void>;
  /** Makes a multipart upload fail half-way and checks that it was aborted (S3 only). */
  assertFailedMultipartAborted?: (source: string) => Promise<void>;
  teardown(): Promise<void>;
}

function target(name: string, kind: 'local' | 's3', config: StorageTarget['config']): StorageTarget {
  return { id: `${name}-id`, name, kind, description: null, config, credentials: null, ownerMarkedAt: null, createdAt: new Date(), updatedAt: new Date() };
}

async function collect(iterable: AsyncIterable<ListedObject>): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  for await (const item of iterable) out.push(item);
  return out.sort((a, b) => (a.key < b.key ? -1 : 1));
}

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function expectStorageError(promise: Promise<unknown>, code: StorageError['code'], message: RegExp): Promise<StorageError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StorageError);
  const storageError = err as StorageError;
  expect(storageError.code).toBe(code);
  expect(storageError.message).toMatch(message);
  return storageError;
}

function conformance(label: string, skip: boolean, setup: () => Promise<Fixture>) {
  describe.skipIf(skip)(`storage driver conformance: ${label}`, () => {
    let fx: Fixture;
    let driver: StorageDriver;
    let work: string;

    beforeAll(async () => {
      fx = await setup();
      driver = fx.driver;
      work = mkdtempSync(join(tmpdir(), 'timestore-storage-work-'));
    }, 120_000);

    afterAll(async () => {
      rmSync(work, { recursive: true, force: true });
      await fx?.teardown();
    }, 60_000);

    test('probe succeeds and leaves nothing behind', async () => {
      await driver.probe();
      expect(await collect(driver.list(''))).toEqual([]);
    });

    test('putBytes, read, exists, materialize, delete', async () => {
      const bytes = new TextEncoder().encode('{"rows":[1,2,3]}\n');
      const stored = await driver.putBytes('staging/weather/batch-1.json', bytes);
      expect(stored.location).toBe(driver.locationOf('staging/weather/batch-1.json'));
      expect(stored.location).toMatch(label === 'local' ? /^file:\/\/\// : /^s3:\/\//);
      expect(stored.sizeBytes).toBe(bytes.byteLength);

      expect(await driver.read(stored.location)).toEqual(bytes);
      expect(await driver.exists(stored.location)).toBe(true);

      const dest = join(work, 'cache', 'batch-1.json');
      const path = await driver.materialize(stored.location, dest);
      expect(new Uint8Array(readFileSync(path))).toEqual(bytes);
      if (driver.kind === 'local') expect(path).not.toBe(dest); // the file itself, no copy
      else expect(path).toBe(dest);

      // Overwriting a key replaces the object.
      const again = await driver.putBytes('staging/weather/batch-1.json', new TextEncoder().encode('v2'));
      expect(again.location).toBe(stored.location);
      expect(new TextDecoder().decode(await driver.read(stored.location))).toBe('v2');

      await driver.delete(stored.location);
      expect(await driver.exists(stored.location)).toBe(false);
      await driver.delete(stored.location); // missing is not an error
    });

    test('putBytes of parts stores them one after another, as one object', async () => {
      const encode = (s: string) => new TextEncoder().encode(s);
      // More parts than one writev takes, empty ones among them.
      const parts = Array.from({ length: 1500 }, (_, i) => (i % 7 === 3 ? new Uint8Array(0) : encode(`{"i":${i}}\n`)));
      const whole = Buffer.concat(parts);
      const stored = await driver.putBytes('staging/weather/group-1.ndjson', parts);
      expect(stored.sizeBytes).toBe(whole.byteLength);
      expect(Buffer.from(await driver.read(stored.location)).equals(whole)).toBe(true);
      await driver.delete(stored.location);
    });

    test('a log (local disk only) takes appends at their own offsets, durable when they resolve, overlapping or not', async () => {
      if (driver.kind === 's3') {
        expect(driver.openLog).toBeUndefined(); // objects are written whole: staging groups get objects of their own
        return;
      }
      const encode = (s: string) => new TextEncoder().encode(s);
      const log = await driver.openLog!('staging/weather/log-1.ndjson');
      expect(log.location).toBe(driver.locationOf('staging/weather/log-1.ndjson'));
      expect((await driver.read(log.location)).byteLength).toBe(0); // it exists at once
      expect(await log.append([encode('a\n'), encode('bb\n')])).toBe(0);
      // Overlapping appends: offsets in the order of the calls, and each its own bytes.
      const many = Array.from({ length: 1500 }, (_, i) => encode(`{"i":${i}}\n`));
      // A large append (written through the thread pool; small ones are written on the caller's thread) among small ones.
      const large = encode(`${'x'.repeat(100_000)}\n`);
      const offsets = await Promise.all([log.append(many), log.append([large]), log.append([encode('last\n')])]);
      const manyBytes = Buffer.concat(many).byteLength;
      expect(offsets).toEqual([5, 5 + manyBytes, 5 + manyBytes + large.byteLength]);
      const closing = log.close();
      await closing;
      const content = Buffer.from(await driver.read(log.location));
      expect(content.toString()).toBe(`a\nbb\n${Buffer.concat(many).toString()}${'x'.repeat(100_000)}\nlast\n`);
      await expect(driver.openLog!('staging/weather/log-1.ndjson')).rejects.toThrow(); // a log's name is new
      await driver.delete(log.location);
    });

    test('putFile copies (the source stays) and move gives the source away', async () => {
      const source = join(work, 'part.parquet');
      const content = randomBytes(100_000);
      writeFileSync(source, content);

      const copied = await driver.putFile('datasets/weather/2026-01-01/a.parquet', source);
      expect(copied.sizeBytes).toBe(content.length);
      expect(existsSync(source)).toBe(true);
      expect(sha(await driver.read(copied.location))).toBe(sha(content));

      const moved = await driver.putFile('datasets/weather/2026-01-01/b.parquet', source, { move: true });
      expect(moved.sizeBytes).toBe(content.length);
      expect(existsSync(source)).toBe(false);
      const path = await driver.materialize(moved.location, join(work, 'cache', 'b.parquet'));
      expect(sha(readFileSync(path))).toBe(sha(content));

      await driver.delete(copied.location);
      await driver.delete(moved.location);
    });

    test('putFile of a file larger than 20 MiB (multipart on S3) round-trips through materialize', async () => {
      const source = join(work, 'big.parquet');
      const content = randomBytes(20 * MiB + 12_345);
      writeFileSync(source, content);
      const stored = await driver.putFile('datasets/big/2026-01-01/big.parquet', source);
      expect(stored.sizeBytes).toBe(content.length);
      await fx.assertMultipart?.(stored.location);

      const dest = join(work, 'cache', 'big', 'big.parquet');
      const path = await driver.materialize(stored.location, dest);
      const back = readFileSync(path);
      expect(back.length).toBe(content.length);
      expect(sha(back)).toBe(sha(content));
      await driver.delete(stored.location);
    }, 120_000);

    test('list: by key prefix, across several pages, with sizes and times', async () => {
      const keys = ['ds/a/1.parquet', 'ds/a/2.parquet', 'ds/a/3.parquet', 'ds/a/sub/4.parquet', 'ds/ab/5.parquet', 'other/6.parquet'];
      const before = Date.now();
      for (const [i, key] of keys.entries()) await driver.putBytes(key, new Uint8Array(i + 1));

      const all = await collect(driver.list(''));
      expect(all.map((o) => o.key)).toEqual(keys);
      for (const [i, o] of all.entries()) {
        expect(o.sizeBytes).toBe(i + 1);
        expect(o.location).toBe(driver.locationOf(o.key));
        expect(o.lastModified.getTime()).toBeGreaterThan(before - 60_000);
      }

      // A folder prefix, a partial-name prefix, and one that matches nothing.
      expect((await collect(driver.list('ds/a/', { pageSize: 2 }))).map((o) => o.key)).toEqual([
        'ds/a/1.parquet',
        'ds/a/2.parquet',
        'ds/a/3.parquet',
        'ds/a/sub/4.parquet',
      ]);
      expect((await collect(driver.list('ds/a', { pageSize: 1 }))).map((o) => o.key)).toEqual([
        'ds/a/1.parquet',
        'ds/a/2.parquet',
        'ds/a/3.parquet',
        'ds/a/sub/4.parquet',
        'ds/ab/5.parquet',
      ]);
      expect((await collect(driver.list('ds/a/2', { pageSize: 1 }))).map((o) => o.key)).toEqual(['ds/a/2.parquet']);
      expect(await collect(driver.list('nothing/here/'))).toEqual([]);

      for (const o of all) await driver.delete(o.location);
      expect(await collect(driver.list(''))).toEqual([]);
    });

    test('keys that escape the root or are not plain relative paths are refused', async () => {
      for (const key of ['../escape.parquet', 'a/../../escape', 'a/./b', '/abs/path', 'a//b', 'a/b/', '', 'a\\b']) {
        expect(() => driver.locationOf(key)).toThrow(StorageError);
        await expectStorageError(driver.putBytes(key, new Uint8Array(1)), 'invalid_key', /^storage put of .* failed: the key /);
      }
      await expectStorageError(collect(driver.list('../')), 'invalid_key', /"\.\." path segment/);
      const source = join(work, 'x.bin');
      writeFileSync(source, 'x');
      await expectStorageError(driver.putFile('ok/../../x.bin', source), 'invalid_key', /"\.\." path segment/);
    });

    test('locations of another target are refused', async () => {
      const foreign = driver.kind === 'local' ? 'file:///etc/passwd' : 's3://some-other-bucket/key.parquet';
      await expectStorageError(driver.read(foreign), 'foreign_location', /storage read of .* failed: the location is/);
      await expectStorageError(driver.delete(foreign), 'foreign_location', /storage delete of/);
      const sneaky = driver.locationOf('ds/x.parquet').replace('ds/x.parquet', 'ds/../../x.parquet');
      await expect(driver.read(sneaky)).rejects.toBeInstanceOf(StorageError);
    });

    test('reading or materializing a missing object is a clear not_found error', async () => {
      const missing = driver.locationOf('datasets/none/missing.parquet');
      const err = await expectStorageError(driver.read(missing), 'not_found', /does not exist/);
      expect(err.message).toContain(missing);
      expect(err.message).toContain(`target "${driver.name}"`);
      expect(err.operation).toBe('read');
      expect(err.location).toBe(missing);
      await expectStorageError(driver.materialize(missing, join(work, 'cache', 'missing.parquet')), 'not_found', /does not exist/);
      expect(existsSync(join(work, 'cache', 'missing.parquet'))).toBe(false);
      expect(await driver.exists(missing)).toBe(false);
    });

    test('a failed put names its cause and leaves nothing behind', async () => {
      const source = join(work, 'no-such-file.parquet');
      const err = await expectStorageError(driver.putFile('ds/y.parquet', source), 'failed', /storage put of .* failed: cannot read the source file/);
      expect(err.message).toContain(source);
      expect(await collect(driver.list(''))).toEqual([]);

      if (fx.assertFailedMultipartAborted) {
        const big = join(work, 'abort.bin');
        writeFileSync(big, randomBytes(12 * MiB));
        await fx.assertFailedMultipartAborted(big);
        expect(await collect(driver.list(''))).toEqual([]);
      }
    }, 60_000);

    test('probe of an unusable target fails with a clear message', async () => {
      const err = await expectStorageError(fx.broken.probe(), 'failed', fx.brokenHint);
      expect(err.message).toContain(`target "${fx.broken.name}"`);
      expect(err.message).toMatch(/not writable/);
    });
  });
}

conformance('local', false, async () => {
  const root = mkdtempSync(join(tmpdir(), 'timestore-storage-local-'));
  const driver = createStorageDriver(target('local-test', 'local', { root: join(root, 'partitions') }), null);
  const broken = createStorageDriver(target('local-proc', 'local', { root: '/proc/timestore-not-writable/partitions' }), null);
  return {
    driver,
    broken,
    brokenHint: /\/proc\/timestore-not-writable\/partitions/,
    teardown: async () => rmSync(root, { recursive: true, force: true }),
  };
});

// Under CI the S3 server must be there: do not skip, let startS3Server fail loudly.
conformance('s3 (radosgw)', !process.env.CI && !s3Available(), async () => {
  const server: S3Server = await startS3Server();
  const bucket = `timestore-storage-${randomBytes(6).toString('hex')}`;
  const credentials = {
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    sessionToken: null,
    region: server.region,
    endpoint: server.endpoint,
    forcePathStyle: true,
  };
  const admin = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));

  // The target carries the endpoint (as the catalog row does); credentials come from the "process".
  const drivers = new StorageDrivers(credentials);
  const driver = drivers.forTarget(
    target('s3-test', 's3', { bucket, prefix: 'timestore/', endpoint: server.endpoint, region: server.region, forcePathStyle: true }),
  );
  expect(drivers.forTarget(target('s3-test', 's3', { bucket, prefix: 'timestore/', endpoint: server.endpoint, region: server.region, forcePathStyle: true }))).toBe(driver);
  const broken = createStorageDriver(target('s3-missing-bucket', 's3', { bucket: `${bucket}-missing`, forcePathStyle: true }), credentials);

  return {
    driver,
    broken,
    brokenHint: new RegExp(`bucket "${bucket}-missing" at ${server.endpoint.replace(/[.]/g, '\\.')} is not writable: put of .* failed: NoSuchBucket`),
    assertMultipart: async (location) => {
      const Key = location.slice(`s3://${bucket}/`.length);
      expect(Key.startsWith('timestore/')).toBe(true);
      const head = await admin.send(new HeadObjectCommand({ Bucket: bucket, Key }));
      expect(head.ETag).toMatch(/^"[0-9a-f]{32}-2"$/); // 16 MiB + the rest: two parts
    },
    assertFailedMultipartAborted: async (source) => {
      const small = createStorageDriver(
        target('s3-small-parts', 's3', { bucket, prefix: 'timestore', endpoint: server.endpoint, forcePathStyle: true }),
        credentials,
        { multipartThresholdBytes: 5 * MiB, partSizeBytes: 5 * MiB },
      );
      // Fail the second part: the driver must abort the upload and report the part's error.
      const client = (small as unknown as { client: S3Client }).client;
      const send = client.send.bind(client) as (command: unknown) => Promise<unknown>;
      (client as unknown as { send: typeof send }).send = async (command) => {
        if (command instanceof UploadPartCommand && command.input.PartNumber === 2) throw new Error('injected part failure');
        return send(command);
      };
      try {
        await expectStorageError(small.putFile('ds/aborted.bin', source), 'failed', /storage put of s3:\/\/.*\/timestore\/ds\/aborted\.bin .*injected part failure/);
        const uploads = await admin.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
        expect(uploads.Uploads ?? []).toEqual([]);
      } finally {
        small.close();
      }
    },
    teardown: async () => {
      try {
        let token: string | undefined;
        do {
          const page = await admin.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
          for (const o of page.Contents ?? []) await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: o.Key }));
          token = page.NextContinuationToken;
        } while (token);
        await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
      } finally {
        drivers.close();
        broken.close();
        admin.destroy();
        await server.stop();
      }
    },
  };
});
