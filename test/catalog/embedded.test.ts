import { afterAll, describe, expect, test } from 'bun:test';
import { MIGRATIONS } from '../../src/catalog/migrate.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCatalog } from '../../src/catalog/connection.ts';
import { createDataset, getDataset } from '../../src/catalog/datasets.ts';
import { publishManifestVersion } from '../../src/catalog/manifests.ts';
import { recordSchemaVersion } from '../../src/catalog/schema-versions.ts';
import { upsertStorageTarget } from '../../src/catalog/storage-targets.ts';
import { silentLog } from '../harness/catalog.ts';

const roots: string[] = [];
function storageRoot(): string {
  const dir = mkdtempSync(join(tmpdir(), 'timestore-embedded-'));
  roots.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of roots) rmSync(dir, { recursive: true, force: true });
});

const openEmbedded = (root: string) => openCatalog({ databaseUrl: null, schema: 'timestore', storageRoot: root, log: silentLog });

describe('embedded catalog (PGlite)', () => {
  test('the same migrations and repositories work, and data survives a restart', async () => {
    const root = storageRoot();
    const catalog = await openEmbedded(root);
    expect(catalog.mode).toBe('embedded');
    expect(await catalog.migrate()).toEqual(MIGRATIONS.map((m) => m.name));
    const target = await upsertStorageTarget(catalog.sql, { name: 'local', kind: 'local', config: { root } });
    const dataset = await createDataset(catalog.sql, { slug: 'embedded' });
    const schema = await catalog.sql.begin((tx) => recordSchemaVersion(tx, dataset.id, [{ name: 'timestamp', type: 'timestamp' }], 'timestamp'));
    await catalog.sql.begin((tx) =>
      publishManifestVersion(tx, {
        datasetId: dataset.id,
        reason: 'ingest',
        add: [
          {
            storageTargetId: target.id,
            location: `file://${root}/p.parquet`,
            partitionKey: {},
            schemaVersion: schema.version,
            startTime: new Date(0),
            endTime: new Date(1000),
            rowCount: 1,
            sizeBytes: 10,
            checksum: 'x',
          },
        ],
      }),
    );
    await catalog.close();

    const reopened = await openEmbedded(root);
    expect(await reopened.migrate()).toEqual([]);
    expect(await getDataset(reopened.sql, 'embedded')).toMatchObject({ manifestVersion: 1, schemaVersion: 1 });
    await reopened.close();
  }, 60_000);

  test('a second catalog on the same storage root is refused with a message that says what to do', async () => {
    const root = storageRoot();
    const first = await openEmbedded(root);
    try {
      await expect(openEmbedded(root)).rejects.toThrow(/storage root .* is in use by another timestore process \(pid \d+\)/);
    } finally {
      await first.close();
    }
  }, 60_000);

  test('a lock left by a process that died is taken over', async () => {
    const root = storageRoot();
    writeFileSync(join(root, 'timestore.lock'), '999999\n'); // no such pid
    const catalog = await openEmbedded(root);
    await catalog.close();
  }, 60_000);
});
