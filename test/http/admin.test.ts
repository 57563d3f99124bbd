/**
 * The administrative API against a real PostgreSQL (and, for S3 targets, a real radosgw): datasets
 * (create, list, get, patch, status rules), manifests, retention, storage targets, audit.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { testDuckDB } from '../harness/duckdb.ts';
import { createBucket, s3Available, startS3Server, type S3Server } from '../harness/s3.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
const scratch = mkdtempSync(join(tmpdir(), 'timestore-admin-'));

beforeAll(async () => {
  ts = await startTestServer({ TIMESTORE_RETENTION_MAX_AGE_HOURS: '720', TIMESTORE_RETENTION_DELETE_GRACE_MINUTES: '7' });
});
afterAll(async () => {
  await ts.stop();
  rmSync(scratch, { recursive: true, force: true });
});

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${ts.url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(headers['x-user-id'] ? {} : { 'x-iam-user': 'alice' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'temperature_c', type: 'double' },
];
const batch = (rows: { timestamp: string; temperature_c: number }[]) => ({ schema: { fields: FIELDS }, partition: { key: {} }, rows });
const ingest = (slug: string, rows: { timestamp: string; temperature_c: number }[]) => postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, batch(rows));
const query = (slug: string) =>
  postJson(`${ts.url}/datasets/${slug}/query`, { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-02-01T00:00:00Z' } });

function expectError(res: { status: number; body: any }, status: number, code?: string) {
  expect(res.status).toBe(status);
  expect(typeof res.body.error.message).toBe('string');
  if (code) expect(res.body.error.code).toBe(code);
}

describe('datasets', () => {
  test('POST creates a dataset with schema version 1, IAM scopes and an audit event; the slug is unique', async () => {
    const res = await call('POST', '/admin/datasets', {
      slug: 'weather',
      name: 'Weather stations',
      description: 'Outdoor sensors',
      schema: { fields: FIELDS },
      partitionWindowSeconds: 3600,
      iam: { readScopes: ['weather:read'] },
      metadata: { team: 'climate' },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      slug: 'weather',
      name: 'Weather stations',
      description: 'Outdoor sensors',
      status: 'active',
      timestampColumn: 'timestamp',
      partitionWindowSeconds: 3600,
      iam: { readScopes: ['weather:read'] },
      metadata: { team: 'climate' },
      schemaVersion: 1,
      manifestVersion: 0,
      schema: { version: 1, fields: [{ name: 'timestamp', type: 'timestamp', nullable: false }, { name: 'temperature_c', type: 'double', nullable: true }] },
    });
    expectError(await call('POST', '/admin/datasets', { slug: 'weather' }), 409, 'dataset_exists');

    const audit = await call('GET', `/admin/datasets/weather/audit`);
    expect(audit.body.events[0]).toMatchObject({ action: 'dataset.created', actor: 'alice' });
  });

  test('a dataset created with a schema takes NDJSON at once, and its partition window', async () => {
    const res = await fetch(`${ts.url}/datasets/weather/ingest?wait=true`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-ndjson' },
      body: '{"timestamp":"2026-01-01T00:10:00Z","temperature_c":1.5}\n{"timestamp":"2026-01-01T01:10:00Z","temperature_c":2.5}\n',
    });
    expect(res.status).toBe(201);
    // One-hour windows: two rows an hour apart land in two partitions.
    expect(((await res.json()) as any).result.partitions).toHaveLength(2);
  });

  test('POST refuses bad input with 400s in the common shape', async () => {
    expectError(await call('POST', '/admin/datasets', { slug: '-bad slug' }), 400, 'validation_failed');
    expectError(await call('POST', '/admin/datasets', { slug: 'x', partitionWindowSeconds: 1 }), 400, 'validation_failed');
    expectError(await call('POST', '/admin/datasets', { slug: 'x', unknown: 1 }), 400, 'validation_failed');
    expectError(await call('POST', '/admin/datasets', { slug: 'x', schema: { fields: [{ name: 'v', type: 'double' }] } }), 400, 'missing_timestamp_field');
    expectError(
      await call('POST', '/admin/datasets', { slug: 'x', schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'bad name', type: 'double' }] } }),
      400,
      'invalid_field_name',
    );
    expectError(await call('POST', '/admin/datasets', { slug: 'x', storageTargetId: 'nowhere' }), 404, 'storage_target_not_found');
    expect((await call('GET', '/admin/datasets/x')).status).toBe(404);
  });

  test('GET by id or slug; 404 in the common shape', async () => {
    const bySlug = await call('GET', '/admin/datasets/weather');
    expect(bySlug.status).toBe(200);
    const byId = await call('GET', `/admin/datasets/${bySlug.body.id}`);
    expect(byId.body).toEqual(bySlug.body);
    expectError(await call('GET', '/admin/datasets/missing'), 404, 'not_found');
    expectError(await call('GET', '/admin/datasets/00000000-0000-4000-8000-000000000000'), 404, 'not_found');
  });

  test('list: status filter, search over slug and name, stable cursor pages while datasets are added', async () => {
    for (const slug of ['list-a', 'list-b', 'list-c', 'list-d', 'list-e']) {
      expect((await call('POST', '/admin/datasets', { slug, name: `Listed ${slug}` })).status).toBe(201);
    }
    expect((await call('POST', '/admin/datasets', { slug: 'list-idle', status: 'inactive' })).status).toBe(201);

    const seen: string[] = [];
    let cursor: string | null = null;
    let added = 0;
    do {
      const page: { body: any } = await call('GET', `/admin/datasets?search=list-&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...page.body.datasets.map((d: { slug: string }) => d.slug));
      cursor = page.body.nextCursor;
      // Added between pages: sorts after every row already seen, so nothing is skipped or repeated.
      if (added < 2) expect((await call('POST', '/admin/datasets', { slug: `list-late-${added++}` })).status).toBe(201);
    } while (cursor);
    expect(seen).toEqual(['list-a', 'list-b', 'list-c', 'list-d', 'list-e', 'list-idle', 'list-late-0', 'list-late-1']);

    const inactive = await call('GET', '/admin/datasets?status=inactive&search=LIST');
    expect(inactive.body.datasets.map((d: { slug: string }) => d.slug)).toEqual(['list-idle']);
    const byName = await call('GET', '/admin/datasets?search=Listed%20list-c');
    expect(byName.body.datasets.map((d: { slug: string }) => d.slug)).toEqual(['list-c']);
    // LIKE wildcards in the search are literal.
    expect((await call('GET', '/admin/datasets?search=%25')).body.datasets).toEqual([]);

    expectError(await call('GET', '/admin/datasets?cursor=garbage'), 400, 'invalid_cursor');
    expectError(await call('GET', '/admin/datasets?limit=0'), 400, 'validation_failed');
    expectError(await call('GET', '/admin/datasets?limit=201'), 400, 'validation_failed');
    expectError(await call('GET', '/admin/datasets?status=deleted'), 400, 'validation_failed');
  });

  test('PATCH changes name, description, status and scopes, each audited with before and after', async () => {
    const res = await call('PATCH', '/admin/datasets/weather', { name: 'Weather', description: null, iam: { writeScopes: ['weather:write'] } }, { 'x-iam-user': 'bob' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ name: 'Weather', description: null, iam: { writeScopes: ['weather:write'] }, metadata: { team: 'climate' } });
    const [event] = (await call('GET', '/admin/datasets/weather/audit?limit=1')).body.events;
    expect(event).toMatchObject({
      action: 'dataset.updated',
      actor: 'bob',
      details: {
        before: { name: 'Weather stations', description: 'Outdoor sensors', metadata: { team: 'climate', iam: { readScopes: ['weather:read'] } } },
        after: { name: 'Weather', description: null, metadata: { team: 'climate', iam: { writeScopes: ['weather:write'] } } },
      },
    });
    expectError(await call('PATCH', '/admin/datasets/weather', {}), 400, 'validation_failed');
    expectError(await call('PATCH', '/admin/datasets/weather', { status: 'gone' }), 400, 'validation_failed');
    expectError(await call('PATCH', '/admin/datasets/weather', { slug: 'renamed' }), 400, 'validation_failed');
    expectError(await call('PATCH', '/admin/datasets/missing', { name: 'x' }), 404);
    // Scopes removed: an empty iam clears them.
    expect((await call('PATCH', '/admin/datasets/weather', { iam: {} })).body.iam).toEqual({});
  });

  test('inactive refuses ingest but answers queries; archived refuses both; active again takes rows', async () => {
    const rows = [{ timestamp: '2026-01-02T00:00:00Z', temperature_c: 3 }];
    expect((await ingest('status-demo', rows)).status).toBe(201);

    expect((await call('PATCH', '/admin/datasets/status-demo', { status: 'inactive' })).status).toBe(200);
    expectError(await ingest('status-demo', rows), 409, 'dataset_inactive');
    const read = await query('status-demo');
    expect(read.status).toBe(200);
    expect(read.body.rows).toHaveLength(1);

    expect((await call('PATCH', '/admin/datasets/status-demo', { status: 'archived' })).status).toBe(200);
    expectError(await ingest('status-demo', rows), 409, 'dataset_archived');
    expectError(await query('status-demo'), 409, 'dataset_archived');

    expect((await call('PATCH', '/admin/datasets/status-demo', { status: 'active' })).status).toBe(200);
    expect((await ingest('status-demo', rows)).status).toBe(201);
    expect((await query('status-demo')).body.rows).toHaveLength(2);
  });
});

describe('sort columns', () => {
  const SENSOR_FIELDS = [
    { name: 'timestamp', type: 'timestamp' },
    { name: 'sensor', type: 'string' },
    { name: 'reading', type: 'double' },
  ];
  // Yesterday noon UTC: inside the server's 720-hour retention, one day window. Time order, the sensors interleaved.
  const BASE = Math.floor(Date.now() / 86_400_000) * 86_400_000 - 12 * 3_600_000;
  const rows = (from: number, count: number) =>
    Array.from({ length: count }, (_, i) => ({
      timestamp: new Date(BASE + (from + i) * 60_000).toISOString(),
      sensor: ['s3', 's1', 's2'][(from + i) % 3]!,
      reading: from + i,
    }));
  const send = (slug: string, list: ReturnType<typeof rows>) =>
    postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, { schema: { fields: SENSOR_FIELDS }, partition: { key: {} }, rows: list });
  /** The rows of every active partition file, file by file, in file order. */
  async function filesOf(slug: string): Promise<{ sensor: string; reading: number }[][]> {
    const db = await testDuckDB();
    const manifest = (await call('GET', `/admin/datasets/${slug}/manifest`)).body;
    const files = [];
    for (const p of manifest.partitions) {
      const reader = await db.runAndReadAll(`SELECT sensor, reading FROM read_parquet($path)`, { path: fileURLToPath(p.location) });
      files.push(reader.getRowObjectsJS() as { sensor: string; reading: number }[]);
    }
    return files;
  }
  const bySensorThenTime = (list: { sensor: string; reading: number }[]) =>
    list.map(({ sensor, reading }) => ({ sensor, reading })).sort((a, b) => (a.sensor < b.sensor ? -1 : a.sensor > b.sensor ? 1 : a.reading - b.reading));

  test('validated against the schema, audited, and the files written afterwards (ingest and compaction) follow them', async () => {
    const create = (sortColumns: string[], schema: boolean = true) =>
      call('POST', '/admin/datasets', { slug: 'sensors', ...(schema ? { schema: { fields: SENSOR_FIELDS } } : {}), sortColumns });
    expectError(await create(['station']), 400, 'invalid_sort_columns');
    expectError(await create(['timestamp']), 400, 'invalid_sort_columns');
    expectError(await create(['sensor', 'sensor']), 400, 'invalid_sort_columns');
    expectError(await create(['sensor'], false), 400, 'invalid_sort_columns');
    expect((await create([])).body.sortColumns).toEqual([]);

    // Before: files in time order.
    expect((await send('sensors', rows(0, 30))).status).toBe(201);
    const [first] = await filesOf('sensors');
    expect(first!.map((r) => r.reading)).toEqual(rows(0, 30).map((r) => r.reading));

    expectError(await call('PATCH', '/admin/datasets/sensors', { sortColumns: ['reading', 'nope'] }), 400, 'invalid_sort_columns');
    const patched = await call('PATCH', '/admin/datasets/sensors', { sortColumns: ['sensor'] }, { 'x-iam-user': 'carol' });
    expect(patched.status).toBe(200);
    expect(patched.body.sortColumns).toEqual(['sensor']);
    const [event] = (await call('GET', '/admin/datasets/sensors/audit?limit=1')).body.events;
    expect(event).toMatchObject({ action: 'dataset.updated', actor: 'carol', details: { before: { sortColumns: [] }, after: { sortColumns: ['sensor'] } } });

    // A new batch is written by sensor, then time; queries still answer in time order.
    expect((await send('sensors', rows(30, 30))).status).toBe(201);
    const files = await filesOf('sensors');
    expect(files).toHaveLength(2);
    expect(files[1]).toEqual(bySensorThenTime(rows(30, 30)));
    const answer = await postJson(`${ts.url}/datasets/sensors/query`, {
      timeRange: { start: new Date(BASE).toISOString(), end: new Date(BASE + 3_600_000).toISOString() },
      filters: { columns: { sensor: { eq: 's2' } } },
    });
    expect(answer.body.rows.map((r: { reading: number }) => r.reading)).toEqual(rows(0, 60).filter((r) => r.sensor === 's2').map((r) => r.reading));

    // Compaction merges both into one file in the dataset's order.
    const run = await postJson(`${ts.url}/admin/datasets/sensors/lifecycle?wait=true`, {});
    expect(run.status).toBe(200);
    const compacted = await filesOf('sensors');
    expect(compacted).toHaveLength(1);
    expect(compacted[0]).toEqual(bySensorThenTime(rows(0, 60)));
  });
});

describe('manifest', () => {
  test('the current version with its partitions and totals; ?version=N for an earlier one; pages', async () => {
    expect((await ingest('manifested', [{ timestamp: '2026-01-05T00:00:00Z', temperature_c: 1 }])).status).toBe(201);
    expect(
      (await ingest('manifested', [{ timestamp: '2026-01-06T00:00:00Z', temperature_c: 2 }, { timestamp: '2026-01-06T01:00:00Z', temperature_c: 3 }]))
        .status,
    ).toBe(201);

    const current = await call('GET', '/admin/datasets/manifested/manifest');
    expect(current.status).toBe(200);
    expect(current.body).toMatchObject({ version: 2, latestVersion: 2, reason: 'ingest', totals: { partitions: 2, rowCount: 3 } });
    const [first, second] = current.body.partitions;
    expect(first).toMatchObject({ rowCount: 1, startTime: '2026-01-05T00:00:00.000Z', partitionKey: {}, addedVersion: 1 });
    expect(second).toMatchObject({ rowCount: 2, startTime: '2026-01-06T00:00:00.000Z', endTime: '2026-01-06T01:00:00.000Z', addedVersion: 2 });
    expect(first.location).toStartWith('file:///');
    expect(current.body.totals.sizeBytes).toBe(first.sizeBytes + second.sizeBytes);
    expect(current.body.byStorageTarget).toEqual([
      { storageTargetId: first.storageTargetId, partitions: 2, rowCount: 3, sizeBytes: first.sizeBytes + second.sizeBytes },
    ]);

    const v1 = await call('GET', '/admin/datasets/manifested/manifest?version=1');
    expect(v1.body).toMatchObject({ version: 1, latestVersion: 2, totals: { partitions: 1, rowCount: 1 } });
    expect(v1.body.partitions.map((p: { id: string }) => p.id)).toEqual([first.id]);

    const page1 = await call('GET', '/admin/datasets/manifested/manifest?limit=1');
    expect(page1.body.partitions.map((p: { id: string }) => p.id)).toEqual([first.id]);
    const page2 = await call('GET', `/admin/datasets/manifested/manifest?limit=1&cursor=${page1.body.nextCursor}`);
    expect(page2.body.partitions.map((p: { id: string }) => p.id)).toEqual([second.id]);
    expect(page2.body.nextCursor).toBeNull();

    expectError(await call('GET', '/admin/datasets/manifested/manifest?version=3'), 400, 'unknown_manifest_version');
    expectError(await call('GET', '/admin/datasets/manifested/manifest?version=-1'), 400, 'validation_failed');
    expectError(await call('GET', '/admin/datasets/manifested/manifest?cursor=bogus'), 400, 'invalid_cursor');
    expect((await call('GET', '/admin/datasets/list-a/manifest')).body).toMatchObject({ version: 0, partitions: [], totals: { partitions: 0 } });
  });
});

describe('retention', () => {
  test('GET shows the stored and effective policy with where each value came from', async () => {
    const before = await call('GET', '/admin/datasets/weather/retention');
    expect(before.status).toBe(200);
    expect(before.body.stored).toBeNull();
    expect(before.body.effective).toEqual({
      maxAgeHours: { value: 720, source: 'server' },
      maxTotalBytes: { value: null, source: 'none' },
      deleteGraceMinutes: { value: 7, source: 'server' },
    });
  });

  test('PUT validates, stores, and audits the actor with the policy before and after', async () => {
    const first = await call('PUT', '/admin/datasets/weather/retention', { rules: { maxTotalBytes: 1_000_000 } }, { 'x-user-id': 'carol' });
    expect(first.status).toBe(200);
    expect(first.body.stored).toMatchObject({ policy: { rules: { maxTotalBytes: 1_000_000 } }, updatedBy: 'carol' });
    expect(first.body.effective).toEqual({
      maxAgeHours: { value: 720, source: 'server' },
      maxTotalBytes: { value: 1_000_000, source: 'dataset' },
      deleteGraceMinutes: { value: 7, source: 'server' },
    });

    // null turns a server default off for this dataset.
    const second = await call('PUT', '/admin/datasets/weather/retention', { rules: { maxAgeHours: null }, deleteGraceMinutes: 0 });
    expect(second.body.effective).toEqual({
      maxAgeHours: { value: null, source: 'dataset' },
      maxTotalBytes: { value: null, source: 'none' },
      deleteGraceMinutes: { value: 0, source: 'dataset' },
    });
    expect((await call('GET', '/admin/datasets/weather/retention')).body).toEqual(second.body);

    const [latest, earlier] = (await call('GET', '/admin/datasets/weather/audit?limit=2')).body.events;
    expect(latest).toMatchObject({
      action: 'retention.updated',
      actor: 'alice',
      details: { before: { rules: { maxTotalBytes: 1_000_000 } }, after: { rules: { maxAgeHours: null }, deleteGraceMinutes: 0 } },
    });
    expect(earlier).toMatchObject({ action: 'retention.updated', actor: 'carol', details: { before: null } });

    for (const bad of [
      { rules: { maxAgeHours: 0 } },
      { rules: { maxAgeHours: -1 } },
      { rules: { maxTotalBytes: 1.5 } },
      { rules: { maxAge: 5 } },
      { rules: {}, deleteGraceMinutes: -1 },
      { deleteGraceMinutes: 5 },
    ]) {
      expectError(await call('PUT', '/admin/datasets/weather/retention', bad), 400, 'validation_failed');
    }
    const message = (await call('PUT', '/admin/datasets/weather/retention', { rules: { maxAgeHours: -1 } })).body.error.message;
    expect(message).toContain('/rules/maxAgeHours');
    expect(message).not.toContain('union');
    expectError(await call('PUT', '/admin/datasets/missing/retention', { rules: {} }), 404);
  });
});

describe('storage targets', () => {
  test('GET lists the configured targets, filtered by kind', async () => {
    const all = await call('GET', '/admin/storage-targets');
    expect(all.body.storageTargets.map((t: { name: string }) => t.name)).toContain('local');
    expect((await call('GET', '/admin/storage-targets?kind=s3')).body.storageTargets).toEqual([]);
    expectError(await call('GET', '/admin/storage-targets?kind=ftp'), 400, 'validation_failed');
  });

  test('POST registers a local target after a write probe; names are unique; unwritable is 422', async () => {
    const root = join(scratch, 'archive');
    const res = await call('POST', '/admin/storage-targets', { name: 'archive', kind: 'local', description: 'second disk', config: { root } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ name: 'archive', kind: 'local', description: 'second disk', config: { root }, hasCredentials: false });
    expect(existsSync(join(root, '.timestore-probe'))).toBe(true); // the probe ran (and removed its object)

    expectError(await call('POST', '/admin/storage-targets', { name: 'archive', kind: 'local', config: { root } }), 409, 'storage_target_exists');
    expectError(await call('POST', '/admin/storage-targets', { name: 'nowhere', kind: 'local', config: { root: '/proc/timestore' } }), 422, 'storage_target_unwritable');
    expect((await call('GET', '/admin/storage-targets')).body.storageTargets.map((t: { name: string }) => t.name)).not.toContain('nowhere');
    expectError(await call('POST', '/admin/storage-targets', { name: 'rel', kind: 'local', config: { root: 'relative/path' } }), 400, 'validation_failed');
    expectError(await call('POST', '/admin/storage-targets', { name: 'b', kind: 's3', config: {} }), 400, 'validation_failed');
    expectError(await call('POST', '/admin/storage-targets', { name: 'bad name!', kind: 'local', config: { root } }), 400, 'validation_failed');
  });

  test('PUT sets the target for new partitions; old ones keep their location; unknown is 404', async () => {
    expect((await ingest('moving', [{ timestamp: '2026-01-03T00:00:00Z', temperature_c: 1 }])).status).toBe(201);
    const res = await call('PUT', '/admin/datasets/moving/storage-target', { storageTargetId: 'archive' });
    expect(res.status).toBe(200);
    const archive = (await call('GET', '/admin/storage-targets')).body.storageTargets.find((t: { name: string }) => t.name === 'archive');
    expect(res.body.defaultStorageTargetId).toBe(archive.id);
    expect((await ingest('moving', [{ timestamp: '2026-01-04T00:00:00Z', temperature_c: 2 }])).status).toBe(201);

    const { partitions } = (await call('GET', '/admin/datasets/moving/manifest')).body;
    expect(partitions[0].location).toStartWith(`file://${join(ts.config.storageRoot, 'partitions')}`);
    expect(partitions[1].location).toStartWith(`file://${join(scratch, 'archive')}`);
    expect((await query('moving')).body.rows).toHaveLength(2);

    expectError(await call('PUT', '/admin/datasets/moving/storage-target', { storageTargetId: 'nowhere' }), 404, 'storage_target_not_found');
    expectError(await call('PUT', '/admin/datasets/moving/storage-target', {}), 400, 'validation_failed');
    const [event] = (await call('GET', '/admin/datasets/moving/audit?limit=1')).body.events;
    expect(event).toMatchObject({ action: 'dataset.storage_target_changed', details: { after: archive.id, name: 'archive' } });
  });

  test('PUT refuses a target that fails a write probe', async () => {
    const root = join(scratch, 'revoked');
    expect((await call('POST', '/admin/storage-targets', { name: 'revoked', kind: 'local', config: { root } })).status).toBe(201);
    rmSync(root, { recursive: true });
    Bun.spawnSync(['sh', '-c', `touch ${root}`]); // a file where the directory was: nothing can be written under it
    expectError(await call('PUT', '/admin/datasets/moving/storage-target', { storageTargetId: 'revoked' }), 422, 'storage_target_unwritable');
  });
});

describe('audit', () => {
  test('events of a dataset, newest first, paginated without gaps or repeats', async () => {
    const all = (await call('GET', '/admin/datasets/weather/audit?limit=500')).body.events;
    expect(all.length).toBeGreaterThanOrEqual(4);
    const ids = all.map((e: { id: number }) => e.id);
    expect(ids).toEqual([...ids].sort((a: number, b: number) => b - a));

    const paged: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: any } = await call('GET', `/admin/datasets/weather/audit?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      paged.push(...page.body.events.map((e: { id: number }) => e.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(paged).toEqual(ids);
    expectError(await call('GET', '/admin/datasets/weather/audit?cursor=x'), 400, 'invalid_cursor');
    expectError(await call('GET', '/admin/datasets/missing/audit'), 404);
  });
});

// Under CI the S3 server must be there: the test runs and fails loudly if it cannot start.
const skipS3 = !process.env.CI && !s3Available();

describe.skipIf(skipS3)('S3 storage targets', () => {
  let s3: S3Server;
  let bucket = '';

  beforeAll(async () => {
    s3 = await startS3Server();
    bucket = await createBucket(s3, 'timestore-admin');
  }, 180_000);
  afterAll(() => s3?.stop());

  test('a target registered with its own keys is written and read with them; the keys are never echoed', async () => {
    // The server was started without any TIMESTORE_S3_* credentials: only the registered keys can work.
    const config = { bucket, prefix: 'tenant-a', endpoint: s3.endpoint, region: s3.region, forcePathStyle: true };
    const wrongKeys = await call('POST', '/admin/storage-targets', {
      name: 'remote-bad',
      kind: 's3',
      config,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: 'not-the-secret' },
    });
    expectError(wrongKeys, 422, 'storage_target_unwritable');

    const res = await call('POST', '/admin/storage-targets', {
      name: 'remote',
      kind: 's3',
      config,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ name: 'remote', kind: 's3', config, hasCredentials: true });
    const listing = await call('GET', '/admin/storage-targets?kind=s3');
    expect(listing.body.storageTargets.map((t: { name: string }) => t.name)).toEqual(['remote']);
    for (const text of [JSON.stringify(res.body), JSON.stringify(listing.body), JSON.stringify((await call('GET', '/admin/datasets/weather/audit')).body)]) {
      expect(text).not.toContain(s3.secretAccessKey);
    }

    expect((await call('PUT', '/admin/datasets/weather/storage-target', { storageTargetId: 'remote' })).status).toBe(200);
    expect((await ingest('weather', [{ timestamp: '2026-01-07T00:00:00Z', temperature_c: 9.5 }])).status).toBe(201);
    const { partitions } = (await call('GET', '/admin/datasets/weather/manifest')).body;
    expect(partitions.at(-1).location).toStartWith(`s3://${bucket}/tenant-a/datasets/weather/`);
    const rows = (await query('weather')).body.rows;
    expect(rows.map((r: { temperature_c: number }) => r.temperature_c)).toEqual([1.5, 2.5, 9.5]);
  });
});
