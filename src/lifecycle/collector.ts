/**
 * Garbage collection.
 *
 * - Files of removed partitions (retention, compaction) are deleted once the manifest version that
 *   removed them is older than the grace period and no reader still pins a version at which they
 *   were active: a query or stream reads the version it started on for as long as it lives, which
 *   may be longer than any timeout (catalog/reader-pins.ts; query/reader-pins.ts).
 * - The orphan sweep lists a storage target's `datasets/`, `staging/` and `.timestore-probe/`
 *   objects and deletes those that nothing references (no partition whose file is kept, no staged
 *   batch of a job that has not succeeded) once they are older than the orphan age: the files of
 *   failed writes, of attempts that lost a race, of jobs an operator deleted, and temporary files
 *   a crash left behind (among them the staging logs of a process that stopped before their
 *   batches were written; a log modified in the last minute may still be open and is left alone).
 *   Before that, the jobs a staging log's records hold that have no row are inserted
 *   (`replayStagingLog`): batches acknowledged on the record alone, by a process that stopped
 *   before it inserted them.
 *   A failed job's staged batch is kept: only an operator drops it.
 *   It deletes only what timestore owns: nothing at all under a target whose owner marker does not
 *   name this catalog (storage/owner-marker.ts), and no object whose key is not exactly of a shape
 *   timestore writes (model/object-keys.ts `sweepableKind`). What it leaves alone is logged and
 *   counted (`notOwned`, `skipped`).
 * - Succeeded jobs, expired idempotency keys and long-expired reader pins are purged after their
 *   retention; failed jobs stay (except those of the queues named, whose work is redone anyway).
 */
import type { Sql } from 'postgres';
import { forgetStagingLogs, purgeFinishedJobs, purgeStagingLogProgress } from '../catalog/job-table.ts';
import { claimFilesToDelete, purgeExpiredIdempotencyKeys, referencedLocations } from '../catalog/lifecycle.ts';
import { purgeExpiredReaderPins } from '../catalog/reader-pins.ts';
import { catalogId } from '../catalog/identity.ts';
import { getStorageTarget } from '../catalog/storage-targets.ts';
import { OBJECT_KEY_PREFIXES, OPEN_LOG_AGE_MS, sweepableKind } from '../model/object-keys.ts';
import type { Dataset, StorageTarget } from '../model/records.ts';
import type { Logger } from '../log.ts';
import { type ListedObject, readOwnerMarker, type StorageDriver, type StorageDrivers } from '../storage/index.ts';

export interface CollectorDeps {
  sql: Sql;
  drivers: StorageDrivers;
  log: Logger;
  /**
   * Inserts the jobs a staging log's records hold that have no row (src/ingest/logged-jobs.ts):
   * done for every log no longer open before the sweep decides whether it is referenced.
   */
  replayStagingLog?(driver: StorageDriver, location: string): Promise<number>;
}

export interface Deleted {
  files: number;
  bytes: number;
}

const PAGE = 500;

/** Deletes the files of this dataset's partitions removed before `removedBefore` that no reader pins. */
export async function deleteRemovedFiles(deps: CollectorDeps, dataset: Dataset, removedBefore: Date, signal: AbortSignal): Promise<Deleted> {
  const deleted: Deleted = { files: 0, bytes: 0 };
  const targets = new Map<string, StorageTarget>();
  for (;;) {
    signal.throwIfAborted();
    // Marked deleted first: if a delete below fails, the file is an orphan for the sweep.
    const due = await claimFilesToDelete(deps.sql, dataset.id, removedBefore, PAGE);
    for (const p of due) {
      const target = targets.get(p.storageTargetId) ?? (await getStorageTarget(deps.sql, p.storageTargetId));
      targets.set(target.id, target);
      await deps.drivers.forTarget(target).delete(p.location);
      deleted.files += 1;
      deleted.bytes += p.sizeBytes;
    }
    if (due.length < PAGE) return deleted;
  }
}

const SWEPT_PREFIXES = Object.values(OBJECT_KEY_PREFIXES);
/** Keys of skipped objects named in the log, at most. */
const SKIPPED_EXAMPLES = 5;

export interface Swept extends Deleted {
  /** The target holds no owner marker of this catalog: nothing under it was listed or deleted. */
  notOwned: boolean;
  /** Objects under the swept prefixes whose keys are not of a shape timestore writes: left alone. */
  skipped: number;
}

/** Deletes unreferenced objects older than `olderThan` from one storage target, if this catalog owns it. */
export async function sweepOrphans(deps: CollectorDeps, target: StorageTarget, olderThan: Date, signal: AbortSignal): Promise<Swept> {
  const driver = deps.drivers.forTarget(target);
  const deleted: Swept = { files: 0, bytes: 0, notOwned: false, skipped: 0 };
  const owner = await catalogId(deps.sql);
  const marker = await readOwnerMarker(driver);
  if (marker?.catalog !== owner) {
    deps.log.warn(
      { target: target.name, ownerMarker: marker?.catalog ?? null, catalog: owner },
      "gc: the target holds no owner marker of this catalog; nothing under it is swept (a target registered before markers existed is marked at the next boot)",
    );
    return { ...deleted, notOwned: true };
  }
  const examples: string[] = [];
  for (const prefix of SWEPT_PREFIXES) {
    let page: ListedObject[] = [];
    for await (const object of driver.list(prefix)) {
      const kind = sweepableKind(object.key);
      if (!kind) {
        deleted.skipped += 1;
        if (examples.length < SKIPPED_EXAMPLES) examples.push(object.key);
        continue;
      }
      const mayBeOpen = kind === 'stagingLog' && object.lastModified.getTime() > Date.now() - OPEN_LOG_AGE_MS;
      // Whatever the orphan age: batches acknowledged on its records may have no job rows yet.
      if (kind === 'stagingLog' && !mayBeOpen) await deps.replayStagingLog?.(driver, object.location);
      if (object.lastModified < olderThan && !mayBeOpen) page.push(object);
      if (page.length === PAGE) {
        signal.throwIfAborted();
        await deleteUnreferenced(deps, driver, page, deleted);
        page = [];
      }
    }
    await deleteUnreferenced(deps, driver, page, deleted);
  }
  if (deleted.files > 0) deps.log.info({ target: target.name, files: deleted.files, bytes: deleted.bytes }, 'gc: orphaned files deleted');
  if (deleted.skipped > 0) {
    deps.log.warn({ target: target.name, skipped: deleted.skipped, examples }, "gc: objects whose keys timestore does not write were left alone");
  }
  return deleted;
}

async function deleteUnreferenced(deps: CollectorDeps, driver: StorageDriver, objects: ListedObject[], deleted: Deleted): Promise<void> {
  if (objects.length === 0) return;
  // Looked up after listing: an object published meanwhile is found referenced and kept.
  const referenced = await referencedLocations(deps.sql, objects.map((o) => o.location));
  const logs: string[] = [];
  for (const object of objects) {
    if (referenced.has(object.location)) continue;
    await driver.delete(object.location);
    if (sweepableKind(object.key) === 'stagingLog') logs.push(object.location);
    deleted.files += 1;
    deleted.bytes += object.sizeBytes;
  }
  await forgetStagingLogs(deps.sql, logs);
}

export interface Purged {
  jobs: number;
  stagingLogMarks: number;
  idempotencyKeys: number;
  readerPins: number;
}

/** Expired reader pins are kept an hour, so that a process cut off from the catalog for a while revives its own by refreshing them. */
const EXPIRED_PIN_RETENTION_MS = 3_600_000;

export async function purgeBookkeeping(sql: Sql, jobRetentionMs: number, failedJobsOfQueues: readonly string[] = []): Promise<Purged> {
  return {
    jobs: await purgeFinishedJobs(sql, jobRetentionMs, { failedOfQueues: failedJobsOfQueues }),
    stagingLogMarks: await purgeStagingLogProgress(sql, jobRetentionMs),
    idempotencyKeys: await purgeExpiredIdempotencyKeys(sql),
    readerPins: await purgeExpiredReaderPins(sql, EXPIRED_PIN_RETENTION_MS),
  };
}
