/** Catalog handles for tests: a fresh database on the harness PostgreSQL, migrated. */
import type { Sql } from 'postgres';
import { type Catalog, openCatalog } from '../../src/catalog/connection.ts';
import { lockDataset } from '../../src/catalog/datasets.ts';
import { createLogger } from '../../src/log.ts';
import { createTestDatabase } from './postgres.ts';

export const silentLog = createLogger('silent');

export async function openTestCatalog(options: { schema?: string; databaseUrl?: string } = {}): Promise<Catalog> {
  const catalog = await openCatalog({
    databaseUrl: options.databaseUrl ?? (await createTestDatabase()),
    schema: options.schema ?? 'timestore',
    storageRoot: '/nonexistent', // only the embedded catalog uses it
    log: silentLog,
  });
  await catalog.migrate();
  return catalog;
}

/**
 * Holds the dataset row's lock, the one publishes take, from a transaction of its own until
 * `release()`: other writers of the dataset wait; accepting its batches does not (a job row's
 * foreign key takes only FOR KEY SHARE).
 */
export async function holdDatasetLock(sql: Sql, datasetId: string): Promise<{ release(): Promise<void> }> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const holder = sql.begin(async (tx) => {
    await lockDataset(tx, datasetId);
    locked();
    await released;
  });
  await isLocked;
  return {
    async release() {
      release();
      await holder;
    },
  };
}
