/** Idempotency keys: one accepted request per (dataset, key) until the key expires. */
import type { Db } from './db.ts';

export interface IdempotencyRecord {
  datasetId: string;
  key: string;
  requestHash: string;
  jobId: string | null;
  createdAt: Date;
  expiresAt: Date;
}

/**
 * Records the key for a new request, inside the caller's transaction. Returns
 * null when the key is now ours, or the record of the earlier request that
 * holds it. A concurrent request with the same key waits on the unique index
 * until the first commits, then gets the first one's record.
 */
export async function claimIdempotencyKey(
  tx: Db,
  input: { datasetId: string; key: string; requestHash: string; jobId: string; ttlSeconds: number },
): Promise<IdempotencyRecord | null> {
  await tx`DELETE FROM idempotency_keys WHERE dataset_id = ${input.datasetId} AND key = ${input.key} AND expires_at <= now()`;
  const inserted = await tx<IdempotencyRecord[]>`
    INSERT INTO idempotency_keys (dataset_id, key, request_hash, job_id, expires_at)
    VALUES (${input.datasetId}, ${input.key}, ${input.requestHash}, ${input.jobId},
            now() + make_interval(secs => ${input.ttlSeconds}))
    ON CONFLICT (dataset_id, key) DO NOTHING
    RETURNING *`;
  if (inserted.length > 0) return null;
  return findIdempotencyKey(tx, input.datasetId, input.key);
}

export async function findIdempotencyKey(db: Db, datasetId: string, key: string): Promise<IdempotencyRecord | null> {
  const [row] = await db<IdempotencyRecord[]>`
    SELECT * FROM idempotency_keys WHERE dataset_id = ${datasetId} AND key = ${key} AND expires_at > now()`;
  return row ?? null;
}
