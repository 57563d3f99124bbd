/** Every row of a dataset's active partitions, read back with DuckDB in the test thread. */
import { findDataset } from '../../src/catalog/datasets.ts';
import { listActivePartitions } from '../../src/catalog/manifests.ts';
import { testDuckDB } from './duckdb.ts';
import type { TestServer } from './server.ts';

export interface ReadBackOptions {
  /** ORDER BY clause (default: the `timestamp` column). */
  order?: string;
  /** Timestamps with microseconds (`.ffffffZ`) instead of milliseconds (`.fffZ`). */
  micros?: boolean;
}

/**
 * Rows as plain values: the `timestamp` column and every other TIMESTAMPTZ as an ISO-8601 UTC
 * string, BIGINT as a number (the rows were sent as JSON numbers).
 */
export async function readBack(ts: TestServer, slug: string, options: ReadBackOptions = {}): Promise<Record<string, unknown>[]> {
  const sql = ts.sql;
  const dataset = await findDataset(sql, slug);
  if (!dataset) return [];
  const partitions = await listActivePartitions(sql, { datasetId: dataset.id, version: dataset.manifestVersion });
  if (partitions.length === 0) return [];
  const paths = partitions.map((p) => `'${new URL(p.location).pathname}'`).join(', ');
  const db = await testDuckDB();
  const source = `read_parquet([${paths}], union_by_name = true, hive_partitioning = false)`;
  const described = await db.runAndReadAll(`DESCRIBE SELECT * FROM ${source}`);
  const format = options.micros ? '%Y-%m-%dT%H:%M:%S.%fZ' : '%Y-%m-%dT%H:%M:%S.%gZ';
  const columns = described.getRows().map(([name, type]) => {
    const quoted = `"${String(name).replace(/"/g, '""')}"`;
    return String(type).startsWith('TIMESTAMP') ? `strftime(${quoted} AT TIME ZONE 'UTC', '${format}') AS ${quoted}` : quoted;
  });
  const reader = await db.runAndReadAll(`SELECT ${columns.join(', ')} FROM ${source} ORDER BY ${options.order ?? 'timestamp'}`);
  return reader.getRowObjectsJS().map((row) =>
    Object.fromEntries(Object.entries(row).map(([k, v]) => [k, typeof v === 'bigint' ? Number(v) : v])),
  );
}
