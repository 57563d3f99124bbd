/**
 * An ingest's scope check passes on the dataset's row as its process read it for an earlier
 * request, and the batch's job INSERT confirms it (src/http/auth.ts, `acceptsAsBefore` in
 * src/catalog/datasets.ts). Whatever changed the row meanwhile, here or in another process, the
 * answer must be the one a check that read the catalog would have given: a refusal once the write
 * scope is taken away, 409 once the dataset is archived, and in both cases nothing queued and no
 * staged body left. Versions published or schema versions added by another process change nothing
 * the batch relies on, and cost it no read.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findDataset, updateDataset } from '../../src/catalog/datasets.ts';
import { type PgProxy, startPgProxy } from '../harness/pg-proxy.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const START = Date.UTC(2026, 4, 1);
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
const READ_BY_SLUG = /FROM datasets WHERE slug =/i;

/** Files under `root` whose path has a `staging` directory: the staged bodies not yet written or deleted. */
function stagedFiles(root: string): string[] {
  return (readdirSync(root, { recursive: true }) as string[]).filter((path) => path.split('/').includes('staging') && path.includes('.'));
}

describe('a dataset changed between two batches of one process', () => {
  let root: string;
  let ts: TestServer;
  const scoped = (scopes: string) => ({ 'x-iam-scopes': scopes });
  const writeScopes = async (scopes: string[]) => {
    const dataset = (await findDataset(ts.sql, 'inlet'))!;
    await updateDataset(ts.sql, dataset.id, { metadata: { ...dataset.metadata, iam: { writeScopes: scopes } } });
  };
  const jobs = async () => {
    const dataset = (await findDataset(ts.sql, 'inlet'))!;
    return Number((await ts.sql`SELECT count(*) AS n FROM jobs WHERE dataset_id = ${dataset.id}`)[0]!.n);
  };
  const ingest = (from: number, scopes: string, wait = true) =>
    postJson(`${ts.url}/datasets/inlet/ingest${wait ? '?wait=true' : ''}`, batch(from), scoped(scopes));

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'timestore-remembered-row-'));
    ts = await startTestServer({ TIMESTORE_STORAGE_ROOT: root, TIMESTORE_REQUIRE_WRITE_SCOPE: 'ts:write' });
    expect((await ingest(0, 'ts:write')).status).toBe(201);
  });
  afterAll(async () => {
    await ts?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test('a write scope taken away refuses the next batch, which leaves nothing queued or staged', async () => {
    await writeScopes(['team:write']);
    // The first reads the changed row (the remembered one would refuse); the second passes on it.
    expect((await ingest(10, 'team:write')).status).toBe(201);
    expect((await ingest(20, 'team:write')).status).toBe(201);
    const [queued, staged] = [await jobs(), stagedFiles(root).length];

    await writeScopes(['other:write']);
    for (const wait of [true, false]) {
      const refused = await ingest(30, 'team:write', wait);
      expect(refused.status).toBe(403);
      expect(refused.body.error.code).toBe('forbidden');
    }
    expect(await jobs()).toBe(queued);
    expect(stagedFiles(root)).toHaveLength(staged);
    expect((await ingest(30, 'other:write')).status).toBe(201);
  });

  test('a write scope taken away while batches are sent at once refuses every one: none queued, nothing staged once their log is gone', async () => {
    await writeScopes(['team:write']);
    for (const from of [100, 110]) expect((await ingest(from, 'team:write')).status).toBe(201);
    const [queued, staged] = [await jobs(), stagedFiles(root).length];

    // Sent at once, most go to a staging log while the row they passed on is read again: each is
    // withdrawn from the log, and refused as a single batch is.
    await writeScopes(['other:write']);
    const refused = await Promise.all(Array.from({ length: 12 }, (_, k) => ingest(200 + k * 10, 'team:write', false)));
    expect(refused.map((r) => r.status)).toEqual(refused.map(() => 403));
    // Their log's mark passed them before they were answered (a replay will not insert them).
    expect(Number((await ts.sql`SELECT count(*) AS n FROM staging_log_progress WHERE location LIKE '%/staging/inlet/log-%'`)[0]!.n)).toBeGreaterThan(0);
    await Bun.sleep(500);
    expect(await jobs()).toBe(queued);
    for (let i = 0; i < 50 && stagedFiles(root).length > staged; i++) await Bun.sleep(100);
    expect(stagedFiles(root)).toHaveLength(staged);
    await writeScopes([]);
  });

  test('an archived dataset answers the next batch with 409, leaving nothing queued or staged', async () => {
    await writeScopes([]);
    for (const from of [40, 50]) expect((await ingest(from, 'ts:write')).status).toBe(201);
    const [queued, staged] = [await jobs(), stagedFiles(root).length];

    const dataset = (await findDataset(ts.sql, 'inlet'))!;
    await updateDataset(ts.sql, dataset.id, { status: 'archived' });
    const refused = await ingest(60, 'ts:write', false);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('dataset_archived');
    expect(await jobs()).toBe(queued);
    expect(stagedFiles(root)).toHaveLength(staged);
  });
});

describe('two processes on one catalog', () => {
  let root: string;
  let proxy: PgProxy;
  let writer: TestServer;
  let other: TestServer;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'timestore-remembered-row-2-'));
    const url = await createTestDatabase('remembered_row');
    proxy = await startPgProxy(url);
    const env = { TIMESTORE_STORAGE_ROOT: root, TIMESTORE_LIFECYCLE_ENABLED: 'false' };
    writer = await startTestServer({ ...env, TIMESTORE_DATABASE_URL: proxy.url });
    other = await startTestServer({ ...env, TIMESTORE_DATABASE_URL: url });
  });
  afterAll(async () => {
    await Promise.all([writer?.stop(), other?.stop()]);
    await proxy?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test("the other's publishes and new schema versions cost a batch no read, and every row is kept", async () => {
    expect((await postJson(`${writer.url}/datasets/cpu/ingest?wait=true`, batch(0))).status).toBe(201);
    expect((await postJson(`${writer.url}/datasets/cpu/ingest?wait=true`, batch(10))).status).toBe(201);
    const wider = [...FIELDS, { name: 'region', type: 'string' }];
    expect((await postJson(`${other.url}/datasets/cpu/ingest?wait=true`, batch(20, wider, { region: 'eu' }))).status).toBe(201);
    expect((await postJson(`${other.url}/datasets/cpu/ingest?wait=true`, batch(30))).status).toBe(201);

    const before = proxy.runs(READ_BY_SLUG);
    expect((await postJson(`${writer.url}/datasets/cpu/ingest?wait=true`, batch(40))).status).toBe(201);
    expect(proxy.runs(READ_BY_SLUG) - before).toBe(0);

    const count = await postJson(`${other.url}/datasets/cpu/query`, {
      timeRange: { start: new Date(START).toISOString(), end: new Date(START + 3_600_000).toISOString() },
      downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'count', alias: 'n' }] },
    });
    expect(count.status).toBe(200);
    expect(count.body.rows).toEqual([{ timestamp: new Date(START).toISOString(), n: 50 }]);
  });

  test("a change of the dataset's metadata in the other process makes the next batch read its row again, once", async () => {
    const dataset = (await findDataset(other.sql, 'cpu'))!;
    await updateDataset(other.sql, dataset.id, { metadata: { ...dataset.metadata, note: 'changed elsewhere' } });
    const before = proxy.runs(READ_BY_SLUG);
    expect((await postJson(`${writer.url}/datasets/cpu/ingest?wait=true`, batch(50))).status).toBe(201);
    // The INSERT found the row changed: the batch was checked again on the row read then.
    expect(proxy.runs(READ_BY_SLUG) - before).toBe(1);
    expect((await postJson(`${writer.url}/datasets/cpu/ingest?wait=true`, batch(60))).status).toBe(201);
    expect(proxy.runs(READ_BY_SLUG) - before).toBe(1);
  });
});
