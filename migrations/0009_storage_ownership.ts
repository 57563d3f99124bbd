// Storage that timestore owns. The catalog gets an identity: one row, created here, whose id is
// written as the owner marker (`.timestore-owner`) under every storage target's prefix. The
// orphan sweep deletes nothing under a prefix whose marker names another catalog, or none.
// A target's `owner_marked_at` says when this catalog wrote its marker; targets registered before
// this migration have none and are marked at the next boot (their objects were written by this
// catalog). The identity outlives a `down`: a catalog that got a new id on the next `up` would find
// its own targets marked by a stranger and refuse to boot. Self-contained (see 0001_catalog.ts).
import type { Sql } from 'postgres';

export async function up(sql: Sql): Promise<void> {
  await sql.unsafe(`
    CREATE TABLE IF NOT EXISTS catalog_identity (
      id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      -- exactly one row
      singleton  boolean NOT NULL DEFAULT true UNIQUE CHECK (singleton),
      created_at timestamptz NOT NULL DEFAULT now()
    );
    INSERT INTO catalog_identity SELECT WHERE NOT EXISTS (SELECT FROM catalog_identity);

    ALTER TABLE storage_targets ADD COLUMN owner_marked_at timestamptz;
  `);
}

export async function down(sql: Sql): Promise<void> {
  await sql.unsafe(`
    ALTER TABLE storage_targets DROP COLUMN IF EXISTS owner_marked_at;
  `);
}
