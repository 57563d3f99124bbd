/** Retention policies, stored per dataset; every change is audited in the same transaction. */
import type { Sql } from 'postgres';
import type { Db } from './db.ts';
import { recordAuditEvent } from './audit.ts';
import type { RetentionPolicy, StoredRetentionPolicy } from '../model/records.ts';

export async function getRetentionPolicy(sql: Db, datasetId: string): Promise<StoredRetentionPolicy | null> {
  const [row] = await sql<StoredRetentionPolicy[]>`SELECT * FROM retention_policies WHERE dataset_id = ${datasetId}`;
  return row ?? null;
}

export async function putRetentionPolicy(
  sql: Sql,
  datasetId: string,
  policy: RetentionPolicy,
  actor: string | null,
): Promise<StoredRetentionPolicy> {
  return sql.begin(async (tx) => {
    const [before] = await tx<StoredRetentionPolicy[]>`
      SELECT * FROM retention_policies WHERE dataset_id = ${datasetId} FOR UPDATE`;
    const [after] = await tx<StoredRetentionPolicy[]>`
      INSERT INTO retention_policies (dataset_id, policy, updated_by)
      VALUES (${datasetId}, ${tx.json(policy as never)}, ${actor})
      ON CONFLICT (dataset_id) DO UPDATE SET policy = EXCLUDED.policy, updated_by = EXCLUDED.updated_by, updated_at = now()
      RETURNING *`;
    await recordAuditEvent(tx, {
      datasetId,
      action: 'retention.updated',
      actor,
      details: { before: before?.policy ?? null, after: policy },
    });
    return after as StoredRetentionPolicy;
  }) as Promise<StoredRetentionPolicy>;
}
