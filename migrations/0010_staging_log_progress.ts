// How far into each staging log job rows exist. A batch of an existing dataset is acknowledged once
// its staging log's record is durable, and its job row is inserted after, in log order, with this
// mark moved past it in the same statement (src/ingest/logged-jobs.ts). A process that replays a
// log another left (or that it left when it stopped) inserts the jobs of the records past the mark
// only: those before it had rows, which may since have succeeded and been purged.
// Self-contained (see 0001_catalog.ts).
import type { Sql } from 'postgres';

export async function up(sql: Sql): Promise<void> {
  await sql.unsafe(`
    CREATE TABLE staging_log_progress (
      location     text PRIMARY KEY,
      -- the byte after the last record whose job row exists
      jobs_through bigint NOT NULL,
      updated_at   timestamptz NOT NULL DEFAULT now()
    );
  `);
}

export async function down(sql: Sql): Promise<void> {
  await sql.unsafe(`DROP TABLE IF EXISTS staging_log_progress`);
}
