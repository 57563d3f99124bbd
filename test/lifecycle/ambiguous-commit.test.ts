/**
 * Ambiguous commits: the catalog connection is lost while a publish's COMMIT is on its way (a TCP
 * proxy between timestore and the real PostgreSQL drops the COMMIT's answer, or the COMMIT
 * itself). Neither compaction nor ingestion deletes the files it wrote: when the commit happened,
 * the manifest references them and every row stays readable; when it did not, they are orphans
 * that the collector's sweep removes.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { findDataset } from '../../src/catalog/datasets.ts';
import { listActivePartitions } from '../../src/catalog/manifests.ts';
import { findStorageTarget } from '../../src/catalog/storage-targets.ts';
import { sweepOrphans } from '../../src/lifecycle/collector.ts';
import { StorageDrivers } from '../../src/storage/index.ts';
import { silentLog } from '../harness/catalog.ts';
import { type PgProxy, startPgProxy } from '../harness/pg-proxy.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'seq', type: 'integer' },
];
const RANGE = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };
const COMPACTION_PUBLISH = /UPDATE partitions SET removed_version/i;
const INGEST_PUBLISH = /INSERT INTO manifest_versions/i;

let proxy: PgProxy;
let ts: TestServer;
const sql = () => ts.sql;

beforeAll(async () => {
  proxy = await startPgProxy(await createTestDatabase('ambiguous'));
  // No compaction after writes: its job's INSERT, sent after a write's answer, would be the
  // statement an armed proxy catches instead of the one a test aims at.
  ts = await startTestServer({ TIMESTORE_DATABASE_URL: proxy.url, TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400', TIMESTORE_COMPACTION_DELAY_SECONDS: '0' });
}, 60_000);
afterAll(async () => {
  await ts?.stop();
  await proxy?.close();
});

async function ingest(slug: string, seq0: number, count: number): Promise<{ status: number; body: any }> {
  const rows = Array.from({ length: count }, (_, i) => ({ timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, seq0 + i)).toISOString(), seq: seq0 + i }));
  return postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: {} }, rows });
}

async function seqsOf(slug: string): Promise<number[]> {
  const res = await postJson(`${ts.url}/datasets/${slug}/query`, { timeRange: RANGE, limit: 100_000 });
  expect(res.status).toBe(200);
  return res.body.rows.map((r: { seq: number }) => r.seq).sort((a: number, b: number) => a - b);
}

async function activeLocations(slug: string): Promise<string[]> {
  const dataset = (await findDataset(sql(), slug))!;
  return (await listActivePartitions(sql(), { datasetId: dataset.id, version: dataset.manifestVersion })).map((p) => p.location);
}

/** Every partition file of the dataset on the local target, as locations. */
function filesOf(slug: string): string[] {
  const root = join(ts.config.storageRoot, 'partitions', 'datasets', slug);
  return (readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith('.parquet')).map((f) => pathToFileURL(join(root, f)).href);
}

async function referenced(locations: string[]): Promise<Set<string>> {
  const rows = await sql()<{ location: string }[]>`SELECT location FROM partitions WHERE location IN ${sql()(locations)}`;
  return new Set(rows.map((r) => r.location));
}

const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);

async function threeSmallPartitions(slug: string): Promise<number[]> {
  for (const seq0 of [0, 100, 200]) expect((await ingest(slug, seq0, 10)).status).toBe(201);
  expect(await activeLocations(slug)).toHaveLength(3);
  return [...range(0, 10), ...range(100, 10), ...range(200, 10)];
}

describe('a compaction whose commit answer is lost', () => {
  test('keeps its output: the manifest that did commit references it, and every row stays readable', async () => {
    const expected = await threeSmallPartitions('lost-answer');
    const lost = proxy.loseCommit(COMPACTION_PUBLISH, 'reply');
    // The first attempt fails (its commit's outcome is unknown); the retry finds nothing left to merge.
    const res = await postJson(`${ts.url}/admin/datasets/lost-answer/lifecycle?wait=true`, {});
    await lost;
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ state: 'succeeded', attempts: 2 });
    expect(res.body.lastError).toContain('outcome is unknown');

    const [merged, ...others] = await activeLocations('lost-answer');
    expect(others).toEqual([]);
    expect(filesOf('lost-answer')).toContain(merged!);
    expect(await seqsOf('lost-answer')).toEqual(expected);
  }, 60_000);
});

describe('a compaction whose COMMIT never arrives', () => {
  test('leaves its output to the collector, which sweeps it as an orphan; the retry merges again', async () => {
    const expected = await threeSmallPartitions('lost-commit');
    const lost = proxy.loseCommit(COMPACTION_PUBLISH, 'request');
    const res = await postJson(`${ts.url}/admin/datasets/lost-commit/lifecycle?wait=true`, {});
    await lost;
    expect(res.body).toMatchObject({ state: 'succeeded', attempts: 2 });
    expect(await activeLocations('lost-commit')).toHaveLength(1);
    expect(await seqsOf('lost-commit')).toEqual(expected);

    // The first attempt's output was not deleted by compaction: nothing references it.
    const files = filesOf('lost-commit');
    const known = await referenced(files);
    const orphans = files.filter((f) => !known.has(f));
    expect(orphans).toHaveLength(1);

    const drivers = new StorageDrivers(null);
    const target = (await findStorageTarget(sql(), 'local'))!;
    await sweepOrphans({ sql: sql(), drivers, log: silentLog }, target, new Date(Date.now() + 60_000), new AbortController().signal);
    drivers.close();
    const left = filesOf('lost-commit');
    expect(left.filter((f) => orphans.includes(f))).toEqual([]);
    for (const location of await activeLocations('lost-commit')) expect(left).toContain(location);
    expect(await seqsOf('lost-commit')).toEqual(expected);
  }, 60_000);
});

describe('an ingest publish whose commit answer is lost', () => {
  test('the batch is published once and its files stay', async () => {
    expect((await ingest('lost-ingest', 0, 5)).status).toBe(201);
    const lost = proxy.loseCommit(INGEST_PUBLISH, 'reply');
    const res = await ingest('lost-ingest', 100, 7);
    await lost;
    // The publish and the job's completion committed together: the job is done, not retried.
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ state: 'succeeded', attempts: 1 });
    const locations = await activeLocations('lost-ingest');
    expect(locations).toHaveLength(2);
    for (const location of locations) expect(filesOf('lost-ingest')).toContain(location);
    expect(await seqsOf('lost-ingest')).toEqual([...range(0, 5), ...range(100, 7)]);
  }, 60_000);
});

describe('an acknowledgement whose catalog answer is lost', () => {
  test('is a 503 that says the batch may have been queued; the body stays for the job that did commit', async () => {
    expect((await ingest('lost-ack', 0, 5)).status).toBe(201);
    const lost = proxy.loseAnswer(/INSERT INTO jobs/i);
    const rows = range(100, 3).map((seq) => JSON.stringify({ timestamp: new Date(Date.UTC(2026, 0, 2, 0, 0, seq)).toISOString(), seq })).join('\n');
    const res = await fetch(`${ts.url}/datasets/lost-ack/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: rows });
    await lost;
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: unknown }).error).toMatchObject({ code: 'outcome_unknown', message: expect.stringContaining('Idempotency-Key') });
    // The statement did commit: its job runs and finds the staged body it was promised.
    for (let i = 0; i < 200 && (await seqsOf('lost-ack')).length < 8; i++) await Bun.sleep(50);
    expect(await seqsOf('lost-ack')).toEqual([...range(0, 5), ...range(100, 3)]);
  }, 60_000);
});
