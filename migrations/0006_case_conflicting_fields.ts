// Repairs datasets whose schema versions hold fields that differ only in case (`temp` and
// `Temp`). Ingestion accepted such fields until it compared names without case; DuckDB does, so the
// writer refused every batch of such a version and every query of the dataset failed.
//
// For each group of names that are equal without case, the field the dataset had first stays: the
// timestamp column if it is one of them, else the one of the earliest version, first in its order.
// The others are removed from every version that holds them and from the dataset's sort columns.
// No partition file holds a removed field: the writer refused every schema with two names of a
// group, and the one kept is the one older files have. Version numbers stay, so queued jobs of a
// repaired version are written with its repaired fields (values sent under a removed name are not
// kept). An audit event `schema.repaired` names what was removed. A repair is not undone by `down`.
//
// Self-contained (see 0001_catalog.ts): it imports nothing but node:crypto.
import { createHash } from 'node:crypto';
import type { Sql } from 'postgres';

interface Field {
  name: string;
  type: string;
  nullable?: boolean;
}

interface Version {
  version: number;
  fields: Field[];
  timestampColumn: string;
  checksum: string;
}

/** As src/catalog/schema-versions.ts computes it. */
function schemaChecksum(fields: Field[], timestampColumn: string): string {
  const canonical = JSON.stringify([timestampColumn, fields.map((f) => [f.name, f.type, f.nullable ?? true])]);
  return createHash('sha256').update(canonical).digest('hex');
}

/** Names to remove: every name of a case-insensitive group but the one kept. */
function removedNames(versions: Version[], timestampColumn: string): Map<string, string> {
  const kept = new Map<string, string>([[timestampColumn.toLowerCase(), timestampColumn]]);
  const removed = new Map<string, string>();
  for (const v of versions) {
    for (const { name } of v.fields) {
      const folded = name.toLowerCase();
      const keeper = kept.get(folded);
      if (keeper === undefined) kept.set(folded, name);
      else if (keeper !== name) removed.set(name, keeper);
    }
  }
  return removed;
}

export async function up(sql: Sql): Promise<void> {
  // Single-word aliases: the catalog's connection renames result columns to camelCase. Parameters
  // of type jsonb are given as values: postgres.js serializes them by the type the server names.
  const rows = await sql.unsafe<{ ds: string; version: number; fields: Field[]; tc: string; checksum: string }[]>(`
    SELECT v.dataset_id AS ds, v.version, v.fields, v.timestamp_column AS tc, v.checksum
    FROM dataset_schema_versions v
    WHERE v.dataset_id IN (
      SELECT dataset_id FROM dataset_schema_versions, jsonb_array_elements(fields) AS f
      GROUP BY dataset_id, version HAVING count(DISTINCT lower(f ->> 'name')) < count(*))
    ORDER BY v.dataset_id, v.version`);
  const byDataset = new Map<string, Version[]>();
  for (const r of rows) {
    const fields = typeof r.fields === 'string' ? (JSON.parse(r.fields) as Field[]) : r.fields;
    const list = byDataset.get(r.ds) ?? [];
    list.push({ version: Number(r.version), fields, timestampColumn: r.tc, checksum: r.checksum });
    byDataset.set(r.ds, list);
  }

  for (const [datasetId, versions] of byDataset) {
    const [dataset] = await sql.unsafe<{ tc: string; sort: string[] }[]>(
      `SELECT timestamp_column AS tc, sort_columns AS sort FROM datasets WHERE id = $1 FOR UPDATE`,
      [datasetId],
    );
    if (!dataset) continue;
    const removed = removedNames(versions, dataset.tc);
    if (removed.size === 0) continue;

    const changed = versions.filter((v) => v.fields.some((f) => removed.has(f.name)));
    // Checksums are unique per dataset; a repaired version may now equal another one.
    const taken = new Set(versions.filter((v) => !changed.includes(v)).map((v) => v.checksum));
    for (const v of changed) {
      const fields = v.fields.filter((f) => !removed.has(f.name));
      let checksum = schemaChecksum(fields, v.timestampColumn);
      if (taken.has(checksum)) checksum = `${checksum}:repaired-v${v.version}`;
      taken.add(checksum);
      await sql.unsafe(`UPDATE dataset_schema_versions SET fields = $1::jsonb, checksum = $2 WHERE dataset_id = $3 AND version = $4`, [
        fields as never,
        checksum,
        datasetId,
        v.version,
      ]);
    }
    const sortColumns = (dataset.sort ?? []).filter((c) => !removed.has(c));
    await sql.unsafe(`UPDATE datasets SET sort_columns = ARRAY(SELECT jsonb_array_elements_text($1::jsonb)), updated_at = now() WHERE id = $2`, [
      sortColumns as never,
      datasetId,
    ]);
    const details = {
      removed: [...removed].map(([field, kept]) => ({ field, kept })),
      versions: changed.map((v) => v.version),
    };
    await sql.unsafe(
      `INSERT INTO audit_events (dataset_id, action, actor, details) VALUES ($1, 'schema.repaired', 'migration 0006_case_conflicting_fields', $2::jsonb)`,
      [datasetId, details as never],
    );
  }
}

export async function down(): Promise<void> {
  // The removed fields never held data; putting them back would break the datasets again.
}
