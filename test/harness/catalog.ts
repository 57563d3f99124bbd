/** Catalog handles for tests: a fresh database on the harness PostgreSQL, migrated. */
import { type Catalog, openCatalog } from '../../src/catalog/connection.ts';
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
