/** The job runner on the embedded catalog (PGlite): one connection, no NOTIFY delivery. */
import { afterAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCatalog } from '../../src/catalog/connection.ts';
import { createDataset } from '../../src/catalog/datasets.ts';
import { JobRunner } from '../../src/jobs/runner.ts';
import { silentLog } from '../harness/catalog.ts';

const root = mkdtempSync(join(tmpdir(), 'timestore-jobs-embedded-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

test('enqueue → run (coalesced under a budget, completed in the handler transaction) → succeeded, on the embedded catalog', async () => {
  const catalog = await openCatalog({ databaseUrl: null, schema: 'timestore', storageRoot: root, log: silentLog });
  try {
    await catalog.migrate();
    const dataset = await createDataset(catalog.sql, { slug: 'embedded-jobs' });
    const runner = new JobRunner({ catalog, log: silentLog, concurrency: 2, pollIntervalMs: 10_000 });
    const batches: number[] = [];
    runner.register(
      'ingest',
      async (jobs, ctx) => {
        batches.push(jobs.length);
        // Only the transaction's handle inside it: with one connection, the pool would deadlock.
        await catalog.sql.begin(async (tx) => {
          await tx`UPDATE datasets SET manifest_version = manifest_version + 1 WHERE id = ${dataset.id}`;
          await ctx.complete(tx, Object.fromEntries(jobs.map((j) => [j.id, { rows: (j.payload as { rowCount: number }).rowCount }])));
        });
      },
      // With a coalescing budget, as a server runs it: its claim and due-time statements run on PGlite too.
      { queue: 'ingest', coalesce: { maxJobs: 10, weightField: 'rowCount', minWeight: 1_000, maxWaitMs: 100 } },
    );
    const enqueue = (rowCount: number) => runner.enqueue({ queue: 'ingest', kind: 'ingest', datasetId: dataset.id, payload: { rowCount } });
    const first = (await enqueue(1)).job;
    const second = (await enqueue(2)).job;
    const t = Date.now();
    await runner.start(); // the poll is 10 s: only the in-process wake can make this quick
    const third = (await enqueue(3)).job;
    for (const job of [first, second, third]) {
      expect(await runner.waitForJob(job.id, 5_000)).toMatchObject({ state: 'succeeded', attempts: 1, result: { rows: (job.payload as { rowCount: number }).rowCount } });
    }
    expect(Date.now() - t).toBeLessThan(1_000);
    expect(batches.reduce((n, b) => n + b, 0)).toBe(3);
    await runner.stop(1_000);
  } finally {
    await catalog.close();
  }
}, 60_000);
