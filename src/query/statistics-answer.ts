/**
 * Counts answered from the catalog. A downsample that asks only for counts (of rows, or of a
 * column's values) in one bucket, without groupBy, filters or gap filling, over partitions every
 * row of which lies in the time range, is the sum of the row counts and null counts the writer
 * recorded for those files: no file is opened. Anything else, such as a partition that straddles
 * the range or one without statistics, is left to the scan, which gives the same answer.
 */
import type { Partition } from '../model/records.ts';
import { ROWS } from '../model/query.ts';
import { isoFromMicrosTrimmed } from '../model/timestamps.ts';
import type { QueryRow } from '../engine/query.ts';
import { bucketCount, bucketStart, type QueryPlan } from './request.ts';

/** The answer's rows (one bucket, or none without partitions), or null when the files must answer. */
export function countsFromStatistics(plan: QueryPlan, partitions: readonly Partition[]): QueryRow[] | null {
  const { mode } = plan;
  if (mode.kind !== 'downsample' || mode.groupBy.length > 0 || mode.fillGaps || plan.filters.length > 0) return null;
  if (mode.intervalUnit === 'month' || mode.aggregations.some((a) => a.fn !== 'count')) return null;
  const [from, to] = [plan.from.getTime(), plan.to.getTime()];
  if (bucketCount(from, to, mode.intervalUnit, mode.intervalSize) !== 1) return null;

  const counts = mode.aggregations.map(() => 0);
  for (const p of partitions) {
    // A partition's time range is its file's first and last row, read back truncated to the
    // millisecond, which the range's bounds are: the comparisons come out as on microseconds.
    if (p.startTime.getTime() < from || p.endTime.getTime() >= to) return null;
    // Statistics of the timestamp column say the writer recorded them for this file.
    if (p.columnStatistics[plan.timestampColumn] === undefined) return null;
    for (const [i, a] of mode.aggregations.entries()) {
      if (a.column === ROWS) {
        counts[i]! += p.rowCount;
        continue;
      }
      // The writer records statistics for every column a file holds: a column without any is one
      // the file does not have (added to the schema later), null in every row.
      const column = p.columnStatistics[a.column];
      if (column === undefined) continue;
      if (column.nulls === undefined) return null;
      counts[i]! += p.rowCount - column.nulls;
    }
  }
  if (partitions.length === 0) return [];
  const row: QueryRow = { [plan.timestampColumn]: isoFromMicrosTrimmed(BigInt(bucketStart(from, mode.intervalUnit, mode.intervalSize)) * 1000n) };
  for (const [i, a] of mode.aggregations.entries()) row[a.alias] = counts[i]!;
  return [row];
}
