/**
 * A runner that dies mid-job: its lease expires, another runner takes the job
 * over, and the batch is published exactly once.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CatalogCache } from '../../src/catalog/lookup-cache.ts';
import type { Catalog } from '../../src/catalog/connection.ts';
import { findDataset } from '../../src/catalog/datasets.ts';
import { claimJobs, completeJobs, getJob } from '../../src/catalog/job-table.ts';
import { listActivePartitions } from '../../src/catalog/manifests.ts';
import { upsertStorageTarget } from '../../src/catalog/storage-targets.ts';
import { WorkerPool } from '../../src/engine/pool.ts';
import { INGEST_JOB_KIND } from '../../src/ingest/accept.ts';
import { IngestService } from '../../src/ingest/service.ts';
import { ingestJobHandler } from '../../src/ingest/write.ts';
import { JobRunner } from '../../src/jobs/runner.ts';
import { StorageDrivers } from '../../src/storage/index.ts';
import { openTestCatalog, silentLog } from '../harness/catalog.ts';

const queue = 'recovery_queue';
let catalog: Catalog;
let pool: WorkerPool;
let root: string;
const drivers = new StorageDrivers(null);

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'ts-recovery-'));
  catalog = await openTestCatalog();
  await upsertStorageTarget(catalog.sql, { name: 'local', kind: 'local', config: { root: join(root, 'partitions') } });
  pool = await WorkerPool.start(1, join(root, '.runtime'));
});
afterAll(async () => {
  await pool.close();
  drivers.close();
  await catalog.close();
  rmSync(root, { recursive: true, force: true });
});

test('a job whose runner died is taken over after its lease and published exactly once', async () => {
  // Accepting needs no runner: the job just waits in the table.
  const service = new IngestService({
    sql: catalog.sql,
    drivers,
    queue,
    defaultTargetName: 'local',
    idempotencyTtlSeconds: 3600,
    maxBodyBytes: 1 << 20,
    inline: false,
    wake: () => {},
    waitForJob: async (id) => getJob(catalog.sql, id),
    catalogCache: new CatalogCache(catalog.sql),
  });
  const batch = {
    schema: { fields: [{ name: 'timestamp', type: 'timestamp' as const }, { name: 'v', type: 'integer' as const }] },
    partition: { key: {} },
    rows: Array.from({ length: 10 }, (_, i) => ({ timestamp: `2026-01-01T00:00:0${i}Z`, v: i })),
  };
  const accepted = await service.ingest({
    datasetSlug: 'recovered',
    format: 'json',
    body: new TextEncoder().encode(JSON.stringify(batch)),
    query: new URLSearchParams(),
    idempotencyKey: null,
    actor: 'alice',
    traceParent: null,
    waitMs: 0,
  });
  expect(accepted.job).toMatchObject({ state: 'queued', actor: 'alice' });

  // A worker claims it with a short lease, then "dies": no heartbeat, no completion.
  const [claimed] = await claimJobs(catalog.sql, { queue, workerId: 'dead-worker', leaseMs: 300, limit: 1 });
  expect(claimed?.id).toBe(accepted.job.id);
  await Bun.sleep(400);

  const runner = new JobRunner({ catalog, log: silentLog, concurrency: 1, pollIntervalMs: 50 }).register(
    INGEST_JOB_KIND,
    ingestJobHandler({ sql: catalog.sql, drivers, pool, scratchDir: join(root, 'tmp'), log: silentLog, catalogCache: new CatalogCache(catalog.sql) }),
    { queue, coalesce: { maxJobs: 16 } },
  );
  await runner.start();
  try {
    const done = await runner.waitForJob(accepted.job.id, 15_000);
    expect(done).toMatchObject({ state: 'succeeded', attempts: 2, lastError: 'lease of dead-worker expired' });
  } finally {
    await runner.stop(5_000);
  }

  // The dead worker wakes up and tries to complete: its lease is gone, so nothing changes.
  expect(await completeJobs(catalog.sql, [accepted.job.id], 'dead-worker')).toEqual([]);

  const dataset = await findDataset(catalog.sql, 'recovered');
  expect(dataset?.manifestVersion).toBe(1);
  const partitions = await listActivePartitions(catalog.sql, { datasetId: dataset!.id, version: 1 });
  expect(partitions.map((p) => p.rowCount)).toEqual([10]);
  const audit = await catalog.sql`SELECT action, actor FROM audit_events WHERE dataset_id = ${dataset!.id}`;
  expect(audit.map((a) => [a.action, a.actor])).toEqual([['dataset.created', 'alice']]);
});
