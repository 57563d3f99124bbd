/**
 * Catalog queries of the lifecycle tasks: the shared schedule, retention and compaction candidates,
 * files due for deletion (those no reader pins), what the orphan sweep must keep, and purging old
 * bookkeeping.
 */
import type { Sql } from 'postgres';
import type { Db } from './db.ts';
import { lockDatasetFiles } from './reader-pins.ts';
import type { Partition } from '../model/records.ts';

/**
 * Starts a round of the named schedule when it is due: moves `next_run_at` forward in one UPDATE,
 * so among processes sharing the catalog exactly one gets true per interval.
 */
export async function claimScheduledRound(db: Db, name: string, intervalMs: number, by: string): Promise<boolean> {
  await db`INSERT INTO lifecycle_schedule (name, next_run_at) VALUES (${name}, now()) ON CONFLICT (name) DO NOTHING`;
  const rows = await db`
    UPDATE lifecycle_schedule
    SET next_run_at = now() + ${`${Math.round(intervalMs)} milliseconds`}::interval, last_run_at = now(), last_run_by = ${by}
    WHERE name = ${name} AND next_run_at <= now()
    RETURNING name`;
  return rows.length === 1;
}

/**
 * Whether any process has done lifecycle work since `since`: started a round of a schedule, or
 * held, heartbeated or finished a job of `queue`.
 */
export async function lifecycleActiveSince(db: Db, queue: string, since: Date): Promise<boolean> {
  const [row] = await db<{ active: boolean }[]>`
    SELECT EXISTS (SELECT 1 FROM lifecycle_schedule WHERE last_run_at >= ${since})
        OR EXISTS (SELECT 1 FROM jobs WHERE queue = ${queue} AND state <> 'queued' AND updated_at >= ${since}) AS active`;
  return row?.active ?? false;
}

/** Ids of every dataset that is not archived (archived ones keep their data as it is). */
export async function listLifecycleDatasetIds(db: Db): Promise<string[]> {
  const rows = await db<{ id: string }[]>`SELECT id FROM datasets WHERE status <> 'archived' ORDER BY created_at, id`;
  return rows.map((r) => r.id);
}

/** Active partitions, oldest first (by their newest row), with the figures retention needs. */
export async function listActiveByAge(db: Db, datasetId: string): Promise<Pick<Partition, 'id' | 'endTime' | 'sizeBytes' | 'rowCount'>[]> {
  return db`
    SELECT id, end_time, size_bytes, row_count FROM partitions
    WHERE dataset_id = ${datasetId} AND removed_version IS NULL
    ORDER BY end_time, start_time, id`;
}

/** Active partitions below the compaction targets, grouped for merging: by partition key, then time. */
export async function listSmallPartitions(db: Db, datasetId: string, maxBytes: number, maxRows: number, limit: number): Promise<Partition[]> {
  return db<Partition[]>`
    SELECT * FROM partitions
    WHERE dataset_id = ${datasetId} AND removed_version IS NULL AND size_bytes < ${maxBytes} AND row_count < ${maxRows}
    ORDER BY partition_key::text, start_time, id
    LIMIT ${limit}`;
}

/**
 * Chooses removed partitions whose files may go and marks them deleted (`file_deleted_at`), in one
 * transaction under the dataset's exclusive files lock (see reader-pins.ts): removed by a manifest
 * version published before `removedBefore`, not deleted yet, and not active at any version an
 * unexpired reader pin names. The caller deletes the files after the commit; a file whose delete
 * never happens is unreferenced from then on, and the orphan sweep removes it.
 */
export async function claimFilesToDelete(sql: Sql, datasetId: string, removedBefore: Date, limit: number): Promise<Partition[]> {
  return (await sql.begin(async (tx) => {
    await lockDatasetFiles(tx, datasetId, 'exclusive');
    return tx<Partition[]>`
      UPDATE partitions SET file_deleted_at = now()
      WHERE id IN (
        SELECT p.id FROM partitions p
        JOIN manifest_versions m ON m.dataset_id = p.dataset_id AND m.version = p.removed_version
        WHERE p.dataset_id = ${datasetId} AND p.removed_version IS NOT NULL AND p.file_deleted_at IS NULL
          AND m.created_at < ${removedBefore}
          AND NOT EXISTS (
            SELECT 1 FROM reader_pins r
            WHERE r.dataset_id = p.dataset_id AND r.expires_at > now()
              AND r.manifest_version >= p.added_version AND r.manifest_version < p.removed_version)
        ORDER BY p.removed_version, p.id
        LIMIT ${limit})
      RETURNING *`;
  })) as Partition[];
}

/**
 * Which of these locations something still needs: a partition whose file is not deleted (active,
 * or removed and inside its grace period), or the staged batch of any job that has not succeeded
 * (queued, running, or failed and kept for an operator to retry or delete), but for `exceptJobs`.
 */
export async function referencedLocations(db: Db, locations: string[], exceptJobs: string[] = []): Promise<Set<string>> {
  if (locations.length === 0) return new Set();
  const rows = await db<{ location: string }[]>`
    SELECT location FROM partitions WHERE location = ANY(${db.array(locations)}::text[]) AND file_deleted_at IS NULL
    UNION
    SELECT payload -> 'staged' ->> 'location' FROM jobs
    WHERE state <> 'succeeded' AND payload -> 'staged' ->> 'location' = ANY(${db.array(locations)}::text[])
      AND NOT (id = ANY(${db.array(exceptJobs)}::uuid[]))`;
  return new Set(rows.map((r) => r.location));
}

export async function purgeExpiredIdempotencyKeys(db: Db, limit = 10_000): Promise<number> {
  const rows = await db`
    DELETE FROM idempotency_keys WHERE (dataset_id, key) IN (
      SELECT dataset_id, key FROM idempotency_keys WHERE expires_at < now() LIMIT ${limit})
    RETURNING key`;
  return rows.length;
}
