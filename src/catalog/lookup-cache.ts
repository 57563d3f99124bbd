/**
 * Catalog rows a process may keep instead of reading them for every batch and query: schema
 * versions never change once recorded; storage targets change only when an operator re-registers
 * a configured one (other processes see that within `targetTtlMs`). Datasets and manifests are
 * never kept here: their versions move with every publish.
 */
import type { Db } from './db.ts';
import { getSchemaVersion } from './schema-versions.ts';
import { getStorageTarget } from './storage-targets.ts';
import type { SchemaVersion, StorageTarget } from '../model/records.ts';

export class CatalogCache {
  private readonly schemas = new Map<string, Promise<SchemaVersion | null>>();
  private readonly targets = new Map<string, { target: Promise<StorageTarget>; readAt: number }>();

  constructor(
    private readonly sql: Db,
    private readonly targetTtlMs = 30_000,
  ) {}

  schemaVersion(datasetId: string, version: number): Promise<SchemaVersion | null> {
    const key = `${datasetId}@${version}`;
    let found = this.schemas.get(key);
    if (!found) {
      found = getSchemaVersion(this.sql, datasetId, version);
      this.schemas.set(key, found);
      // Only what exists is kept: a failed or empty read is tried again next time.
      found.then(
        (v) => v ?? this.schemas.delete(key),
        () => this.schemas.delete(key),
      );
    }
    return found;
  }

  /** A target by id or name; 404 `not_found` as getStorageTarget. */
  storageTarget(idOrName: string): Promise<StorageTarget> {
    const now = performance.now();
    const kept = this.targets.get(idOrName);
    if (kept && now - kept.readAt < this.targetTtlMs) return kept.target;
    const target = getStorageTarget(this.sql, idOrName);
    this.targets.set(idOrName, { target, readAt: now });
    target.catch(() => this.targets.delete(idOrName));
    return target;
  }
}
