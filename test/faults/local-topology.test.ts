/**
 * Several processes on one catalog with the local driver (docs/operations.md, "Supported
 * topologies"): processes sharing one storage root on one machine cooperate and strand no job; a
 * process whose directory is not the catalog's `local` target (another root, or the same path on
 * another machine, here a directory put in its place) is refused at boot with the documented
 * message, and leaves the target as it was. Real server processes (the compiled binary with
 * TIMESTORE_TEST_SERVER=binary).
 */
import { afterAll, describe, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openTestCatalog } from '../harness/catalog.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { spawnServer } from '../harness/server-process.ts';
import { postJson, TEST_BINARY } from '../harness/server.ts';

const command = TEST_BINARY ? [TEST_BINARY] : undefined;
const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
const newRoot = () => {
  const dir = mkdtempSync(join(tmpdir(), 'ts-topology-'));
  dirs.push(dir);
  return dir;
};
const batch = (minute: number) => ({
  schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'v', type: 'double' }] },
  partition: { key: {} },
  rows: [{ timestamp: new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString(), v: minute }],
});

/** Starts a process that must be refused; returns the message it died with. */
async function refused(env: Record<string, string>, storageRoot: string): Promise<string> {
  const err = await spawnServer({ command, env, storageRoot, readyTimeoutMs: 90_000 }).then(
    async (server) => {
      await server.stop();
      throw new Error('the process came up');
    },
    (e: Error) => e,
  );
  expect(err.message).toContain('exited with 1 before it was ready');
  const fatal = err.message.split('\n').find((line) => line.includes('"level":"fatal"'));
  return (JSON.parse(fatal ?? '{}') as { msg?: string }).msg ?? err.message;
}

describe('the local driver on a catalog shared by several processes', () => {
  test('one machine, one storage root: every job is written; another root, or another directory at the path, is refused at boot', async () => {
    const databaseUrl = await createTestDatabase('topology');
    const env = { TIMESTORE_DATABASE_URL: databaseUrl, TIMESTORE_QUERY_CACHE_ENABLED: 'false', TIMESTORE_LIFECYCLE_ENABLED: 'false' };
    const root = newRoot();
    const first = await spawnServer({ command, env, storageRoot: root, readyTimeoutMs: 90_000 });
    const second = await spawnServer({ command, env, storageRoot: root, readyTimeoutMs: 90_000 });
    const catalog = await openTestCatalog({ databaseUrl });
    try {
      // Queued on either process, claimed by either: both see the staged bodies.
      for (let i = 0; i < 10; i++) {
        const res = await postJson(`${[first, second][i % 2]!.url}/datasets/shared/ingest`, batch(i));
        expect(res.status).toBe(202);
      }
      const done = await postJson(`${second.url}/datasets/shared/ingest?wait=true`, batch(10));
      expect(done.status).toBe(201);
      for (let i = 0; i < 300; i++) {
        const [open] = await catalog.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM jobs WHERE kind = 'ingest' AND state <> 'succeeded'`;
        if (open!.n === 0) break;
        await Bun.sleep(100);
      }
      const states = await catalog.sql<{ state: string; n: number }[]>`SELECT state, count(*)::int AS n FROM jobs WHERE kind = 'ingest' GROUP BY state`;
      expect([...states]).toEqual([{ state: 'succeeded', n: 11 }]);

      // Another storage root on the same catalog: refused, the target untouched.
      const otherRoot = newRoot();
      const elsewhere = await refused(env, otherRoot);
      expect(elsewhere).toContain(`the catalog's "local" storage target is the directory ${join(root, 'partitions')}`);
      expect(elsewhere).toContain('set TIMESTORE_STORAGE_DRIVER=s3');
      expect(elsewhere).toContain('Supported topologies');
      const [target] = await catalog.sql<{ config: { root: string } }[]>`SELECT config FROM storage_targets WHERE name = 'local'`;
      expect(target!.config.root).toBe(join(root, 'partitions'));

      expect(await Promise.all([first.stop(), second.stop()])).toEqual([0, 0]);

      // The same path on another machine: a directory of that path without this catalog's marker.
      renameSync(root, `${root}.moved`);
      dirs.push(`${root}.moved`);
      mkdirSync(root);
      const samePath = await refused(env, root);
      expect(samePath).toContain("another machine's directory of the same path");

      // The directory that is the target comes back: the process starts, and every row is there.
      rmSync(root, { recursive: true });
      renameSync(`${root}.moved`, root);
      const back = await spawnServer({ command, env, storageRoot: root, readyTimeoutMs: 90_000 });
      const query = await postJson(`${back.url}/datasets/shared/query`, { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' } });
      expect(query.status).toBe(200);
      expect(query.body.rows).toHaveLength(11);
      expect(await back.stop()).toBe(0);
    } finally {
      await first.stop().catch(() => {});
      await second.stop().catch(() => {});
      await catalog.close();
    }
  }, 240_000);
});
