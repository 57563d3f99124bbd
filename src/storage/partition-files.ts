/**
 * Partition files on their way from the partition writer to the catalog: each file DuckDB wrote is
 * moved to its key on the target (model/object-keys.ts) and described for the manifest publish.
 * Ingestion and compaction both store what they wrote this way.
 */
import type { WrittenPartition } from '../engine/partition-writer.ts';
import type { Dataset, NewPartition, StorageTarget } from '../model/records.ts';
import { partitionObjectKey } from '../model/object-keys.ts';
import type { StorageDriver } from './driver.ts';

/**
 * Stores the partition writer's files on the target (each moved under its partition path) and
 * describes them for the publish. A file stored here and never published is the collector's.
 */
export async function storePartitionFiles(
  driver: StorageDriver,
  target: StorageTarget,
  dataset: Dataset,
  schemaVersion: number,
  written: WrittenPartition[],
  /** Called for each file once it is stored (so a caller knows what a failure part-way left behind). */
  onStored?: (partition: NewPartition) => void,
): Promise<NewPartition[]> {
  const stored: NewPartition[] = [];
  for (const file of written) {
    const object = await driver.putFile(partitionObjectKey(dataset.slug, file.partitionKey, file.windowStart), file.path, { move: true });
    stored.push({
      storageTargetId: target.id,
      location: object.location,
      partitionKey: file.partitionKey,
      schemaVersion,
      startTime: file.startTime,
      endTime: file.endTime,
      rowCount: file.rowCount,
      sizeBytes: object.sizeBytes,
      checksum: file.checksum,
      columnStatistics: file.columnStatistics,
    });
    onStored?.(stored.at(-1)!);
  }
  return stored;
}
