/** The catalog's own id (its one `catalog_identity` row, made by migration 0009): what owner markers name. */
import type { Db } from './db.ts';

export async function catalogId(sql: Db): Promise<string> {
  const [row] = await sql<{ id: string }[]>`SELECT id FROM catalog_identity`;
  if (!row) throw new Error('the catalog has no identity row: migration 0009_storage_ownership has not run');
  return row.id;
}
