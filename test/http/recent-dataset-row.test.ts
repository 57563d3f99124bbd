/**
 * A query goes on with the dataset's row as its process read it last, while its scope check reads
 * the catalog's current row alongside (src/http/auth.ts). Whatever changed the row in between,
 * here or in another process, the answer must be the one a check that waited would have given:
 * the newest version's rows and schema, a refusal once a scope is taken away (never a 400 instead),
 * 409 once the dataset is archived. A process trusts a row that two reads found unchanged, so
 * each case first asks twice (`twice`) and then changes the row behind the process's back.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findDataset, updateDataset } from '../../src/catalog/datasets.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const START = Date.UTC(2026, 4, 1);
const HOUR = { start: new Date(START).toISOString(), end: new Date(START + 3_600_000).toISOString() };
const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'usage', type: 'double' },
];
const batch = (from: number, fields = FIELDS, extra: Record<string, unknown> = {}) => ({
  schema: { fields },
  partition: { key: {} },
  rows: Array.from({ length: 10 }, (_, i) => ({ timestamp: new Date(START + (from + i) * 1000).toISOString(), host: `h${i % 2}`, usage: from + i, ...extra })),
});
const COUNT = { timeRange: HOUR, downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'count', alias: 'n' }] } };

/** Sends the same query twice, both answered 200: the process now trusts the row it read. */
async function twice(url: string, body: unknown, headers: Record<string, string> = {}): Promise<void> {
  for (let i = 0; i < 2; i++) expect((await postJson(url, body, headers)).status).toBe(200);
}

describe('two processes on one catalog', () => {
  let root: string;
  let writer: TestServer;
  let reader: TestServer;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'timestore-recent-row-'));
    const env = { TIMESTORE_DATABASE_URL: await createTestDatabase('recent_row'), TIMESTORE_STORAGE_ROOT: root, TIMESTORE_LIFECYCLE_ENABLED: 'false' };
    writer = await startTestServer(env);
    reader = await startTestServer(env);
  });
  afterAll(async () => {
    await Promise.all([writer?.stop(), reader?.stop()]);
    rmSync(root, { recursive: true, force: true });
  });

  test('a query in one process answers from every version the other published since its last query', async () => {
    expect((await postJson(`${writer.url}/datasets/cpu/ingest?wait=true`, batch(0))).status).toBe(201);
    const first = await postJson(`${reader.url}/datasets/cpu/query`, COUNT);
    expect(first.status).toBe(200);
    expect(first.body.rows).toEqual([{ timestamp: HOUR.start, n: 10 }]);

    for (const [round, from] of [10, 20, 30].entries()) {
      await twice(`${reader.url}/datasets/cpu/query`, COUNT);
      expect((await postJson(`${writer.url}/datasets/cpu/ingest?wait=true`, batch(from))).status).toBe(201);
      const res = await postJson(`${reader.url}/datasets/cpu/query`, COUNT);
      expect(res.status).toBe(200);
      expect(res.body.rows).toEqual([{ timestamp: HOUR.start, n: 20 + round * 10 }]);
      expect(res.body.manifestVersion).toBe((await findDataset(writer.sql, 'cpu'))!.manifestVersion);
    }
    for (const from of [40, 50]) {
      await twice(`${reader.url}/datasets/cpu/latest`, { by: ['host'] });
      expect((await postJson(`${writer.url}/datasets/cpu/ingest?wait=true`, batch(from))).status).toBe(201);
      const latest = await postJson(`${reader.url}/datasets/cpu/latest`, { by: ['host'], columns: ['usage'] });
      expect(latest.status).toBe(200);
      expect(latest.body.rows.map((r: { usage: number }) => r.usage)).toEqual([from + 8, from + 9]);
    }
  });

  test('a column the other process added since is known to the next query', async () => {
    await twice(`${reader.url}/datasets/cpu/query`, COUNT);
    const wider = [...FIELDS, { name: 'region', type: 'string' }];
    expect((await postJson(`${writer.url}/datasets/cpu/ingest?wait=true`, batch(60, wider, { region: 'eu' }))).status).toBe(201);
    const res = await postJson(`${reader.url}/datasets/cpu/query`, { timeRange: HOUR, columns: ['region'], filters: { columns: { region: { eq: 'eu' } } } });
    expect(res.status).toBe(200);
    expect(res.body.rows).toHaveLength(10);
  });
});

describe('a dataset changed between two queries of one process', () => {
  let ts: TestServer;
  const scoped = (scopes: string) => ({ 'x-iam-scopes': scopes });
  const readScopes = async (scopes: string[]) => {
    const dataset = (await findDataset(ts.sql, 'guarded'))!;
    await updateDataset(ts.sql, dataset.id, { metadata: { ...dataset.metadata, iam: { readScopes: scopes } } });
  };

  beforeAll(async () => {
    ts = await startTestServer({ TIMESTORE_REQUIRE_SCOPE: 'ts:read', TIMESTORE_REQUIRE_WRITE_SCOPE: 'ts:write' });
    expect((await postJson(`${ts.url}/datasets/guarded/ingest?wait=true`, batch(0), scoped('ts:write'))).status).toBe(201);
  });
  afterAll(async () => {
    await ts?.stop();
  });

  test('a scope taken away refuses the next query, whatever its body', async () => {
    const query = `${ts.url}/datasets/guarded/query`;
    await readScopes(['team:read']);
    await twice(query, COUNT, scoped('team:read'));
    await readScopes(['other:read']);
    const refused = await postJson(query, COUNT, scoped('team:read'));
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
    expect((await postJson(query, COUNT, scoped('other:read'))).status).toBe(200);

    // The recent row let the caller in, the current one does not: no 400 tells it about its body.
    await readScopes(['team:read']);
    await twice(`${ts.url}/datasets/guarded/latest`, { by: ['host'] }, scoped('team:read'));
    await readScopes(['other:read']);
    expect((await postJson(query, { timeRange: 'yesterday' }, scoped('team:read'))).status).toBe(403);

    const byUrl = () => fetch(`${query}?from=${START}&to=${START + 3_600_000}&interval=1h&agg=count`, { headers: scoped('team:read') });
    await readScopes(['team:read']);
    for (let i = 0; i < 2; i++) expect((await byUrl()).status).toBe(200);
    await readScopes(['other:read']);
    expect((await byUrl()).status).toBe(403);

    const streamed = () =>
      fetch(query, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/csv', ...scoped('team:read') }, body: JSON.stringify({ timeRange: HOUR }) });
    await readScopes(['team:read']);
    for (let i = 0; i < 2; i++) expect((await streamed()).status).toBe(200);
    await readScopes(['other:read']);
    expect((await streamed()).status).toBe(403);
  });

  test('an archived dataset answers its next query with 409', async () => {
    await readScopes([]);
    await twice(`${ts.url}/datasets/guarded/query`, COUNT, scoped('ts:read'));
    const dataset = (await findDataset(ts.sql, 'guarded'))!;
    await updateDataset(ts.sql, dataset.id, { status: 'archived' });
    const res = await postJson(`${ts.url}/datasets/guarded/query`, COUNT, scoped('ts:read'));
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('dataset_archived');
  });
});
