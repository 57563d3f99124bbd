/**
 * Queries over partitions on S3 (a real radosgw): files come through the bounded local cache,
 * answers are right on a cold and on a warm cache, and the cache directory stays within
 * TIMESTORE_QUERY_CACHE_MAX_BYTES while evicting.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { findDataset } from '../../src/catalog/datasets.ts';
import { listActivePartitions } from '../../src/catalog/manifests.ts';
import type { Partition } from '../../src/model/records.ts';
import { createBucket, s3AdminClient, s3Available, s3ServerEnv, startS3Server, type S3Server } from '../harness/s3.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

// Under CI the S3 server must be there: the suite runs and fails loudly if it cannot start.
const skip = !process.env.CI && !s3Available();

const MAX_BYTES = 12_000;
const DAY = 86_400_000;
const BASE = Date.UTC(2026, 2, 1);
const RANGE = { start: new Date(BASE).toISOString(), end: new Date(BASE + 10 * DAY).toISOString() };
const SLUG = 'remote-query';

let s3: S3Server;
let ts: TestServer;
let admin: S3Client;
let bucket = '';

interface Row {
  timestamp: string;
  host: string;
  value: number;
  n: number;
}
// 8 days × 2 sites: 16 partitions of 120 rows each.
const ROWS: (Row & { site: string })[] = Array.from({ length: 8 * 240 }, (_, i) => ({
  timestamp: new Date(BASE + i * 360_000).toISOString(),
  host: `h${i % 5}`,
  value: Math.round(Math.sin(i) * 10_000) / 100 || 0, // no -0: JSON has none
  n: (i * 37) % 101,
  site: i % 2 ? 'north' : 'south',
}));

beforeAll(async () => {
  if (skip) return;
  s3 = await startS3Server();
  admin = s3AdminClient(s3);
  bucket = await createBucket(s3, 'timestore-query');
  ts = await startTestServer({
    ...s3ServerEnv(s3, bucket),
    TIMESTORE_QUERY_CACHE_MAX_BYTES: String(MAX_BYTES),
  });
  for (const site of ['north', 'south']) {
    const res = await postJson(`${ts.url}/datasets/${SLUG}/ingest?wait=true`, {
      schema: {
        fields: [
          { name: 'timestamp', type: 'timestamp' },
          { name: 'host', type: 'string' },
          { name: 'value', type: 'double' },
          { name: 'n', type: 'integer' },
        ],
      },
      partition: { key: { site } },
      rows: ROWS.filter((r) => r.site === site).map(({ site: _s, ...r }) => r),
    });
    if (res.status !== 201) throw new Error(`ingest: ${res.status} ${JSON.stringify(res.body)}`);
  }
}, 180_000);

afterAll(async () => {
  await ts?.stop();
  admin?.destroy();
  await s3?.stop();
});

const query = async (body: Record<string, unknown>) => {
  const res = await postJson(`${ts.url}/datasets/${SLUG}/query`, { timeRange: RANGE, ...body });
  if (res.status !== 200) throw new Error(`query: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
};

/** Cache files (not the tmp directory) and their total size. */
function cacheFiles(): { files: string[]; bytes: number } {
  const dir = ts.config.queryCache.dir;
  const files = readdirSync(dir).filter((f) => statSync(join(dir, f)).isFile());
  return { files, bytes: files.reduce((n, f) => n + statSync(join(dir, f)).size, 0) };
}

function expectWithinLimit() {
  const { bytes } = cacheFiles();
  expect(bytes).toBeLessThanOrEqual(MAX_BYTES);
}

async function partitions(): Promise<Partition[]> {
  const sql = ts.sql;
  const dataset = (await findDataset(sql, SLUG))!;
  return listActivePartitions(sql, { datasetId: dataset.id, version: dataset.manifestVersion });
}

/** Hourly avg/max/count/last per host, computed here from the rows sent. */
function expectedHourly(rows: Row[]) {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const bucket = new Date(Math.floor(Date.parse(r.timestamp) / 3_600_000) * 3_600_000).toISOString();
    const key = `${bucket}|${r.host}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, g]) => {
      const [timestamp, host] = key.split('|');
      return {
        timestamp,
        host,
        avg_value: g.reduce((s, r) => s + r.value, 0) / g.length,
        max_n: Math.max(...g.map((r) => r.n)),
        count_value: g.length,
        last_value: g.at(-1)!.value,
      };
    });
}

const HOURLY = {
  downsample: {
    intervalUnit: 'hour',
    groupBy: ['host'],
    aggregations: [
      { fn: 'avg', column: 'value' },
      { fn: 'max', column: 'n' },
      { fn: 'count', column: 'value' },
      { fn: 'last', column: 'value' },
    ],
  },
  limit: 100_000,
};

function expectHourly(actual: any[], rows: Row[]) {
  const expected = expectedHourly(rows);
  expect(actual).toHaveLength(expected.length);
  actual.forEach((row, i) => {
    const e = expected[i]!;
    expect({ ...row, avg_value: 0 }).toEqual({ ...e, avg_value: 0 });
    expect(row.avg_value).toBeCloseTo(e.avg_value, 9);
  });
}

describe.skipIf(skip)('queries over S3 partitions through the cache', () => {
  test('the partitions are remote and together larger than the cache; each fits in it', async () => {
    const ps = await partitions();
    expect(ps.length).toBe(16);
    for (const p of ps) expect(p.location).toStartWith(`s3://${bucket}/`);
    const total = ps.reduce((n, p) => n + p.sizeBytes, 0);
    expect(total).toBeGreaterThan(MAX_BYTES); // so the cache must evict
    expect(Math.max(...ps.map((p) => p.sizeBytes))).toBeLessThanOrEqual(MAX_BYTES / 2);
  });

  test('raw rows are right on a cold cache, then on a warm one, and the cache stays within its limit', async () => {
    const expected = ROWS.map(({ site: _s, ...r }) => r);
    const cold = await query({ limit: 100_000 });
    expect(cold.partitions).toEqual({ scanned: 16, pruned: 0 });
    expect(cold.rows).toEqual(expected);
    expectWithinLimit();
    const warm = await query({ limit: 100_000 });
    expect(warm).toEqual(cold);
    expectWithinLimit();
  });

  test('a query that fits in the cache: the second run is served from it, same answer', async () => {
    const oneDay = { start: new Date(BASE + 2 * DAY).toISOString(), end: new Date(BASE + 3 * DAY).toISOString() };
    const body = { ...HOURLY, timeRange: oneDay, filters: { partitionKey: { site: ['north'] } } };
    const rows = ROWS.filter((r) => r.site === 'north' && r.timestamp >= oneDay.start && r.timestamp < oneDay.end);
    const first = await query(body);
    expect(first.partitions.scanned).toBeLessThanOrEqual(2);
    expectHourly(first.rows, rows);
    const before = cacheFiles();
    expect(before.files.length).toBeGreaterThan(0);
    const second = await query(body);
    expect(second).toEqual(first);
    // A hit: nothing new was downloaded for the same files.
    expect(cacheFiles().files.sort()).toEqual(before.files.sort());
    expectWithinLimit();
  });

  test('downsampled answers over every partition, twice, and many at once', async () => {
    const rows = ROWS.map(({ site: _s, ...r }) => r);
    const first = await query(HOURLY);
    expectHourly(first.rows, rows);
    expectWithinLimit();
    const second = await query(HOURLY);
    expect(second).toEqual(first);
    // Concurrent queries over files being fetched and evicted all answer the same.
    const many = await Promise.all(Array.from({ length: 6 }, (_, i) => query(i % 2 ? HOURLY : { limit: 100_000 })));
    for (const [i, answer] of many.entries()) {
      if (i % 2) expect(answer).toEqual(first);
      else expect(answer.rows).toHaveLength(ROWS.length);
    }
    expectWithinLimit();
    // Nothing left behind from downloads.
    const tmp = join(ts.config.queryCache.dir, 'tmp');
    let leftovers: string[] = [];
    try {
      leftovers = readdirSync(tmp);
    } catch {}
    expect(leftovers).toEqual([]);
  });

  test('gap filling over remote partitions: every host gets every bucket, interpolated between its rows', async () => {
    // Each host has a row every 30 minutes: 2-minute buckets are mostly empty; the range starts
    // 10 minutes before the first row, so every host's first buckets have nothing before them.
    const from = BASE - 10 * 60_000;
    const to = BASE + 2 * 3_600_000;
    const width = 2 * 60_000;
    const answer = await query({
      timeRange: { start: new Date(from).toISOString(), end: new Date(to).toISOString() },
      downsample: { intervalUnit: 'minute', intervalSize: 2, groupBy: ['host'], aggregations: [{ fn: 'avg', column: 'value', alias: 'v' }, { fn: 'count', alias: 'rows' }], fill: 'linear' },
      limit: 100_000,
    });
    const buckets = Array.from({ length: (to - from) / width }, (_, i) => from / width + i);
    const hosts = ['h0', 'h1', 'h2', 'h3', 'h4'];
    const perHost = new Map(
      hosts.map((host) => {
        const values = buckets.map((b) => {
          const mine = ROWS.filter((r) => r.host === host && Math.floor(Date.parse(r.timestamp) / width) === b && Date.parse(r.timestamp) < to);
          return mine.length === 0 ? null : mine.reduce((sum, r) => sum + r.value, 0) / mine.length;
        });
        const known = values.flatMap((v, i) => (v === null ? [] : [i]));
        const filled = values.map((v, i) => {
          if (v !== null) return { v, rows: 1 };
          const before = known.filter((k) => k < i).at(-1);
          const after = known.find((k) => k > i);
          if (before === undefined || after === undefined) return { v: null, rows: 0 };
          const [v0, v1] = [values[before]!, values[after]!];
          return { v: v0 + ((v1 - v0) * (i - before)) / (after - before), rows: 0 };
        });
        return [host, filled] as const;
      }),
    );
    const expected = buckets.flatMap((b, i) => hosts.map((host) => ({ timestamp: new Date(b * width).toISOString(), host, ...perHost.get(host)![i]! })));
    expect(answer.rows).toHaveLength(expected.length);
    answer.rows.forEach((row: any, i: number) => {
      const e = expected[i]!;
      expect({ ...row, v: null }).toEqual({ ...e, v: null });
      if (e.v === null) expect(row.v).toBeNull();
      else expect(row.v).toBeCloseTo(e.v, 9);
    });
    expect(answer.rows.filter((r: any) => r.v === null).length).toBeGreaterThan(0);
    expectWithinLimit();
  });

  test('CSV over remote partitions streams the same rows', async () => {
    const res = await fetch(`${ts.url}/datasets/${SLUG}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/csv' },
      body: JSON.stringify({ timeRange: RANGE, columns: ['host', 'n'], limit: 100_000 }),
    });
    expect(res.status).toBe(200);
    const lines = (await res.text()).trimEnd().split('\r\n');
    expect(lines[0]).toBe('timestamp,host,n');
    expect(lines.slice(1)).toEqual(ROWS.map((r) => `${r.timestamp},${r.host},${r.n}`));
    expectWithinLimit();
  });
});
