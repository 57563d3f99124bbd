import { describe, expect, test } from 'bun:test';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { openCatalog } from '../../src/catalog/connection.ts';
import { MIGRATIONS } from '../../src/catalog/migrate.ts';
import { openTestCatalog, silentLog } from '../harness/catalog.ts';
import { createTestDatabase } from '../harness/postgres.ts';

describe('migrations', () => {
  test('the embedded list matches the migrations/ directory', () => {
    const files = readdirSync(join(import.meta.dir, '../../migrations')).filter((f) => /\.[cm]?[tj]s$/.test(f)).sort();
    expect(MIGRATIONS.map((m) => m.name)).toEqual(files);
  });

  test('every object lands in the configured schema, none in public, and a restart applies nothing twice', async () => {
    const url = await createTestDatabase();
    const first = await openTestCatalog({ databaseUrl: url, schema: 'ts_custom' });
    await first.check();
    await first.close();

    const second = await openCatalog({ databaseUrl: url, schema: 'ts_custom', storageRoot: '/nonexistent', log: silentLog });
    expect(await second.migrate()).toEqual([]);
    await second.close();

    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const tables = await sql<{ schema: string; name: string }[]>`
        SELECT table_schema AS schema, table_name AS name FROM information_schema.tables
        WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 2`;
      expect(tables.every((t) => t.schema === 'ts_custom')).toBe(true);
      expect(tables.map((t) => t.name)).toEqual([
        'api_tokens', 'audit_events', 'catalog_identity', 'dataset_schema_versions', 'datasets', 'idempotency_keys', 'jobs', 'lifecycle_schedule', 'manifest_versions',
        'migrations', 'partitions', 'reader_pins', 'retention_policies', 'staging_log_progress', 'storage_targets',
      ]);
      const applied = await sql`SELECT name FROM ts_custom.migrations`;
      expect(applied.map((r) => r.name)).toEqual(MIGRATIONS.map((m) => m.name));
    } finally {
      await sql.end();
    }
  });

  test('two processes migrating one database at once: one applies, the other finds nothing to do, both come up', async () => {
    const url = await createTestDatabase();
    const open = () => openCatalog({ databaseUrl: url, schema: 'timestore', storageRoot: '/nonexistent', log: silentLog });
    const [a, b] = await Promise.all([open(), open()]);
    const applied = await Promise.all([a.migrate(), b.migrate()]);
    expect(applied.map((names) => names.length).sort()).toEqual([0, MIGRATIONS.length]);
    await Promise.all([a.check(), b.check()]);
    await Promise.all([a.close(), b.close()]);
  });

  test('check() names the pending migrations of an unmigrated catalog', async () => {
    const catalog = await openCatalog({ databaseUrl: await createTestDatabase(), schema: 'timestore', storageRoot: '/x', log: silentLog });
    await expect(catalog.check()).rejects.toThrow(/migrations not applied: 0001_catalog\.ts/);
    await catalog.close();
  });
});
