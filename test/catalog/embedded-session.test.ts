import { afterAll, describe, expect, test } from 'bun:test';
import { fsyncSync, mkdtempSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import postgres from 'postgres';
import { durablePGliteOptions } from '../../src/catalog/embedded.ts';
import { EmbeddedSession } from '../../src/catalog/embedded-session.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * A cluster served by an {@link EmbeddedSession} whose deferred WAL syncs the test may hold: while
 * `held` is an array, each deferred sync waits there until the test runs it.
 */
async function heldCluster(syncLater?: (fd: number) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), 'timestore-session-'));
  dirs.push(dir);
  const wal = join(dir, 'pg_wal') + '/';
  const onThread: string[] = [];
  const state = { held: null as Array<() => void> | null, deferred: 0 };
  const options = await durablePGliteOptions(
    dir,
    (fd) => {
      onThread.push(readlinkSync(`/proc/self/fd/${fd}`));
      fsyncSync(fd);
    },
    syncLater ??
      ((fd) => {
        state.deferred++;
        if (!state.held) return Promise.resolve(fsyncSync(fd));
        const held = state.held;
        return new Promise<void>((resolve) => held.push(() => resolve(fsyncSync(fd))));
      }),
  );
  const db = await PGlite.create(options);
  const session = new EmbeddedSession(db, options.fs);
  const clients: postgres.Sql[] = [];
  const connect = () => {
    const sql = postgres({ socket: () => session.connect(), max: 1, user: 'postgres', database: 'postgres', onnotice: () => {} } as {});
    clients.push(sql);
    return sql;
  };
  const close = async () => {
    for (const sql of clients) await sql.end({ timeout: 1 });
    await db.close();
  };
  return { db, wal, onThread, state, connect, close };
}

/** Whether `promise` has settled, without waiting for it. */
function watch(promise: Promise<unknown>): { settled: boolean } {
  const seen = { settled: false };
  promise.then(
    () => (seen.settled = true),
    () => (seen.settled = true),
  );
  return seen;
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !check(); i++) await Bun.sleep(5);
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

describe('the embedded catalog session', () => {
  test('an answer leaves once its commit is in the WAL on disk, and commits made meanwhile share the next fsync', async () => {
    const cluster = await heldCluster();
    try {
      const [a, b, c] = [cluster.connect(), cluster.connect(), cluster.connect()];
      await a`CREATE TABLE t (x integer)`;
      await Promise.all([b`SELECT 1`, c`SELECT 1`]); // connected before the fsync is held
      cluster.state.held = [];
      const first = a`INSERT INTO t VALUES (1)`;
      const firstSeen = watch(first);
      await until(() => cluster.state.held!.length === 1, 'the first commit\'s WAL sync');
      // Two more commits, and a read after them, run while the first commit's fsync is held.
      const second = b`INSERT INTO t VALUES (2)`;
      const third = c`INSERT INTO t VALUES (3)`;
      const read = a`SELECT count(*)::int AS n FROM t`;
      const later = [watch(second), watch(third), watch(read)];
      await Bun.sleep(100);
      expect(firstSeen.settled).toBe(false);
      expect(later.map((w) => w.settled)).toEqual([false, false, false]);

      cluster.state.held.shift()!();
      await first;
      // One fsync for both commits that waited.
      await until(() => cluster.state.held!.length === 1, 'the next WAL sync');
      await Bun.sleep(50);
      expect(cluster.state.held.length).toBe(1);
      expect(later.map((w) => w.settled)).toEqual([false, false, false]);
      cluster.state.held.shift()!();
      cluster.state.held = null;
      await Promise.all([second, third]);
      expect((await read)[0]).toEqual({ n: 3 });
    } finally {
      await cluster.close();
    }
  }, 60_000);

  test('before any other file of the cluster is written, the WAL syncs owed run on this thread (the WAL reaches the disk first)', async () => {
    const cluster = await heldCluster();
    try {
      const sql = cluster.connect();
      await sql`CREATE TABLE t (x integer)`;
      cluster.state.held = [];
      const insert = sql`INSERT INTO t VALUES (1)`.execute(); // postgres.js sends a query once it is awaited or executed
      await until(() => cluster.state.held!.length === 1, 'the commit\'s WAL sync');
      cluster.onThread.length = 0;
      // A write to a file of the cluster other than the WAL, as PostgreSQL writes a data page.
      const fs = cluster.db.Module.FS as { writeFile(path: string, data: string): void };
      fs.writeFile(`${cluster.db.ENV.PGDATA}/timestore-probe`, 'x');
      expect(cluster.onThread.length).toBeGreaterThan(0);
      expect(cluster.onThread.every((path) => path.startsWith(cluster.wal))).toBe(true);
      // The commit's fsync was held off the thread: it ran on the thread, before the write.
      cluster.state.held.shift()!();
      cluster.state.held = null;
      await insert;
    } finally {
      await cluster.close();
    }
  }, 60_000);

  test('a WAL fsync that fails fails its answer and every one after it, with a message that says to restart', async () => {
    let fail = false;
    const cluster = await heldCluster((fd) => (fail ? Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })) : Promise.resolve(fsyncSync(fd))));
    try {
      const sql = cluster.connect();
      await sql`CREATE TABLE t (x integer)`;
      fail = true;
      await expect(sql`INSERT INTO t VALUES (1)`).rejects.toThrow(/could not make its WAL durable \(EIO: i\/o error, fsync\): restart timestore/);
      fail = false;
      await expect(sql`SELECT 1`).rejects.toThrow(/could not make its WAL durable/);
    } finally {
      await cluster.close().catch(() => {});
    }
  }, 60_000);
});
