/**
 * GET /metrics: valid Prometheus text (checked by a strict parser), every family documented in
 * docs/api.md, counters that move when work is done, catalog figures read at scrape time, the
 * lifecycle API, and one registry per server.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { register as globalRegistry } from 'prom-client';
import { Metrics } from '../../src/observability/metrics.ts';
import type { PartitionCacheStats } from '../../src/storage/partition-cache.ts';
import { VERSION } from '../../src/version.ts';
import { type Exposition, parsePrometheusText } from '../harness/prometheus.ts';
import { againstBinary, postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer();
});
afterAll(() => ts.stop());

async function scrape(server: TestServer = ts): Promise<Exposition> {
  const res = await fetch(`${server.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheusText(await res.text());
}

const fields = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'usage', type: 'double' },
];
const rows = (n: number, day = 1) =>
  Array.from({ length: n }, (_, i) => ({ timestamp: `2026-01-0${day}T00:0${i}:00Z`, host: `h${i % 2}`, usage: i / 10 }));

describe('GET /metrics', () => {
  test('is the Prometheus text format, with every timestore family documented in docs/api.md and vice versa', async () => {
    const exposition = await scrape();
    const exposed = [...exposition.families.keys()].filter((n) => n.startsWith('timestore_')).sort();
    const api = readFileSync(join(import.meta.dir, '../../docs/api.md'), 'utf8');
    const section = api.slice(api.indexOf('## Metrics'), api.indexOf('## Tracing'));
    const documented = [...new Set([...section.matchAll(/^\| `(timestore_[a-z_]+)`/gm)].map((m) => m[1]!))].sort();
    expect(documented).toEqual(exposed);
    expect(exposition.family('timestore_job_latency_seconds').type).toBe('histogram');
    expect(exposition.family('timestore_query_duration_seconds').type).toBe('histogram');
    expect(exposition.family('timestore_ingest_rows_total').type).toBe('counter');
    expect(exposition.family('timestore_jobs').type).toBe('gauge');
    expect(exposition.family('process_cpu_seconds_total').type).toBe('counter');
    expect(exposition.value('timestore_build_info', { version: VERSION })).toBe(1);
    expect(exposition.value('timestore_worker_pool_threads', { workload: 'query' })).toBe(1);
    expect(exposition.value('timestore_worker_pool_threads', { workload: 'health' })).toBe(1);
    expect(exposition.value('timestore_worker_pool_refused_total', { workload: 'stream' })).toBe(0);
    // Lifecycle counters exist (at zero) before any lifecycle task runs, so rate() works from the start.
    expect(exposition.value('timestore_compaction_runs_total', { outcome: 'failed' })).toBe(0);
    // Every job state of the ingest queue is reported even when the table holds no ingest job.
    for (const state of ['queued', 'running', 'succeeded', 'failed']) {
      expect(exposition.value('timestore_jobs', { queue: ts.config.ingest.queueName, kind: 'ingest', state })).toBeNumber();
    }
  });

  test('counters move when batches are ingested and queries run; catalog gauges follow the catalog', async () => {
    const before = await scrape();
    const body = JSON.stringify({ schema: { fields }, partition: { key: { site: 'a' } }, rows: rows(4) });
    const ingested = await postJson(`${ts.url}/datasets/metered/ingest?wait=true`, body, { 'idempotency-key': 'm-1' });
    expect(ingested.status).toBe(201);
    // The same key and body again: a replay, which counts the batch but no rows.
    expect((await postJson(`${ts.url}/datasets/metered/ingest?wait=true`, body, { 'idempotency-key': 'm-1' })).body.replayed).toBe(true);
    const second = await postJson(`${ts.url}/datasets/metered/ingest?wait=true`, { schema: { fields }, partition: { key: { site: 'b' } }, rows: rows(3, 2) });
    expect(second.status).toBe(201);

    const timeRange = { start: '2026-01-01T00:00:00Z', end: '2026-01-03T00:00:00Z' };
    expect((await postJson(`${ts.url}/datasets/metered/query`, { timeRange })).status).toBe(200);
    expect((await postJson(`${ts.url}/datasets/metered/query`, { timeRange, filters: { partitionKey: { site: ['a'] } } })).status).toBe(200);
    const downsampled = await postJson(`${ts.url}/datasets/metered/query`, {
      timeRange,
      downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'usage' }] },
    });
    expect(downsampled.status).toBe(200);
    expect((await postJson(`${ts.url}/datasets/metered/query`, { timeRange, columns: ['nope'] })).status).toBe(400);
    const streamed = await fetch(`${ts.url}/datasets/metered/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify({ timeRange }),
    });
    expect((await streamed.text()).trim().split('\n')).toHaveLength(7);

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}) => after.sum(name, labels) - before.sum(name, labels);
    const dataset = { dataset: 'metered' };

    expect(delta('timestore_ingest_batches_total', { ...dataset, outcome: 'accepted' })).toBe(2);
    expect(delta('timestore_ingest_batches_total', { ...dataset, outcome: 'replayed' })).toBe(1);
    expect(delta('timestore_ingest_rows_total', dataset)).toBe(7);
    expect(delta('timestore_ingest_bytes_total', dataset)).toBe(Buffer.byteLength(body) + Buffer.byteLength(JSON.stringify({ schema: { fields }, partition: { key: { site: 'b' } }, rows: rows(3, 2) })));
    expect(delta('timestore_ingest_written_rows_total', dataset)).toBe(7);
    expect(delta('timestore_ingest_written_partitions_total', dataset)).toBe(2);

    // Jobs: two ingest jobs went from created to succeeded; the table says so at scrape time.
    expect(delta('timestore_job_latency_seconds_count', { kind: 'ingest', outcome: 'succeeded' })).toBe(2);
    expect(after.value('timestore_job_latency_seconds_bucket', { kind: 'ingest', outcome: 'succeeded', le: '+Inf' })).toBeGreaterThanOrEqual(2);
    expect(after.value('timestore_jobs', { queue: ts.config.ingest.queueName, kind: 'ingest', state: 'succeeded' })).toBeGreaterThanOrEqual(2);
    expect(after.value('timestore_jobs', { queue: ts.config.ingest.queueName, kind: 'ingest', state: 'queued' })).toBe(0);

    // The dataset's totals at its current manifest version.
    const partitions = [...ingested.body.result.partitions, ...second.body.result.partitions] as { sizeBytes: number; rowCount: number }[];
    expect(after.value('timestore_dataset_partitions', dataset)).toBe(2);
    expect(after.value('timestore_dataset_rows', dataset)).toBe(7);
    expect(after.value('timestore_dataset_bytes', dataset)).toBe(partitions.reduce((n, p) => n + p.sizeBytes, 0));
    expect(delta('timestore_ingest_written_bytes_total', dataset)).toBe(partitions.reduce((n, p) => n + p.sizeBytes, 0));

    // Queries by mode and outcome; the streamed one counts once its last row is sent.
    expect(delta('timestore_query_duration_seconds_count', { mode: 'raw', outcome: 'ok' })).toBe(3);
    expect(delta('timestore_query_duration_seconds_count', { mode: 'downsampled', outcome: 'ok' })).toBe(1);
    expect(delta('timestore_query_duration_seconds_count', { mode: 'raw', outcome: 'rejected' })).toBe(1);
    expect(delta('timestore_query_partitions_total', { mode: 'raw', result: 'scanned' })).toBe(2 + 1 + 2);
    expect(delta('timestore_query_partitions_total', { mode: 'raw', result: 'pruned' })).toBe(1);
    // Queries of a dataset plan from the process's snapshot of its active partitions: the first
    // at a version loads or advances it, the next ones at that version are hits.
    expect(delta('timestore_query_manifest_snapshot_loads_total') + delta('timestore_query_manifest_snapshot_advances_total')).toBe(1);
    expect(delta('timestore_query_manifest_snapshot_hits_total')).toBe(3);
    expect(after.value('timestore_query_manifest_snapshot_partitions')).toBe(2);
    // Local partitions are read in place, not through the cache.
    expect(delta('timestore_partition_local_reads_total')).toBe(2 + 1 + 2 + 2);
    expect(delta('timestore_partition_cache_misses_total')).toBe(0);

    // HTTP, by route template (never the raw path).
    expect(delta('timestore_http_requests_total', { method: 'POST', route: '/datasets/:datasetSlug/ingest', status: '201' })).toBe(3);
    expect(delta('timestore_http_requests_total', { method: 'POST', route: '/datasets/:datasetSlug/query', status: '400' })).toBe(1);
    expect(after.samples('timestore_http_requests_total').some((s) => s.labels.route?.includes('metered'))).toBe(false);
  });

  test('an unmatched path is counted under route="unmatched"', async () => {
    const before = await scrape();
    expect((await fetch(`${ts.url}/no/such/path-${crypto.randomUUID()}`)).status).toBe(404);
    const after = await scrape();
    expect(after.sum('timestore_http_requests_total', { route: 'unmatched', status: '404' }) - before.sum('timestore_http_requests_total', { route: 'unmatched', status: '404' })).toBe(1);
  });

  test.skipIf(againstBinary)('lifecycle tasks report through metrics.compaction / retention / garbageCollection', async () => {
    const { metrics } = ts.server;
    const before = await scrape();
    metrics.compaction('succeeded', { partitionsMerged: 12, partitionsWritten: 2, bytesWritten: 4096 });
    metrics.compaction('skipped');
    metrics.retention('succeeded', { partitionsRemoved: 3, bytesRemoved: 1500 });
    metrics.retention('failed');
    metrics.garbageCollection('succeeded', { filesDeleted: 5, bytesDeleted: 2500 });
    const after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}) => after.sum(name, labels) - before.sum(name, labels);
    expect(delta('timestore_compaction_runs_total', { outcome: 'succeeded' })).toBe(1);
    expect(delta('timestore_compaction_runs_total', { outcome: 'skipped' })).toBe(1);
    expect(delta('timestore_compaction_partitions_merged_total')).toBe(12);
    expect(delta('timestore_compaction_partitions_written_total')).toBe(2);
    expect(delta('timestore_compaction_bytes_written_total')).toBe(4096);
    expect(delta('timestore_retention_runs_total', { outcome: 'succeeded' })).toBe(1);
    expect(delta('timestore_retention_runs_total', { outcome: 'failed' })).toBe(1);
    expect(delta('timestore_retention_partitions_removed_total')).toBe(3);
    expect(delta('timestore_retention_bytes_removed_total')).toBe(1500);
    expect(delta('timestore_gc_runs_total', { outcome: 'succeeded' })).toBe(1);
    expect(delta('timestore_gc_files_deleted_total')).toBe(5);
    expect(delta('timestore_gc_bytes_deleted_total')).toBe(2500);
  });

  test('each server counts in its own registry; nothing is registered in prom-client\'s global one', async () => {
    const other = await startTestServer();
    try {
      await postJson(`${other.url}/datasets/elsewhere/ingest?wait=true`, { schema: { fields }, partition: { key: {} }, rows: rows(2) });
      const mine = await scrape();
      const theirs = await scrape(other);
      expect(theirs.value('timestore_ingest_rows_total', { dataset: 'elsewhere' })).toBe(2);
      expect(mine.value('timestore_ingest_rows_total', { dataset: 'elsewhere' })).toBeUndefined();
      expect(theirs.value('timestore_ingest_rows_total', { dataset: 'metered' })).toBeUndefined();
    } finally {
      await other.stop();
    }
    expect(globalRegistry.getMetricsAsArray()).toHaveLength(0);
  });
});

describe('Metrics (unit)', () => {
  const stats: PartitionCacheStats = {
    hits: 7, misses: 3, coalesced: 2, fetches: 4, bytesFetched: 12_345, uncachedFetches: 1, integrityFailures: 0, localReads: 9,
    evictions: 2, evictedBytes: 6000, currentBytes: 4000, files: 2, pinnedFiles: 1, maxBytes: 10_000, enabled: true,
  };

  test('the partition cache\'s own counters are read at scrape time', async () => {
    const metrics = new Metrics().observe({ cache: { stats: () => stats } });
    const exposition = parsePrometheusText(await metrics.render());
    expect(exposition.value('timestore_partition_cache_hits_total')).toBe(7);
    expect(exposition.value('timestore_partition_cache_misses_total')).toBe(3);
    expect(exposition.value('timestore_partition_cache_coalesced_total')).toBe(2);
    expect(exposition.value('timestore_partition_cache_fetched_bytes_total')).toBe(12_345);
    expect(exposition.value('timestore_partition_cache_evicted_bytes_total')).toBe(6000);
    expect(exposition.value('timestore_partition_cache_bytes')).toBe(4000);
    expect(exposition.value('timestore_partition_cache_max_bytes')).toBe(10_000);
    stats.hits = 8;
    expect(parsePrometheusText(await metrics.render()).value('timestore_partition_cache_hits_total')).toBe(8);
  });

  test("the query service's manifest snapshots are read at scrape time", async () => {
    const snapshots = { datasets: 2, partitions: 300, hits: 40, advances: 5, loads: 2, bypasses: 1 };
    const metrics = new Metrics().observe({ snapshots: { snapshotStats: () => snapshots } });
    const exposition = parsePrometheusText(await metrics.render());
    expect(exposition.value('timestore_query_manifest_snapshot_hits_total')).toBe(40);
    expect(exposition.value('timestore_query_manifest_snapshot_advances_total')).toBe(5);
    expect(exposition.value('timestore_query_manifest_snapshot_loads_total')).toBe(2);
    expect(exposition.value('timestore_query_manifest_snapshot_bypasses_total')).toBe(1);
    expect(exposition.value('timestore_query_manifest_snapshot_datasets')).toBe(2);
    expect(exposition.value('timestore_query_manifest_snapshot_partitions')).toBe(300);
  });

  test('a catalog that cannot answer leaves its series out and counts the failure; the rest is served', async () => {
    // A query that fails only when awaited, like postgres.js's.
    const failing = (() => ({ then: (_: unknown, reject: (e: Error) => void) => reject(new Error('catalog down')) })) as never;
    const metrics = new Metrics().observe({ catalog: failing });
    metrics.ingestAccepted('x', { rows: 5, bytes: 100, replayed: false });
    const exposition = parsePrometheusText(await metrics.render());
    expect(exposition.value('timestore_metrics_catalog_errors_total')).toBe(1);
    expect(exposition.samples('timestore_jobs')).toHaveLength(0);
    expect(exposition.samples('timestore_dataset_partitions')).toHaveLength(0);
    expect(exposition.value('timestore_ingest_rows_total', { dataset: 'x' })).toBe(5);
  });

  test('label values are escaped', async () => {
    const metrics = new Metrics();
    metrics.httpRequest('GET', '/a"b\\c\nd', 200, 0.01);
    const exposition = parsePrometheusText(await metrics.render());
    expect(exposition.value('timestore_http_requests_total', { method: 'GET', route: '/a"b\\c\nd', status: '200' })).toBe(1);
  });
});
