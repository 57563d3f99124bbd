/** The pure rules of retention and compaction planning. */
import { describe, expect, test } from 'bun:test';
import { effectiveRetention } from '../../src/model/retention.ts';
import type { Partition } from '../../src/model/records.ts';
import { planCompaction } from '../../src/lifecycle/compaction.ts';
import { expiredPartitions } from '../../src/lifecycle/expiry.ts';

const HOUR = 3_600_000;
const NOW = new Date('2026-06-01T00:00:00Z');
const defaults = { maxAgeHours: null, maxTotalBytes: null, deleteGraceMinutes: 5 };
const aged = (id: string, hoursOld: number, sizeBytes = 100) => ({ id, endTime: new Date(NOW.getTime() - hoursOld * HOUR), sizeBytes, rowCount: 1 });

describe('retention', () => {
  test('maxAgeHours removes partitions whose newest row is older than the cutoff; a straddling one stays', () => {
    const policy = effectiveRetention({ rules: { maxAgeHours: 24 } }, defaults);
    const expired = expiredPartitions([aged('old', 48), aged('edge', 24.5), aged('straddles', 23), aged('new', 1)], policy, NOW);
    expect(expired.map((p) => p.id)).toEqual(['old', 'edge']);
  });

  test('maxTotalBytes removes the oldest first until the rest fit', () => {
    const policy = effectiveRetention({ rules: { maxTotalBytes: 250 } }, defaults);
    const expired = expiredPartitions([aged('a', 40), aged('b', 30), aged('c', 20), aged('d', 10)], policy, NOW);
    expect(expired.map((p) => p.id)).toEqual(['a', 'b']);
  });

  test('both rules: age first, then size over what is left; no rule removes nothing', () => {
    const both = effectiveRetention({ rules: { maxAgeHours: 35, maxTotalBytes: 150 } }, defaults);
    expect(expiredPartitions([aged('a', 40), aged('b', 30), aged('c', 20), aged('d', 10)], both, NOW).map((p) => p.id)).toEqual(['a', 'b', 'c']);
    const none = effectiveRetention(null, defaults);
    expect(expiredPartitions([aged('a', 1e6)], none, NOW)).toEqual([]);
    // A server default applies unless the dataset turns it off with null.
    expect(expiredPartitions([aged('a', 1000)], effectiveRetention(null, { ...defaults, maxAgeHours: 720 }), NOW)).toHaveLength(1);
    expect(expiredPartitions([aged('a', 1000)], effectiveRetention({ rules: { maxAgeHours: null } }, { ...defaults, maxAgeHours: 720 }), NOW)).toEqual([]);
  });
});

describe('compaction plan', () => {
  let n = 0;
  const part = (key: Record<string, string>, start: string, sizeBytes = 10, rowCount = 1, target = 't1'): Partition =>
    ({
      id: `p${++n}`,
      partitionKey: key,
      startTime: new Date(start),
      endTime: new Date(start),
      sizeBytes,
      rowCount,
      storageTargetId: target,
    }) as Partition;
  const limits = { targetBytes: 100, targetRows: 1000, maxBytesPerRun: 10_000, maxFilesPerRun: 100 };
  const ids = (groups: Partition[][]) => groups.map((g) => g.map((p) => p.id));

  test('groups by partition key, window and storage target; a lone small partition is left alone', () => {
    const a1 = part({ site: 'a' }, '2026-01-01T01:00:00Z');
    const a2 = part({ site: 'a' }, '2026-01-01T05:00:00Z');
    const aNextDay = part({ site: 'a' }, '2026-01-02T01:00:00Z');
    const b1 = part({ site: 'b' }, '2026-01-01T02:00:00Z');
    const b2 = part({ site: 'b' }, '2026-01-01T03:00:00Z');
    const bElsewhere = part({ site: 'b' }, '2026-01-01T04:00:00Z', 10, 1, 't2');
    const { groups, more } = planCompaction([a1, a2, aNextDay, b1, b2, bElsewhere], 86_400, limits);
    expect(ids(groups).sort()).toEqual([[a1.id, a2.id], [b1.id, b2.id]].sort());
    expect(more).toBe(false);
  });

  test('a merged file stays within the byte and row targets', () => {
    const parts = Array.from({ length: 7 }, (_, i) => part({}, `2026-01-01T0${i}:00:00Z`, 40));
    expect(ids(planCompaction(parts, 86_400, limits).groups)).toEqual([
      [parts[0]!.id, parts[1]!.id],
      [parts[2]!.id, parts[3]!.id],
      [parts[4]!.id, parts[5]!.id],
    ]);
    const rows = Array.from({ length: 4 }, (_, i) => part({}, `2026-01-01T0${i}:00:00Z`, 1, 600));
    expect(planCompaction(rows, 86_400, limits).groups).toEqual([]);
  });

  test('a run is bounded in files and bytes, and says there is more', () => {
    const parts = Array.from({ length: 10 }, (_, i) => part({ k: String(i % 5) }, '2026-01-01T00:00:00Z', 10));
    const byFiles = planCompaction(parts, 86_400, { ...limits, maxFilesPerRun: 5 });
    expect(byFiles.groups).toHaveLength(2);
    expect(byFiles.more).toBe(true);
    const byBytes = planCompaction(parts, 86_400, { ...limits, maxBytesPerRun: 60 });
    expect(byBytes.groups).toHaveLength(3);
    expect(byBytes.more).toBe(true);
  });
});
