import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { Catalog } from '../../src/catalog/connection.ts';
import { createDataset as createBareDataset } from '../../src/catalog/datasets.ts';
import { listActivePartitions, publishManifestVersion } from '../../src/catalog/manifests.ts';
import type { NewPartition } from '../../src/model/records.ts';
import { recordSchemaVersion } from '../../src/catalog/schema-versions.ts';
import { upsertStorageTarget } from '../../src/catalog/storage-targets.ts';
import type { Partition, StorageTarget } from '../../src/model/records.ts';
import { ManifestSnapshots, selectPartitions } from '../../src/query/manifest-snapshots.ts';
import { openTestCatalog } from '../harness/catalog.ts';
import { prng } from '../harness/prng.ts';

let catalog: Catalog;
let target: StorageTarget;

beforeAll(async () => {
  catalog = await openTestCatalog();
  target = await upsertStorageTarget(catalog.sql, { name: 'local', kind: 'local', config: { root: '/data' } });
});
afterAll(() => catalog.close());

const HOUR = 3_600_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
let seq = 0;

function partition(startHour: number, hours: number, instrument: string): NewPartition {
  seq += 1;
  return {
    storageTargetId: target.id,
    location: `file:///data/p-${seq}.parquet`,
    partitionKey: { instrument },
    schemaVersion: 1,
    // Microseconds past the hour, as DuckDB records them: the selection must compare like the catalog.
    startTime: new Date(T0 + startHour * HOUR).toISOString().replace('Z', '001Z'),
    endTime: new Date(T0 + (startHour + hours) * HOUR - 1).toISOString().replace('Z', '999Z'),
    rowCount: 10,
    sizeBytes: 100,
    checksum: 'sha256:0',
  };
}

/** A dataset with schema version 1, which its partitions reference. */
async function createDataset(sql: typeof catalog.sql, input: { slug: string; name: string }) {
  const dataset = await createBareDataset(sql, input);
  await sql.begin((tx) => recordSchemaVersion(tx, dataset.id, [{ name: 'timestamp', type: 'timestamp' }], 'timestamp'));
  return dataset;
}

async function publish(datasetId: string, add: NewPartition[], remove: string[] = []): Promise<number> {
  const published = await catalog.sql.begin((tx) => publishManifestVersion(tx, { datasetId, reason: 'test', add, remove }));
  return published.manifest.version;
}

const ids = (partitions: readonly Partition[] | null) => partitions?.map((p) => p.id) ?? null;

describe('manifest snapshots', () => {
  test('moving forward by each version\'s changes gives what the catalog lists at that version', async () => {
    const dataset = await createDataset(catalog.sql, { slug: 'snap-random', name: 'snap' });
    const snapshots = new ManifestSnapshots(catalog.sql, 10_000);
    const random = prng(7);
    const live: string[] = [];
    for (let step = 0; step < 40; step++) {
      const add = Array.from({ length: Math.floor(random() * 4) }, () =>
        partition(Math.floor(random() * 48), 1 + Math.floor(random() * 3), random() < 0.5 ? 'A' : 'B'),
      );
      const remove = live.filter(() => random() < 0.15);
      const version = await publish(dataset.id, add, remove);
      const listed = await listActivePartitions(catalog.sql, { datasetId: dataset.id, version });
      live.splice(0, live.length, ...listed.map((p) => p.id));
      // Not every version is queried: a snapshot may skip several.
      if (random() < 0.6) expect(ids(await snapshots.active(dataset.id, version))).toEqual(ids(listed));

      const from = new Date(T0 + Math.floor(random() * 50) * HOUR);
      const to = new Date(from.getTime() + (1 + Math.floor(random() * 6)) * HOUR);
      const partitionKey = random() < 0.5 ? { instrument: ['A'] } : undefined;
      const active = await snapshots.active(dataset.id, version);
      const inCatalog = await listActivePartitions(catalog.sql, { datasetId: dataset.id, version, from, to, partitionKey });
      expect(ids(selectPartitions(active!, { from, to, partitionKey }))).toEqual(ids(inCatalog));
    }
    const stats = snapshots.stats();
    expect(stats.loads).toBe(1);
    expect(stats.advances).toBeGreaterThan(10);
    expect(stats.hits).toBeGreaterThan(10);
  });

  test('a query at an older version than the kept snapshot is sent to the catalog', async () => {
    const dataset = await createDataset(catalog.sql, { slug: 'snap-old', name: 'snap' });
    const snapshots = new ManifestSnapshots(catalog.sql, 10_000);
    const v1 = await publish(dataset.id, [partition(0, 1, 'A')]);
    const v2 = await publish(dataset.id, [partition(1, 1, 'A')]);
    expect(await snapshots.active(dataset.id, v2)).toHaveLength(2);
    expect(await snapshots.active(dataset.id, v1)).toBeNull();
    expect(snapshots.stats().bypasses).toBe(1);
  });

  test('concurrent queries of one version load it once', async () => {
    const dataset = await createDataset(catalog.sql, { slug: 'snap-once', name: 'snap' });
    const snapshots = new ManifestSnapshots(catalog.sql, 10_000);
    const version = await publish(dataset.id, [partition(0, 1, 'A'), partition(2, 1, 'B')]);
    const answers = await Promise.all(Array.from({ length: 8 }, () => snapshots.active(dataset.id, version)));
    for (const answer of answers) expect(answer).toHaveLength(2);
    expect(snapshots.stats()).toMatchObject({ loads: 1, advances: 0 });
  });

  test('the partitions kept stay within the limit, least recently queried dataset dropped first', async () => {
    const snapshots = new ManifestSnapshots(catalog.sql, 5);
    const big = await createDataset(catalog.sql, { slug: 'snap-big', name: 'snap' });
    const bigVersion = await publish(big.id, Array.from({ length: 6 }, (_, i) => partition(i, 1, 'A')));
    expect(await snapshots.active(big.id, bigVersion)).toBeNull();

    const [a, b] = [await createDataset(catalog.sql, { slug: 'snap-a', name: 'a' }), await createDataset(catalog.sql, { slug: 'snap-b', name: 'b' })];
    const va = await publish(a.id, [partition(0, 1, 'A'), partition(1, 1, 'A'), partition(2, 1, 'A')]);
    const vb = await publish(b.id, [partition(0, 1, 'A'), partition(1, 1, 'A')]);
    await snapshots.active(a.id, va);
    await snapshots.active(b.id, vb);
    expect(snapshots.stats()).toMatchObject({ datasets: 2, partitions: 5 });
    // b grows past what fits beside a: a, the least recently used, goes.
    const vb2 = await publish(b.id, [partition(3, 1, 'A')]);
    expect(await snapshots.active(b.id, vb2)).toHaveLength(3);
    expect(snapshots.stats()).toMatchObject({ datasets: 1, partitions: 3 });
    // Growing past the whole limit: the query that moved it forward has its answer, but b is not
    // kept, and its next queries go to the catalog.
    const vb3 = await publish(b.id, [partition(4, 1, 'A'), partition(5, 1, 'A'), partition(6, 1, 'A')]);
    expect(await snapshots.active(b.id, vb3)).toHaveLength(6);
    expect(snapshots.stats()).toMatchObject({ datasets: 0, partitions: 0 });
    expect(await snapshots.active(b.id, vb3)).toBeNull();
  });
});
