/**
 * Reader pins: which manifest versions running queries and streams read, across every process
 * sharing the catalog. The collector keeps the file of a removed partition while any unexpired pin
 * names a version at which the partition was active.
 *
 * Pinning and the collector's choice of files to delete exclude each other per dataset through a
 * transaction-level advisory lock (readers share it, the collector takes it alone). A reader pins
 * the dataset's current version as read after it holds the lock, so it can never pin a version
 * whose files the collector has already chosen; and the collector, once it holds the lock, sees
 * every pin committed before. Readers never wait for publishes, nor publishes for readers.
 */
import type { Sql } from 'postgres';
import { errors } from '../model/errors.ts';
import type { Db } from './db.ts';

/** First key of the two-key advisory lock on a dataset's files ("tsfl"); the second is the dataset id's hash. */
const FILES_LOCK = 0x7473_666c;

/** Takes the dataset's files lock until the end of `tx`: shared for readers, exclusive for the collector. */
export async function lockDatasetFiles(tx: Db, datasetId: string, mode: 'shared' | 'exclusive'): Promise<void> {
  if (mode === 'shared') await tx`SELECT pg_advisory_xact_lock_shared(${FILES_LOCK}::int4, hashtext(${datasetId}::text))`;
  else await tx`SELECT pg_advisory_xact_lock(${FILES_LOCK}::int4, hashtext(${datasetId}::text))`;
}

export interface NewReaderPin {
  id: string;
  datasetId: string;
  /** The process that refreshes the pin. */
  owner: string;
  ttlMs: number;
}

/** Pins the dataset's current manifest version; returns that version. */
export async function pinCurrentManifestVersion(sql: Sql, pin: NewReaderPin): Promise<number> {
  return (await sql.begin(async (tx) => {
    await lockDatasetFiles(tx, pin.datasetId, 'shared');
    const [row] = await tx<{ manifestVersion: number }[]>`
      INSERT INTO reader_pins (id, dataset_id, manifest_version, owner, expires_at)
      SELECT ${pin.id}, id, manifest_version, ${pin.owner}, now() + ${`${Math.round(pin.ttlMs)} milliseconds`}::interval
      FROM datasets WHERE id = ${pin.datasetId}
      RETURNING manifest_version`;
    if (!row) throw errors.not_found('dataset', pin.datasetId);
    return row.manifestVersion;
  })) as number;
}

/** Extends every pin of `owner` to expire `ttlMs` from now; returns how many it holds. */
export async function refreshReaderPins(db: Db, owner: string, ttlMs: number): Promise<number> {
  const rows = await db`
    UPDATE reader_pins SET expires_at = now() + ${`${Math.round(ttlMs)} milliseconds`}::interval
    WHERE owner = ${owner} RETURNING id`;
  return rows.length;
}

/** Removes pins: these ids, or (without ids) every pin of `owner`. */
export async function releaseReaderPins(db: Db, owner: string, ids?: readonly string[]): Promise<void> {
  if (ids && ids.length === 0) return;
  await db`DELETE FROM reader_pins WHERE owner = ${owner} ${ids ? db`AND id = ANY(${db.array(ids as string[])}::uuid[])` : db``}`;
}

/** Deletes pins that expired more than `olderThanMs` ago (their process died without releasing them). */
export async function purgeExpiredReaderPins(db: Db, olderThanMs: number): Promise<number> {
  const rows = await db`
    DELETE FROM reader_pins WHERE expires_at < now() - ${`${Math.round(olderThanMs)} milliseconds`}::interval RETURNING id`;
  return rows.length;
}

/** Unexpired pins of a dataset, by version (for tests and operators). */
export async function listReaderPins(db: Db, datasetId: string): Promise<{ manifestVersion: number; owner: string; expiresAt: Date }[]> {
  return db`
    SELECT manifest_version, owner, expires_at FROM reader_pins
    WHERE dataset_id = ${datasetId} AND expires_at > now() ORDER BY manifest_version, owner`;
}
