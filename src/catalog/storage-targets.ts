/** Storage targets: where partition files live (a local root or an S3 bucket and prefix). */
import { type Db, namesNothing } from './db.ts';
import { errors } from '../model/errors.ts';
import type { LocalTargetConfig, S3TargetConfig, S3TargetCredentials, StorageTarget, StorageTargetKind } from '../model/records.ts';

export interface StorageTargetInput {
  name: string;
  kind: StorageTargetKind;
  description?: string | null;
  config: LocalTargetConfig | S3TargetConfig;
  credentials?: S3TargetCredentials | null;
  /** This catalog's owner marker was written under the target just now. */
  ownerMarked?: boolean;
}

/** Registers a new target; 409 when the name is taken. */
export async function createStorageTarget(sql: Db, input: StorageTargetInput): Promise<StorageTarget> {
  const [row] = await sql<StorageTarget[]>`
    INSERT INTO storage_targets (name, kind, description, config, credentials, owner_marked_at)
    VALUES (${input.name}, ${input.kind}, ${input.description ?? null}, ${sql.json(input.config as never)},
            ${input.credentials ? sql.json(input.credentials as never) : null}, ${input.ownerMarked ? sql`now()` : null})
    ON CONFLICT (name) DO NOTHING
    RETURNING *`;
  if (!row) throw errors.storage_target_exists(input.name);
  return row;
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

/** Records that this catalog's owner marker is under the target (storage/owner-marker.ts). */
export async function markStorageTargetOwned(sql: Db, id: string): Promise<StorageTarget> {
  const [row] = await sql<StorageTarget[]>`UPDATE storage_targets SET owner_marked_at = now() WHERE id = ${id} RETURNING *`;
  if (!row) throw errors.not_found('storage target', id);
  return row;
}

/** A target by id or name; null when there is none. */
export async function findStorageTarget(sql: Db, idOrName: string): Promise<StorageTarget | null> {
  if (namesNothing(idOrName)) return null;
  const [row] = await sql<StorageTarget[]>`SELECT * FROM storage_targets WHERE id::text = ${idOrName} OR name = ${idOrName}`;
  return row ?? null;
}

export async function getStorageTarget(sql: Db, idOrName: string): Promise<StorageTarget> {
  const target = await findStorageTarget(sql, idOrName);
  if (!target) throw errors.not_found('storage target', idOrName);
  return target;
}

export async function listStorageTargets(sql: Db, kind?: StorageTargetKind): Promise<StorageTarget[]> {
  return sql<StorageTarget[]>`
    SELECT * FROM storage_targets WHERE (${kind ?? null}::text IS NULL OR kind = ${kind ?? null}) ORDER BY name`;
}
