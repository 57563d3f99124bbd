/**
 * Manifest versions and the partitions they make active.
 *
 * A manifest version is not a copy of the partition list: a partition row
 * carries the version that added it and the one that removed it, so "active
 * at v" is a range test and publishing costs O(partitions changed).
 */
import type { Db } from './db.ts';
import { errors } from '../model/errors.ts';
import { lockDataset } from './datasets.ts';
import type { ManifestVersion, NewPartition, Partition } from '../model/records.ts';

const PARTITION_ROWS_PER_INSERT = 1000;

export interface PublishInput {
  datasetId: string;
  reason: string;
  add: NewPartition[];
  /** Ids of partitions to remove; each must be active, or the publish fails with 409. */
  remove?: string[];
  summary?: Record<string, unknown>;
}

export interface PublishedManifest {
  manifest: ManifestVersion;
  partitions: Partition[];
}

/**
 * Publishes the next manifest version of a dataset: removes and adds
 * partitions and records the version's totals. Must run inside a transaction
 * (`sql.begin(tx => publishManifestVersion(tx, …))`) so the caller can commit
 * its own bookkeeping (jobs, audit) in the same step; it locks the dataset row,
 * so concurrent publishers to one dataset get consecutive versions.
 */
export async function publishManifestVersion(tx: Db, input: PublishInput): Promise<PublishedManifest> {
  const dataset = await lockDataset(tx, input.datasetId);
  const version = dataset.manifestVersion + 1;
  const remove = input.remove ?? [];

  let removedRows = 0;
  let removedBytes = 0;
  if (remove.length > 0) {
    const removed = await tx<{ rowCount: number; sizeBytes: number }[]>`
      UPDATE partitions SET removed_version = ${version}
      WHERE dataset_id = ${input.datasetId} AND id = ANY(${tx.array(remove)}::uuid[]) AND removed_version IS NULL
      RETURNING row_count, size_bytes`;
    if (removed.length !== new Set(remove).size) {
      throw errors.partition_not_active();
    }
    for (const r of removed) {
      removedRows += r.rowCount;
      removedBytes += r.sizeBytes;
    }
  }

  const previous = await getManifestVersion(tx, input.datasetId, dataset.manifestVersion);
  const addedRows = input.add.reduce((n, p) => n + p.rowCount, 0);
  const addedBytes = input.add.reduce((n, p) => n + p.sizeBytes, 0);
  const [manifest] = await tx<ManifestVersion[]>`
    INSERT INTO manifest_versions (dataset_id, version, reason, partitions_added, partitions_removed,
                                   partition_count, row_count, size_bytes, summary)
    VALUES (${input.datasetId}, ${version}, ${input.reason}, ${input.add.length}, ${remove.length},
            ${(previous?.partitionCount ?? 0) + input.add.length - remove.length},
            ${(previous?.rowCount ?? 0) + addedRows - removedRows},
            ${(previous?.sizeBytes ?? 0) + addedBytes - removedBytes},
            ${tx.json((input.summary ?? {}) as never)})
    RETURNING *`;

  let partitions: Partition[] = [];
  if (input.add.length > 0) {
    const rows = input.add.map((p) => ({
      datasetId: input.datasetId,
      storageTargetId: p.storageTargetId,
      location: p.location,
      partitionKey: tx.json(p.partitionKey as never),
      schemaVersion: p.schemaVersion,
      startTime: p.startTime,
      endTime: p.endTime,
      rowCount: p.rowCount,
      sizeBytes: p.sizeBytes,
      checksum: p.checksum,
      columnStatistics: tx.json((p.columnStatistics ?? {}) as never),
      addedVersion: version,
    }));
    try {
      // One statement takes at most 65,534 parameters (postgres.js, the protocol): 12 per row.
      for (let i = 0; i < rows.length; i += PARTITION_ROWS_PER_INSERT) {
        partitions.push(...(await tx<Partition[]>`INSERT INTO partitions ${tx(rows.slice(i, i + PARTITION_ROWS_PER_INSERT))} RETURNING *`));
      }
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        throw errors.duplicate_partition((err as { detail?: string }).detail);
      }
      throw err;
    }
  }

  await tx`UPDATE datasets SET manifest_version = ${version}, updated_at = now() WHERE id = ${input.datasetId}`;
  return { manifest: manifest as ManifestVersion, partitions };
}

export async function getManifestVersion(sql: Db, datasetId: string, version: number): Promise<ManifestVersion | null> {
  if (version <= 0) return null;
  const [row] = await sql<ManifestVersion[]>`
    SELECT * FROM manifest_versions WHERE dataset_id = ${datasetId} AND version = ${version}`;
  return row ?? null;
}

/** How many partitions are active at a manifest version (0 before the first). */
export async function activePartitionCount(sql: Db, datasetId: string, version: number): Promise<number> {
  const [row] = await sql<{ partitionCount: number }[]>`
    SELECT partition_count FROM manifest_versions WHERE dataset_id = ${datasetId} AND version = ${version}`;
  return row?.partitionCount ?? 0;
}

export interface PartitionSelection {
  datasetId: string;
  /** The manifest version to read; partitions active at it are returned. */
  version: number;
  /** Overlap with [from, to): a partition whose rows all fall outside is left out. */
  from?: Date;
  to?: Date;
  /** Partition-key filter: every named field must have one of the listed values. */
  partitionKey?: Record<string, string[]>;
  /** Keyset pagination: partitions after this one in (start_time, id) order, at most `limit`. */
  afterId?: string;
  limit?: number;
}

/** Partitions active at a manifest version that overlap a time range and match a key filter, oldest first. */
export async function listActivePartitions(sql: Db, q: PartitionSelection): Promise<Partition[]> {
  const keyFilters = Object.entries(q.partitionKey ?? {});
  const keyCondition = keyFilters.reduce(
    (acc, [field, values]) => (values.length ? sql`${acc} AND partition_key ->> ${field} = ANY(${sql.array(values)}::text[])` : sql`FALSE`),
    sql`TRUE`,
  );
  return sql<Partition[]>`
    SELECT * FROM partitions
    WHERE dataset_id = ${q.datasetId}
      AND added_version <= ${q.version}
      AND (removed_version IS NULL OR removed_version > ${q.version})
      AND (${q.from ?? null}::timestamptz IS NULL OR end_time >= ${q.from ?? null})
      AND (${q.to ?? null}::timestamptz IS NULL OR start_time < ${q.to ?? null})
      AND ${keyCondition}
      AND (${q.afterId ?? null}::uuid IS NULL
           OR (start_time, id) > (SELECT start_time, id FROM partitions WHERE id = ${q.afterId ?? null}::uuid))
    ORDER BY start_time, id
    ${q.limit === undefined ? sql`` : sql`LIMIT ${q.limit}`}`;
}

/**
 * Partitions added or removed by the versions after `after` up to `upTo`: applied to the partitions
 * active at `after` (drop those with a `removedVersion` ≤ `upTo`, add the others) they give the
 * partitions active at `upTo`.
 */
export async function listPartitionChanges(sql: Db, datasetId: string, after: number, upTo: number): Promise<Partition[]> {
  return sql<Partition[]>`
    SELECT * FROM partitions
    WHERE dataset_id = ${datasetId}
      AND ((added_version > ${after} AND added_version <= ${upTo})
           OR (removed_version > ${after} AND removed_version <= ${upTo}))`;
}

/** The versions after `after` up to `upTo` that removed partitions, with the reason each was published for (ingest, compaction, retention). */
export async function listRemovingVersions(sql: Db, datasetId: string, after: number, upTo: number): Promise<{ version: number; reason: string }[]> {
  return sql<{ version: number; reason: string }[]>`
    SELECT version, reason FROM manifest_versions
    WHERE dataset_id = ${datasetId} AND version > ${after} AND version <= ${upTo} AND partitions_removed > 0
    ORDER BY version`;
}

export interface TargetTotals {
  storageTargetId: string;
  partitions: number;
  rowCount: number;
  sizeBytes: number;
}

/** Files, rows and bytes per storage target among the partitions active at a manifest version. */
export async function manifestTotalsByTarget(sql: Db, datasetId: string, version: number): Promise<TargetTotals[]> {
  return sql<TargetTotals[]>`
    SELECT storage_target_id, count(*)::int AS partitions, sum(row_count)::int8 AS row_count, sum(size_bytes)::int8 AS size_bytes
    FROM partitions
    WHERE dataset_id = ${datasetId} AND added_version <= ${version} AND (removed_version IS NULL OR removed_version > ${version})
    GROUP BY storage_target_id
    ORDER BY storage_target_id`;
}
