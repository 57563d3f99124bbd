import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { listAuditEvents } from '../../src/catalog/audit.ts';
import type { Catalog } from '../../src/catalog/connection.ts';
import { createDataset, findDataset, getDataset, listDatasets, lockDataset, updateDataset } from '../../src/catalog/datasets.ts';
import { enqueueJob } from '../../src/catalog/job-table.ts';
import { getManifestVersion, listActivePartitions, publishManifestVersion } from '../../src/catalog/manifests.ts';
import type { NewPartition } from '../../src/model/records.ts';
import { getRetentionPolicy, putRetentionPolicy } from '../../src/catalog/retention-policies.ts';
import { listSchemaVersions, recordSchemaVersion } from '../../src/catalog/schema-versions.ts';
import { listStorageTargets, upsertStorageTarget } from '../../src/catalog/storage-targets.ts';
import type { StorageTarget } from '../../src/model/records.ts';
import { AppError } from '../../src/model/errors.ts';
import { holdDatasetLock, openTestCatalog } from '../harness/catalog.ts';

let catalog: Catalog;
let target: StorageTarget;

beforeAll(async () => {
  catalog = await openTestCatalog();
  target = await upsertStorageTarget(catalog.sql, { name: 'local', kind: 'local', config: { root: '/data/partitions' } });
});
afterAll(() => catalog.close());

let seq = 0;
function partition(schemaVersion: number, overrides: Partial<NewPartition> = {}): NewPartition {
  seq += 1;
  return {
    storageTargetId: target.id,
    location: `file:///data/partitions/p-${seq}-${Math.random().toString(36).slice(2)}.parquet`,
    partitionKey: { instrument: 'A' },
    schemaVersion,
    startTime: new Date('2026-01-01T00:00:00Z'),
    endTime: new Date('2026-01-01T01:00:00Z'),
    rowCount: 10,
    sizeBytes: 1000,
    checksum: 'sha256:abc',
    columnStatistics: { temperature: { min: 1, max: 9, nulls: 0 } },
    ...overrides,
  };
}

async function datasetWithSchema(slug: string) {
  const dataset = await createDataset(catalog.sql, { slug, name: `Dataset ${slug}` });
  const schema = await catalog.sql.begin((tx) =>
    recordSchemaVersion(tx, dataset.id, [
      { name: 'timestamp', type: 'timestamp' },
      { name: 'temperature', type: 'double' },
    ], 'timestamp'),
  );
  return { dataset, schema };
}

async function expectAppError(promise: Promise<unknown>, status: number, code: string) {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).status as number).toBe(status);
    expect((err as AppError).code as string).toBe(code);
    return;
  }
  throw new Error(`expected ${status} ${code}, but it succeeded`);
}

describe('datasets', () => {
  test('create, read by id and by slug, update', async () => {
    const created = await createDataset(catalog.sql, {
      slug: 'weather',
      name: 'Weather',
      metadata: { iam: { readScopes: ['weather:read'] }, owner_team: 'ops', nested: { some_key: [{ deep_key: 1 }] } },
    });
    expect(created).toMatchObject({ slug: 'weather', name: 'Weather', status: 'active', schemaVersion: 0, manifestVersion: 0 });
    // JSON values come back exactly as stored: keys are user data, never renamed.
    expect(created.metadata).toEqual({ iam: { readScopes: ['weather:read'] }, owner_team: 'ops', nested: { some_key: [{ deep_key: 1 }] } });
    expect((await getDataset(catalog.sql, 'weather')).metadata).toEqual(created.metadata);
    expect((await getDataset(catalog.sql, created.id)).slug).toBe('weather');
    expect((await getDataset(catalog.sql, 'weather')).id).toBe(created.id);
    expect(await findDataset(catalog.sql, 'nope')).toBeNull();
    await expectAppError(getDataset(catalog.sql, 'nope'), 404, 'not_found');

    const updated = await updateDataset(catalog.sql, created.id, { status: 'inactive', description: 'old sensors' });
    expect(updated).toMatchObject({ status: 'inactive', description: 'old sensors', name: 'Weather' });
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime());
  });

  test('a duplicate slug is a 409', async () => {
    await createDataset(catalog.sql, { slug: 'dupe' });
    await expectAppError(createDataset(catalog.sql, { slug: 'dupe' }), 409, 'dataset_exists');
  });

  test('list: status filter, search, and cursor pages that neither skip nor repeat while rows are added', async () => {
    for (let i = 0; i < 5; i++) await createDataset(catalog.sql, { slug: `list-${i}`, name: `Listed ${i}` });
    const first = await listDatasets(catalog.sql, { search: 'listed', limit: 2 });
    expect(first.datasets).toHaveLength(2);
    expect(first.nextCursor).not.toBeNull();
    await createDataset(catalog.sql, { slug: 'list-5', name: 'Listed 5' });
    const seen = [...first.datasets.map((d) => d.slug)];
    let cursor = first.nextCursor;
    while (cursor) {
      const page = await listDatasets(catalog.sql, { search: 'listed', limit: 2, cursor });
      seen.push(...page.datasets.map((d) => d.slug));
      cursor = page.nextCursor;
    }
    // Rows created in the same millisecond are ordered by id, so compare as a set; the length proves no repeats.
    expect(seen).toHaveLength(6);
    expect([...seen].sort()).toEqual(['list-0', 'list-1', 'list-2', 'list-3', 'list-4', 'list-5']);

    await updateDataset(catalog.sql, (await getDataset(catalog.sql, 'list-3')).id, { status: 'archived' });
    const archived = await listDatasets(catalog.sql, { status: 'archived', search: 'list', limit: 10 });
    expect(archived.datasets.map((d) => d.slug)).toEqual(['list-3']);
    await expectAppError(listDatasets(catalog.sql, { limit: 1, cursor: 'garbage' }), 400, 'invalid_cursor');
  });
});

describe('schema versions', () => {
  test('the same fields reuse a version; new fields make the next one', async () => {
    const { dataset, schema } = await datasetWithSchema('evolving');
    expect(schema.version).toBe(1);
    const again = await catalog.sql.begin((tx) =>
      recordSchemaVersion(tx, dataset.id, [
        { name: 'timestamp', type: 'timestamp' },
        { name: 'temperature', type: 'double' },
      ], 'timestamp'),
    );
    expect(again.version).toBe(1);
    const next = await catalog.sql.begin((tx) =>
      recordSchemaVersion(tx, dataset.id, [
        { name: 'timestamp', type: 'timestamp' },
        { name: 'temperature', type: 'double' },
        { name: 'humidity', type: 'double', nullable: true },
      ], 'timestamp'),
    );
    expect(next.version).toBe(2);
    expect((await listSchemaVersions(catalog.sql, dataset.id)).map((v) => v.fields.length)).toEqual([2, 3]);
    expect((await getDataset(catalog.sql, dataset.id)).schemaVersion).toBe(2);
  });
});

describe('manifests', () => {
  test('partition times of any storable year read back as written (years 0001–0099 too)', async () => {
    const { dataset, schema } = await datasetWithSchema('old-times');
    const times = [
      ['0001-01-01T00:00:00.000001Z', '0001-06-30T12:34:56.789Z'],
      ['0099-12-31T23:00:00Z', '0100-01-01T00:00:00Z'],
      ['1969-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999999Z'],
    ];
    const add = times.map(([startTime, endTime]) => partition(schema.version, { startTime: startTime!, endTime: endTime! }));
    await catalog.sql.begin((tx) => publishManifestVersion(tx, { datasetId: dataset.id, reason: 'ingest', add }));
    const read = await listActivePartitions(catalog.sql, { datasetId: dataset.id, version: 1 });
    expect(read.map((p) => [p.startTime.toISOString(), p.endTime.toISOString()])).toEqual([
      ['0001-01-01T00:00:00.000Z', '0001-06-30T12:34:56.789Z'],
      ['0099-12-31T23:00:00.000Z', '0100-01-01T00:00:00.000Z'],
      ['1969-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'],
    ]);
  });

  test('one publish may add more files than one statement takes parameters for (12 per row, 65,534 at most)', async () => {
    const { dataset, schema } = await datasetWithSchema('many-files');
    const add = Array.from({ length: 6000 }, () => partition(schema.version));
    const published = await catalog.sql.begin((tx) => publishManifestVersion(tx, { datasetId: dataset.id, reason: 'ingest', add }));
    expect(published.manifest).toMatchObject({ version: 1, partitionsAdded: 6000, partitionCount: 6000, rowCount: 60_000 });
    expect(new Set(published.partitions.map((p) => p.location))).toEqual(new Set(add.map((p) => p.location)));
  });

  test('publishing adds and removes partitions in one version, and earlier versions stay readable', async () => {
    const { dataset, schema } = await datasetWithSchema('published');
    const v1 = await catalog.sql.begin((tx) =>
      publishManifestVersion(tx, { datasetId: dataset.id, reason: 'ingest', add: [partition(schema.version), partition(schema.version)] }),
    );
    expect(v1.manifest).toMatchObject({ version: 1, partitionsAdded: 2, partitionCount: 2, rowCount: 20, sizeBytes: 2000 });
    expect(v1.partitions).toHaveLength(2);
    expect(v1.partitions[0]).toMatchObject({ partitionKey: { instrument: 'A' }, rowCount: 10, addedVersion: 1, removedVersion: null });

    const merged = partition(schema.version, { rowCount: 20, sizeBytes: 1500 });
    const v2 = await catalog.sql.begin((tx) =>
      publishManifestVersion(tx, {
        datasetId: dataset.id,
        reason: 'compaction',
        add: [merged],
        remove: v1.partitions.map((p) => p.id),
      }),
    );
    expect(v2.manifest).toMatchObject({ version: 2, partitionsAdded: 1, partitionsRemoved: 2, partitionCount: 1, rowCount: 20, sizeBytes: 1500 });

    const atV1 = await listActivePartitions(catalog.sql, { datasetId: dataset.id, version: 1 });
    const atV2 = await listActivePartitions(catalog.sql, { datasetId: dataset.id, version: 2 });
    expect(atV1.map((p) => p.id).sort()).toEqual(v1.partitions.map((p) => p.id).sort());
    expect(atV2.map((p) => p.location)).toEqual([merged.location]);
    expect((await getDataset(catalog.sql, dataset.id)).manifestVersion).toBe(2);
    expect(await getManifestVersion(catalog.sql, dataset.id, 1)).toMatchObject({ partitionCount: 2 });

    // Removing what is no longer active is a conflict, and the failed publish changes nothing.
    await expectAppError(
      catalog.sql.begin((tx) =>
        publishManifestVersion(tx, { datasetId: dataset.id, reason: 'compaction', add: [], remove: [v1.partitions[0]!.id] }),
      ),
      409,
      'partition_not_active',
    );
    expect((await getDataset(catalog.sql, dataset.id)).manifestVersion).toBe(2);
  });

  test('active partitions are selected by time overlap [from, to) and partition key', async () => {
    const { dataset, schema } = await datasetWithSchema('selected');
    const at = (h: number) => new Date(Date.UTC(2026, 0, 1, h));
    await catalog.sql.begin((tx) =>
      publishManifestVersion(tx, {
        datasetId: dataset.id,
        reason: 'ingest',
        add: [
          partition(schema.version, { startTime: at(0), endTime: at(1), partitionKey: { instrument: 'A' } }),
          partition(schema.version, { startTime: at(2), endTime: at(3), partitionKey: { instrument: 'A' } }),
          partition(schema.version, { startTime: at(2), endTime: at(3), partitionKey: { instrument: 'B' } }),
        ],
      }),
    );
    const select = (from: Date, to: Date, key?: Record<string, string[]>) =>
      listActivePartitions(catalog.sql, { datasetId: dataset.id, version: 1, from, to, partitionKey: key });
    expect(await select(at(0), at(24))).toHaveLength(3);
    expect(await select(at(1), at(2))).toHaveLength(1); // end_time 01:00 is inclusive; start 02:00 is not < 02:00
    expect(await select(at(2), at(4), { instrument: ['B'] })).toHaveLength(1);
    expect(await select(at(0), at(4), { instrument: ['A', 'B'] })).toHaveLength(3);
    expect(await select(at(0), at(4), { instrument: [] })).toHaveLength(0);
    expect(await select(at(4), at(5))).toHaveLength(0);
  });

  test('20 concurrent publishers to one dataset produce consecutive versions and lose no partition', async () => {
    const { dataset, schema } = await datasetWithSchema('contended');
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        catalog.sql.begin((tx) =>
          publishManifestVersion(tx, { datasetId: dataset.id, reason: 'ingest', add: [partition(schema.version)] }),
        ),
      ),
    );
    expect(results.map((r) => r.manifest.version).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const active = await listActivePartitions(catalog.sql, { datasetId: dataset.id, version: 20 });
    expect(active).toHaveLength(20);
    expect(await getManifestVersion(catalog.sql, dataset.id, 20)).toMatchObject({ partitionCount: 20, rowCount: 200 });
  });

  test('a writer holding the dataset (a publish in progress) holds back its other writers, not the jobs of its new batches', async () => {
    const { dataset } = await datasetWithSchema('held-by-a-writer');
    const held = await holdDatasetLock(catalog.sql, dataset.id);
    const otherWriter = catalog.sql.begin((tx) => lockDataset(tx, dataset.id)).then(() => 'locked');
    const job = enqueueJob(catalog.sql, { queue: 'held-by-a-writer', kind: 'ingest', datasetId: dataset.id, payload: {} }).then(() => 'enqueued');
    const waited = (ms: number) => Bun.sleep(ms).then(() => 'still waiting');
    try {
      expect(await Promise.race([job, waited(10_000)])).toBe('enqueued');
      expect(await Promise.race([otherWriter, waited(300)])).toBe('still waiting');
    } finally {
      await held.release();
    }
    expect(await otherWriter).toBe('locked');
  });

  test('a duplicate partition is rejected and publishes nothing', async () => {
    const { dataset, schema } = await datasetWithSchema('duplicated');
    const p = partition(schema.version);
    await catalog.sql.begin((tx) => publishManifestVersion(tx, { datasetId: dataset.id, reason: 'ingest', add: [p] }));
    await expectAppError(
      catalog.sql.begin((tx) => publishManifestVersion(tx, { datasetId: dataset.id, reason: 'ingest', add: [p] })),
      409,
      'duplicate_partition',
    );
    expect((await getDataset(catalog.sql, dataset.id)).manifestVersion).toBe(1);
  });
});

describe('retention and audit', () => {
  test('a retention update stores the policy and writes an audit event with before and after', async () => {
    const { dataset } = await datasetWithSchema('retained');
    expect(await getRetentionPolicy(catalog.sql, dataset.id)).toBeNull();
    await putRetentionPolicy(catalog.sql, dataset.id, { rules: { maxAgeHours: 48 } }, 'alice');
    const stored = await putRetentionPolicy(catalog.sql, dataset.id, { rules: { maxAgeHours: 24, maxTotalBytes: 1e9 }, deleteGraceMinutes: 5 }, 'bob');
    expect(stored).toMatchObject({ policy: { rules: { maxAgeHours: 24, maxTotalBytes: 1e9 }, deleteGraceMinutes: 5 }, updatedBy: 'bob' });

    const events = await listAuditEvents(catalog.sql, dataset.id, 10);
    expect(events.map((e) => [e.action, e.actor])).toEqual([
      ['retention.updated', 'bob'],
      ['retention.updated', 'alice'],
    ]);
    expect(events[0]!.details).toEqual({
      before: { rules: { maxAgeHours: 48 } },
      after: { rules: { maxAgeHours: 24, maxTotalBytes: 1e9 }, deleteGraceMinutes: 5 },
    });
    expect(await listAuditEvents(catalog.sql, dataset.id, 10, events[0]!.id)).toHaveLength(1);
  });
});

describe('storage targets', () => {
  test('upsert by name is idempotent and list filters by kind', async () => {
    const again = await upsertStorageTarget(catalog.sql, { name: 'local', kind: 'local', config: { root: '/data/partitions' } });
    expect(again.id).toBe(target.id);
    await upsertStorageTarget(catalog.sql, { name: 'archive', kind: 's3', config: { bucket: 'b', prefix: 'p/', forcePathStyle: true } });
    expect((await listStorageTargets(catalog.sql, 's3')).map((t) => t.name)).toEqual(['archive']);
    expect((await listStorageTargets(catalog.sql)).map((t) => t.name)).toEqual(['archive', 'local']);
  });
});
