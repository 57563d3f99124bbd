/**
 * Retention: publishes a manifest version without the partitions a dataset's effective policy
 * expires. Files are not touched here; they are deleted after the grace period (collector.ts).
 *
 * - `maxAgeHours` is measured against the wall clock: a partition goes once its newest row is older
 *   than the cutoff. A partition that straddles the cutoff is kept until all of its rows have
 *   expired, so no query ever sees a partition cut in half and nothing is rewritten; with the
 *   default one-day windows a row outlives its age limit by at most a day.
 * - `maxTotalBytes` then removes the oldest partitions (by newest row) until the rest fit.
 */
import type { Sql } from 'postgres';
import type { EffectiveRetention } from '../model/retention.ts';
import { recordAuditEvent } from '../catalog/audit.ts';
import { listActiveByAge } from '../catalog/lifecycle.ts';
import { publishManifestVersion } from '../catalog/manifests.ts';
import type { Dataset } from '../model/records.ts';

export interface RetentionOutcome {
  partitionsRemoved: number;
  rowsRemoved: number;
  bytesRemoved: number;
  /** The version that removed them; null when nothing expired. */
  manifestVersion: number | null;
  cutoff: string | null;
}

type Candidate = { id: string; endTime: Date; sizeBytes: number; rowCount: number };

/** The partitions the policy removes, oldest first. Pure, for the rules above. */
export function expiredPartitions(partitions: Candidate[], policy: EffectiveRetention, now: Date): Candidate[] {
  const maxAgeHours = policy.maxAgeHours.value;
  const cutoff = maxAgeHours === null ? null : now.getTime() - maxAgeHours * 3_600_000;
  const expired: Candidate[] = [];
  const kept: Candidate[] = [];
  for (const p of partitions) (cutoff !== null && p.endTime.getTime() < cutoff ? expired : kept).push(p);
  const maxBytes = policy.maxTotalBytes.value;
  if (maxBytes !== null) {
    let total = kept.reduce((n, p) => n + p.sizeBytes, 0);
    // kept is oldest first (the catalog's order)
    while (total > maxBytes && kept.length > 0) {
      const oldest = kept.shift()!;
      total -= oldest.sizeBytes;
      expired.push(oldest);
    }
  }
  return expired;
}

export async function applyRetention(sql: Sql, dataset: Dataset, policy: EffectiveRetention, now: Date): Promise<RetentionOutcome> {
  const maxAgeHours = policy.maxAgeHours.value;
  const cutoff = maxAgeHours === null ? null : new Date(now.getTime() - maxAgeHours * 3_600_000).toISOString();
  const none: RetentionOutcome = { partitionsRemoved: 0, rowsRemoved: 0, bytesRemoved: 0, manifestVersion: null, cutoff };
  if (maxAgeHours === null && policy.maxTotalBytes.value === null) return none;

  const expired = expiredPartitions(await listActiveByAge(sql, dataset.id), policy, now);
  if (expired.length === 0) return none;
  const outcome = {
    partitionsRemoved: expired.length,
    rowsRemoved: expired.reduce((n, p) => n + p.rowCount, 0),
    bytesRemoved: expired.reduce((n, p) => n + p.sizeBytes, 0),
    cutoff,
  };
  // A concurrent compaction may have replaced some of these (409 partition_not_active): the caller
  // runs retention again next round, from the manifest as it is then.
  const version = await sql.begin(async (tx) => {
    const published = await publishManifestVersion(tx, {
      datasetId: dataset.id,
      reason: 'retention',
      add: [],
      remove: expired.map((p) => p.id),
      summary: { ...outcome, maxAgeHours, maxTotalBytes: policy.maxTotalBytes.value },
    });
    await recordAuditEvent(tx, {
      datasetId: dataset.id,
      action: 'retention.applied',
      actor: null,
      details: {
        ...outcome,
        manifestVersion: published.manifest.version,
        maxAgeHours,
        maxTotalBytes: policy.maxTotalBytes.value,
        partitions: expired.slice(0, 100).map((p) => p.id),
      },
    });
    return published.manifest.version;
  });
  return { ...outcome, manifestVersion: version };
}
