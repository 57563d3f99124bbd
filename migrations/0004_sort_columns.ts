// The columns a dataset's rows are ordered by inside each partition file, before the timestamp
// (a clustering key, as ClickHouse's ORDER BY): queries that filter on them skip row groups.
// Self-contained (see 0001_catalog.ts).
import type { Sql } from 'postgres';

export async function up(sql: Sql): Promise<void> {
  await sql.unsafe(`ALTER TABLE datasets ADD COLUMN sort_columns text[] NOT NULL DEFAULT '{}'`);
}

export async function down(sql: Sql): Promise<void> {
  await sql.unsafe(`ALTER TABLE datasets DROP COLUMN IF EXISTS sort_columns`);
}
