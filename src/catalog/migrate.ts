/**
 * Applies the ley migrations in `migrations/` to the catalog schema.
 *
 * The migration files are embedded as text (so the compiled binary needs no
 * source tree) and written to a temporary directory for ley, which lists a real
 * directory and imports each file. ley is handed a driver object rather than
 * the name of one, because its named drivers are loaded by a computed
 * `require` that a bundle cannot follow, and because the driver must hold a
 * session-level advisory lock: two processes booting against one database
 * then migrate one after the other, and the second finds nothing to do.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ley from 'ley';
import type { ReservedSql, Sql } from 'postgres';
// @ts-expect-error: imported as text, not as a module (TS cannot type import attributes)
import catalog0001 from '../../migrations/0001_catalog.ts' with { type: 'text' };
// @ts-expect-error: as above
import credentials0002 from '../../migrations/0002_storage_target_credentials.ts' with { type: 'text' };
// @ts-expect-error: as above
import lifecycle0003 from '../../migrations/0003_lifecycle.ts' with { type: 'text' };
// @ts-expect-error: as above
import sortColumns0004 from '../../migrations/0004_sort_columns.ts' with { type: 'text' };
// @ts-expect-error: as above
import jobRetryWindow0005 from '../../migrations/0005_job_retry_window.ts' with { type: 'text' };
// @ts-expect-error: as above
import caseConflicts0006 from '../../migrations/0006_case_conflicting_fields.ts' with { type: 'text' };
// @ts-expect-error: as above
import readerPins0007 from '../../migrations/0007_reader_pins.ts' with { type: 'text' };
// @ts-expect-error: as above
import apiTokens0008 from '../../migrations/0008_api_tokens.ts' with { type: 'text' };
// @ts-expect-error: as above
import storageOwnership0009 from '../../migrations/0009_storage_ownership.ts' with { type: 'text' };
// @ts-expect-error: as above
import stagingLogProgress0010 from '../../migrations/0010_staging_log_progress.ts' with { type: 'text' };

/** Every migration, in order. A test checks this list against `migrations/`. */
export const MIGRATIONS: ReadonlyArray<{ name: string; text: string }> = [
  { name: '0001_catalog.ts', text: catalog0001 as string },
  { name: '0002_storage_target_credentials.ts', text: credentials0002 as string },
  { name: '0003_lifecycle.ts', text: lifecycle0003 as string },
  { name: '0004_sort_columns.ts', text: sortColumns0004 as string },
  { name: '0005_job_retry_window.ts', text: jobRetryWindow0005 as string },
  { name: '0006_case_conflicting_fields.ts', text: caseConflicts0006 as string },
  { name: '0007_reader_pins.ts', text: readerPins0007 as string },
  { name: '0008_api_tokens.ts', text: apiTokens0008 as string },
  { name: '0009_storage_ownership.ts', text: storageOwnership0009 as string },
  { name: '0010_staging_log_progress.ts', text: stagingLogProgress0010 as string },
];

const MIGRATION_LOCK_KEY = 0x7473_6d69; // "tsmi": one key for every timestore schema in a database

export async function applyMigrations(sql: Sql, schema: string): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'timestore-migrations-'));
  try {
    await Promise.all(MIGRATIONS.map((m) => writeFile(join(dir, m.name), m.text)));
    // ley joins cwd and dir, so the absolute directory goes in cwd.
    return await ley.up({ cwd: dir, dir: '.', driver: lockedDriver(sql, schema) } as Parameters<typeof ley.up>[0]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Names of migrations not yet applied (used by /ready). */
export async function pendingMigrations(sql: Sql, schema: string): Promise<string[]> {
  const [row] = await sql<{ exists: boolean }[]>`SELECT to_regclass(${`${schema}.migrations`}) IS NOT NULL AS exists`;
  const applied = row?.exists ? await appliedMigrations(sql, schema) : [];
  return MIGRATIONS.map((m) => m.name).filter((name) => !applied.includes(name));
}

async function appliedMigrations(sql: Sql | ReservedSql, schema: string): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`SELECT name FROM ${sql(schema)}.migrations ORDER BY id`;
  return rows.map((r) => r.name);
}

function lockedDriver(sql: Sql, schema: string) {
  return {
    async connect(): Promise<ReservedSql> {
      const conn = await sql.reserve();
      try {
        await conn`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
      } catch (err) {
        conn.release();
        throw err;
      }
      return conn;
    },
    async setup(conn: ReservedSql): Promise<{ name: string }[]> {
      await conn`CREATE SCHEMA IF NOT EXISTS ${conn(schema)}`;
      await conn`
        CREATE TABLE IF NOT EXISTS ${conn(schema)}.migrations (
          id serial PRIMARY KEY,
          name varchar(255) NOT NULL UNIQUE,
          created_at timestamptz NOT NULL DEFAULT now()
        )`;
      return (await appliedMigrations(conn, schema)).map((name) => ({ name }));
    },
    async loop(conn: ReservedSql, files: { name: string; abs: string }[], method: 'up' | 'down'): Promise<void> {
      for (const file of files) {
        const migration = (await import(file.abs)) as Record<string, (sql: unknown, schema: string) => Promise<void>>;
        const step = migration[method];
        // Each file commits on its own, so a failure leaves the earlier ones applied and recorded.
        // (A reserved connection has no begin(); it is one session, so plain BEGIN/COMMIT do.)
        await conn`BEGIN`;
        try {
          await conn`SELECT set_config('search_path', ${schema}, true)`;
          if (step) await step(conn, schema);
          if (method === 'up') await conn`INSERT INTO ${conn(schema)}.migrations (name) VALUES (${file.name})`;
          else await conn`DELETE FROM ${conn(schema)}.migrations WHERE name = ${file.name}`;
          await conn`COMMIT`;
        } catch (err) {
          await conn`ROLLBACK`;
          throw new Error(`migration ${file.name} failed: ${(err as Error).message}`, { cause: err });
        }
      }
    },
    async end(conn: ReservedSql): Promise<void> {
      try {
        await conn`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
      } finally {
        conn.release();
      }
    },
  };
}
