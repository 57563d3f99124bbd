import { afterAll, describe, expect, test } from 'bun:test';
import { MIGRATIONS } from '../../src/catalog/migrate.ts';
import { existsSync, fsyncSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCatalog } from '../../src/catalog/connection.ts';
import { createDataset, getDataset } from '../../src/catalog/datasets.ts';
import { enqueueJob, JOB_NOTIFICATIONS_SETTING } from '../../src/catalog/job-table.ts';
import { publishManifestVersion } from '../../src/catalog/manifests.ts';
import { recordSchemaVersion } from '../../src/catalog/schema-versions.ts';
import { upsertStorageTarget } from '../../src/catalog/storage-targets.ts';
import { PGlite } from '@electric-sql/pglite';
import postgres from 'postgres';
import { durablePGliteOptions, MAX_SOCKET_PATH_BYTES, SOCKET_NAME } from '../../src/catalog/embedded.ts';
import { silentLog } from '../harness/catalog.ts';
import { tcpListeningPorts, unixListeningPaths } from '../harness/listeners.ts';

const roots: string[] = [];
function storageRoot(): string {
  const dir = mkdtempSync(join(tmpdir(), 'timestore-embedded-'));
  roots.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of roots) rmSync(dir, { recursive: true, force: true });
});

const openEmbedded = (root: string) => openCatalog({ databaseUrl: null, schema: 'timestore', storageRoot: root, log: silentLog });

describe('embedded catalog (PGlite)', () => {
  test('the same migrations and repositories work, and data survives a restart', async () => {
    const root = storageRoot();
    const catalog = await openEmbedded(root);
    expect(catalog.mode).toBe('embedded');
    expect(await catalog.migrate()).toEqual(MIGRATIONS.map((m) => m.name));
    const target = await upsertStorageTarget(catalog.sql, { name: 'local', kind: 'local', config: { root } });
    const dataset = await createDataset(catalog.sql, { slug: 'embedded' });
    const schema = await catalog.sql.begin((tx) => recordSchemaVersion(tx, dataset.id, [{ name: 'timestamp', type: 'timestamp' }], 'timestamp'));
    await catalog.sql.begin((tx) =>
      publishManifestVersion(tx, {
        datasetId: dataset.id,
        reason: 'ingest',
        add: [
          {
            storageTargetId: target.id,
            location: `file://${root}/p.parquet`,
            partitionKey: {},
            schemaVersion: schema.version,
            startTime: new Date(0),
            endTime: new Date(1000),
            rowCount: 1,
            sizeBytes: 10,
            checksum: 'x',
          },
        ],
      }),
    );
    await catalog.close();

    const reopened = await openEmbedded(root);
    expect(await reopened.migrate()).toEqual([]);
    expect(await getDataset(reopened.sql, 'embedded')).toMatchObject({ manifestVersion: 1, schemaVersion: 1 });
    // It delivers no notification, and says so: jobs are enqueued without one.
    const [setting] = await reopened.sql<{ value: string }[]>`SELECT current_setting(${JOB_NOTIFICATIONS_SETTING}, true) AS value`;
    expect(setting?.value).toBe('off');
    const job = await enqueueJob(reopened.sql, { queue: 'q', kind: 'k', payload: {} });
    expect(job.created).toBe(true);
    await reopened.close();
  }, 60_000);

  test('a commit reaches the disk before it returns: fsync on, the WAL flushed through an fsync() that is not a no-op', async () => {
    // PGlite as shipped runs with fsync off and an fsync() that does nothing (embedded.ts).
    const root = storageRoot();
    const synced: string[] = [];
    const recordingSync = (fd: number) => {
      synced.push(readlinkSync(`/proc/self/fd/${fd}`));
      fsyncSync(fd);
    };
    const db = await PGlite.create(await durablePGliteOptions(join(root, 'catalog'), recordingSync));
    try {
      await db.exec('CREATE TABLE durable (x integer)');
      synced.length = 0;
      await db.query('INSERT INTO durable VALUES (1)');
      expect(synced.filter((path) => path.startsWith(join(root, 'catalog/pg_wal/')))).not.toEqual([]);
    } finally {
      await db.close();
    }

    // The catalog timestore opens runs so.
    const catalog = await openEmbedded(storageRoot());
    try {
      const [settings] = await catalog.sql<{ fsync: string; walSyncMethod: string }[]>`
        SELECT current_setting('fsync') AS fsync, current_setting('wal_sync_method') AS wal_sync_method`;
      expect(settings).toEqual({ fsync: 'on', walSyncMethod: 'fsync' });
    } finally {
      await catalog.close();
    }
  }, 60_000);

  test('a second catalog on the same storage root is refused with a message that says what to do', async () => {
    const root = storageRoot();
    const first = await openEmbedded(root);
    try {
      await expect(openEmbedded(root)).rejects.toThrow(/storage root .* is in use by another timestore process \(pid \d+\)/);
    } finally {
      await first.close();
    }
  }, 60_000);

  test('a lock left by a process that died is taken over', async () => {
    const root = storageRoot();
    writeFileSync(join(root, 'timestore.lock'), '999999\n'); // no such pid
    const catalog = await openEmbedded(root);
    await catalog.close();
  }, 60_000);

  test('listens on a Unix socket in a directory only its owner can enter, and on no TCP port', async () => {
    const root = storageRoot();
    const tcpBefore = tcpListeningPorts('self');
    const catalog = await openEmbedded(root);
    try {
      const socketDir = join(root, '.runtime/catalog');
      const socket = join(socketDir, SOCKET_NAME);
      expect(tcpListeningPorts('self')).toEqual(tcpBefore);
      expect(unixListeningPaths('self')).toContain(socket);
      expect(statSync(socketDir).mode & 0o777).toBe(0o700);
      expect(statSync(socket).isSocket()).toBe(true);
      expect(statSync(socket).mode & 0o077).toBe(0);
      // Another client reaches the catalog through it and shares the one session: while this
      // process holds a transaction open, the socket's client waits for it, then sees its commit.
      expect(await catalog.migrate()).toEqual(MIGRATIONS.map((m) => m.name));
      const other = postgres({ path: socket, max: 1, user: 'postgres', database: 'postgres', onnotice: () => {} });
      try {
        let inserted!: () => void;
        const insertedOnce = new Promise<void>((resolve) => (inserted = resolve));
        let end!: () => void;
        const ended = new Promise<void>((resolve) => (end = resolve));
        const transaction = catalog.sql.begin(async (tx) => {
          await createDataset(tx, { slug: 'over-the-socket' });
          inserted();
          await ended;
        });
        await insertedOnce;
        const seen = other<{ slug: string }[]>`SELECT slug FROM timestore.datasets WHERE slug = 'over-the-socket'`.execute();
        let answered = false;
        seen.then(() => (answered = true));
        await Bun.sleep(200);
        expect(answered).toBe(false);
        end();
        await transaction;
        expect([...(await seen)]).toEqual([{ slug: 'over-the-socket' }]);
        expect(await getDataset(catalog.sql, 'over-the-socket')).toMatchObject({ slug: 'over-the-socket' });
      } finally {
        await other.end({ timeout: 1 });
      }
    } finally {
      await catalog.close();
    }
    expect(unixListeningPaths('self').filter((p) => p.startsWith(root))).toEqual([]);
  }, 60_000);

  test('a socket directory left open to others is closed again, and a socket file left by a killed process is replaced', async () => {
    const root = storageRoot();
    const socketDir = join(root, '.runtime/catalog');
    mkdirSync(socketDir, { recursive: true, mode: 0o777 });
    writeFileSync(join(socketDir, SOCKET_NAME), ''); // what a SIGKILL leaves behind (a stale entry)
    const catalog = await openEmbedded(root);
    try {
      expect(statSync(socketDir).mode & 0o777).toBe(0o700);
      expect(statSync(join(socketDir, SOCKET_NAME)).isSocket()).toBe(true);
      await catalog.migrate();
    } finally {
      await catalog.close();
    }
  }, 60_000);

  test("PostgreSQL's work runs on the catalog's own thread: a long statement leaves this thread free", async () => {
    const catalog = await openEmbedded(storageRoot());
    try {
      let ticks = 0;
      const ticking = setInterval(() => ticks++, 10);
      const started = performance.now();
      await catalog.sql`SELECT pg_sleep(0.5)`;
      const elapsed = performance.now() - started;
      clearInterval(ticking);
      expect(elapsed).toBeGreaterThanOrEqual(450);
      // Run on this thread, PGlite would have held it for the whole statement: not one tick.
      expect(ticks).toBeGreaterThan(10);
    } finally {
      await catalog.close();
    }
  }, 60_000);

  test("a catalog that cannot start says why, and leaves the storage root's lock free", async () => {
    const root = storageRoot();
    mkdirSync(join(root, '.runtime'), { recursive: true });
    // A symlink where the socket's directory goes could put the socket where others reach it.
    symlinkSync(storageRoot(), join(root, '.runtime/catalog'));
    await expect(openEmbedded(root)).rejects.toThrow(/\.runtime\/catalog must be a directory \(it holds the embedded catalog's socket\)/);
    rmSync(join(root, '.runtime/catalog'));
    const catalog = await openEmbedded(root);
    await catalog.close();
  }, 60_000);

  test('a storage root too deep for a socket path puts the socket in a private temporary directory instead', async () => {
    let root = storageRoot();
    while (Buffer.byteLength(join(root, '.runtime/catalog', SOCKET_NAME)) <= MAX_SOCKET_PATH_BYTES) root = join(root, 'a-rather-long-directory-name');
    mkdirSync(root, { recursive: true });
    const catalog = await openEmbedded(root);
    let socket: string | undefined;
    try {
      socket = unixListeningPaths('self').find((p) => p.endsWith(`/${SOCKET_NAME}`) && p.includes('timestore-catalog-'));
      expect(socket).toBeString();
      expect(Buffer.byteLength(socket as string)).toBeLessThanOrEqual(MAX_SOCKET_PATH_BYTES);
      expect(statSync(join(socket as string, '..')).mode & 0o777).toBe(0o700);
      expect(existsSync(join(root, '.runtime/catalog'))).toBe(false);
      await catalog.migrate();
    } finally {
      await catalog.close();
    }
    expect(existsSync(join(socket as string, '..'))).toBe(false); // removed at close
  }, 60_000);
});
