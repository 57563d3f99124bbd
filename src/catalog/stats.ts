/**
 * Catalog figures read at scrape time by GET /metrics (job counts are `countJobs` in job-table.ts).
 */
import type { Db } from './db.ts';

export interface DatasetTotals {
  slug: string;
  status: string;
  /** Active partitions at the dataset's current manifest version, their rows and bytes. */
  partitions: number;
  rows: number;
  bytes: number;
}

/**
 * Every dataset with the totals of its current manifest version (recorded with each version, so
 * this reads one row per dataset rather than its partitions); a dataset never published has zeros.
 */
export async function datasetTotals(db: Db): Promise<DatasetTotals[]> {
  return db<DatasetTotals[]>`
    SELECT d.slug, d.status,
           COALESCE(m.partition_count, 0)::int AS partitions,
           COALESCE(m.row_count, 0)::int8 AS rows,
           COALESCE(m.size_bytes, 0)::int8 AS bytes
    FROM datasets d
    LEFT JOIN manifest_versions m ON m.dataset_id = d.id AND m.version = d.manifest_version
    ORDER BY d.slug`;
}
