/**
 * The keys objects are stored under, relative to a storage target (see storage/driver.ts):
 *
 *   staging/<slug>/<uuid>.<ext>                                    a batch's body, until it is written
 *   datasets/<slug>/<name=value,…|_>/<YYYY-MM-DDThhmmss>Z/<uuid>.parquet   a partition file
 *
 * Ingestion checks their lengths before a batch is acknowledged (ingest/object-key-limits.ts).
 */
import { randomUUID } from 'node:crypto';

export function stagingObjectKey(slug: string, extension: string, id: string = randomUUID()): string {
  return `staging/${slug}/${id}.${extension}`;
}

/** Where a partition file lives on its target: by dataset, partition key and window. */
export function partitionObjectKey(slug: string, key: Record<string, string>, windowStart: string, id: string = randomUUID()): string {
  const keyPart = Object.keys(key)
    .sort()
    .map((name) => `${name}=${key[name]}`)
    .join(',');
  return `datasets/${slug}/${keyPart || '_'}/${windowStart.slice(0, 19).replace(/:/g, '')}Z/${id}.parquet`;
}
