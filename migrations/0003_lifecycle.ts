// Lifecycle bookkeeping: when a removed partition's file was deleted, and the shared schedule that
// lets exactly one process start each lifecycle round. Self-contained (see 0001_catalog.ts).
import type { Sql } from 'postgres';

export async function up(sql: Sql): Promise<void> {
  await sql.unsafe(`
    -- Set once the file of a removed partition is deleted from its storage target; the row stays
    -- so earlier manifest versions can still be listed.
    ALTER TABLE partitions ADD COLUMN file_deleted_at timestamptz;
    CREATE INDEX partitions_files_to_delete ON partitions (dataset_id, removed_version)
      WHERE removed_version IS NOT NULL AND file_deleted_at IS NULL;
    -- "is this object referenced?" for the orphan sweep
    CREATE INDEX partitions_location_live ON partitions (location) WHERE file_deleted_at IS NULL;

    -- One row per schedule; a process starts a round by moving next_run_at forward in one UPDATE,
    -- so among processes sharing the catalog exactly one wins each interval.
    CREATE TABLE lifecycle_schedule (
      name        text PRIMARY KEY,
      next_run_at timestamptz NOT NULL,
      last_run_at timestamptz,
      last_run_by text
    );
  `);
}

export async function down(sql: Sql): Promise<void> {
  await sql.unsafe(`
    DROP TABLE IF EXISTS lifecycle_schedule;
    DROP INDEX IF EXISTS partitions_location_live;
    DROP INDEX IF EXISTS partitions_files_to_delete;
    ALTER TABLE partitions DROP COLUMN IF EXISTS file_deleted_at;
  `);
}
