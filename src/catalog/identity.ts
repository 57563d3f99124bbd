/** The catalog's own id (its one `catalog_identity` row, made by migration 0009): what owner markers name. */
import type { Sql } from 'postgres';
import type { Db } from './db.ts';

export async function catalogId(sql: Db): Promise<string> {
  const [row] = await sql<{ id: string }[]>`SELECT id FROM catalog_identity`;
  if (!row) throw new Error('the catalog has no identity row: migration 0009_storage_ownership has not run');
  return row.id;
}

/** Key of the session advisory lock held while storage targets are registered at boot ("tsst"). */
const TARGET_REGISTRATION_LOCK = 0x74737374;

/**
 * Runs `register` holding the catalog's target-registration lock, so that processes booting at
 * once look at a target's prefix and write its owner marker one after another: a process must
 * never see another's marker half-written, as objects timestore did not write.
 */
export async function withTargetRegistrationLock<T>(sql: Sql, register: () => Promise<T>): Promise<T> {
  const conn = await sql.reserve();
  try {
    await conn`SELECT pg_advisory_lock(${TARGET_REGISTRATION_LOCK})`;
    try {
      return await register();
    } finally {
      await conn`SELECT pg_advisory_unlock(${TARGET_REGISTRATION_LOCK})`;
    }
  } finally {
    conn.release();
  }
}
