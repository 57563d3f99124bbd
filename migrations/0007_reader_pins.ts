// Reader pins: a query or stream records the manifest version it reads, so the collector keeps
// the files of partitions active at that version for as long as the reader lives, in whichever
// process it runs. Each row is refreshed by its process while readers use it and expires when
// that process dies. Self-contained (see 0001_catalog.ts).
import type { Sql } from 'postgres';

export async function up(sql: Sql): Promise<void> {
  await sql.unsafe(`
    -- No foreign key to datasets on purpose: its check would take a KEY SHARE lock on the dataset
    -- row and make every query wait for a publish in progress. Pins of a deleted dataset expire.
    CREATE TABLE reader_pins (
      id               uuid PRIMARY KEY,
      dataset_id       uuid NOT NULL,
      manifest_version bigint NOT NULL,
      owner            text NOT NULL,
      created_at       timestamptz NOT NULL DEFAULT now(),
      expires_at       timestamptz NOT NULL
    );
    CREATE INDEX reader_pins_dataset ON reader_pins (dataset_id, manifest_version);
    CREATE INDEX reader_pins_owner ON reader_pins (owner);
  `);
}

export async function down(sql: Sql): Promise<void> {
  await sql.unsafe(`DROP TABLE IF EXISTS reader_pins`);
}
