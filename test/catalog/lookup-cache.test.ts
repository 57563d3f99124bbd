import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { CatalogCache } from '../../src/catalog/lookup-cache.ts';
import type { Catalog } from '../../src/catalog/connection.ts';
import { createDataset } from '../../src/catalog/datasets.ts';
import { recordSchemaVersion } from '../../src/catalog/schema-versions.ts';
import { upsertStorageTarget } from '../../src/catalog/storage-targets.ts';
import { AppError } from '../../src/model/errors.ts';
import { openTestCatalog } from '../harness/catalog.ts';

let catalog: Catalog;
beforeAll(async () => {
  catalog = await openTestCatalog();
});
afterAll(() => catalog.close());

describe('CatalogCache', () => {
  test('a schema version is read once; one that does not exist yet is read again', async () => {
    const cache = new CatalogCache(catalog.sql);
    const dataset = await createDataset(catalog.sql, { slug: 'cached' });
    expect(await cache.schemaVersion(dataset.id, 1)).toBeNull();
    await catalog.sql.begin((tx) => recordSchemaVersion(tx, dataset.id, [{ name: 'timestamp', type: 'timestamp' }], 'timestamp'));
    const first = await cache.schemaVersion(dataset.id, 1);
    expect(first?.fields).toEqual([{ name: 'timestamp', type: 'timestamp' }]);
    // Versions never change; a change behind the cache's back shows it answers from memory.
    await catalog.sql`UPDATE dataset_schema_versions SET fields = '[]' WHERE dataset_id = ${dataset.id}`;
    expect(await cache.schemaVersion(dataset.id, 1)).toBe(first);
  });

  test('a storage target is kept for its time to live, by the id or name asked for; an unknown one is 404 and not kept', async () => {
    const cache = new CatalogCache(catalog.sql, 200);
    const target = await upsertStorageTarget(catalog.sql, { name: 'kept', kind: 'local', config: { root: '/a' } });
    expect((await cache.storageTarget('kept')).config).toEqual({ root: '/a' });
    expect((await cache.storageTarget(target.id)).id).toBe(target.id);
    await upsertStorageTarget(catalog.sql, { name: 'kept', kind: 'local', config: { root: '/b' } });
    expect((await cache.storageTarget('kept')).config).toEqual({ root: '/a' });
    await Bun.sleep(250);
    expect((await cache.storageTarget('kept')).config).toEqual({ root: '/b' });

    const missing = await cache.storageTarget('nope').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(AppError);
    expect((missing as AppError).status).toBe(404);
    await upsertStorageTarget(catalog.sql, { name: 'nope', kind: 'local', config: { root: '/c' } });
    expect((await cache.storageTarget('nope')).config).toEqual({ root: '/c' });
  });
});
