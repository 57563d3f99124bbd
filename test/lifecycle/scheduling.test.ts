/**
 * Scheduling across processes: two servers sharing a catalog start one round per interval between
 * them and never run a lifecycle job twice; `timestore lifecycle --once` runs a round alone, for a
 * server started with TIMESTORE_LIFECYCLE_ENABLED=false; a write schedules its dataset's compaction
 * TIMESTORE_COMPACTION_DELAY_SECONDS later, without waiting for a round.
 */
import { afterAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findDataset } from '../../src/catalog/datasets.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { openTestCatalog } from '../harness/catalog.ts';
import { REPO_ROOT, spawnServer } from '../harness/server-process.ts';
import { againstBinary, postJson, startTestServer } from '../harness/server.ts';

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'v', type: 'double' },
];
const roots: string[] = [];
afterAll(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })));
const sharedRoot = () => {
  const root = mkdtempSync(join(tmpdir(), 'timestore-shared-'));
  roots.push(root);
  return root;
};

describe('two serve processes on one catalog', () => {
  test('one round per interval between them; every lifecycle job runs once, never twice at once', async () => {
    const databaseUrl = await createTestDatabase('pair');
    const storageRoot = sharedRoot();
    const env = { TIMESTORE_DATABASE_URL: databaseUrl, TIMESTORE_QUERY_CACHE_ENABLED: 'false', TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '1' };
    const servers = await Promise.all([spawnServer({ env, storageRoot }), spawnServer({ env, storageRoot })]);
    const started = Date.now();
    for (let i = 0; i < 12; i++) {
      const res = await postJson(`${servers[i % 2]!.url}/datasets/pair-${i % 3}/ingest?wait=true`, {
        schema: { fields: FIELDS },
        partition: { key: {} },
        rows: [{ timestamp: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString(), v: i }],
      });
      expect(res.status).toBe(201);
      await Bun.sleep(350);
    }
    await Bun.sleep(1500);
    const elapsedSeconds = (Date.now() - started) / 1000;
    // SIGTERM: each lets its running job finish (or hands it back) before exiting.
    expect(await Promise.all(servers.map((s) => s.stop('SIGTERM')))).toEqual([0, 0]);
    const elapsedWithStop = (Date.now() - started) / 1000;

    const catalog = await openTestCatalog({ databaseUrl });
    try {
      const jobs = await catalog.sql<{ kind: string; state: string; attempts: number }[]>`
        SELECT kind, state, attempts FROM jobs WHERE queue = 'timestore_lifecycle'`;
      const rounds = jobs.filter((j) => j.kind === 'maintenance').length;
      expect(rounds).toBeGreaterThanOrEqual(Math.floor(elapsedSeconds) - 2);
      expect(rounds).toBeLessThanOrEqual(Math.ceil(elapsedWithStop) + 1);
      expect(jobs.filter((j) => j.kind === 'lifecycle').length).toBeGreaterThan(0);
      // Each round was scheduled by exactly one of the two.
      const scheduled = servers.map((s) => s.output().split('\n').filter((line) => line.includes('lifecycle: round scheduled')).length);
      expect(scheduled[0]! + scheduled[1]!).toBe(rounds);
      // No job ran twice: a job handed back at shutdown is queued again without counting the attempt.
      for (const job of jobs) {
        expect(['succeeded', 'queued']).toContain(job.state);
        expect(job.attempts).toBeLessThanOrEqual(1);
      }
    } finally {
      await catalog.close();
    }
  }, 60_000);
});

describe('compaction after writes', () => {
  test('a dataset written to is compacted the delay after its first write, not at the next round; the writes share one job', async () => {
    const databaseUrl = await createTestDatabase('soon');
    const env = { TIMESTORE_DATABASE_URL: databaseUrl, TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '3600', TIMESTORE_COMPACTION_DELAY_SECONDS: '2' };
    const server = await spawnServer({ env, storageRoot: sharedRoot() });
    const catalog = await openTestCatalog({ databaseUrl });
    try {
      const activePartitions = async () => {
        const dataset = (await findDataset(catalog.sql, 'soon'))!;
        const [row] = await catalog.sql<{ partitionCount: number }[]>`
          SELECT partition_count FROM manifest_versions WHERE dataset_id = ${dataset.id} AND version = ${dataset.manifestVersion}`;
        return row!.partitionCount;
      };
      for (let i = 0; i < 4; i++) {
        const res = await postJson(`${server.url}/datasets/soon/ingest?wait=true`, {
          schema: { fields: FIELDS },
          partition: { key: {} },
          rows: [{ timestamp: new Date(Date.UTC(2026, 0, 1, i)).toISOString(), v: i }],
        });
        expect(res.status).toBe(201);
      }
      const dataset = (await findDataset(catalog.sql, 'soon'))!;
      const jobs = await catalog.sql<{ runAt: Date; createdAt: Date }[]>`
        SELECT run_at, created_at FROM jobs WHERE queue = 'timestore_lifecycle' AND kind = 'lifecycle' AND dataset_id = ${dataset.id}`;
      expect(jobs).toHaveLength(1);
      expect(jobs[0]!.runAt.getTime() - jobs[0]!.createdAt.getTime()).toBeGreaterThanOrEqual(1_900);

      // The job publishes the merged manifest, then records its own end: wait for both.
      const lifecycleJob = async () => {
        const [job] = await catalog.sql<{ state: string; result: { compaction: { partitionsMerged: number } } }[]>`
          SELECT state, result FROM jobs WHERE kind = 'lifecycle' AND dataset_id = ${dataset.id}`;
        return job!;
      };
      const deadline = Date.now() + 30_000;
      while (((await activePartitions()) > 1 || (await lifecycleJob()).state !== 'succeeded') && Date.now() < deadline) await Bun.sleep(200);
      expect(await activePartitions()).toBe(1);
      const done = await lifecycleJob();
      expect(done.state).toBe('succeeded');
      expect(done.result.compaction.partitionsMerged).toBe(4);
      const rows = await postJson(`${server.url}/datasets/soon/query`, { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' } });
      expect(rows.body.rows.map((r: { v: number }) => r.v)).toEqual([0, 1, 2, 3]);
    } finally {
      await catalog.close();
      expect(await server.stop('SIGTERM')).toBe(0);
    }
  }, 60_000);
  test('a write that finds the job already running (it may have read the dataset before) is compacted by another job after it', async () => {
    const databaseUrl = await createTestDatabase('after');
    const env = { TIMESTORE_DATABASE_URL: databaseUrl, TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '3600', TIMESTORE_COMPACTION_DELAY_SECONDS: '2' };
    const server = await spawnServer({ env, storageRoot: sharedRoot() });
    const catalog = await openTestCatalog({ databaseUrl });
    try {
      const write = async (hour: number) => {
        const res = await postJson(`${server.url}/datasets/after/ingest?wait=true`, {
          schema: { fields: FIELDS },
          partition: { key: {} },
          rows: [{ timestamp: new Date(Date.UTC(2026, 0, 1, hour)).toISOString(), v: hour }],
        });
        expect(res.status).toBe(201);
      };
      await write(0);
      const dataset = (await findDataset(catalog.sql, 'after'))!;
      // Another process's runner claims the job the write queued (before it is due) and holds it.
      const claimed = await catalog.sql`
        UPDATE jobs SET state = 'running', locked_by = 'elsewhere', locked_until = now() + interval '1 hour'
        WHERE kind = 'lifecycle' AND dataset_id = ${dataset.id} AND state = 'queued' RETURNING id`;
      expect(claimed).toHaveLength(1);
      await Bun.sleep(2_200); // past the first ask's delay: the next write asks again
      await write(1);
      await write(2);
      // It finishes without having seen those writes.
      await catalog.sql`
        UPDATE jobs SET state = 'succeeded', locked_by = NULL, locked_until = NULL, finished_at = now(), result = '{}'::jsonb
        WHERE id = ${claimed[0]!.id}`;

      const active = async () => {
        const current = (await findDataset(catalog.sql, 'after'))!;
        const [row] = await catalog.sql<{ partitionCount: number }[]>`
          SELECT partition_count FROM manifest_versions WHERE dataset_id = ${current.id} AND version = ${current.manifestVersion}`;
        return row!.partitionCount;
      };
      const jobStates = async () =>
        (await catalog.sql<{ state: string }[]>`
          SELECT state FROM jobs WHERE kind = 'lifecycle' AND dataset_id = ${dataset.id} ORDER BY created_at`).map((j) => j.state);
      // The second job publishes the merged manifest, then records its own end: wait for both.
      const deadline = Date.now() + 30_000;
      while (((await active()) > 1 || (await jobStates()).some((state) => state !== 'succeeded')) && Date.now() < deadline) await Bun.sleep(200);
      expect(await active()).toBe(1);
      expect(await jobStates()).toEqual(['succeeded', 'succeeded']);
    } finally {
      await catalog.close();
      expect(await server.stop('SIGTERM')).toBe(0);
    }
  }, 60_000);
});

describe('timestore lifecycle --once', () => {
  test('runs a round for a server that does not run the lifecycle itself, then exits 0', async () => {
    const env = {
      TIMESTORE_DATABASE_URL: await createTestDatabase('once'),
      TIMESTORE_STORAGE_ROOT: sharedRoot(),
      TIMESTORE_LIFECYCLE_ENABLED: 'false',
    };
    const ts = await startTestServer(env);
    try {
      if (!againstBinary) expect(ts.server.lifecycleRunner).toBeNull();
      const day = 86_400_000;
      for (const daysAgo of [60, 1]) {
        const res = await postJson(`${ts.url}/datasets/once/ingest?wait=true`, {
          schema: { fields: FIELDS },
          partition: { key: {} },
          rows: [{ timestamp: new Date(Date.now() - daysAgo * day).toISOString(), v: daysAgo }],
        });
        expect(res.status).toBe(201);
      }
      await fetch(`${ts.url}/admin/datasets/once/retention`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ rules: { maxAgeHours: 24 * 30 } }),
      });
      const once = async () => {
        const proc = Bun.spawn([process.execPath, join(REPO_ROOT, 'src/main.ts'), 'lifecycle', '--once'], {
          cwd: REPO_ROOT,
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', TIMESTORE_WORKER_THREADS: '1', ...env },
          stdout: 'pipe',
          stderr: 'pipe',
        });
        const code = await proc.exited;
        const output = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
        expect(code, output).toBe(0);
        expect(output).toContain('lifecycle: dataset done');
      };
      await once();
      const dataset = (await findDataset(ts.sql, 'once'))!;
      const [round] = await ts.sql<{ result: { retention: { partitionsRemoved: number } } }[]>`
        SELECT result FROM jobs WHERE kind = 'lifecycle' AND dataset_id = ${dataset.id}`;
      expect(round!.result.retention.partitionsRemoved).toBe(1);

      // Asked for over HTTP, the job waits for a lifecycle runner: this server has none, but a
      // `--once` process has just done lifecycle work on this catalog, so the next one will run it.
      const queued = await postJson(`${ts.url}/admin/datasets/once/lifecycle`, {});
      expect(queued.status).toBe(202);
      expect(queued.body.state).toBe('queued');
      await once();
      const job = await (await fetch(`${ts.url}/admin/jobs/${queued.body.id}`)).json();
      expect(job).toMatchObject({ state: 'succeeded', result: { retention: { partitionsRemoved: 0 } } });
      const rows = await postJson(`${ts.url}/datasets/once/query`, { timeRange: { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' } });
      expect(rows.body.rows.map((r: { v: number }) => r.v)).toEqual([1]);
    } finally {
      await ts.stop();
    }
  }, 60_000);

  test('an unknown argument is a usage error', async () => {
    const proc = Bun.spawn([process.execPath, join(REPO_ROOT, 'src/main.ts'), 'lifecycle', '--twice'], { cwd: REPO_ROOT, stdout: 'pipe', stderr: 'pipe' });
    expect(await proc.exited).toBe(2);
    expect(await new Response(proc.stderr).text()).toContain('unexpected argument "--twice"');
  });
});
