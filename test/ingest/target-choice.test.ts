/**
 * A writer keeps to its dataset's storage target: naming another needs the admin scope (403 in the
 * one error shape otherwise, nothing stored), and so does creating a dataset on a chosen target. A
 * dataset's id sent as a slug is that dataset, never a new one named by the id.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findDataset } from '../../src/catalog/datasets.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const scopes = { read: 'ts-read', write: 'ts-write', admin: 'ts-admin' };
const WRITER = { 'x-iam-scopes': scopes.write, 'x-iam-user': 'writer' };
const ADMIN_WRITER = { 'x-iam-scopes': `${scopes.write} ${scopes.admin}`, 'x-iam-user': 'operator' };
const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'v', type: 'double' },
];

let ts: TestServer;
let archiveRoot = '';
let archiveId = '';

beforeAll(async () => {
  ts = await startTestServer({ TIMESTORE_REQUIRE_SCOPE: scopes.read, TIMESTORE_REQUIRE_WRITE_SCOPE: scopes.write, TIMESTORE_ADMIN_SCOPE: scopes.admin });
  archiveRoot = mkdtempSync(join(tmpdir(), 'ts-archive-'));
  const res = await postJson(`${ts.url}/admin/storage-targets`, { name: 'archive', kind: 'local', config: { root: archiveRoot } }, ADMIN_WRITER);
  expect(res.status).toBe(201);
  archiveId = res.body.id;
}, 120_000);

afterAll(async () => {
  await ts?.stop();
  rmSync(archiveRoot, { recursive: true, force: true });
});

const batch = (minute: number, extra: Record<string, unknown> = {}) => ({
  schema: { fields: FIELDS },
  partition: { key: {} },
  rows: [{ timestamp: new Date(Date.UTC(2026, 0, 1, 0, minute)).toISOString(), v: minute }],
  ...extra,
});
const ingest = (slug: string, body: unknown, headers: Record<string, string>, query = 'wait=true') =>
  postJson(`${ts.url}/datasets/${slug}/ingest?${query}`, body, headers);
/** Files under the archive target other than its owner marker. */
const archived = () => readdirSync(archiveRoot, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && e.name !== '.timestore-owner');

describe('the storage target of a batch', () => {
  test("a writer may name its dataset's own target, by name or id", async () => {
    expect((await ingest('own', batch(0), WRITER)).status).toBe(201);
    const local = (await ts.sql<{ id: string }[]>`SELECT id FROM storage_targets WHERE name = 'local'`)[0]!.id;
    expect((await ingest('own', batch(1, { storageTargetId: 'local' }), WRITER)).status).toBe(201);
    expect((await ingest('own', batch(2, { storageTargetId: local }), WRITER)).status).toBe(201);
  });

  test('a writer naming another target is refused with 403, whether or not it exists, and nothing is stored', async () => {
    for (const storageTargetId of ['archive', archiveId, 'no-such-target']) {
      const res = await ingest('own', batch(3, { storageTargetId }), WRITER);
      expect(res.status).toBe(403);
      expect(res.body).toEqual({ error: { code: 'forbidden', message: expect.stringContaining('needs the admin scope') } });
    }
    // The same through the query parameter of an NDJSON body.
    const res = await fetch(`${ts.url}/datasets/own/ingest?storageTargetId=archive`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', ...WRITER },
      body: '{"timestamp":"2026-01-01T00:09:00Z","v":9}\n',
    });
    expect(res.status).toBe(403);
    expect(archived()).toEqual([]);
  });

  test('a writer cannot create a dataset on a chosen target; no dataset is created', async () => {
    const res = await ingest('chosen-by-writer', batch(0, { storageTargetId: 'archive' }), WRITER);
    expect(res.status).toBe(403);
    expect(await findDataset(ts.sql, 'chosen-by-writer')).toBeNull();
  });

  test('an administrator may send a batch to another target, and create a dataset on one', async () => {
    const other = await ingest('own', batch(4, { storageTargetId: 'archive' }), ADMIN_WRITER);
    expect(other.status).toBe(201);
    expect(other.body.result.partitions[0].location).toStartWith(`file://${archiveRoot}/`);

    const created = await ingest('on-archive', batch(0, { storageTargetId: 'archive' }), ADMIN_WRITER);
    expect(created.status).toBe(201);
    expect((await findDataset(ts.sql, 'on-archive'))!.defaultStorageTargetId).toBe(archiveId);
    // Its writers then use its target without naming it, and may name it.
    const next = await ingest('on-archive', batch(1), WRITER);
    expect(next.status).toBe(201);
    expect(next.body.result.partitions[0].location).toStartWith(`file://${archiveRoot}/`);
    expect((await ingest('on-archive', batch(2, { storageTargetId: 'archive' }), WRITER)).status).toBe(201);
    expect((await ingest('on-archive', batch(3, { storageTargetId: 'local' }), WRITER)).status).toBe(403);
  });
});

describe("a dataset's id sent as a slug", () => {
  test('is that dataset, on every path of ingestion: no dataset named by the id appears', async () => {
    expect((await ingest('named', batch(0), WRITER)).status).toBe(201);
    const named = (await findDataset(ts.sql, 'named'))!;
    // A new field (schema evolution), an idempotency key, queued: each path that may create a dataset.
    const evolved = await ingest(named.id, {
      schema: { fields: [...FIELDS, { name: 'extra', type: 'string' }] },
      partition: { key: {} },
      rows: [{ timestamp: '2026-01-01T00:01:00Z', v: 1, extra: 'x' }],
    }, WRITER);
    expect(evolved.status).toBe(201);
    expect((await ingest(named.id, batch(2), { ...WRITER, 'idempotency-key': 'k-1' })).status).toBe(201);
    expect((await ingest(named.id, batch(3), WRITER, '')).status).toBe(202);
    const ndjson = await fetch(`${ts.url}/datasets/${named.id}/ingest?wait=true`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson', ...WRITER },
      body: '{"timestamp":"2026-01-01T00:04:00Z","v":4}\n',
    });
    expect(ndjson.status).toBe(201);

    const rows = await ts.sql<{ slug: string }[]>`SELECT slug FROM datasets WHERE slug = ${named.id}`;
    expect(rows.length).toBe(0);
    const after = (await findDataset(ts.sql, 'named'))!;
    expect(after.schemaVersion).toBe(2);
    const [jobs] = await ts.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM jobs WHERE dataset_id = ${named.id} AND kind = 'ingest'`;
    expect(jobs!.n).toBe(5);
    // Staged bodies are named by the dataset's slug, not by the id.
    const [byId] = await ts.sql<{ staged: number }[]>`
      SELECT count(*)::int AS staged FROM jobs WHERE dataset_id = ${named.id} AND payload->'staged'->>'location' LIKE ${`%/staging/${named.id}/%`}`;
    expect(byId!.staged).toBe(0);
  });

  test("POST /admin/datasets refuses another dataset's id as a new slug", async () => {
    const named = (await findDataset(ts.sql, 'named'))!;
    const res = await postJson(`${ts.url}/admin/datasets`, { slug: named.id }, ADMIN_WRITER);
    expect(res.status).toBe(409);
    expect(res.body.error).toMatchObject({ code: 'slug_is_dataset_id', details: { slug: named.id, dataset: 'named' } });
  });
});
