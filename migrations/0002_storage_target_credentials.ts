// Storage targets registered over the admin API may carry their own S3 credentials, so that every
// process sharing the catalog can reach the bucket. They live in a column of their own that the
// API never returns; targets without them use the process's TIMESTORE_S3_* credentials.
// Self-contained, like every migration (see 0001_catalog.ts).
import type { Sql } from 'postgres';

export async function up(sql: Sql): Promise<void> {
  await sql.unsafe(`
    ALTER TABLE storage_targets ADD COLUMN credentials jsonb;
    COMMENT ON COLUMN storage_targets.credentials IS
      's3: { "accessKeyId", "secretAccessKey", "sessionToken"? }; never returned by the API';
  `);
}

export async function down(sql: Sql): Promise<void> {
  await sql.unsafe(`ALTER TABLE storage_targets DROP COLUMN IF EXISTS credentials;`);
}
