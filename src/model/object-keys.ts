/**
 * The keys objects are stored under, relative to a storage target (see storage/driver.ts):
 *
 *   staging/<slug>/<uuid>.<ext>                                    a batch's body, until it is written
 *   datasets/<slug>/<name=value,…|_>/<YYYY-MM-DDThhmmss>Z/<uuid>.parquet   a partition file
 *   .timestore-probe/<uuid>                                        a storage target's probe, deleted at once
 *
 * Nothing else is written under a target; the orphan sweep lists these prefixes only.
 * Ingestion checks their lengths before a batch is acknowledged (ingest/object-key-limits.ts).
 */
import { randomUUID } from 'node:crypto';

/** The prefix of each kind of object timestore writes, and nothing else. */
export const OBJECT_KEY_PREFIXES = { staging: 'staging/', partitions: 'datasets/', probe: '.timestore-probe/' } as const;

export function stagingObjectKey(slug: string, extension: string, id: string = randomUUID()): string {
  return `${OBJECT_KEY_PREFIXES.staging}${slug}/${id}.${extension}`;
}

/** Where a partition file lives on its target: by dataset, partition key and window. */
export function partitionObjectKey(slug: string, key: Record<string, string>, windowStart: string, id: string = randomUUID()): string {
  const keyPart = Object.keys(key)
    .sort()
    .map((name) => `${name}=${key[name]}`)
    .join(',');
  return `${OBJECT_KEY_PREFIXES.partitions}${slug}/${keyPart || '_'}/${windowStart.slice(0, 19).replace(/:/g, '')}Z/${id}.parquet`;
}

export function probeObjectKey(id: string = randomUUID()): string {
  return `${OBJECT_KEY_PREFIXES.probe}${id}`;
}
