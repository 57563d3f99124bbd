import { describe, expect, test } from 'bun:test';
import type { Partition, SchemaField } from '../../src/model/records.ts';
import { mayMatch, prunePartitions } from '../../src/query/prune.ts';
import type { QueryRequest } from '../../src/model/query.ts';
import { bucketCount, planQuery } from '../../src/query/request.ts';
import { refusal } from '../harness/refusal.ts';

const fields: SchemaField[] = [
  { name: 'timestamp', type: 'timestamp', nullable: false },
  { name: 'host', type: 'string', nullable: true },
  { name: 'usage', type: 'double', nullable: true },
  { name: 'count', type: 'integer', nullable: true },
  { name: 'ok', type: 'boolean', nullable: true },
  { name: 'seen_at', type: 'timestamp', nullable: true },
];
const limits = { maxRows: 1000, defaultRows: 100, maxBuckets: 500 };
const range = { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' };
const plan = (request: Partial<QueryRequest>) => planQuery({ timeRange: range, ...request }, fields, 'timestamp', limits);


describe('planning a query', () => {
  test('raw by default: every column but the timestamp, ascending, the default limit', () => {
    const p = plan({});
    expect(p.mode).toEqual({ kind: 'raw', columns: ['host', 'usage', 'count', 'ok', 'seen_at'], order: 'asc', limit: 100 });
    expect([p.from.toISOString(), p.to.toISOString()]).toEqual(['2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z']);
  });

  test('downsampling: aliases default to fn_column, percentile carries its value', () => {
    const p = plan({
      downsample: {
        intervalUnit: 'minute',
        intervalSize: 5,
        aggregations: [
          { fn: 'avg', column: 'usage' },
          { fn: 'percentile', column: 'usage', percentile: 0.95, alias: 'p95' },
          { fn: 'last', column: 'ok' },
        ],
        groupBy: ['host'],
      },
      order: 'desc',
    });
    expect(p.mode).toEqual({
      kind: 'downsample',
      intervalUnit: 'minute',
      intervalSize: 5,
      aggregations: [
        { fn: 'avg', column: 'usage', alias: 'avg_usage' },
        { fn: 'percentile', column: 'usage', alias: 'p95', percentile: 0.95 },
        { fn: 'last', column: 'ok', alias: 'last_ok' },
      ],
      groupBy: ['host'],
      order: 'desc',
      limit: 100,
    });
  });

  test('count without a column counts rows: column "*", alias "count" unless one is given', () => {
    const p = plan({ downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'count' }, { fn: 'count', alias: 'n' }, { fn: 'count', column: 'usage' }] } });
    expect(p.mode.kind === 'downsample' && p.mode.aggregations).toEqual([
      { fn: 'count', column: '*', alias: 'count' },
      { fn: 'count', column: '*', alias: 'n' },
      { fn: 'count', column: 'usage', alias: 'count_usage' },
    ]);
  });

  test('filters are typed per column', () => {
    const p = plan({ filters: { columns: { host: { in: ['a', 'b'] }, usage: { gte: 0.5, lt: 0.9 }, ok: { eq: true }, seen_at: { gt: '2026-01-01T00:00:00Z' } } } });
    expect(p.filters).toEqual([
      { column: 'host', op: 'in', values: ['a', 'b'] },
      { column: 'usage', op: 'gte', value: 0.5 },
      { column: 'usage', op: 'lt', value: 0.9 },
      { column: 'ok', op: 'eq', value: true },
      { column: 'seen_at', op: 'gt', value: '2026-01-01T00:00:00Z' },
    ]);
  });

  test.each([
    ['invalid_time_range', { timeRange: { start: range.end, end: range.start } }],
    ['invalid_time_range', { timeRange: { start: 'yesterday', end: range.end } }],
    ['invalid_timestamp_column', { timestampColumn: 'seen_at' }],
    ['unknown_column', { columns: ['nope'] }],
    ['limit_too_large', { limit: 5000 }],
    ['unknown_column', { filters: { columns: { nope: { eq: 1 } } } }],
    ['invalid_filter', { filters: { columns: { usage: { eq: 'high' } } } }],
    ['invalid_filter', { filters: { columns: { count: { eq: 1.5 } } } }],
    ['invalid_filter', { filters: { columns: { host: { in: [] } } } }],
    ['invalid_filter', { filters: { columns: { ok: { gt: true } } } }],
    ['invalid_filter', { filters: { columns: { seen_at: { lt: 'soon' } } } }],
    ['invalid_aggregation', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'host' }] } }],
    ['invalid_aggregation', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'sum', column: 'ok' }] } }],
    ['invalid_aggregation', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'max' }] } }],
    ['invalid_aggregation', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'count_distinct' }] } }],
    ['duplicate_alias', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'count' }, { fn: 'count' }] } }],
    ['invalid_percentile', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'percentile', column: 'usage' }] } }],
    ['invalid_percentile', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'percentile', column: 'usage', percentile: 1.5 }] } }],
    ['invalid_percentile', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'usage', percentile: 0.5 }] } }],
    ['too_many_buckets', { downsample: { intervalUnit: 'second', aggregations: [{ fn: 'count', column: 'usage' }] } }],
    ['no_aggregations', { downsample: { intervalUnit: 'hour', aggregations: [] } }],
    ['invalid_group_by', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'count', column: 'usage' }], groupBy: ['usage'] } }],
    ['duplicate_alias', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'usage' }, { fn: 'avg', column: 'usage' }] } }],
    ['duplicate_alias', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'usage', alias: 'host' }], groupBy: ['host'] } }],
    ['invalid_alias', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'usage', alias: 'a b' }] } }],
    ['invalid_fill', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'max', column: 'host' }], fill: 'linear' } }],
    ['invalid_fill', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'last', column: 'ok', fill: 1 }] } }],
    ['invalid_fill', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'sum', column: 'count', fill: 0.5 }] } }],
    ['invalid_fill', { downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'max', column: 'seen_at', fill: 'linear' }] } }],
  ] as [string, Partial<QueryRequest>][])('%s: a 400 that says what to change', (code, request) => {
    const error = refusal(() => plan(request));
    expect(error.status).toBe(400);
    expect(error.code as string).toBe(code);
    expect(error.message.length).toBeGreaterThan(15);
  });
});

describe('gap filling', () => {
  test('each aggregation carries its own fill, else downsample.fill; counts and null need no replacement', () => {
    const p = plan({
      downsample: {
        intervalUnit: 'hour',
        aggregations: [
          { fn: 'avg', column: 'usage' },
          { fn: 'max', column: 'usage', fill: 'linear' },
          { fn: 'sum', column: 'count', fill: 3 },
          { fn: 'last', column: 'host', fill: 'null' },
          { fn: 'count', alias: 'n' },
        ],
        fill: 'previous',
      },
    });
    expect(p.mode).toMatchObject({
      fillGaps: true,
      aggregations: [
        { alias: 'avg_usage', fill: 'previous' },
        { alias: 'max_usage', fill: 'linear' },
        { alias: 'sum_count', fill: { value: 3 } },
        { alias: 'last_host' },
        { alias: 'n', fill: 'previous' },
      ],
    });
    expect((p.mode as { aggregations: object[] }).aggregations[3]).not.toHaveProperty('fill');
  });

  test('fill none (or none given) answers only buckets with rows', () => {
    for (const fill of ['none', undefined] as const) {
      const p = plan({ downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'usage' }], ...(fill ? { fill } : {}) } });
      expect(p.mode).not.toHaveProperty('fillGaps');
    }
  });

  test('bucketCount counts every bucket the range touches, months by the UTC calendar', () => {
    const ms = (iso: string) => Date.parse(iso);
    expect(bucketCount(ms('2026-01-01T00:00:00Z'), ms('2026-01-02T00:00:00Z'), 'hour', 1)).toBe(24);
    expect(bucketCount(ms('2026-01-01T00:30:00Z'), ms('2026-01-02T00:30:00Z'), 'hour', 1)).toBe(25);
    expect(bucketCount(ms('2026-01-01T00:00:00Z'), ms('2026-01-01T00:00:00.001Z'), 'week', 1)).toBe(1);
    expect(bucketCount(ms('2025-12-31T23:00:00Z'), ms('2026-03-01T00:00:00Z'), 'month', 1)).toBe(3);
    expect(bucketCount(ms('2025-12-31T23:00:00Z'), ms('2026-03-01T00:00:00Z'), 'month', 12)).toBe(2);
    expect(bucketCount(ms('1969-12-31T23:59:59Z'), ms('1970-01-01T00:00:01Z'), 'second', 1)).toBe(2);
  });
});

describe('pruning by column statistics', () => {
  const stats = { min: 10, max: 20, nulls: 0 };
  test.each([
    [{ op: 'eq', value: 15 }, true],
    [{ op: 'eq', value: 25 }, false],
    [{ op: 'eq', value: 5 }, false],
    [{ op: 'in', values: [1, 2, 19] }, true],
    [{ op: 'in', values: [1, 2, 21] }, false],
    [{ op: 'gt', value: 20 }, false],
    [{ op: 'gt', value: 19 }, true],
    [{ op: 'gte', value: 20 }, true],
    [{ op: 'lt', value: 10 }, false],
    [{ op: 'lte', value: 10 }, true],
    [{ op: 'neq', value: 15 }, true],
  ] as const)('numbers: %o may match: %p', (filter, expected) => {
    expect(mayMatch({ column: 'usage', ...filter } as never, stats, 'double')).toBe(expected);
  });

  test('strings compare by UTF-8 bytes, as DuckDB does', () => {
    const s = { min: 'host_1', max: 'host_5', nulls: 0 };
    expect(mayMatch({ column: 'host', op: 'eq', value: 'host_3' }, s, 'string')).toBe(true);
    expect(mayMatch({ column: 'host', op: 'eq', value: 'host_9' }, s, 'string')).toBe(false);
    // U+1F600 sorts before U+FF61 in UTF-16 code units (JS) but after it in UTF-8 bytes (DuckDB):
    // a JS comparison would prune this partition although DuckDB finds '😀' > '｡'.
    expect(mayMatch({ column: 'host', op: 'gt', value: '\uff61' }, { min: '\u{1f600}', max: '\u{1f600}', nulls: 0 }, 'string')).toBe(true);
    // A truncated string statistic has no max: only the min bounds it.
    expect(mayMatch({ column: 'host', op: 'gt', value: 'zzz' }, { min: 'a', nulls: 0 }, 'string')).toBe(true);
  });

  test('timestamps keep partitions at microsecond boundaries', () => {
    const t = { min: '2026-01-01T00:00:00.000200Z', max: '2026-01-01T00:00:00.000900Z', nulls: 0 };
    expect(mayMatch({ column: 'seen_at', op: 'lt', value: '2026-01-01T00:00:00.000500Z' }, t, 'timestamp')).toBe(true);
    expect(mayMatch({ column: 'seen_at', op: 'gt', value: '2026-01-01T00:00:00.000500Z' }, t, 'timestamp')).toBe(true);
    expect(mayMatch({ column: 'seen_at', op: 'gt', value: '2026-01-01T00:00:01Z' }, t, 'timestamp')).toBe(false);
    expect(mayMatch({ column: 'seen_at', op: 'lt', value: '2025-12-31T23:59:59Z' }, t, 'timestamp')).toBe(false);
  });

  test('nulls: an all-null column passes no comparison; eq null needs nulls; missing statistics keep the partition', () => {
    const allNull = { min: null, max: null, nulls: 7 };
    expect(mayMatch({ column: 'usage', op: 'gt', value: 0 }, allNull, 'double')).toBe(false);
    expect(mayMatch({ column: 'usage', op: 'eq', value: null }, allNull, 'double')).toBe(true);
    expect(mayMatch({ column: 'usage', op: 'eq', value: null }, stats, 'double')).toBe(false);
    expect(mayMatch({ column: 'usage', op: 'gt', value: 1e9 }, undefined, 'double')).toBe(true);
  });

  test('prunePartitions keeps only partitions every filter may match', () => {
    const p = (id: string, min: number, max: number) => ({ id, columnStatistics: { usage: { min, max, nulls: 0 } } }) as unknown as Partition;
    const kept = prunePartitions([p('a', 0, 10), p('b', 11, 20), p('c', 21, 30)], [{ column: 'usage', op: 'gte', value: 12 }, { column: 'usage', op: 'lt', value: 25 }], fields);
    expect(kept.map((x) => x.id)).toEqual(['b', 'c']);
  });
});
