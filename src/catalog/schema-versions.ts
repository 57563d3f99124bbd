/** Dataset schema versions: ordered fields and the timestamp column, numbered per dataset. */
import { createHash } from 'node:crypto';
import type { Db } from './db.ts';
import { lockDataset } from './datasets.ts';
import type { SchemaField, SchemaVersion } from '../model/records.ts';

export function schemaChecksum(fields: SchemaField[], timestampColumn: string): string {
  const canonical = JSON.stringify([timestampColumn, fields.map((f) => [f.name, f.type, f.nullable ?? true])]);
  return createHash('sha256').update(canonical).digest('hex');
}

/**
 * Records a schema for the dataset and returns its version: the existing one
 * when the same fields were recorded before, else the next number. Locks the
 * dataset row, so run it inside a transaction.
 */
export async function recordSchemaVersion(
  tx: Db,
  datasetId: string,
  fields: SchemaField[],
  timestampColumn: string,
): Promise<SchemaVersion> {
  const checksum = schemaChecksum(fields, timestampColumn);
  const [existing] = await tx<SchemaVersion[]>`
    SELECT * FROM dataset_schema_versions WHERE dataset_id = ${datasetId} AND checksum = ${checksum}`;
  if (existing) return existing;
  const dataset = await lockDataset(tx, datasetId);
  const version = dataset.schemaVersion + 1;
  const [row] = await tx<SchemaVersion[]>`
    INSERT INTO dataset_schema_versions (dataset_id, version, fields, timestamp_column, checksum)
    VALUES (${datasetId}, ${version}, ${tx.json(fields as never)}, ${timestampColumn}, ${checksum})
    RETURNING *`;
  await tx`UPDATE datasets SET schema_version = ${version}, updated_at = now() WHERE id = ${datasetId}`;
  return row as SchemaVersion;
}

export async function getSchemaVersion(sql: Db, datasetId: string, version: number): Promise<SchemaVersion | null> {
  const [row] = await sql<SchemaVersion[]>`
    SELECT * FROM dataset_schema_versions WHERE dataset_id = ${datasetId} AND version = ${version}`;
  return row ?? null;
}

export async function listSchemaVersions(sql: Db, datasetId: string): Promise<SchemaVersion[]> {
  return sql<SchemaVersion[]>`SELECT * FROM dataset_schema_versions WHERE dataset_id = ${datasetId} ORDER BY version`;
}
