/**
 * What a request costs the catalog: the scope check reads the dataset's row (for its own scopes)
 * before the body, and the query or ingest that follows uses that row instead of reading it again;
 * an ingest's check passes on the row the process read before, which its job's INSERT confirms.
 * Counted at the wire, by a proxy in front of PostgreSQL, so it holds for the binary too.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { type PgProxy, startPgProxy } from '../harness/pg-proxy.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

let proxy: PgProxy;
let ts: TestServer;
const START = Date.UTC(2026, 4, 1);
const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'usage', type: 'double' },
];
const rows = (from: number) =>
  Array.from({ length: 50 }, (_, i) => ({ timestamp: new Date(START + (from + i) * 1000).toISOString(), host: `h${i % 5}`, usage: i }));
const READ_BY_SLUG = /FROM datasets WHERE slug =/i;

beforeAll(async () => {
  proxy = await startPgProxy(await createTestDatabase('round_trips'));
  ts = await startTestServer({ TIMESTORE_DATABASE_URL: proxy.url });
  const res = await postJson(`${ts.url}/datasets/cpu/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: {} }, rows: rows(0) });
  expect(res.status).toBe(201);
});

afterAll(async () => {
  await ts?.stop();
  await proxy?.close();
});

/** The statements matching `pattern` that one call of `request` ran, with its answer. */
async function counted<T>(pattern: RegExp, request: () => Promise<T>): Promise<{ runs: number; res: T }> {
  const before = proxy.runs(pattern);
  const res = await request();
  return { runs: proxy.runs(pattern) - before, res };
}

describe('one read of the dataset per request', () => {
  test('a query and a latest-row question read their dataset once', async () => {
    const ask = { timeRange: { start: new Date(START).toISOString(), end: new Date(START + 3_600_000).toISOString() }, downsample: { intervalUnit: 'minute', aggregations: [{ fn: 'count', alias: 'n' }] } };
    const { runs, res } = await counted(READ_BY_SLUG, () => postJson(`${ts.url}/datasets/cpu/query`, ask));
    expect(res.status).toBe(200);
    expect(res.body.rows).toEqual([{ timestamp: new Date(START).toISOString(), n: 50 }]);
    expect(runs).toBe(1);

    const latest = await counted(READ_BY_SLUG, () => postJson(`${ts.url}/datasets/cpu/latest`, { by: ['host'] }));
    expect(latest.res.status).toBe(200);
    expect(latest.runs).toBe(1);
  });

  test('a batch for an existing dataset costs one statement once the process has read its row', async () => {
    const batch = (from: number) => () => postJson(`${ts.url}/datasets/cpu/ingest`, { schema: { fields: FIELDS }, partition: { key: {} }, rows: rows(from) });
    // The queries above read the row: its check passes on that row, and its job's INSERT confirms it.
    const reads = await counted(READ_BY_SLUG, batch(50));
    expect(reads.res.status).toBe(202);
    expect(reads.runs).toBe(0);
    const inserts = await counted(/INSERT INTO jobs/i, batch(100));
    expect(inserts.res.status).toBe(202);
    expect(inserts.runs).toBe(1);
  });
});
