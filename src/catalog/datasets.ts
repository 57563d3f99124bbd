/** Datasets: create, read (by id or slug), update, list with keyset pagination, lock for publish. */
import type { Fragment } from 'postgres';
import { type Db, namesNothing } from './db.ts';
import { afterPosition, decodeCreatedCursor, pageOf, UUID } from './keyset.ts';
import { errors } from '../model/errors.ts';
import type { Dataset, DatasetMetadata, DatasetStatus } from '../model/records.ts';

export interface NewDataset {
  slug: string;
  name?: string;
  description?: string | null;
  status?: DatasetStatus;
  timestampColumn?: string;
  partitionWindowSeconds?: number;
  sortColumns?: string[];
  defaultStorageTargetId?: string | null;
  metadata?: DatasetMetadata;
}

export interface DatasetChanges {
  name?: string;
  description?: string | null;
  status?: DatasetStatus;
  sortColumns?: string[];
  defaultStorageTargetId?: string | null;
  metadata?: DatasetMetadata;
}

/** Window of a partition file when the dataset's creator names none: one UTC day. */
export const DEFAULT_PARTITION_WINDOW_SECONDS = 86_400;

export async function createDataset(sql: Db, input: NewDataset): Promise<Dataset> {
  try {
    const [row] = await sql<Dataset[]>`
      INSERT INTO datasets (slug, name, description, status, timestamp_column, partition_window_seconds,
                            sort_columns, default_storage_target_id, metadata)
      VALUES (${input.slug}, ${input.name ?? input.slug}, ${input.description ?? null}, ${input.status ?? 'active'},
              ${input.timestampColumn ?? 'timestamp'}, ${input.partitionWindowSeconds ?? DEFAULT_PARTITION_WINDOW_SECONDS},
              ${sql.array(input.sortColumns ?? [])}::text[], ${input.defaultStorageTargetId ?? null},
              ${sql.json((input.metadata ?? {}) as never)})
      RETURNING *`;
    return row as Dataset;
  } catch (err) {
    if ((err as { code?: string }).code === '23505') {
      throw errors.dataset_exists(input.slug);
    }
    throw err;
  }
}

/** Creates the dataset unless one with its slug exists; returns the new row, or null when it existed. */
export async function createDatasetIfMissing(sql: Db, input: NewDataset): Promise<Dataset | null> {
  const [row] = await sql<Dataset[]>`
    INSERT INTO datasets (slug, name, timestamp_column, partition_window_seconds, default_storage_target_id, metadata)
    VALUES (${input.slug}, ${input.name ?? input.slug}, ${input.timestampColumn ?? 'timestamp'},
            ${input.partitionWindowSeconds ?? DEFAULT_PARTITION_WINDOW_SECONDS}, ${input.defaultStorageTargetId ?? null},
            ${sql.json((input.metadata ?? {}) as never)})
    ON CONFLICT (slug) DO NOTHING
    RETURNING *`;
  return row ?? null;
}

/** Finds a dataset by id or by slug; null when there is none. */
export async function findDataset(sql: Db, idOrSlug: string): Promise<Dataset | null> {
  if (namesNothing(idOrSlug)) return null;
  const rows = UUID.test(idOrSlug)
    ? await sql<Dataset[]>`SELECT * FROM datasets WHERE id = ${idOrSlug} OR slug = ${idOrSlug} ORDER BY (id = ${idOrSlug}) DESC LIMIT 1`
    : await sql<Dataset[]>`SELECT * FROM datasets WHERE slug = ${idOrSlug}`;
  return rows[0] ?? null;
}

/**
 * A condition that holds while the dataset's row still decides whether a batch is accepted as
 * `dataset` (a read of it) did: the same slug and status, the same metadata (its scopes and
 * `allowUnknownFields`), timestamp column, partition window and storage target. A publish (the
 * manifest version) leaves it true, as does a new schema version: versions only add nullable
 * fields, so a batch valid on an older one is valid on the newer.
 */
export function acceptsAsBefore(sql: Db, dataset: Dataset): Fragment {
  return sql`EXISTS (
    SELECT 1 FROM datasets
    WHERE id = ${dataset.id} AND slug = ${dataset.slug} AND status = ${dataset.status}
      AND metadata = ${sql.json(dataset.metadata as never)}::jsonb AND timestamp_column = ${dataset.timestampColumn}
      AND partition_window_seconds = ${dataset.partitionWindowSeconds}
      AND default_storage_target_id IS NOT DISTINCT FROM ${dataset.defaultStorageTargetId}::uuid)`;
}

/** Whether the catalog's row of `dataset` still accepts batches as `dataset` did (see {@link acceptsAsBefore}). */
export async function stillAcceptsAsBefore(sql: Db, dataset: Dataset): Promise<boolean> {
  const [row] = await sql<{ accepts: boolean }[]>`SELECT ${acceptsAsBefore(sql, dataset)} AS accepts`;
  return row?.accepts === true;
}

export async function getDataset(sql: Db, idOrSlug: string): Promise<Dataset> {
  const dataset = await findDataset(sql, idOrSlug);
  if (!dataset) throw errors.not_found('dataset', idOrSlug);
  return dataset;
}

/**
 * Locks the dataset row until the surrounding transaction ends. Every writer
 * that bumps the schema or manifest version takes this lock first, so writers
 * of one dataset serialize and writers of different datasets do not meet.
 * NO KEY UPDATE, not UPDATE: rows inserted with a foreign key to the dataset
 * (every batch's job) take KEY SHARE on it, which only FOR UPDATE blocks, and
 * no writer changes the dataset's id or slug; with FOR UPDATE every batch of
 * a dataset waited for its publish in progress.
 */
export async function lockDataset(tx: Db, id: string): Promise<Dataset> {
  const [row] = await tx<Dataset[]>`SELECT * FROM datasets WHERE id = ${id} FOR NO KEY UPDATE`;
  if (!row) throw errors.not_found('dataset', id);
  return row;
}

export async function updateDataset(sql: Db, id: string, changes: DatasetChanges): Promise<Dataset> {
  const set: Record<string, unknown> = {};
  if (changes.name !== undefined) set.name = changes.name;
  if (changes.description !== undefined) set.description = changes.description;
  if (changes.status !== undefined) set.status = changes.status;
  if (changes.sortColumns !== undefined) set.sortColumns = sql.array(changes.sortColumns);
  if (changes.defaultStorageTargetId !== undefined) set.defaultStorageTargetId = changes.defaultStorageTargetId;
  if (changes.metadata !== undefined) set.metadata = sql.json(changes.metadata as never);
  if (Object.keys(set).length === 0) return getDataset(sql, id);
  const [row] = await sql<Dataset[]>`
    UPDATE datasets SET ${sql(set)}, updated_at = now() WHERE id = ${id} RETURNING *`;
  if (!row) throw errors.not_found('dataset', id);
  return row;
}

export interface DatasetListQuery {
  status?: DatasetStatus;
  /** Case-insensitive text search over slug and name. */
  search?: string;
  /** Opaque cursor from a previous page's `nextCursor`. */
  cursor?: string | null;
  limit: number;
}

export interface DatasetPage {
  datasets: Dataset[];
  nextCursor: string | null;
}

/** Active datasets that hold rows, the most recently written first (every publish moves `updated_at`). */
export async function listRecentlyWrittenDatasets(sql: Db, limit: number): Promise<Dataset[]> {
  return sql<Dataset[]>`
    SELECT * FROM datasets WHERE status = 'active' AND manifest_version > 0
    ORDER BY updated_at DESC, id LIMIT ${limit}`;
}

/** Datasets oldest first, a page at a time (keyset.ts: stable while datasets are added). */
export async function listDatasets(sql: Db, query: DatasetListQuery): Promise<DatasetPage> {
  const after = afterPosition(sql, query.cursor ? decodeCreatedCursor('dataset', query.cursor) : null);
  if (query.search && namesNothing(query.search)) return { datasets: [], nextCursor: null };
  const pattern = query.search ? `%${query.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
  const rows = await sql<Dataset[]>`
    SELECT * FROM datasets
    WHERE (${query.status ?? null}::text IS NULL OR status = ${query.status ?? null})
      AND (${pattern}::text IS NULL OR slug ILIKE ${pattern} OR name ILIKE ${pattern})
      AND ${after.where}
    ${after.orderBy}
    LIMIT ${query.limit + 1}`;
  const page = pageOf('dataset', rows, query.limit);
  return { datasets: page.rows, nextCursor: page.nextCursor };
}
