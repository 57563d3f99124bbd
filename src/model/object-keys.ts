/**
 * The keys objects are stored under, relative to a storage target (see storage/driver.ts):
 *
 *   staging/<slug>/<uuid>.<json|ndjson|csv>                        a batch's body, until it is written
 *   staging/<slug>/log-<uuid>.<json|ndjson>                        a staging log: small bodies appended one after another
 *   datasets/<slug>/<name=value,…|_>/<YYYY-MM-DDThhmmss>Z/<uuid>.parquet   a partition file
 *   .timestore-probe/<uuid>                                        a storage target's probe, deleted at once
 *   .timestore-owner                                               the owner marker: which catalog owns the target
 *
 * and, on a local target, `.<name>.tmp-<12 hex digits>` beside any of these: the temporary name a
 * write goes through, left behind by a crash. Nothing else is written under a target. The orphan
 * sweep lists the prefixes below and deletes only keys of exactly these shapes (`sweepableKind`);
 * it never deletes the owner marker. Ingestion checks the keys' lengths before a batch is
 * acknowledged (ingest/object-key-limits.ts).
 */
import { randomUUID } from 'node:crypto';

/** The prefix of each kind of object timestore writes, and nothing else. */
export const OBJECT_KEY_PREFIXES = { staging: 'staging/', partitions: 'datasets/', probe: '.timestore-probe/' } as const;

/** The owner marker's key: at the top of the target, beside the prefixes above. */
export const OWNER_MARKER_KEY = '.timestore-owner';

/** The extensions a staged body is stored with, one per staged format. */
export type StagedExtension = 'json' | 'ndjson' | 'csv';

export function stagingObjectKey(slug: string, extension: StagedExtension, id: string = randomUUID()): string {
  return `${OBJECT_KEY_PREFIXES.staging}${slug}/${id}.${extension}`;
}

/** A staging log of a local target (ingest/staging-groups.ts): bodies of one dataset and format appended to one file. */
export function stagingLogKey(slug: string, extension: StagedExtension, id: string = randomUUID()): string {
  return `${OBJECT_KEY_PREFIXES.staging}${slug}/log-${id}.${extension}`;
}

/**
 * A staging log takes appends for at most this long after it is created, then is closed for good:
 * a log not modified for longer is no longer written (the orphan sweep relies on it).
 */
export const STAGING_LOG_OPEN_MS = 1_000;

/**
 * A staging log modified this recently may still take appends, and its process may still be
 * inserting the jobs of its records: neither the orphan sweep nor a replay of its records touches
 * it (it is closed for good STAGING_LOG_OPEN_MS after it is created; the rest is margin for a slow
 * disk and a slow catalog).
 */
export const OPEN_LOG_AGE_MS = 60 * STAGING_LOG_OPEN_MS;

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

/** The temporary name a local write of `name` goes through before it is renamed to it. */
export function temporaryObjectName(name: string, random: string): string {
  return `.${name}.tmp-${random}`;
}

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const SLUG = '[A-Za-z0-9][A-Za-z0-9_.-]{0,127}';
const KEY_PART = '[A-Za-z0-9_.:-]{1,128}';
const PARTITION_KEY = `(?:_|${KEY_PART}=${KEY_PART}(?:,${KEY_PART}=${KEY_PART}){0,7})`;
const SHAPES = {
  staging: new RegExp(`^staging/${SLUG}/(${UUID}\\.(?:json|ndjson|csv))$`),
  stagingLog: new RegExp(`^staging/${SLUG}/(log-${UUID}\\.(?:json|ndjson))$`),
  partition: new RegExp(`^datasets/${SLUG}/${PARTITION_KEY}/\\d{4}-\\d{2}-\\d{2}T\\d{6}Z/(${UUID}\\.parquet)$`),
  probe: new RegExp(`^\\.timestore-probe/(${UUID})$`),
} as const;
const TEMPORARY = /^(.*\/)?\.([^/]+)\.tmp-[0-9a-f]{12}$/;

export type SweepableKind = keyof typeof SHAPES;

/**
 * The kind of object a key names when it has exactly the shape of a key timestore writes (or of
 * the temporary name a local write of one goes through); null for any other key, which the sweep
 * must leave alone: it cannot be tied to timestore's naming scheme.
 */
export function sweepableKind(key: string): SweepableKind | null {
  const temporary = TEMPORARY.exec(key);
  const final = temporary ? `${temporary[1] ?? ''}${temporary[2]}` : key;
  for (const kind of Object.keys(SHAPES) as SweepableKind[]) {
    if (SHAPES[kind].test(final)) return kind;
  }
  return null;
}
