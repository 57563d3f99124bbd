/** What a dataset holds at its current manifest version, for the readers' dataset routes (GET /datasets). */
import type { Db } from './db.ts';

export interface DatasetExtent {
  datasetId: string;
  /** The manifest version these figures are of. */
  manifestVersion: number;
  rowCount: number;
  partitionCount: number;
  /** Epoch microseconds of the earliest and latest row (null before the first publish or when empty). */
  earliestMicros: bigint | null;
  latestMicros: bigint | null;
}

/**
 * The extents of these datasets in one statement: the totals recorded with the current manifest
 * version, and the time range of its active partitions (their recorded first and last row times,
 * in microseconds so none is rounded away).
 */
export async function datasetExtents(db: Db, datasetIds: string[]): Promise<Map<string, DatasetExtent>> {
  if (datasetIds.length === 0) return new Map();
  const rows = await db<{ datasetId: string; manifestVersion: number; rowCount: string; partitionCount: number; earliest: string | null; latest: string | null }[]>`
    SELECT d.id AS dataset_id, d.manifest_version,
           COALESCE(m.row_count, 0)::int8 AS row_count,
           COALESCE(m.partition_count, 0)::int AS partition_count,
           t.earliest::text, t.latest::text
    FROM datasets d
    LEFT JOIN manifest_versions m ON m.dataset_id = d.id AND m.version = d.manifest_version
    LEFT JOIN LATERAL (
      SELECT (extract(epoch FROM min(p.start_time)) * 1000000)::int8 AS earliest,
             (extract(epoch FROM max(p.end_time)) * 1000000)::int8 AS latest
      FROM partitions p
      WHERE p.dataset_id = d.id AND p.added_version <= d.manifest_version AND p.removed_version IS NULL
    ) t ON true
    WHERE d.id = ANY(${db.array(datasetIds)}::uuid[])`;
  return new Map(
    rows.map((r) => [
      r.datasetId,
      {
        datasetId: r.datasetId,
        manifestVersion: r.manifestVersion,
        rowCount: Number(r.rowCount),
        partitionCount: r.partitionCount,
        earliestMicros: r.earliest === null ? null : BigInt(r.earliest),
        latestMicros: r.latest === null ? null : BigInt(r.latest),
      },
    ]),
  );
}
