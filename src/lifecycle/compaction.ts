/**
 * Compaction: merges a dataset's small partitions of one partition key, time window and storage
 * target into one sorted Parquet file per group (the partition writer in a worker thread, reading
 * the inputs as Parquet), and publishes one manifest version that removes the inputs and adds the
 * output.
 *
 * Inputs are immutable files, so merging them cannot lose or duplicate a row; the only race is
 * another publish removing an input first (retention, or a compaction in another process), which
 * the publish refuses with 409 `partition_not_active`: the output is deleted and the group is left
 * for the next run. When the publish's commit outcome is unknown (the connection was lost during
 * COMMIT) the output is left in place: the catalog may reference it, and the orphan sweep deletes
 * it later if it does not. Ingestion only adds partitions, so it never conflicts. Each run is bounded in
 * input files and bytes; what is left is picked up by the next run, which starts from the
 * manifest as it is then.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { listSmallPartitions } from '../catalog/lifecycle.ts';
import { publishManifestVersion } from '../catalog/manifests.ts';
import { getSchemaVersion } from '../catalog/schema-versions.ts';
import { getStorageTarget } from '../catalog/storage-targets.ts';
import { CommitOutcomeUnknownError, inTransaction } from '../catalog/transaction.ts';
import { type Dataset, type NewPartition, type Partition, partitionKeyId } from '../model/records.ts';
import { seriesKey } from '../model/series.ts';
import type { WorkerPool } from '../engine/pool.ts';
import { AppError } from '../model/errors.ts';
import type { Logger } from '../log.ts';
import type { StorageDriver } from '../storage/driver.ts';
import type { StorageDrivers } from '../storage/index.ts';
import { storePartitionFiles } from '../storage/partition-files.ts';

export interface CompactionLimits {
  /** Partitions smaller than both targets are candidates; a merged file stays within them. */
  targetBytes: number;
  targetRows: number;
  maxBytesPerRun: number;
  maxFilesPerRun: number;
}

export interface CompactionDeps {
  sql: Sql;
  drivers: StorageDrivers;
  pool: WorkerPool;
  scratchDir: string;
  log: Logger;
  /** This process answers queries: its query threads read the footers of the files compaction publishes. */
  warmQueryThreads?: boolean;
}

export interface CompactionOutcome {
  groupsMerged: number;
  partitionsMerged: number;
  partitionsWritten: number;
  bytesRead: number;
  bytesWritten: number;
  /** Groups given up because another publish removed an input first. */
  conflicts: number;
  /** True when the run stopped at its limits with candidates left. */
  more: boolean;
}

/**
 * Groups of small partitions to merge: same partition key, window and storage target, in time
 * order, each group within the targets; only groups of two or more, within the run's budget.
 */
export function planCompaction(candidates: Partition[], windowSeconds: number, limits: CompactionLimits): { groups: Partition[][]; more: boolean } {
  const byGroup = new Map<string, Partition[]>();
  for (const p of candidates) {
    const key = partitionKeyId(p.partitionKey);
    const window = Math.floor(p.startTime.getTime() / 1000 / windowSeconds);
    const id = `${key}|${window}|${p.storageTargetId}`;
    const list = byGroup.get(id);
    if (list) list.push(p);
    else byGroup.set(id, [p]);
  }

  const groups: Partition[][] = [];
  let files = 0;
  let bytes = 0;
  let more = false;
  for (const members of byGroup.values()) {
    members.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
    let chunk: Partition[] = [];
    let chunkBytes = 0;
    let chunkRows = 0;
    const flush = () => {
      if (chunk.length >= 2) {
        if (files + chunk.length > limits.maxFilesPerRun || bytes + chunkBytes > limits.maxBytesPerRun) more = true;
        else {
          groups.push(chunk);
          files += chunk.length;
          bytes += chunkBytes;
        }
      }
      chunk = [];
      chunkBytes = 0;
      chunkRows = 0;
    };
    for (const p of members) {
      if (chunk.length > 0 && (chunkBytes + p.sizeBytes > limits.targetBytes || chunkRows + p.rowCount > limits.targetRows)) flush();
      chunk.push(p);
      chunkBytes += p.sizeBytes;
      chunkRows += p.rowCount;
    }
    flush();
  }
  return { groups, more };
}

export async function compactDataset(deps: CompactionDeps, dataset: Dataset, limits: CompactionLimits, signal: AbortSignal): Promise<CompactionOutcome> {
  // More candidates than one run may merge: what is left is seen by the next run.
  const candidates = await listSmallPartitions(deps.sql, dataset.id, limits.targetBytes, limits.targetRows, limits.maxFilesPerRun * 2);
  const plan = planCompaction(candidates, dataset.partitionWindowSeconds, limits);
  const outcome: CompactionOutcome = {
    groupsMerged: 0,
    partitionsMerged: 0,
    partitionsWritten: 0,
    bytesRead: 0,
    bytesWritten: 0,
    conflicts: 0,
    more: plan.more || candidates.length === limits.maxFilesPerRun * 2,
  };
  for (const group of plan.groups) {
    signal.throwIfAborted();
    const merged = await mergeGroup(deps, dataset, group, signal);
    if (!merged) {
      outcome.conflicts += 1;
      continue;
    }
    outcome.groupsMerged += 1;
    outcome.partitionsMerged += group.length;
    outcome.partitionsWritten += merged.length;
    outcome.bytesRead += group.reduce((n, p) => n + p.sizeBytes, 0);
    outcome.bytesWritten += merged.reduce((n, p) => n + p.sizeBytes, 0);
  }
  return outcome;
}

/**
 * Has every query thread read the footers of newly published local files, so that the first
 * queries of them do not each pay for it (engine/warm-up.ts). Best effort: a busy or closing pool
 * leaves them to the queries.
 */
async function readFootersAhead(deps: CompactionDeps, driver: StorageDriver, stored: NewPartition[]): Promise<void> {
  try {
    const files = await Promise.all(stored.map((p) => driver.materialize(p.location, '')));
    await deps.pool.warmQueryThreads({ compile: false, files });
  } catch (err) {
    deps.log.debug({ err, partitions: stored.length }, 'compaction: the new files\' footers were not read ahead');
  }
}

/** Merges one group and publishes it; null when another publish removed an input first. */
async function mergeGroup(deps: CompactionDeps, dataset: Dataset, group: Partition[], signal: AbortSignal): Promise<NewPartition[] | null> {
  const schemaVersion = Math.max(...group.map((p) => p.schemaVersion));
  const schema = await getSchemaVersion(deps.sql, dataset.id, schemaVersion);
  if (!schema) throw new Error(`schema version ${schemaVersion} of dataset ${dataset.slug} is missing`);
  const target = await getStorageTarget(deps.sql, group[0]!.storageTargetId);
  const driver = deps.drivers.forTarget(target);

  const work = join(deps.scratchDir, `compact-${crypto.randomUUID()}`);
  await mkdir(join(work, 'out'), { recursive: true });
  const stored: NewPartition[] = [];
  try {
    const inputs = await Promise.all(
      group.map(async (p) => ({
        path: await driver.materialize(p.location, join(work, `${p.id}.parquet`)),
        format: 'parquet' as const,
        partitionKey: p.partitionKey,
        timeSpan: { min: p.startTime.toISOString(), max: p.endTime.toISOString() },
      })),
    );
    signal.throwIfAborted();
    const written = await deps.pool.writePartitions({
      inputs,
      fields: schema.fields,
      timestampColumn: schema.timestampColumn,
      windowSeconds: dataset.partitionWindowSeconds,
      // The layout compacted files keep: by the series key, then time. The admin's sortColumns as
      // given; else the string fields, the most selective first.
      sortColumns: seriesKey(dataset, schema.fields),
      sortByDistinctValues: dataset.sortColumns.length === 0,
      outputDir: join(work, 'out'),
    }, 'lifecycle');
    await storePartitionFiles(driver, target, dataset, schemaVersion, written, (p) => stored.push(p));
    signal.throwIfAborted();
    await inTransaction(deps.sql, (tx) =>
      publishManifestVersion(tx, {
        datasetId: dataset.id,
        reason: 'compaction',
        add: stored,
        remove: group.map((p) => p.id),
        summary: { merged: group.length, rows: group.reduce((n, p) => n + p.rowCount, 0) },
      }),
    );
    if (deps.warmQueryThreads && driver.kind === 'local') await readFootersAhead(deps, driver, stored);
    return stored;
  } catch (err) {
    // If the commit's outcome is unknown, the manifest may reference the output: the collector's
    // orphan sweep deletes it later if it does not. Any other failure certainly published nothing.
    if (!(err instanceof CommitOutcomeUnknownError)) await Promise.all(stored.map((p) => driver.delete(p.location).catch(() => {})));
    if (err instanceof AppError && err.code === 'partition_not_active') {
      deps.log.info({ dataset: dataset.slug, partitions: group.length }, 'compaction: an input was removed by another publish; left for the next run');
      return null;
    }
    throw err;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
