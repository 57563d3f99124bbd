/**
 * The per-query limits: TIMESTORE_QUERY_MAX_PARTITIONS and TIMESTORE_QUERY_MAX_BYTES count what a
 * query would read once the catalog has pruned its partitions, and a query over either is
 * refused with 400 `query_too_large` before any file is read (a streamed answer too, in the one
 * error shape); a query narrowed below them answers.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const DAY = 86_400_000;
const BASE = Date.UTC(2026, 2, 1);
const EVERYTHING = { start: new Date(BASE).toISOString(), end: new Date(BASE + 10 * DAY).toISOString() };
const FIRST_DAY = { start: new Date(BASE).toISOString(), end: new Date(BASE + DAY).toISOString() };

/** Three rows a day apart: three daily partitions. */
async function seed(ts: TestServer, slug: string): Promise<void> {
  const res = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, {
    schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'v', type: 'double' }] },
    partition: { key: {} },
    rows: [0, 1, 2].map((d) => ({ timestamp: new Date(BASE + d * DAY + 3_600_000).toISOString(), v: d })),
  });
  expect(res.status).toBe(201);
}

describe('TIMESTORE_QUERY_MAX_PARTITIONS', () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({ TIMESTORE_QUERY_MAX_PARTITIONS: '2', TIMESTORE_QUERY_MAX_BYTES: '0' });
    await seed(ts, 'wide');
  });
  afterAll(() => ts?.stop());

  test('three partitions are refused with 400 query_too_large; one answers', async () => {
    const refused = await postJson(`${ts.url}/datasets/wide/query`, { timeRange: EVERYTHING });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('query_too_large');
    expect(refused.body.error.message).toContain('3 partitions (at most 2)');
    expect(refused.body.error.details).toMatchObject({ partitions: 3, maxPartitions: 2, maxBytes: 0 });

    const narrowed = await postJson(`${ts.url}/datasets/wide/query`, { timeRange: FIRST_DAY });
    expect(narrowed.status).toBe(200);
    expect(narrowed.body.rows).toHaveLength(1);
  });

  test('a streamed answer is refused the same way, before any row is sent', async () => {
    const res = await fetch(`${ts.url}/datasets/wide/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/csv' },
      body: JSON.stringify({ timeRange: EVERYTHING }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('query_too_large');
  });
});

describe('TIMESTORE_QUERY_MAX_BYTES', () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({ TIMESTORE_QUERY_MAX_PARTITIONS: '0', TIMESTORE_QUERY_MAX_BYTES: '1' });
    await seed(ts, 'heavy');
  });
  afterAll(() => ts?.stop());

  test('any file is over one byte: refused with the bytes it would read; a range with no partition answers', async () => {
    const refused = await postJson(`${ts.url}/datasets/heavy/query`, { timeRange: FIRST_DAY });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('query_too_large');
    expect(refused.body.error.details.bytes).toBeGreaterThan(1);
    expect(refused.body.error.details).toMatchObject({ partitions: 1, maxBytes: 1 });

    const empty = await postJson(`${ts.url}/datasets/heavy/query`, { timeRange: { start: new Date(BASE + 5 * DAY).toISOString(), end: EVERYTHING.end } });
    expect(empty.status).toBe(200);
    expect(empty.body.rows).toEqual([]);
  });
});
