/** Storage targets: where partition files live (a local root or an S3 bucket and prefix). */
import type { Db } from './db.ts';
import { errors } from '../errors.ts';
import type { LocalTargetConfig, S3TargetConfig, StorageTarget, StorageTargetKind } from './types.ts';

export interface StorageTargetInput {
  name: string;
  kind: StorageTargetKind;
  description?: string | null;
  config: LocalTargetConfig | S3TargetConfig;
}

/** Creates the target, or brings an existing one of that name up to date (used at boot for the configured targets). */
export async function upsertStorageTarget(sql: Db, input: StorageTargetInput): Promise<StorageTarget> {
  const [row] = await sql<StorageTarget[]>`
    INSERT INTO storage_targets (name, kind, description, config)
    VALUES (${input.name}, ${input.kind}, ${input.description ?? null}, ${sql.json(input.config as never)})
    ON CONFLICT (name) DO UPDATE
      SET kind = EXCLUDED.kind, description = EXCLUDED.description, config = EXCLUDED.config, updated_at = now()
      WHERE (storage_targets.kind, storage_targets.config, storage_targets.description)
            IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.config, EXCLUDED.description)
    RETURNING *`;
  return row ?? (await getStorageTarget(sql, input.name));
}

export async function getStorageTarget(sql: Db, id: string): Promise<StorageTarget> {
  const [row] = await sql<StorageTarget[]>`SELECT * FROM storage_targets WHERE id::text = ${id} OR name = ${id}`;
  if (!row) throw errors.notFound('storage target', id);
  return row;
}

export async function listStorageTargets(sql: Db, kind?: StorageTargetKind): Promise<StorageTarget[]> {
  return sql<StorageTarget[]>`
    SELECT * FROM storage_targets WHERE (${kind ?? null}::text IS NULL OR kind = ${kind ?? null}) ORDER BY name`;
}
