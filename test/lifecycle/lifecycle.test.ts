/**
 * The lifecycle end to end, on a local target and on S3 (a real radosgw), against a real
 * PostgreSQL: retention removes expired partitions from queries at once and their files after the
 * grace period; maxTotalBytes trims oldest first; 1,000 one-row batches become one partition with
 * identical query results; compaction racing with 4 ingesters loses and duplicates nothing;
 * orphans are swept and referenced files never.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findDataset } from '../../src/catalog/datasets.ts';
import { enqueueJob, purgeFinishedJobs } from '../../src/catalog/job-table.ts';
import { listActivePartitions } from '../../src/catalog/manifests.ts';
import { listReaderPins } from '../../src/catalog/reader-pins.ts';
import { getStorageTarget } from '../../src/catalog/storage-targets.ts';
import type { Partition } from '../../src/model/records.ts';
import { sweepOrphans } from '../../src/lifecycle/collector.ts';
import { createStorageDriver, StorageDrivers } from '../../src/storage/index.ts';
import { silentLog } from '../harness/catalog.ts';
import { testDuckDB } from '../harness/duckdb.ts';
import { parsePrometheusText } from '../harness/prometheus.ts';
import { createBucket, s3Available, s3ServerEnv, startS3Server, type S3Server } from '../harness/s3.ts';
import { againstBinary, postJson, startTestServer, type TestServer } from '../harness/server.ts';

const skipS3 = !process.env.CI && !s3Available();
const HOUR = 3_600_000;
const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'seq', type: 'integer' },
  { name: 'value', type: 'double' },
];
const RANGE = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };

interface Row {
  timestamp: string;
  host: string;
  seq: number;
  value: number;
}

let s3: S3Server | undefined;
let bucket = '';

beforeAll(async () => {
  if (skipS3) return;
  s3 = await startS3Server();
  bucket = await createBucket(s3, 'timestore-lifecycle');
}, 180_000);
afterAll(() => s3?.stop());

const settings = {
  // Rounds only when a test asks for one.
  TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400',
  TIMESTORE_QUERY_TIMEOUT_MS: '1000',
  TIMESTORE_INGEST_CONCURRENCY: '4',
  // Batches written as they come (no coalescing wait): the small files compaction is tested on.
  // With the wait, the thousand one-row batches of a test could all fall into one write.
  TIMESTORE_INGEST_COALESCE_WAIT_MS: '0',
};

for (const kind of ['local', 's3'] as const) {
  describe.skipIf(kind === 's3' && skipS3)(`lifecycle on ${kind}`, () => {
    let ts: TestServer;
    beforeAll(async () => {
      ts = await startTestServer({ ...settings, ...(kind === 's3' ? s3ServerEnv(s3!, bucket) : {}) });
    }, 60_000);
    afterAll(() => ts?.stop());

    const sql = () => ts.sql;
    const ingest = async (slug: string, rows: Row[], wait = true) => {
      const res = await postJson(`${ts.url}/datasets/${slug}/ingest${wait ? '?wait=true' : ''}`, { schema: { fields: FIELDS }, partition: { key: {} }, rows });
      if (res.status !== (wait ? 201 : 202)) throw new Error(`ingest: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    };
    const query = async (slug: string, body: Record<string, unknown> = {}) => {
      const res = await postJson(`${ts.url}/datasets/${slug}/query`, { timeRange: RANGE, limit: 100_000, ...body });
      if (res.status !== 200) throw new Error(`query: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body as { rows: Record<string, unknown>[]; manifestVersion: number };
    };
    const scrape = async () => parsePrometheusText(await (await fetch(`${ts.url}/metrics`)).text());
    const runLifecycle = async (slug: string) => {
      const res = await postJson(`${ts.url}/admin/datasets/${slug}/lifecycle?wait=true`, {});
      expect(res.status).toBe(200);
      expect(res.body.state).toBe('succeeded');
      return res.body.result as { retention: any; compaction: any; filesDeleted: { files: number } };
    };
    const active = async (slug: string): Promise<Partition[]> => {
      const dataset = (await findDataset(sql(), slug))!;
      return listActivePartitions(sql(), { datasetId: dataset.id, version: dataset.manifestVersion });
    };
    const driverOf = async (p: Partition) => createStorageDriver(await getStorageTarget(sql(), p.storageTargetId), ts.config.s3);
    const exists = async (p: Partition) => {
      const driver = await driverOf(p);
      try {
        return await driver.exists(p.location);
      } finally {
        driver.close();
      }
    };
    /** Moves the catalog's clock: the manifest versions of the dataset were published `ms` earlier. */
    const age = async (slug: string, ms: number) => {
      const dataset = (await findDataset(sql(), slug))!;
      await sql()`UPDATE manifest_versions SET created_at = created_at - ${`${ms} milliseconds`}::interval WHERE dataset_id = ${dataset.id}`;
    };
    const rowsAt = (hoursAgo: number, count: number, seq0 = 0): Row[] =>
      Array.from({ length: count }, (_, i) => ({
        timestamp: new Date(Date.now() - hoursAgo * HOUR + i * 1000).toISOString(),
        host: `h${i % 3}`,
        seq: seq0 + i,
        value: i * 1.5,
      }));

    test('an expired partition disappears from queries at once and its file after the grace period', async () => {
      await ingest('expiring', rowsAt(24 * 40, 5)); // 40 days old
      await ingest('expiring', rowsAt(24 * 10, 5, 100)); // 10 days old
      await ingest('expiring', rowsAt(1, 5, 200));
      const before = await active('expiring');
      expect(before).toHaveLength(3);
      const oldest = before[0]!;

      const res = await fetch(`${ts.url}/admin/datasets/expiring/retention`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ rules: { maxAgeHours: 24 * 30 }, deleteGraceMinutes: 1 }),
      });
      expect(res.status).toBe(200);

      const result = await runLifecycle('expiring');
      expect(result.retention).toMatchObject({ partitionsRemoved: 1, rowsRemoved: 5 });
      expect((await query('expiring')).rows.map((r) => r.seq)).toEqual([100, 101, 102, 103, 104, 200, 201, 202, 203, 204]);
      // Inside the grace period the file stays: a query that started on the older version may read it.
      expect(result.filesDeleted.files).toBe(0);
      expect(await exists(oldest)).toBe(true);
      const audit = await (await fetch(`${ts.url}/admin/datasets/expiring/audit?limit=1`)).json();
      expect((audit as any).events[0]).toMatchObject({ action: 'retention.applied', details: { partitionsRemoved: 1, rowsRemoved: 5 } });

      await age('expiring', 2 * 60_000);
      const later = await runLifecycle('expiring');
      expect(later.retention.partitionsRemoved).toBe(0);
      expect(later.filesDeleted.files).toBe(1);
      expect(await exists(oldest)).toBe(false);
      // The manifest still lists the earlier version; the current one has two partitions.
      const manifest = await (await fetch(`${ts.url}/admin/datasets/expiring/manifest`)).json();
      expect((manifest as any).totals.partitions).toBe(2);
    });

    test('maxTotalBytes trims the oldest partitions first', async () => {
      for (const hoursAgo of [96, 72, 48, 24]) await ingest('bounded', rowsAt(hoursAgo, 20, hoursAgo * 100));
      const parts = await active('bounded');
      expect(parts).toHaveLength(4);
      const newestTwo = parts[2]!.sizeBytes + parts[3]!.sizeBytes;
      await fetch(`${ts.url}/admin/datasets/bounded/retention`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ rules: { maxTotalBytes: newestTwo } }),
      });
      const result = await runLifecycle('bounded');
      expect(result.retention.partitionsRemoved).toBe(2);
      expect((await active('bounded')).map((p) => p.id)).toEqual([parts[2]!.id, parts[3]!.id]);
      const seqs = (await query('bounded')).rows.map((r) => r.seq as number);
      expect(Math.min(...seqs)).toBe(2400); // the 48-hour-old batch is the oldest kept
    });

    test('1,000 one-row batches become one partition with identical query results', async () => {
      const base = Date.now() - 2 * HOUR;
      const rows: Row[] = Array.from({ length: 1000 }, (_, i) => ({
        timestamp: new Date(base + i * 1000).toISOString(),
        host: `h${i % 7}`,
        seq: i,
        value: Math.round(Math.sin(i) * 1e6) / 1e3 || 0,
      }));
      // Start-of-hour windows can split the rows across two days near midnight; keep them in one window.
      const window = Math.floor(base / 86_400_000);
      const inWindow = rows.filter((r) => Math.floor(Date.parse(r.timestamp) / 86_400_000) === window);
      for (let i = 0; i < inWindow.length; i += 25) {
        await Promise.all(inWindow.slice(i, i + 25).map((row) => ingest('tiny', [row], false)));
      }
      await waitForJobs(ts, 'tiny');
      const before = await active('tiny');
      expect(before.length).toBeGreaterThan(1);
      const raw = await query('tiny');
      const downsample = {
        intervalUnit: 'minute',
        intervalSize: 5,
        aggregations: [
          { fn: 'avg', column: 'value' },
          { fn: 'count', column: 'seq' },
          { fn: 'max', column: 'value' },
          { fn: 'last', column: 'seq' },
        ],
        groupBy: ['host'],
      };
      const recent = { start: new Date(base - HOUR).toISOString(), end: new Date().toISOString() };
      const downsampled = await query('tiny', { timeRange: recent, downsample });

      const metricsBefore = await scrape();
      const result = await runLifecycle('tiny');
      const metricsAfter = await scrape();
      expect(metricsAfter.sum('timestore_compaction_partitions_merged_total') - metricsBefore.sum('timestore_compaction_partitions_merged_total')).toBe(before.length);
      expect(metricsAfter.value('timestore_compaction_runs_total', { outcome: 'succeeded' })).toBeGreaterThan(
        metricsBefore.value('timestore_compaction_runs_total', { outcome: 'succeeded' })!,
      );
      expect(result.compaction).toMatchObject({ partitionsMerged: before.length, partitionsWritten: 1, conflicts: 0 });
      // This server answers queries: each of its query threads has read the new local file's footer
      // (and ran the made-up queries at start); files on S3 are fetched by queries, not read ahead.
      const queryThreads = metricsAfter.value('timestore_worker_pool_threads', { workload: 'query' })!;
      expect(queryThreads).toBeGreaterThan(0);
      const readAhead = metricsAfter.sum('timestore_query_footers_read_ahead_total') - metricsBefore.sum('timestore_query_footers_read_ahead_total');
      expect(readAhead).toBe(kind === 'local' ? queryThreads : 0);
      expect(metricsAfter.value('timestore_query_threads_warmed_total')).toBe(queryThreads);
      const after = await active('tiny');
      expect(after).toHaveLength(1);
      expect(after[0]!.rowCount).toBe(inWindow.length);
      // Written in the dataset's default layout: by its series key (its string field, host), then time.
      const driver = await driverOf(after[0]!);
      const copy = join(tmpdir(), `compacted-${after[0]!.id}.parquet`);
      try {
        writeFileSync(copy, await driver.read(after[0]!.location));
        const order = (await (await testDuckDB()).runAndReadAll(`SELECT host, epoch_us(timestamp) FROM read_parquet('${copy}')`)).getRows();
        const sorted = [...order].sort((x, y) => (x[0]! < y[0]! ? -1 : x[0]! > y[0]! ? 1 : Number(x[1]) - Number(y[1])));
        expect(order).toEqual(sorted);
      } finally {
        driver.close();
        rmSync(copy, { force: true });
      }
      const rawAfter = await query('tiny');
      expect(rawAfter.manifestVersion).toBeGreaterThan(raw.manifestVersion);
      expect(rawAfter.rows).toEqual(raw.rows);
      // Identical, except that an average may differ in its last bits: floating-point sums depend
      // on the order rows are added in, and the rows now come from one file instead of many.
      const downsampledAfter = (await query('tiny', { timeRange: recent, downsample })).rows;
      const withoutAvg = (rows: Record<string, unknown>[]) => rows.map(({ avg_value: _avg, ...rest }) => rest);
      expect(withoutAvg(downsampledAfter)).toEqual(withoutAvg(downsampled.rows));
      downsampledAfter.forEach((row, i) => expect(row.avg_value as number).toBeCloseTo(downsampled.rows[i]!.avg_value as number, 9));

      // The inputs' files go after the grace period (the server default here: 5 minutes), once
      // the queries above, which read the older version, no longer pin it.
      await age('tiny', 10 * 60_000);
      await pinsReleased(ts, 'tiny');
      expect((await runLifecycle('tiny')).filesDeleted.files).toBe(before.length);
      expect(await exists(before[0]!)).toBe(false);
      expect(await exists(after[0]!)).toBe(true);
    }, 120_000);

    test('compaction racing with 4 concurrent ingesters loses and duplicates nothing', async () => {
      const base = Date.now() - 3 * HOUR;
      const perClient = 60;
      let compactions = 0;
      let stop = false;
      await ingest('raced', [{ timestamp: new Date(base - 1).toISOString(), host: 'first', seq: -1, value: 0 }]);
      const compactor = (async () => {
        while (!stop) {
          const result = await runLifecycle('raced');
          compactions += result.compaction.groupsMerged;
        }
      })();
      await Promise.all(
        Array.from({ length: 4 }, async (_, client) => {
          for (let i = 0; i < perClient; i++) {
            const seq = client * perClient + i;
            // Both rows stay in one window: base is at least 3 hours before now, rows span seconds.
            await ingest('raced', [
              { timestamp: new Date(base + seq * 10).toISOString(), host: `c${client}`, seq, value: seq },
              { timestamp: new Date(base + seq * 10 + 5).toISOString(), host: `c${client}`, seq: seq + 100_000, value: -seq },
            ], i % 3 === 0);
          }
        }),
      );
      await waitForJobs(ts, 'raced');
      stop = true;
      await compactor;
      const final = await runLifecycle('raced');
      compactions += final.compaction.groupsMerged;
      expect(compactions).toBeGreaterThan(0);

      const seqs = (await query('raced')).rows.map((r) => r.seq as number).sort((a, b) => a - b);
      const expected = Array.from({ length: 4 * perClient }, (_, i) => i);
      expect(seqs).toEqual([-1, ...expected, ...expected.map((s) => s + 100_000)]);
      const parts = await active('raced');
      expect(parts.reduce((n, p) => n + p.rowCount, 0)).toBe(8 * perClient + 1);
    }, 180_000);

    test('an orphaned file is swept; referenced files never are, nor the batch of a job that failed for good', async () => {
      const dataset = (await findDataset(sql(), 'bounded'))!;
      const [referenced] = await active('bounded');
      const target = await getStorageTarget(sql(), referenced!.storageTargetId);
      const driver = await driverOf(referenced!);
      const orphan = await driver.putBytes(`datasets/${dataset.slug}/_/1970-01-01T000000Z/${randomUUID()}.parquet`, new TextEncoder().encode('not referenced'));
      const staged = await driver.putBytes(`staging/${dataset.slug}/${randomUUID()}.json`, new TextEncoder().encode('{}'));
      const kept = await driver.putBytes(`staging/${dataset.slug}/${randomUUID()}.json`, new TextEncoder().encode('{}'));
      const { job: failed } = await enqueueJob(sql(), {
        queue: 'nobody-runs-this',
        kind: 'ingest',
        datasetId: dataset.id,
        payload: { storageTargetId: target.id, staged: { location: kept.location } },
      });
      await sql()`UPDATE jobs SET state = 'failed', finished_at = now() WHERE id = ${failed.id}`;

      const drivers = new StorageDrivers(ts.config.s3);
      const swept = await sweepOrphans({ sql: sql(), drivers, log: silentLog }, target, new Date(Date.now() + 60_000), new AbortController().signal);
      drivers.close();
      expect(swept.files).toBeGreaterThanOrEqual(2);
      expect(await driver.exists(orphan.location)).toBe(false);
      expect(await driver.exists(staged.location)).toBe(false);
      expect(await driver.exists(kept.location)).toBe(true);
      await sql()`DELETE FROM jobs WHERE id = ${failed.id}`;
      for (const p of await active('bounded')) expect(await driver.exists(p.location)).toBe(true);
      expect((await query('bounded')).rows.length).toBeGreaterThan(0);
      driver.close();
    });
  });
}

describe.skipIf(againstBinary)('the maintenance job on a local target', () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({ ...settings, TIMESTORE_GC_ORPHAN_MIN_AGE_MINUTES: '30', TIMESTORE_JOB_RETENTION_HOURS: '1' });
  });
  afterAll(() => ts?.stop());

  test('sweeps old orphans (not young ones) and purges finished jobs past their retention', async () => {
    const res = await postJson(`${ts.url}/datasets/swept/ingest?wait=true`, {
      schema: { fields: FIELDS },
      partition: { key: {} },
      rows: [{ timestamp: '2026-01-01T00:00:00Z', host: 'a', seq: 1, value: 1 }],
    });
    expect(res.status).toBe(201);
    const location: string = res.body.result.partitions[0].location;
    const dir = dirname(fileURLToPath(location));
    // A crash's temporary file (old) and a file being published (young), both named as timestore names them.
    const old = `${dir}/.${randomUUID()}.parquet.tmp-0123456789ab`;
    const young = `${dir}/${randomUUID()}.parquet`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(old, 'partial');
    writeFileSync(young, 'being published');
    const hourAgo = new Date(Date.now() - HOUR);
    utimesSync(old, hourAgo, hourAgo);
    utimesSync(fileURLToPath(location), hourAgo, hourAgo); // old, but referenced
    await ts.sql`UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = ${res.body.id}`;

    const job = await ts.server.lifecycle.enqueueRound();
    const maintenance = job.find((j) => j.kind === 'maintenance')!;
    const done = await ts.server.runner.waitForJob(maintenance.id, 60_000);
    expect(done?.state).toBe('succeeded');
    expect((done?.result as any).purged.jobs).toBeGreaterThanOrEqual(1);
    expect(await Bun.file(old).exists()).toBe(false);
    expect(await Bun.file(young).exists()).toBe(true);
    expect(await Bun.file(fileURLToPath(location)).exists()).toBe(true);
    expect(await purgeFinishedJobs(ts.sql, HOUR)).toBe(0);
  });
});

/** Waits until no reader pins a version of the dataset older than its current one. */
async function pinsReleased(ts: TestServer, slug: string): Promise<void> {
  const dataset = (await findDataset(ts.sql, slug))!;
  for (let i = 0; i < 300; i++) {
    const pins = await listReaderPins(ts.sql, dataset.id);
    if (pins.every((p) => p.manifestVersion >= dataset.manifestVersion)) return;
    await Bun.sleep(100);
  }
  throw new Error(`${slug}: older versions stayed pinned`);
}

/** Waits until no job of the dataset is queued or running. */
async function waitForJobs(ts: TestServer, slug: string): Promise<void> {
  const dataset = (await findDataset(ts.sql, slug))!;
  for (let i = 0; i < 600; i++) {
    const [row] = await ts.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM jobs WHERE dataset_id = ${dataset.id} AND kind = 'ingest' AND state IN ('queued', 'running')`;
    if (row!.n === 0) return;
    await Bun.sleep(100);
  }
  throw new Error(`jobs of ${slug} did not finish`);
}
