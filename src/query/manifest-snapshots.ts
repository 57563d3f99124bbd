/**
 * The partitions active at a dataset's manifest version, kept in the process so that a query does
 * not list them from the catalog each time.
 *
 * A manifest version never changes once published, so a snapshot is valid for as long as the
 * dataset stays at its version; when a query finds a newer one, the snapshot moves forward by the
 * partitions that the versions in between added and removed (one indexed catalog query, usually a
 * few rows), never by listing the dataset again. Only the newest snapshot of each dataset is kept;
 * a query at an older version than the kept one (it read the dataset just before a concurrent
 * query moved the snapshot on) gets `null` and lists from the catalog, as does a dataset with more
 * active partitions than the whole cache may hold. Datasets least recently queried are dropped
 * first to keep the total within `maxPartitions`.
 */
import type { Db } from '../catalog/db.ts';
import { getManifestVersion, listActivePartitions, listPartitionChanges } from '../catalog/manifests.ts';
import type { Partition } from '../model/records.ts';

interface Snapshot {
  version: number;
  /** Ordered by (start_time, id), as the catalog lists them. */
  partitions: Partition[];
}

export interface SnapshotStats {
  datasets: number;
  partitions: number;
  /** Queries answered from a snapshot at their version. */
  hits: number;
  /** Snapshots moved forward by a version's changes. */
  advances: number;
  /** Snapshots listed in full. */
  loads: number;
  /** Queries sent to the catalog: an older version than the kept one, or too many partitions. */
  bypasses: number;
}

export class ManifestSnapshots {
  private readonly snapshots = new Map<string, Snapshot>(); // least recently used first
  private readonly pending = new Map<string, Promise<Snapshot | null>>();
  private total = 0;
  private readonly counts = { hits: 0, advances: 0, loads: 0, bypasses: 0 };

  constructor(
    private readonly sql: Db,
    private readonly maxPartitions: number,
  ) {}

  /** The partitions active at `version` of the dataset, oldest first; null when the caller must ask the catalog. */
  async active(datasetId: string, version: number): Promise<readonly Partition[] | null> {
    const kept = this.snapshots.get(datasetId);
    if (kept?.version === version) {
      this.counts.hits++;
      this.snapshots.delete(datasetId);
      this.snapshots.set(datasetId, kept);
      return kept.partitions;
    }
    if (kept && kept.version > version) {
      this.counts.bypasses++;
      return null;
    }
    const key = `${datasetId}@${version}`;
    let loading = this.pending.get(key);
    if (!loading) {
      loading = this.load(datasetId, version, kept).finally(() => this.pending.delete(key));
      this.pending.set(key, loading);
    }
    const snapshot = await loading;
    if (!snapshot) this.counts.bypasses++;
    return snapshot?.partitions ?? null;
  }

  stats(): SnapshotStats {
    return { datasets: this.snapshots.size, partitions: this.total, ...this.counts };
  }

  private async load(datasetId: string, version: number, from: Snapshot | undefined): Promise<Snapshot | null> {
    let snapshot: Snapshot | null;
    if (from) {
      const changes = await listPartitionChanges(this.sql, datasetId, from.version, version);
      snapshot = { version, partitions: applyChanges(from.partitions, changes, version) };
      this.counts.advances++;
    } else {
      const manifest = await getManifestVersion(this.sql, datasetId, version);
      if ((manifest?.partitionCount ?? 0) > this.maxPartitions) return null;
      snapshot = { version, partitions: version > 0 ? await listActivePartitions(this.sql, { datasetId, version }) : [] };
      this.counts.loads++;
    }
    this.keep(datasetId, snapshot);
    return snapshot;
  }

  /** Keeps the snapshot unless a newer one of the dataset arrived meanwhile; drops the least recently used beyond the limit. */
  private keep(datasetId: string, snapshot: Snapshot): void {
    const kept = this.snapshots.get(datasetId);
    if (kept && kept.version >= snapshot.version) return;
    if (kept) this.total -= kept.partitions.length;
    this.snapshots.delete(datasetId);
    if (snapshot.partitions.length > this.maxPartitions) return;
    this.snapshots.set(datasetId, snapshot);
    this.total += snapshot.partitions.length;
    for (const [id, old] of this.snapshots) {
      if (this.total <= this.maxPartitions) break;
      this.snapshots.delete(id);
      this.total -= old.partitions.length;
    }
  }
}

function byStartThenId(a: Partition, b: Partition): number {
  return a.startTime.getTime() - b.startTime.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** The partitions active at `version`: `active` minus what the changes removed, plus what they added, still in order. */
export function applyChanges(active: readonly Partition[], changes: Partition[], version: number): Partition[] {
  if (changes.length === 0) return active as Partition[];
  const removed = new Set<string>();
  const added: Partition[] = [];
  for (const p of changes) {
    if (p.removedVersion !== null && p.removedVersion <= version) removed.add(p.id);
    else added.push(p);
  }
  added.sort(byStartThenId);
  const merged: Partition[] = [];
  let j = 0;
  for (const p of active) {
    if (removed.has(p.id)) continue;
    while (j < added.length && byStartThenId(added[j]!, p) < 0) merged.push(added[j++]!);
    merged.push(p);
  }
  while (j < added.length) merged.push(added[j++]!);
  return merged;
}

/** What the catalog's listing would return: the partitions overlapping [from, to) (each bound optional) whose key matches. */
export function selectPartitions(
  active: readonly Partition[],
  q: { from?: Date; to?: Date; partitionKey?: Record<string, string[]> },
): Partition[] {
  const from = q.from?.getTime() ?? Number.NEGATIVE_INFINITY;
  const to = q.to?.getTime() ?? Number.POSITIVE_INFINITY;
  const keyFilters = Object.entries(q.partitionKey ?? {});
  return active.filter(
    (p) =>
      p.endTime.getTime() >= from &&
      p.startTime.getTime() < to &&
      keyFilters.every(([field, values]) => {
        const value = p.partitionKey[field];
        return value !== undefined && values.includes(value);
      }),
  );
}
