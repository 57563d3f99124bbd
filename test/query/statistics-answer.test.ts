import { describe, expect, test } from 'bun:test';
import type { QueryRequest } from '../../src/model/query.ts';
import type { ColumnStatistics, Partition, SchemaField } from '../../src/model/records.ts';
import { planQuery } from '../../src/query/request.ts';
import { countsFromStatistics } from '../../src/query/statistics-answer.ts';

const fields: SchemaField[] = [
  { name: 'timestamp', type: 'timestamp', nullable: false },
  { name: 'host', type: 'string', nullable: true },
  { name: 'usage', type: 'double', nullable: true },
  { name: 'note', type: 'string', nullable: true },
];
const limits = { maxRows: 1000, defaultRows: 100, maxBuckets: 500 };
const DAY = { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' };
const COUNTS = [
  { fn: 'count' as const, alias: 'rows' },
  { fn: 'count' as const, column: 'usage' },
  { fn: 'count' as const, column: 'note', alias: 'notes' },
  { fn: 'count' as const, column: 'timestamp' },
];
const plan = (request: Partial<QueryRequest> = {}) =>
  planQuery({ timeRange: DAY, downsample: { intervalUnit: 'day', intervalSize: 1, aggregations: COUNTS }, ...request }, fields, 'timestamp', limits);

/** A Date as the catalog reads a timestamptz back: truncated to the millisecond. */
const catalogTime = (iso: string) => new Date(`${iso.slice(0, 23)}Z`);

/** A partition of `rows` rows from `first` to `last` (ISO, six fraction digits) with these column statistics. */
function partition(first: string, last: string, rows: number, columns: Record<string, ColumnStatistics> = {}): Partition {
  return {
    startTime: catalogTime(first),
    endTime: catalogTime(last),
    rowCount: rows,
    columnStatistics: { timestamp: { min: first, max: last, nulls: 0 }, ...columns },
  } as unknown as Partition;
}
const files = [
  partition('2026-01-01T00:00:00.000000Z', '2026-01-01T05:59:59.999999Z', 100, { usage: { min: 0, max: 1, nulls: 7 }, host: { min: 'a', max: 'b', nulls: 0 } }),
  // written before `note` was added: its rows have none
  partition('2026-01-01T06:00:00.000000Z', '2026-01-01T23:59:59.999999Z', 50, { usage: { min: null, max: null, nulls: 50 } }),
  partition('2026-01-01T12:00:00.000000Z', '2026-01-01T12:00:00.000000Z', 3, { usage: { min: 2, max: 2, nulls: 0 }, note: { min: 'x', max: 'y', nulls: 1 } }),
];

describe('counts from the partitions statistics', () => {
  test('rows, non-null values of a column (none for a column a file lacks), and of the timestamp, in the range bucket', () => {
    expect(countsFromStatistics(plan(), files)).toEqual([{ timestamp: '2026-01-01T00:00:00.000Z', rows: 153, count_usage: 96, notes: 2, count_timestamp: 153 }]);
  });

  test('the bucket is the one the range falls in, as the engine aligns it', () => {
    const p = plan({ downsample: { intervalUnit: 'day', intervalSize: 36_500, aggregations: [{ fn: 'count', alias: 'n' }] } });
    expect(countsFromStatistics(p, files)).toEqual([{ timestamp: '1970-01-01T00:00:00.000Z', n: 153 }]);
    const week = plan({ timeRange: { start: '2026-01-02T00:00:00Z', end: '2026-01-03T00:00:00Z' }, downsample: { intervalUnit: 'week', intervalSize: 1, aggregations: [{ fn: 'count', alias: 'n' }] } });
    expect(countsFromStatistics(week, [partition('2026-01-02T01:00:00.000000Z', '2026-01-02T02:00:00.000000Z', 4)])).toEqual([{ timestamp: '2026-01-01T00:00:00.000Z', n: 4 }]);
  });

  test('no partition: no rows', () => {
    expect(countsFromStatistics(plan(), [])).toEqual([]);
  });

  test('the range edges: a file from the start is counted; one whose last row is at the end, or whose first is before the start, is scanned', () => {
    const at = (first: string, last: string) => countsFromStatistics(plan(), [partition(first, last, 1, { usage: { min: 1, max: 1, nulls: 0 } })]);
    expect(at('2026-01-01T00:00:00.000000Z', '2026-01-01T23:59:59.999999Z')).not.toBeNull();
    expect(at('2026-01-01T00:00:00.000000Z', '2026-01-02T00:00:00.000000Z')).toBeNull();
    expect(at('2025-12-31T23:59:59.999999Z', '2026-01-01T01:00:00.000000Z')).toBeNull();
  });

  test('left to the scan: a file without statistics, a column without a null count', () => {
    const unrecorded = { ...partition('2026-01-01T01:00:00.000000Z', '2026-01-01T02:00:00.000000Z', 5), columnStatistics: {} };
    expect(countsFromStatistics(plan(), [unrecorded])).toBeNull();
    expect(countsFromStatistics(plan(), [partition('2026-01-01T01:00:00.000000Z', '2026-01-01T02:00:00.000000Z', 5, { usage: { min: 1, max: 2 } })])).toBeNull();
  });

  test('left to the scan: other aggregations, groupBy, filters, gap filling, several buckets, months', () => {
    const downsample = { intervalUnit: 'day' as const, intervalSize: 1, aggregations: COUNTS };
    for (const request of [
      { downsample: { ...downsample, aggregations: [...COUNTS, { fn: 'max' as const, column: 'usage' }] } },
      { downsample: { ...downsample, groupBy: ['host'] } },
      { downsample, filters: { columns: { usage: { gt: 0 } } } },
      { downsample: { ...downsample, fill: 'null' } },
      { downsample: { ...downsample, intervalUnit: 'hour' as const } },
      { downsample: { ...downsample, intervalUnit: 'month' as const } },
      { timeRange: { start: '2026-01-01T12:00:00Z', end: '2026-01-02T12:00:00Z' }, downsample },
      { downsample: undefined },
    ] as Partial<QueryRequest>[]) {
      expect([request, countsFromStatistics(plan(request), files)]).toEqual([request, null]);
    }
  });
});
