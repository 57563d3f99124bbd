/**
 * The query task through the real worker pool, over Parquet files written by the pool's partition
 * writer from generated rows. Every expected answer is computed here in plain TypeScript from the
 * same rows (bucketing, filtering, every aggregation), never by DuckDB.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { MessageChannel } from 'node:worker_threads';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PartitionField } from '../../src/engine/partition-writer.ts';
import { WorkerPool } from '../../src/engine/pool.ts';
import type { Aggregation, DownsampleMode, IntervalUnit, LatestMode, QueryFilter, RawMode } from '../../src/model/query.ts';
import {
  decodeQueryOutput,
  encodeQueryOutput,
  QueryError,
  type QueryInput,
  type QueryOutput,
  type QueryRow,
  type QueryValue,
  runQuery,
  runQueryStream,
} from '../../src/engine/query.ts';
import { type QueryStreamControl, type QueryStreamMessage, STREAM_WINDOW } from '../../src/engine/query-stream-protocol.ts';
import { buildQuery } from '../../src/engine/query-sql.ts';
import { testDuckDB } from '../harness/duckdb.ts';
import { prng } from '../harness/prng.ts';

// ---------------------------------------------------------------------------------------------
// Generated data: schema version 1 (before February 2026) lacks `note` and `temp`.

const V1: PartitionField[] = [
  { name: 'time', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'value', type: 'double' },
  { name: 'count', type: 'integer' },
  { name: 'ok', type: 'boolean' },
];
const V2: PartitionField[] = [...V1, { name: 'note', type: 'string' }, { name: 'temp', type: 'double' }];
const COLUMNS = ['host', 'value', 'count', 'ok', 'note', 'temp'] as const;

interface Row {
  /** Epoch microseconds. */
  us: number;
  host: string | null;
  value: number | null;
  count: number | null;
  ok: boolean | null;
  note: string | null;
  temp: number | null;
  v2: boolean;
}

const HOSTILE_HOST = `o'brien"; DROP TABLE x; --`;
const HOSTS = ['a', 'b', 'c', HOSTILE_HOST, null];
const NOTES = ['x', 'y', 'z', null];
const usOf = (iso: string) => Date.parse(iso) * 1000;
const START = usOf('2025-12-15T00:00:00Z');
const END = usOf('2026-03-20T00:00:00Z');
const SPLIT = usOf('2026-02-01T00:00:00Z');
const FULL_RANGE = { start: '2025-01-01T00:00:00Z', end: '2027-01-01T00:00:00Z' };


function generateRows(count: number): Row[] {
  const random = prng(42);
  const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)]!;
  const maybe = <T>(value: T, nullShare = 0.1): T | null => (random() < nullShare ? null : value);
  const seen = new Set<number>();
  // Rows exactly on bucket and range boundaries, then random ones; every timestamp is unique so
  // first/last are well defined.
  const times = [usOf('2026-01-01T00:00:00Z'), usOf('2026-01-15T00:00:00Z'), SPLIT, usOf('2026-01-01T00:00:00Z') + 1, usOf('2026-01-01T00:00:00.123Z')];
  while (times.length < count) {
    // Whole seconds, milliseconds and microseconds all occur.
    const grain = pick([1_000_000, 1000, 1]);
    times.push(START + Math.floor((random() * (END - START)) / grain) * grain);
  }
  const rows: Row[] = [];
  for (const us of times) {
    if (seen.has(us)) continue;
    seen.add(us);
    const v2 = us >= SPLIT;
    rows.push({
      us,
      host: pick(HOSTS),
      value: maybe(Math.round(random() * 10_000) / 100),
      count: maybe(Math.floor(random() * 2001) - 1000),
      ok: maybe(random() < 0.5),
      note: v2 ? pick(NOTES) : null,
      temp: v2 ? maybe(Math.round((random() * 60 - 20) * 10) / 10, 0.2) : null,
      v2,
    });
  }
  return rows.sort((x, y) => x.us - y.us);
}

/** ISO-8601 UTC as the query task prints it: milliseconds, or microseconds when present. */
function iso(us: number): string {
  const ms = Math.floor(us / 1000);
  const sub = us - ms * 1000;
  const text = new Date(ms).toISOString();
  return sub === 0 ? text : `${text.slice(0, -1)}${String(sub).padStart(3, '0')}Z`;
}

function ndjson(rows: Row[], fields: PartitionField[]): string {
  return rows
    .map((r) => {
      const out: Record<string, unknown> = { time: iso(r.us) };
      for (const f of fields) if (f.name !== 'time') out[f.name] = r[f.name as keyof Row];
      return JSON.stringify(out);
    })
    .join('\n');
}

// ---------------------------------------------------------------------------------------------
// The independent computation.

const UNIT_US: Record<Exclude<IntervalUnit, 'month'>, number> = {
  second: 1e6,
  minute: 60e6,
  hour: 3600e6,
  day: 86400e6,
  week: 7 * 86400e6,
};

function bucketOf(us: number, unit: IntervalUnit, size: number): number {
  if (unit === 'month') {
    const d = new Date(Math.floor(us / 1000));
    const month = (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
    const start = month - (((month % size) + size) % size);
    return Date.UTC(1970 + Math.floor(start / 12), ((start % 12) + 12) % 12, 1) * 1000;
  }
  const w = BigInt(UNIT_US[unit] * size);
  const t = BigInt(us);
  return Number(t - (((t % w) + w) % w));
}

type Value = string | number | boolean | null;
const valueOf = (row: Row, column: string): Value => (column === 'time' ? row.us : (row[column as keyof Row] as Value));

function compare(a: Value, b: Value): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  return String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0;
}

function quantile(sorted: number[], p: number): number {
  const pos = p * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (pos - lo) * (sorted[hi]! - sorted[lo]!);
}

function aggregate(rows: Row[], a: Aggregation): QueryValue {
  if (a.column === '*') return rows.length;
  const present = rows.filter((r) => valueOf(r, a.column) !== null);
  const values = present.map((r) => valueOf(r, a.column)!);
  const out = (v: Value) => (a.column === 'time' && typeof v === 'number' ? iso(v) : v);
  switch (a.fn) {
    case 'count':
      return values.length;
    case 'count_distinct':
      return new Set(values).size;
    case 'first':
    case 'last': {
      if (present.length === 0) return null;
      const row = present.reduce((best, r) => ((a.fn === 'first' ? r.us < best.us : r.us > best.us) ? r : best));
      return out(valueOf(row, a.column));
    }
    case 'min':
    case 'max':
      if (values.length === 0) return null;
      return out(values.reduce((m, v) => ((a.fn === 'min' ? compare(v, m) < 0 : compare(v, m) > 0) ? v : m)));
  }
  const numbers = values as number[];
  if (numbers.length === 0) return null;
  switch (a.fn) {
    case 'sum':
      return numbers.reduce((s, v) => s + v, 0);
    case 'avg':
      return numbers.reduce((s, v) => s + v, 0) / numbers.length;
    case 'median':
      return quantile([...numbers].sort((x, y) => x - y), 0.5);
    case 'percentile':
      return quantile([...numbers].sort((x, y) => x - y), a.percentile!);
  }
  throw new Error(`no reference for ${a.fn}`);
}

function downsample(rows: Row[], mode: DownsampleMode): QueryRow[] {
  const groups = new Map<string, { bucket: number; keys: Value[]; rows: Row[] }>();
  for (const row of rows) {
    const bucket = bucketOf(row.us, mode.intervalUnit, mode.intervalSize);
    const keys = mode.groupBy.map((c) => valueOf(row, c));
    const id = JSON.stringify([bucket, keys]);
    let group = groups.get(id);
    if (!group) groups.set(id, (group = { bucket, keys, rows: [] }));
    group.rows.push(row);
  }
  const sorted = [...groups.values()].sort((x, y) => {
    if (x.bucket !== y.bucket) return mode.order === 'asc' ? x.bucket - y.bucket : y.bucket - x.bucket;
    for (let i = 0; i < x.keys.length; i++) {
      const [p, q] = [x.keys[i]!, y.keys[i]!];
      if (p === q) continue;
      if (p === null) return 1; // NULLS LAST
      if (q === null) return -1;
      return compare(p, q);
    }
    return 0;
  });
  return sorted.map((g) => {
    const out: QueryRow = { time: iso(g.bucket) };
    mode.groupBy.forEach((c, i) => {
      out[c] = g.keys[i]!;
    });
    for (const a of mode.aggregations) out[a.alias] = aggregate(g.rows, a);
    return out;
  });
}

function rawRow(row: Row, columns: readonly string[]): QueryRow {
  const out: QueryRow = { time: iso(row.us) };
  for (const c of columns) out[c] = valueOf(row, c);
  return out;
}

/** Equal rows; numbers within a relative 1e-9 (DuckDB sums and interpolates in its own order; counts stay exact). */
function expectRows(actual: QueryRow[], expected: QueryRow[]): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const [a, e] = [actual[i]!, expected[i]!];
    expect(Object.keys(a)).toEqual(Object.keys(e));
    for (const key of Object.keys(e)) {
      const [x, y] = [a[key], e[key]];
      if (typeof y === 'number' && typeof x === 'number') {
        if (Math.abs(x - y) > 1e-9 * Math.max(1, Math.abs(y))) {
          throw new Error(`row ${i} ${key}: ${x} != ${y} (${JSON.stringify(e)})`);
        }
      } else if (x !== y) {
        throw new Error(`row ${i} ${key}: ${JSON.stringify(x)} != ${JSON.stringify(y)} (${JSON.stringify(e)})`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

let dir: string;
let pool: WorkerPool;
const rows = generateRows(4000);
let files: string[];
let v1Files: string[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'timestore-query-'));
  pool = await WorkerPool.start(1, join(dir, 'runtime'));
  // A `key=value` directory: hive partitioning must stay off, or `host` would read "zzz".
  const outputDir = join(dir, 'partitions', 'host=zzz');
  mkdirSync(outputDir, { recursive: true });
  writeFileSync(join(dir, 'v1.ndjson'), ndjson(rows.filter((r) => !r.v2), V1));
  writeFileSync(join(dir, 'v2.ndjson'), ndjson(rows.filter((r) => r.v2), V2));
  const write = (name: string, fields: PartitionField[]) =>
    pool.writePartitions({
      inputs: [{ path: join(dir, name), format: 'ndjson', partitionKey: {} }],
      fields,
      timestampColumn: 'time',
      windowSeconds: 7 * 86400,
      outputDir,
      rowGroupSize: 256,
    });
  const old = await write('v1.ndjson', V1);
  const recent = await write('v2.ndjson', V2);
  const byTime = (list: typeof old) => list.sort((x, y) => (x.startTime < y.startTime ? -1 : 1)).map((p) => p.path);
  v1Files = byTime(old);
  files = [...v1Files, ...byTime(recent)];
  expect(files.length).toBeGreaterThan(10);
  expect(old.reduce((n, p) => n + p.rowCount, 0) + recent.reduce((n, p) => n + p.rowCount, 0)).toBe(rows.length);
});

afterAll(async () => {
  await pool?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function input(mode: QueryInput['mode'], filters: QueryFilter[] = [], extra: Partial<QueryInput> = {}): QueryInput {
  return { files, fields: V2, timestampColumn: 'time', timeRange: FULL_RANGE, filters, mode, timeoutMs: 30_000, ...extra };
}

const raw = (order: 'asc' | 'desc' = 'asc', limit = 100_000, columns: readonly string[] = COLUMNS): RawMode => ({ kind: 'raw', columns: [...columns], order, limit });

function allAggregations(): Aggregation[] {
  const list: Aggregation[] = [{ fn: 'count', column: '*', alias: 'rows' }];
  const add = (column: string, fns: Aggregation['fn'][]) => {
    for (const fn of fns) list.push({ fn, column, alias: `${fn}_${column}` });
  };
  for (const column of ['value', 'count', 'temp']) {
    add(column, ['avg', 'min', 'max', 'sum', 'median', 'count', 'count_distinct', 'first', 'last']);
    list.push({ fn: 'percentile', column, alias: `p90_${column}`, percentile: 0.9 });
    list.push({ fn: 'percentile', column, alias: `p25_${column}`, percentile: 0.25 });
  }
  add('host', ['min', 'max', 'count', 'count_distinct', 'first', 'last']);
  add('note', ['min', 'max', 'count', 'count_distinct', 'first', 'last']);
  add('ok', ['min', 'max', 'count', 'first', 'last']);
  add('time', ['min', 'max', 'count']);
  return list;
}

describe('downsampling', () => {
  const intervals: Array<[IntervalUnit, number]> = [
    ['second', 30],
    ['minute', 5],
    ['hour', 1],
    ['hour', 7],
    ['day', 1],
    ['day', 3],
    ['week', 1],
    ['week', 2],
    ['month', 1],
    ['month', 2],
  ];
  for (const [unit, size] of intervals) {
    for (const groupBy of [[], ['host']]) {
      test(`every aggregation, ${size} ${unit}(s)${groupBy.length ? ', by host' : ''}`, async () => {
        const mode: DownsampleMode = {
          kind: 'downsample',
          intervalUnit: unit,
          intervalSize: size,
          aggregations: allAggregations(),
          groupBy,
          order: 'asc',
          limit: 100_000,
        };
        const out = await pool.query(input(mode));
        expect(out.truncated).toBe(false);
        expectRows(out.rows, downsample(rows, mode));
      });
    }
  }

  test('column types: bucket under the timestamp column name, integers as numbers, averages as doubles', async () => {
    const out = await pool.query(
      input({
        kind: 'downsample',
        intervalUnit: 'day',
        intervalSize: 1,
        aggregations: [
          { fn: 'count', column: 'value', alias: 'n' },
          { fn: 'sum', column: 'count', alias: 's' },
          { fn: 'avg', column: 'count', alias: 'a' },
          { fn: 'last', column: 'note', alias: 'l' },
          { fn: 'max', column: 'time', alias: 't' },
          { fn: 'first', column: 'ok', alias: 'o' },
        ],
        groupBy: ['host'],
        order: 'asc',
        limit: 1,
      }),
    );
    expect(out.columns).toEqual([
      { name: 'time', type: 'timestamp' },
      { name: 'host', type: 'string' },
      { name: 'n', type: 'integer' },
      { name: 's', type: 'integer' },
      { name: 'a', type: 'double' },
      { name: 'l', type: 'string' },
      { name: 't', type: 'timestamp' },
      { name: 'o', type: 'boolean' },
    ]);
    expect(out.truncated).toBe(true);
  });

  test('weeks are 7-day buckets from the epoch (Thursdays); months start on the 1st in UTC, counted from 1970-01', () => {
    // Checked against fixed dates, not the reference implementation.
    expect(iso(bucketOf(usOf('2026-01-07T10:00:00Z'), 'week', 1))).toBe('2026-01-01T00:00:00.000Z');
    expect(new Date(bucketOf(usOf('2026-03-18T10:00:00Z'), 'week', 1) / 1000).getUTCDay()).toBe(4);
    expect(iso(bucketOf(usOf('2026-05-07T10:00:00Z'), 'month', 3))).toBe('2026-04-01T00:00:00.000Z');
  });

  test('bucket labels for weeks and months, pre-1970 times included', async () => {
    const path = join(dir, 'early.ndjson');
    const early = ['1969-12-31T23:59:59.999999Z', '1969-12-25T12:00:00Z', '1969-11-30T23:00:00Z', '1970-01-01T00:00:00Z', '2026-01-07T10:00:00Z', '2026-01-08T00:00:00Z'];
    writeFileSync(path, early.map((t, i) => JSON.stringify({ time: t, host: 'e', value: i })).join('\n'));
    const outputDir = join(dir, 'early');
    mkdirSync(outputDir);
    const written = await pool.writePartitions({
      inputs: [{ path, format: 'ndjson', partitionKey: {} }],
      fields: V1,
      timestampColumn: 'time',
      windowSeconds: 100 * 365 * 86400,
      outputDir,
    });
    const run = async (intervalUnit: IntervalUnit, intervalSize: number) => {
      const out = await pool.query(
        input(
          { kind: 'downsample', intervalUnit, intervalSize, aggregations: [{ fn: 'sum', column: 'value', alias: 'v' }], groupBy: [], order: 'asc', limit: 100 },
          [],
          { files: written.map((w) => w.path), fields: V1, timeRange: { start: '1960-01-01', end: '2030-01-01' } },
        ),
      );
      return out.rows.map((r) => `${r.time} ${r.v}`);
    };
    expect(await run('week', 1)).toEqual([
      '1969-11-27T00:00:00.000Z 2',
      '1969-12-25T00:00:00.000Z 1',
      '1970-01-01T00:00:00.000Z 3',
      '2026-01-01T00:00:00.000Z 4',
      '2026-01-08T00:00:00.000Z 5',
    ]);
    expect(await run('month', 1)).toEqual([
      '1969-11-01T00:00:00.000Z 2',
      '1969-12-01T00:00:00.000Z 1',
      '1970-01-01T00:00:00.000Z 3',
      '2026-01-01T00:00:00.000Z 9',
    ]);
    // Month numbers since 1970-01: 1969-11 is -2 and 1969-12 is -1, both in [-5, 0); 2026-01 is 672, in [670, 675).
    expect(await run('month', 5)).toEqual(['1969-08-01T00:00:00.000Z 3', '1970-01-01T00:00:00.000Z 3', '2025-11-01T00:00:00.000Z 9']);
    expect(await run('day', 1)).toEqual([
      '1969-11-30T00:00:00.000Z 2',
      '1969-12-25T00:00:00.000Z 1',
      '1969-12-31T00:00:00.000Z 0',
      '1970-01-01T00:00:00.000Z 3',
      '2026-01-07T00:00:00.000Z 4',
      '2026-01-08T00:00:00.000Z 5',
    ]);
  });

  test('desc order, limit and truncation; groups ascending with NULL last', async () => {
    const mode: DownsampleMode = {
      kind: 'downsample',
      intervalUnit: 'week',
      intervalSize: 1,
      aggregations: [{ fn: 'avg', column: 'value', alias: 'avg' }],
      groupBy: ['host'],
      order: 'desc',
      limit: 7,
    };
    const expected = downsample(rows, { ...mode });
    const out = await pool.query(input(mode));
    expect(out.truncated).toBe(true);
    expectRows(out.rows, expected.slice(0, 7));
    expect(out.rows.slice(0, 5).map((r) => r.host)).toEqual(['a', 'b', 'c', HOSTILE_HOST, null]);
  });

  test('an alias may reuse the name of a field that another aggregation reads', async () => {
    const mode: DownsampleMode = {
      kind: 'downsample',
      intervalUnit: 'week',
      intervalSize: 1,
      aggregations: [
        { fn: 'max', column: 'value', alias: 'count' },
        { fn: 'sum', column: 'count', alias: 'value' },
        { fn: 'min', column: 'count', alias: 'c' },
      ],
      groupBy: [],
      order: 'asc',
      limit: 100,
    };
    expectRows((await pool.query(input(mode))).rows, downsample(rows, mode));
  });

  test('integers beyond 2^53 come out as strings', async () => {
    const path = join(dir, 'big.ndjson');
    const big = Number.MAX_SAFE_INTEGER;
    writeFileSync(path, [{ time: '2026-01-01T00:00:00Z', count: big }, { time: '2026-01-01T00:00:01Z', count: 10 }].map((r) => JSON.stringify(r)).join('\n'));
    const outputDir = join(dir, 'big');
    mkdirSync(outputDir);
    const written = await pool.writePartitions({
      inputs: [{ path, format: 'ndjson', partitionKey: {} }],
      fields: V1,
      timestampColumn: 'time',
      windowSeconds: 86400,
      outputDir,
    });
    const out = await pool.query(
      input(
        { kind: 'downsample', intervalUnit: 'day', intervalSize: 1, aggregations: [{ fn: 'sum', column: 'count', alias: 's' }, { fn: 'max', column: 'count', alias: 'm' }], groupBy: [], order: 'asc', limit: 10 },
        [],
        { files: written.map((w) => w.path), fields: V1 },
      ),
    );
    expect(out.rows).toEqual([{ time: '2026-01-01T00:00:00.000Z', s: '9007199254741001', m: big }]);
  });
});

describe('raw reads', () => {
  test('every row in time order, with the timestamp formatted to the precision it has', async () => {
    const out = await pool.query(input(raw()));
    expect(out.columns.map((c) => `${c.name}:${c.type}`)).toEqual(['time:timestamp', 'host:string', 'value:double', 'count:integer', 'ok:boolean', 'note:string', 'temp:double']);
    expect(out.truncated).toBe(false);
    expectRows(out.rows, rows.map((r) => rawRow(r, COLUMNS)));
    const times = out.rows.map((r) => r.time);
    expect(times).toContain('2026-01-01T00:00:00.000Z');
    expect(times).toContain('2026-01-01T00:00:00.000001Z');
    expect(times).toContain('2026-01-01T00:00:00.123Z');
  });

  test('desc order, limit and truncated', async () => {
    const desc = [...rows].reverse().map((r) => rawRow(r, ['value']));
    let out = await pool.query(input(raw('desc', 10, ['value'])));
    expect(out.truncated).toBe(true);
    expectRows(out.rows, desc.slice(0, 10));
    out = await pool.query(input(raw('asc', 10, ['value'])));
    expectRows(out.rows, rows.slice(0, 10).map((r) => rawRow(r, ['value'])));
    out = await pool.query(input(raw('desc', rows.length, ['value'])));
    expect(out.truncated).toBe(false);
    expectRows(out.rows, desc);
    out = await pool.query(input(raw('asc', 0, [])));
    expect(out).toEqual({ columns: [{ name: 'time', type: 'timestamp' }], rows: [], truncated: true });
  });

  test('the time range is [start, end), offsets honoured, and a missing column of old files reads as NULL', async () => {
    const range = { start: '2026-01-15T02:00:00+02:00', end: '2026-02-01T00:00:00Z' };
    const out = await pool.query(input(raw(), [], { timeRange: range }));
    const expected = rows.filter((r) => r.us >= usOf('2026-01-15T00:00:00Z') && r.us < SPLIT);
    expect(expected[0]!.us).toBe(usOf('2026-01-15T00:00:00Z'));
    expectRows(out.rows, expected.map((r) => rawRow(r, COLUMNS)));
    expect(out.rows.every((r) => r.note === null && r.temp === null)).toBe(true);
  });

  test('columns that no file has (only old files read) are NULL, and aggregate as such', async () => {
    const old = rows.filter((r) => !r.v2);
    let out = await pool.query(input(raw('asc', 100_000, ['note', 'temp']), [], { files: v1Files }));
    expectRows(out.rows, old.map((r) => rawRow(r, ['note', 'temp'])));
    out = await pool.query(
      input(
        {
          kind: 'downsample',
          intervalUnit: 'month',
          intervalSize: 1,
          aggregations: [
            { fn: 'count', column: 'temp', alias: 'n' },
            { fn: 'avg', column: 'temp', alias: 'a' },
            { fn: 'last', column: 'note', alias: 'l' },
            { fn: 'count', column: '*', alias: 'rows' },
          ],
          groupBy: ['note'],
          order: 'asc',
          limit: 100,
        },
        [],
        { files: v1Files },
      ),
    );
    expect(out.columns.map((c) => c.type)).toEqual(['timestamp', 'string', 'integer', 'double', 'string', 'integer']);
    expect(out.rows).toEqual([
      { time: '2025-12-01T00:00:00.000Z', note: null, n: 0, a: null, l: null, rows: old.filter((r) => r.us < usOf('2026-01-01T00:00:00Z')).length },
      { time: '2026-01-01T00:00:00.000Z', note: null, n: 0, a: null, l: null, rows: old.filter((r) => r.us >= usOf('2026-01-01T00:00:00Z')).length },
    ]);
  });
});

describe('filters', () => {
  const cases: Array<[string, QueryFilter[], (r: Row) => boolean]> = [
    ['string eq', [{ column: 'host', op: 'eq', value: 'a' }], (r) => r.host === 'a'],
    ['string neq (NULL is not equal)', [{ column: 'host', op: 'neq', value: 'a' }], (r) => r.host !== 'a'],
    ['string in', [{ column: 'host', op: 'in', values: ['b', HOSTILE_HOST] }], (r) => r.host === 'b' || r.host === HOSTILE_HOST],
    ['string gt', [{ column: 'host', op: 'gt', value: 'b' }], (r) => r.host !== null && r.host > 'b'],
    ['eq null', [{ column: 'host', op: 'eq', value: null }], (r) => r.host === null],
    ['neq null', [{ column: 'host', op: 'neq', value: null }], (r) => r.host !== null],
    ['empty in', [{ column: 'host', op: 'in', values: [] }], () => false],
    ['double gt', [{ column: 'value', op: 'gt', value: 50 }], (r) => r.value !== null && r.value > 50],
    ['double gte', [{ column: 'value', op: 'gte', value: 50.5 }], (r) => r.value !== null && r.value >= 50.5],
    ['double lt', [{ column: 'value', op: 'lt', value: 10 }], (r) => r.value !== null && r.value < 10],
    ['double lte', [{ column: 'value', op: 'lte', value: 10.25 }], (r) => r.value !== null && r.value <= 10.25],
    ['double in', [{ column: 'value', op: 'in', values: [rows[7]!.value ?? 1, rows[9]!.value ?? 2] }], (r) => r.value === (rows[7]!.value ?? 1) || r.value === (rows[9]!.value ?? 2)],
    ['integer eq', [{ column: 'count', op: 'eq', value: rows[3]!.count ?? 0 }], (r) => r.count === (rows[3]!.count ?? 0)],
    ['integer gte/lt', [{ column: 'count', op: 'gte', value: -100 }, { column: 'count', op: 'lt', value: 250 }], (r) => r.count !== null && r.count >= -100 && r.count < 250],
    ['integer in', [{ column: 'count', op: 'in', values: [1, 2, 3, 500, -7] }], (r) => r.count !== null && [1, 2, 3, 500, -7].includes(r.count)],
    ['boolean eq', [{ column: 'ok', op: 'eq', value: true }], (r) => r.ok === true],
    ['boolean neq', [{ column: 'ok', op: 'neq', value: true }], (r) => r.ok !== true],
    ['boolean in', [{ column: 'ok', op: 'in', values: [false] }], (r) => r.ok === false],
    ['timestamp gte (as a filter)', [{ column: 'time', op: 'gte', value: '2026-01-10T00:00:00Z' }], (r) => r.us >= usOf('2026-01-10T00:00:00Z')],
    ['timestamp lt with offset', [{ column: 'time', op: 'lt', value: '2026-01-20T12:00:00+02:00' }], (r) => r.us < usOf('2026-01-20T10:00:00Z')],
    ['timestamp eq with microseconds', [{ column: 'time', op: 'eq', value: '2026-01-01T00:00:00.000001Z' }], (r) => r.us === usOf('2026-01-01T00:00:00Z') + 1],
    ['timestamp in', [{ column: 'time', op: 'in', values: ['2026-01-15T00:00:00Z', '2026-02-01T00:00:00Z'] }], (r) => r.us === usOf('2026-01-15T00:00:00Z') || r.us === SPLIT],
    ['evolved column eq (old rows are NULL)', [{ column: 'note', op: 'eq', value: 'x' }], (r) => r.note === 'x'],
    ['evolved column neq (old rows match)', [{ column: 'note', op: 'neq', value: 'x' }], (r) => r.note !== 'x'],
    ['evolved double and string, ANDed', [{ column: 'temp', op: 'gt', value: 5 }, { column: 'host', op: 'in', values: ['a', 'c'] }], (r) => r.temp !== null && r.temp > 5 && (r.host === 'a' || r.host === 'c')],
  ];
  // With every field known to be in some file, a raw query with a number or boolean filter first
  // asks which files hold a match and reads only those: the same rows either way.
  const known = { fieldsInFiles: V2.map((f) => f.name) };
  for (const [name, filters, predicate] of cases) {
    test(name, async () => {
      const expected = rows.filter(predicate);
      if (name !== 'empty in') expect(expected.length).toBeGreaterThan(0);
      const out = await pool.query(input(raw(), filters));
      expectRows(out.rows, expected.map((r) => rawRow(r, COLUMNS)));
      const narrowed = input(raw(), filters, known);
      expect(buildQuery(narrowed).narrowing !== undefined).toBe(filters.some((f) => ['value', 'count', 'ok', 'temp'].includes(f.column)));
      expectRows((await pool.query(narrowed)).rows, expected.map((r) => rawRow(r, COLUMNS)));
    });
  }

  test('the output says when each statement ran: the files holding a match, then the rows; each bound, run, read in order', async () => {
    const before = performance.timeOrigin + performance.now();
    const narrowed = await pool.queryEncoded(input(raw(), [{ column: 'value', op: 'gt', value: 90 }], known));
    const plain = await pool.queryEncoded(input(raw(), [{ column: 'host', op: 'eq', value: 'a' }], known));
    const after = performance.timeOrigin + performance.now();
    expect(narrowed.statements.map((s) => s.role)).toEqual(['files', 'rows']);
    expect(plain.statements.map((s) => s.role)).toEqual(['rows']);
    const [files, rowsRead] = narrowed.statements;
    for (const s of [...narrowed.statements, ...plain.statements]) {
      expect(s.startedAt).toBeGreaterThanOrEqual(before);
      expect(s.executedAt).toBeGreaterThan(s.startedAt);
      expect(s.endedAt).toBeGreaterThanOrEqual(s.executedAt);
      expect(s.endedAt).toBeLessThanOrEqual(after);
    }
    expect(rowsRead!.startedAt).toBeGreaterThanOrEqual(files!.endedAt);
    expect(narrowed.onThreadMs).toBeGreaterThanOrEqual(rowsRead!.endedAt - files!.startedAt);
    expect(narrowed.onThreadMs).toBeLessThanOrEqual(after - before);
  });

  test('files without a match are not read: only matching rows, in order, limited, also streamed; none matching is no rows', async () => {
    const filters: QueryFilter[] = [{ column: 'value', op: 'gt', value: 90 }];
    const matching = rows.filter((r) => r.value !== null && r.value > 90);
    expect(matching.length).toBeGreaterThan(5);
    let out = await pool.query(input(raw('desc', 5), filters, known));
    expect(out.truncated).toBe(true);
    expectRows(out.rows, [...matching].reverse().slice(0, 5).map((r) => rawRow(r, COLUMNS)));
    const stream = pool.queryStream(input(raw('asc', 100_000), filters, known), 7);
    const streamed: QueryRow[] = [];
    for await (const batch of stream) streamed.push(...batch);
    expectRows(streamed, matching.map((r) => rawRow(r, COLUMNS)));
    out = await pool.query(input(raw(), [{ column: 'value', op: 'gt', value: 1e300 }], known));
    expect(out).toEqual({ columns: (await pool.query(input(raw('asc', 0), [], known))).columns, rows: [], truncated: false });
  });

  test('filters combine with downsampling', async () => {
    const filters: QueryFilter[] = [{ column: 'ok', op: 'eq', value: false }, { column: 'value', op: 'gte', value: 20 }];
    const mode: DownsampleMode = { kind: 'downsample', intervalUnit: 'day', intervalSize: 2, aggregations: allAggregations(), groupBy: ['host'], order: 'asc', limit: 100_000 };
    const out = await pool.query(input(mode, filters));
    expectRows(out.rows, downsample(rows.filter((r) => r.ok === false && r.value !== null && r.value >= 20), mode));
  });
});

describe('first and last of columns without NULLs', () => {
  // The rows where value and count are set: what the files hold when the catalog's statistics say
  // these columns have no NULL, which lets the statement pick one row per group when the whole
  // range is one bucket (lastpoint).
  const filters: QueryFilter[] = [{ column: 'value', op: 'neq', value: null }, { column: 'count', op: 'neq', value: null }];
  const present = rows.filter((r) => r.value !== null && r.count !== null);
  const cases = [
    ['last', 'max', 'asc', ['host']],
    ['first', 'min', 'desc', ['host']],
    ['last', 'max', 'asc', []],
  ] as const;
  for (const [pick, bound, order, groupBy] of cases) {
    test(`${pick} with ${bound} of the time${groupBy.length ? ' per host' : ''}: the ${pick === 'last' ? 'latest' : 'earliest'} row`, async () => {
      const mode: DownsampleMode = {
        kind: 'downsample',
        intervalUnit: 'day',
        intervalSize: 36_500, // every time from 1970 to 2069 in bucket 0
        aggregations: [
          { fn: pick, column: 'value', alias: 'v' },
          { fn: pick, column: 'count', alias: 'c' },
          { fn: bound, column: 'time', alias: 't' },
        ],
        groupBy: [...groupBy],
        order,
        limit: 100_000,
      };
      const picked = input(mode, filters, { nonNullColumns: ['value', 'count'], fieldsInFiles: V2.map((f) => f.name) });
      expect(buildQuery(picked).sql).toContain('QUALIFY row_number()');
      const out = await pool.query(picked);
      expect(out.rows.length).toBe(groupBy.length ? HOSTS.length : 1);
      expectRows(out.rows, downsample(present, mode));
      // Without the promise of no NULLs, with another aggregation, or over several buckets, the statement aggregates.
      expect(buildQuery(input(mode, filters)).sql).not.toContain('QUALIFY');
      expect(buildQuery(input(mode, filters, { nonNullColumns: ['value'] })).sql).not.toContain('QUALIFY');
      const mixed = { ...mode, aggregations: [...mode.aggregations, { fn: 'avg' as const, column: 'value', alias: 'a' }] };
      expect(buildQuery(input(mixed, filters, { nonNullColumns: ['value', 'count'] })).sql).not.toContain('QUALIFY');
      const weekly = { ...mode, intervalUnit: 'week' as const, intervalSize: 1 };
      expect(buildQuery(input(weekly, filters, { nonNullColumns: ['value', 'count'] })).sql).not.toContain('QUALIFY');
      const out2 = await pool.query(input(weekly, filters, { nonNullColumns: ['value', 'count'] }));
      expectRows(out2.rows, downsample(present, weekly));
    });
  }

  test('a range inside one bucket, with sub-millisecond bounds and before 1970', async () => {
    const mode = (start: string, end: string, unit: IntervalUnit, size: number): QueryInput => ({
      ...input(
        { kind: 'downsample', intervalUnit: unit, intervalSize: size, aggregations: [{ fn: 'last', column: 'value', alias: 'v' }], groupBy: [], order: 'asc', limit: 10 },
        [],
        { nonNullColumns: ['value'] },
      ),
      timeRange: { start, end },
    });
    const picks = (start: string, end: string, unit: IntervalUnit = 'hour', size = 1) => buildQuery(mode(start, end, unit, size)).sql.includes('QUALIFY');
    expect(picks('2026-01-01T05:00:00Z', '2026-01-01T06:00:00Z')).toBe(true);
    expect(picks('2026-01-01T05:00:00Z', '2026-01-01T06:00:00.000001Z')).toBe(false);
    expect(picks('2026-01-01T05:59:59.999999Z', '2026-01-01T06:00:00Z')).toBe(true);
    expect(picks('2026-01-01T04:59:59.999999Z', '2026-01-01T05:30:00Z')).toBe(false);
    expect(picks('1969-12-31T23:00:00Z', '1970-01-01T00:00:00Z')).toBe(true);
    expect(picks('1969-12-31T23:30:00Z', '1970-01-01T00:30:00Z')).toBe(false);
    expect(picks('2026-01-01T00:00:00+01:00', '2026-01-01T00:30:00+01:00')).toBe(true);
    expect(picks('2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 'month', 1)).toBe(false); // months always aggregate
  });
});

describe('latest row per series', () => {
  /** The reference: rows in range passing `keep`, the latest (by time, then every field, NULL lowest) of each `by` combination. */
  function latest(from: Row[], by: string[], order: 'asc' | 'desc', keep: (r: Row) => boolean = () => true): Row[] {
    const best = new Map<string, Row>();
    for (const r of from.filter(keep)) {
      const id = JSON.stringify(by.map((c) => valueOf(r, c)));
      const kept = best.get(id);
      if (!kept || r.us > kept.us) best.set(id, r); // timestamps are unique here
    }
    return [...best.values()].sort((x, y) => {
      for (const c of by) {
        const [p, q] = [valueOf(x, c), valueOf(y, c)];
        if (p === q) continue;
        if (p === null) return 1;
        if (q === null) return -1;
        return order === 'asc' ? compare(p, q) : compare(q, p);
      }
      return 0;
    });
  }
  const latestMode = (by: string[], columns: readonly string[], order: 'asc' | 'desc' = 'asc', limit = 100_000): LatestMode => ({
    kind: 'latest',
    by,
    columns: [...columns],
    order,
    limit,
  });
  const expected = (list: Row[], by: string[], columns: readonly string[]) =>
    list.map((r) => rawRow(r, [...by, ...columns.filter((c) => !by.includes(c))]));

  test('per host, per host and note, and of the whole dataset', async () => {
    for (const by of [['host'], ['host', 'note'], []]) {
      const out = await pool.query(input(latestMode(by, COLUMNS)));
      expect(out.columns.map((c) => c.name)).toEqual(['time', ...by, ...COLUMNS.filter((c) => !by.includes(c))]);
      expectRows(out.rows, expected(latest(rows, by, 'asc'), by, COLUMNS));
    }
  });

  test('within a time range, filtered, descending, limited', async () => {
    const timeRange = { start: '2026-01-10T00:00:00Z', end: '2026-02-15T12:34:56.789Z' };
    const [from, to] = [usOf(timeRange.start), usOf(timeRange.end)];
    const filters: QueryFilter[] = [{ column: 'value', op: 'gte', value: 20 }];
    const keep = (r: Row) => r.us >= from && r.us < to && r.value !== null && r.value >= 20;
    const out = await pool.query(input(latestMode(['host'], ['value', 'note'], 'desc'), filters, { timeRange }));
    expectRows(out.rows, expected(latest(rows, ['host'], 'desc', keep), ['host'], ['value', 'note']));
    const limited = await pool.query(input(latestMode(['host'], ['value'], 'asc', 2), filters, { timeRange }));
    expect(limited.truncated).toBe(true);
    expectRows(limited.rows, expected(latest(rows, ['host'], 'asc', keep).slice(0, 2), ['host'], ['value']));
  });

  test('rows of equal time: the one whose fields, in schema order, are greatest (NULL lowest, strings by UTF-8 bytes), whichever file holds it', async () => {
    const fields: PartitionField[] = [
      { name: 'time', type: 'timestamp' },
      { name: 'host', type: 'string' },
      { name: 'value', type: 'double' },
      { name: 'count', type: 'integer' },
      { name: 'ok', type: 'boolean' },
      { name: 'note', type: 'string' },
    ];
    const t = '2026-03-01T00:00:00.000001Z';
    type TieRow = { time: string; host: string; value: number | null; count: number | null; ok: boolean | null; note: string | null };
    const at = (host: string, value: number | null, count: number | null, ok: boolean | null, note: string | null, time = t): TieRow => ({ time, host, value, count, ok, note });
    // Each host's candidates, spread over three files; the winner is named in the comment.
    const sets: TieRow[][] = [
      [at('a', 1, 5, true, 'x'), at('b', null, 1, true, 'x'), at('c', 2, 1, false, '\uff61'), at('d', 2, 1, true, null), at('e', 1, 1, true, 'x', '2026-03-01T00:00:00Z')],
      [at('a', 2, 1, false, null), at('b', 0, null, null, null), at('c', 2, 1, false, '\u{1f600}'), at('d', 2, 1, true, 'z')],
      [at('a', 2, 1, null, 'y'), at('b', -1, 7, true, 'zz'), at('c', 2, 1, false, 'zzz'), at('d', 2, 1, false, 'zz'), at('e', 0, 0, false, null, '2026-03-01T00:00:00.000002Z')],
    ];
    // a: value 2 beats 1; among value 2, count 1 = 1, ok false beats null.  b: value 0 beats -1 and null.
    // c: '\u{1f600}' beats '\uff61' and 'zzz' by UTF-8 bytes (not by UTF-16 code units).  d: ok true beats false; note 'z' beats null.
    // e: the later microsecond wins.
    const winners = [sets[1]![0], sets[1]![1], sets[1]![2], sets[1]![3], sets[2]![4]];
    const tieDir = join(dir, 'ties');
    mkdirSync(tieDir, { recursive: true });
    const tieFiles: string[] = [];
    for (const [i, set] of sets.entries()) {
      writeFileSync(join(tieDir, `${i}.ndjson`), set.map((r) => JSON.stringify(r)).join('\n'));
      mkdirSync(join(tieDir, `out-${i}`));
      const written = await pool.writePartitions({
        inputs: [{ path: join(tieDir, `${i}.ndjson`), format: 'ndjson', partitionKey: {} }],
        fields,
        timestampColumn: 'time',
        windowSeconds: 86400,
        outputDir: join(tieDir, `out-${i}`),
      });
      tieFiles.push(...written.map((w) => w.path));
    }
    for (const files of [tieFiles, [...tieFiles].reverse()]) {
      const out = await pool.query({
        files,
        fields,
        timestampColumn: 'time',
        timeRange: FULL_RANGE,
        filters: [],
        mode: latestMode(['host'], ['value', 'count', 'ok', 'note']),
        timeoutMs: 30_000,
      });
      expect(out.rows).toEqual(winners.map((w) => ({ ...w!, time: w!.time.replace(/(\.\d{3})Z$/, '$1Z') })));
    }
  });

  test('by and columns are checked like every identifier', () => {
    expect(() => buildQuery(input(latestMode(['time'], [])))).toThrow(/by cannot name the timestamp column time/);
    expect(() => buildQuery(input(latestMode(['host', 'host'], [])))).toThrow(/by names host twice/);
    expect(() => buildQuery(input(latestMode(['nope'], [])))).toThrow(/by column nope is not a field/);
  });
});

describe('injection', () => {
  test('hostile values are matched literally, never executed', async () => {
    const hostile = [
      `a' OR '1'='1`,
      `a'; DROP TABLE t; --`,
      `") UNION ALL SELECT * FROM read_parquet('/etc/passwd') --`,
      `$1`,
      `a\\' OR 1=1 --`,
      "a\u0000b",
    ];
    for (const value of hostile) {
      const out = await pool.query(input(raw(), [{ column: 'host', op: 'eq', value }]));
      expect(out.rows).toEqual([]);
      const listed = await pool.query(input(raw(), [{ column: 'host', op: 'in', values: [value, 'zzz'] }]));
      expect(listed.rows).toEqual([]);
    }
    // A stored value full of SQL is found exactly.
    const out = await pool.query(input(raw('asc', 100_000, ['host']), [{ column: 'host', op: 'eq', value: HOSTILE_HOST }]));
    expect(out.rows.length).toBe(rows.filter((r) => r.host === HOSTILE_HOST).length);
    expect(out.rows.length).toBeGreaterThan(0);
  });

  test('hostile time ranges and timestamp values fail as values', async () => {
    for (const start of [`2026-01-01' OR 1=1 --`, `2026-01-01'::TIMESTAMPTZ); DROP TABLE x; --`]) {
      const error = await pool.query(input(raw(), [], { timeRange: { start, end: '2027-01-01' } })).catch((e: unknown) => e);
      expect((error as QueryError).code).toBe('invalid_query');
      expect((error as Error).message).toMatch(/^invalid_query: Conversion Error/);
    }
    // The worker is fine afterwards.
    expect((await pool.query(input(raw('asc', 1, [])))).rows).toHaveLength(1);
  });

  test('identifiers outside the pattern or the schema are refused before any SQL is built', async () => {
    const attempts: QueryInput[] = [
      input(raw('asc', 10, ['value" FROM x; --'])),
      input(raw('asc', 10, ['nosuch'])),
      input(raw(), [{ column: 'host"=host OR "host', op: 'eq', value: 'a' }]),
      input({ kind: 'downsample', intervalUnit: 'day', intervalSize: 1, aggregations: [{ fn: 'avg', column: 'value', alias: 'a" FROM x --' }], groupBy: [], order: 'asc', limit: 10 }),
      input({ kind: 'downsample', intervalUnit: 'day', intervalSize: 1, aggregations: [{ fn: 'avg) FROM x --' as 'avg', column: 'value', alias: 'a' }], groupBy: [], order: 'asc', limit: 10 }),
      input({ kind: 'downsample', intervalUnit: "day' --" as 'day', intervalSize: 1, aggregations: [], groupBy: [], order: 'asc', limit: 10 }),
      input(raw('asc; DROP TABLE x' as 'asc')),
      input(raw(), [{ column: 'host', op: 'like' as 'eq', value: 'a' }]),
      input(raw(), [{ column: 'count', op: 'eq', value: '1 OR 1=1' }]),
      input(raw(), [], { timestampColumn: 'time; --' }),
      input(raw(), [], { fields: [...V2, { name: 'x y', type: 'string' }] }),
      input({ kind: 'downsample', intervalUnit: 'day', intervalSize: 1, aggregations: [{ fn: 'percentile', column: 'value', alias: 'p', percentile: 1.5 }], groupBy: [], order: 'asc', limit: 10 }),
      input({ kind: 'downsample', intervalUnit: 'day', intervalSize: 1, aggregations: [{ fn: 'sum', column: 'host', alias: 's' }], groupBy: [], order: 'asc', limit: 10 }),
      input({ kind: 'downsample', intervalUnit: 'day', intervalSize: 1.5, aggregations: [], groupBy: [], order: 'asc', limit: 10 }),
    ];
    for (const attempt of attempts) {
      const error = await pool.query(attempt).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QueryError);
      expect((error as QueryError).code).toBe('invalid_query');
    }
  });

  test('file paths are bound values: quotes in a path are harmless', async () => {
    const quoted = join(dir, `it's "quoted"; DROP TABLE x; --`, 'k=v');
    mkdirSync(quoted, { recursive: true });
    writeFileSync(join(dir, 'q.ndjson'), JSON.stringify({ time: '2026-01-01T00:00:00Z', host: 'q', value: 1 }));
    const [file] = await pool.writePartitions({
      inputs: [{ path: join(dir, 'q.ndjson'), format: 'ndjson', partitionKey: {} }],
      fields: V1,
      timestampColumn: 'time',
      windowSeconds: 86400,
      outputDir: quoted,
    });
    const out = await pool.query(input(raw('asc', 10, ['host', 'value']), [], { files: [file!.path], fields: V1 }));
    expect(out.rows).toEqual([{ time: '2026-01-01T00:00:00.000Z', host: 'q', value: 1 }]);
  });
});

describe('limits', () => {
  let big: string;

  beforeAll(async () => {
    big = join(dir, 'big.parquet');
    const db = await testDuckDB();
    await db.run(
      `COPY (SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i * 1000) AS time, 'h' || (i % 1000) AS host, random() AS value
             FROM range(2000000) t(i)) TO $path (FORMAT parquet)`,
      { path: big },
    );
  });

  const heavy = (extra: Partial<QueryInput>): QueryInput =>
    input(
      {
        kind: 'downsample',
        intervalUnit: 'second',
        intervalSize: 1,
        aggregations: [
          { fn: 'median', column: 'value', alias: 'm' },
          { fn: 'count_distinct', column: 'value', alias: 'd' },
        ],
        groupBy: ['host'],
        order: 'asc',
        limit: 10,
      },
      [],
      { files: Array(20).fill(big), fields: V1, ...extra },
    );

  test('a runaway query is interrupted with query_timeout, and the worker answers the next one', async () => {
    const started = performance.now();
    const error = await pool.query(heavy({ timeoutMs: 50 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueryError);
    expect((error as QueryError).code).toBe('query_timeout');
    expect((error as QueryError).message).toMatch(/^query_timeout: /);
    expect(performance.now() - started).toBeLessThan(5000);
    expect((await pool.query(input(raw('asc', 1, [])))).rows).toHaveLength(1);
  });

  test('a query larger than its memory limit spills to the runtime directory instead of failing', async () => {
    const wide = join(dir, 'wide.parquet');
    const db = await testDuckDB();
    await db.run(
      `COPY (SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i) AS time, 'host-' || i AS host, i::DOUBLE AS value
             FROM range(1000000) t(i)) TO $path (FORMAT parquet)`,
      { path: wide },
    );
    // A million groups of one row each: the hash table outgrows 48 MiB and goes to disk.
    const out = await pool.query({
      ...input(
        { kind: 'downsample', intervalUnit: 'day', intervalSize: 1, aggregations: [{ fn: 'sum', column: 'value', alias: 's' }], groupBy: ['host'], order: 'asc', limit: 1 },
        [],
        { files: [wide], fields: V1 },
      ),
      memoryLimitBytes: 48 * 1024 * 1024,
    });
    expect(out.rows).toEqual([{ time: '2026-01-01T00:00:00.000Z', host: 'host-0', s: 0 }]);
    expect(out.truncated).toBe(true);
  });

  test('running out of the memory limit is query_memory_limit; the limit is lifted afterwards', async () => {
    // 2 M distinct doubles in one hash set: tens of MB.
    const distinct = heavy({
      files: [big],
      mode: { kind: 'downsample', intervalUnit: 'day', intervalSize: 1, aggregations: [{ fn: 'count_distinct', column: 'value', alias: 'd' }], groupBy: [], order: 'asc', limit: 1 },
    });
    const error = await pool.query({ ...distinct, memoryLimitBytes: 8 * 1024 * 1024 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QueryError);
    expect((error as QueryError).code).toBe('query_memory_limit');
    expect((await pool.query(distinct)).rows).toEqual([{ time: '2026-01-01T00:00:00.000Z', d: 2_000_000 }]);
    expect((await pool.query({ ...distinct, memoryLimitBytes: 1024 * 1024 * 1024 })).rows).toHaveLength(1);
  });
});

describe('streaming', () => {
  async function collect(input: QueryInput, batchRows: number) {
    const stream = pool.queryStream(input, batchRows);
    const columns = await stream.columns();
    const batches: QueryRow[][] = [];
    for await (const batch of stream) batches.push(batch);
    return { columns, batches, summary: stream.summary };
  }

  test('the same rows as query(), in batches', async () => {
    for (const mode of [
      raw('desc'),
      { kind: 'downsample', intervalUnit: 'hour', intervalSize: 6, aggregations: allAggregations(), groupBy: ['host'], order: 'asc', limit: 100_000 } as DownsampleMode,
    ]) {
      const whole: QueryOutput = await pool.query(input(mode));
      const { columns, batches, summary } = await collect(input(mode), 333);
      expect(columns).toEqual(whole.columns);
      expect(batches.length).toBe(Math.ceil(whole.rows.length / 333));
      expect(batches.slice(0, -1).every((b) => b.length === 333)).toBe(true);
      expect(batches.flat()).toEqual(whole.rows);
      expect(summary).toEqual({ rowCount: whole.rows.length, truncated: false });
    }
  });

  test('limit and truncation', async () => {
    const { batches, summary } = await collect(input(raw('asc', 1000)), 300);
    expect(batches.map((b) => b.length)).toEqual([300, 300, 300, 100]);
    expect(summary).toEqual({ rowCount: 1000, truncated: true });
    expectRows(batches.flat(), rows.slice(0, 1000).map((r) => rawRow(r, COLUMNS)));
  });

  test('leaving early cancels the query and frees the worker', async () => {
    const stream = pool.queryStream(input(raw()), 10);
    let seen = 0;
    for await (const batch of stream) {
      seen += batch.length;
      if (seen >= 20) break;
    }
    expect(seen).toBe(20);
    expect(stream.summary).toBeUndefined();
    // One worker: this only answers once the cancelled stream has let go of it.
    expect((await pool.query(input(raw('asc', 3, [])))).rows).toHaveLength(3);
  });

  test('the worker stays at most two batches ahead of a consumer that does not take them', async () => {
    // The task itself, on a DuckDB connection of the test thread, to watch the port's traffic.
    const { port1, port2 } = new MessageChannel();
    const received: QueryStreamMessage[] = [];
    port1.on('message', (m: QueryStreamMessage) => received.push(m));
    const rowsOf = () => received.filter((m) => m.type === 'rows').length;
    const until = async (count: number) => {
      for (let waited = 0; rowsOf() < count && waited < 10_000; waited += 10) await Bun.sleep(10);
      await Bun.sleep(200); // time to run further ahead, if it would
    };
    const task = runQueryStream(await testDuckDB(), { ...input(raw()), port: port2, batchRows: 10 });
    await until(STREAM_WINDOW);
    expect(received[0]).toEqual({ type: 'columns', columns: expect.any(Array) });
    expect(rowsOf()).toBe(STREAM_WINDOW);
    port1.postMessage({ type: 'ack' } satisfies QueryStreamControl);
    await until(STREAM_WINDOW + 1);
    expect(rowsOf()).toBe(STREAM_WINDOW + 1);
    port1.postMessage({ type: 'cancel' } satisfies QueryStreamControl);
    expect(await task).toEqual({ rowCount: expect.any(Number), truncated: false, cancelled: true });
    port1.close();
  });

  test('a consumer that goes silent is given up on (query_stream_abandoned)', async () => {
    const { port1, port2 } = new MessageChannel();
    port1.on('message', () => {});
    const error = await runQueryStream(await testDuckDB(), { ...input(raw()), port: port2, batchRows: 10, idleTimeoutMs: 100 }).catch((e: unknown) => e);
    expect((error as QueryError).code).toBe('query_stream_abandoned');
    port1.close();
  });

  test('failures reach the consumer', async () => {
    const stream = pool.queryStream(input(raw(), [{ column: 'nosuch', op: 'eq', value: 1 }]), 10);
    const error = await stream.columns().catch((e: unknown) => e);
    expect((error as QueryError).code).toBe('invalid_query');
    const iterated = await (async () => {
      for await (const _ of stream) return 'a batch';
    })().catch((e: unknown) => e);
    expect((iterated as QueryError).code).toBe('invalid_query');
  });
});

describe('files of one schema version', () => {
  test('oneSchema reads them without combining by name: the same rows, and the SQL says so', async () => {
    const recent = files.filter((f) => !v1Files.includes(f));
    const base = input(raw(), [], { files: recent });
    expect(buildQuery(base).sql).toContain('union_by_name = true');
    expect(buildQuery({ ...base, oneSchema: true }).sql).not.toContain('union_by_name');
    const byName = await pool.query(base);
    expect(byName.rows.length).toBeGreaterThan(0);
    expect(await pool.query({ ...base, oneSchema: true })).toEqual(byName);
  });
});

describe('the output as the worker sends it', () => {
  test('the head and the rows come apart at the first newline, whatever the rows hold', () => {
    const output = {
      columns: [{ name: 'note', type: 'string' }],
      truncated: true,
      rows: [{ note: 'line one\nline two' }, { note: '{"rows":[]}\n' }, { note: null }],
      statements: [{ role: 'rows' as const, startedAt: 1.5, executedAt: 2.25, endedAt: 3 }],
      onThreadMs: 2.5,
    };
    const decoded = decodeQueryOutput(encodeQueryOutput(output));
    expect(decoded).toMatchObject({ columns: output.columns, truncated: true, rowCount: 3, statements: output.statements, onThreadMs: 2.5 });
    expect(JSON.parse(new TextDecoder().decode(decoded.rowsJson))).toEqual(output.rows);
  });
});

describe('prepared statements kept per connection', () => {
  test('a statement of the same text is prepared once and bound anew each time (other files, other values, the right rows); one that failed is not kept, one read whole is even when its reader stopped at the limit', async () => {
    const db = await testDuckDB();
    let prepares = 0;
    const counted = new Proxy(db, {
      get(target, key) {
        if (key === 'prepare') {
          return (sql: string) => {
            prepares += 1;
            return target.prepare(sql);
          };
        }
        const value = Reflect.get(target, key);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const mode: DownsampleMode = {
      kind: 'downsample',
      intervalUnit: 'day',
      intervalSize: 7,
      aggregations: [
        { fn: 'count', column: '*', alias: 'rows' },
        { fn: 'max', column: 'value', alias: 'peak' },
      ],
      groupBy: [],
      order: 'asc',
      limit: 100_000,
    };
    const hostIs = (host: string): QueryFilter[] => [{ column: 'host', op: 'eq', value: host }];
    const asked: Array<[string[], string, (r: Row) => boolean]> = [
      [files, 'a', (r) => r.host === 'a'],
      [v1Files, 'b', (r) => !r.v2 && r.host === 'b'],
      [files, HOSTILE_HOST, (r) => r.host === HOSTILE_HOST],
    ];
    for (const [inFiles, host, matches] of asked) {
      const out = await runQuery(counted, input(mode, hostIs(host), { files: inFiles }));
      expectRows(out.rows, downsample(rows.filter(matches), mode));
    }
    expect(prepares).toBe(1);
    // A raw read is another text, kept beside the first.
    for (const host of ['a', 'c']) {
      expectRows((await runQuery(counted, input(raw(), hostIs(host)))).rows, rows.filter((r) => r.host === host).map((r) => rawRow(r, COLUMNS)));
    }
    expect(prepares).toBe(2);
    // A file that is gone fails the statement, which is dropped: the next one is prepared again.
    const failed = await runQuery(counted, input(mode, hostIs('a'), { files: [...files, join(dir, 'gone.parquet')] })).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(Error);
    expectRows((await runQuery(counted, input(mode, hostIs('c')))).rows, downsample(rows.filter((r) => r.host === 'c'), mode));
    expect(prepares).toBe(3);
    // Stopped at its limit: the answer's statement ran to its end at once (materialized), so nothing
    // is left open and it is kept; the next one reuses it with other values.
    expect((await runQuery(counted, input(raw('asc', 2), hostIs('a')))).truncated).toBe(true);
    expectRows((await runQuery(counted, input(raw(), hostIs('b')))).rows, rows.filter((r) => r.host === 'b').map((r) => rawRow(r, COLUMNS)));
    expect(prepares).toBe(3);
  });
});

describe('threads', () => {
  const threadsOf = async (db: Awaited<ReturnType<typeof testDuckDB>>) => Number((await db.runAndReadAll(`SELECT current_setting('threads')`)).getRows()[0]![0]);

  test('a query runs on the DuckDB threads it is given (default one), with the same rows either way', async () => {
    const db = await testDuckDB();
    const one = await runQuery(db, input(raw()));
    expect(await threadsOf(db)).toBe(1);
    const two = await runQuery(db, input(raw(), [], { threads: 2 }));
    expect(await threadsOf(db)).toBe(2);
    expect({ ...two, statements: [] }).toEqual({ ...one, statements: [] });
    await runQuery(db, input(raw()));
    expect(await threadsOf(db)).toBe(1);
  });

  test('the pool runs a lone raw read or downsample that reads rows in any order on as many DuckDB threads as its query lane has, anything else on one', async () => {
    const lane = { threads: 1, maxQueue: 8 };
    const twoQueryThreads = await WorkerPool.start({ lanes: { ingest: lane, query: { threads: 2, maxQueue: 8 }, stream: lane, lifecycle: lane } }, join(dir, 'runtime'));
    try {
      const sum = (aggregations: Aggregation[]): DownsampleMode =>
        ({ kind: 'downsample', intervalUnit: 'hour', intervalSize: 1, aggregations, groupBy: ['host'], order: 'asc', limit: 100_000 }) as DownsampleMode;
      const anyOrder = input(sum([{ fn: 'sum', column: 'count', alias: 'n' }, { fn: 'max', column: 'temp', alias: 't' }]));
      const alone = await twoQueryThreads.queryEncoded(anyOrder);
      expect(alone.threads).toBe(2);
      // The same rows as on one thread (sums of integers are exact in any order).
      const [, one] = await Promise.all([twoQueryThreads.queryEncoded(input(raw('asc', 3))), twoQueryThreads.queryEncoded(anyOrder)]);
      expect(one.threads).toBe(1);
      expect(new TextDecoder().decode(one.rowsJson)).toBe(new TextDecoder().decode(alone.rowsJson));
      // A raw read alone too, with the rows of one thread; first/last pick among rows by the order they are read in.
      const rawAlone = await twoQueryThreads.queryEncoded(input(raw()));
      expect(rawAlone.threads).toBe(2);
      expect(new TextDecoder().decode(rawAlone.rowsJson)).toBe(new TextDecoder().decode((await pool.queryEncoded(input(raw()))).rowsJson));
      expect((await twoQueryThreads.queryEncoded(input(sum([{ fn: 'last', column: 'value', alias: 'v' }])))).threads).toBe(1);
      // Beside a stream that is still open, on one.
      const stream = twoQueryThreads.queryStream(input(raw()), 10);
      const iterator = stream[Symbol.asyncIterator]();
      await iterator.next();
      expect((await twoQueryThreads.queryEncoded(anyOrder)).threads).toBe(1);
      await iterator.return?.();
      // Once the stream's task has let go of its thread, alone again.
      let after = await twoQueryThreads.queryEncoded(anyOrder);
      for (let waited = 0; after.threads === 1 && waited < 5_000; waited += 20) {
        await Bun.sleep(20);
        after = await twoQueryThreads.queryEncoded(anyOrder);
      }
      expect(after.threads).toBe(2);
      // A pool with one query thread (TIMESTORE_WORKER_THREADS=1) never gives a query more.
      expect((await pool.queryEncoded(anyOrder)).threads).toBe(1);
    } finally {
      await twoQueryThreads.close();
    }
  });

  test('a query that runs out of memory on several threads runs again on one, which spills', async () => {
    const wide = join(dir, 'wide-threads.parquet');
    await (await testDuckDB()).run(
      `COPY (SELECT TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i) AS time, 'host-' || i AS host, i::DOUBLE AS value
             FROM range(1000000) t(i)) TO $path (FORMAT parquet)`,
      { path: wide },
    );
    const lane = { threads: 1, maxQueue: 8 };
    const twoQueryThreads = await WorkerPool.start({ lanes: { ingest: lane, query: { threads: 2, maxQueue: 8 }, stream: lane, lifecycle: lane } }, join(dir, 'runtime'));
    try {
      // A million groups under 24 MiB: two threads run out of memory (5 of 5 alone), one spills.
      const out = await twoQueryThreads.queryEncoded({
        ...input(
          { kind: 'downsample', intervalUnit: 'day', intervalSize: 1, aggregations: [{ fn: 'sum', column: 'value', alias: 's' }], groupBy: ['host'], order: 'asc', limit: 1 },
          [],
          { files: [wide], fields: V1 },
        ),
        memoryLimitBytes: 24 * 1024 * 1024,
      });
      expect(out.threads).toBe(1);
      expect(JSON.parse(new TextDecoder().decode(out.rowsJson))).toEqual([{ time: '2026-01-01T00:00:00.000Z', host: 'host-0', s: 0 }]);
    } finally {
      await twoQueryThreads.close();
    }
  });

  test('a thread count outside 1-256 is invalid_query', async () => {
    for (const threads of [0, 257, 1.5]) {
      const error = await runQuery(await testDuckDB(), input(raw(), [], { threads })).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QueryError);
      expect((error as QueryError).code).toBe('invalid_query');
    }
  });
});

describe('warming the query threads', () => {
  test('each query thread runs the made-up queries and reads the footers it is given (a missing file skipped), never while a query is in flight, leaving no file behind', async () => {
    const lane = { threads: 1, maxQueue: 8 };
    const runtime = join(dir, 'runtime-warm');
    const twoQueryThreads = await WorkerPool.start({ lanes: { ingest: lane, query: { threads: 2, maxQueue: 8 }, stream: lane, lifecycle: lane } }, runtime);
    try {
      expect(twoQueryThreads.warmUpStats()).toEqual({ threadsCompiled: 0, footersRead: 0 });
      const warmed = await twoQueryThreads.warmQueryThreads({ compile: true, files: [files[0]!, files[1]!, join(dir, 'missing.parquet')] });
      expect(warmed).toHaveLength(2);
      expect(new Set(warmed.map((w) => w.threadId)).size).toBe(2);
      for (const w of warmed) {
        expect(w.queries).toBeGreaterThan(0);
        expect(w.footers).toBe(2);
      }
      expect(twoQueryThreads.warmUpStats()).toEqual({ threadsCompiled: 2, footersRead: 4 });
      // Footers alone: no made-up queries.
      const footersOnly = await twoQueryThreads.warmQueryThreads({ compile: false, files: [files[2]!] });
      expect(footersOnly.map((w) => w.queries)).toEqual([0, 0]);
      expect(twoQueryThreads.warmUpStats()).toEqual({ threadsCompiled: 2, footersRead: 6 });
      // Not while a query is in flight.
      const [answer, busy] = await Promise.all([twoQueryThreads.query(input(raw())), twoQueryThreads.warmQueryThreads({ compile: true, files: [files[3]!] })]);
      expect(answer.rows.length).toBeGreaterThan(0);
      expect(busy).toEqual([]);
      expect(twoQueryThreads.warmUpStats()).toEqual({ threadsCompiled: 2, footersRead: 6 });
      expect(readdirSync(join(runtime, 'duckdb-spill'), { recursive: true }).filter((f) => String(f).endsWith('.parquet'))).toEqual([]);
      // Warmed threads answer as any other.
      for (const mode of [raw(), { kind: 'downsample', intervalUnit: 'hour', intervalSize: 1, aggregations: allAggregations(), groupBy: ['host'], order: 'asc', limit: 100_000 } as DownsampleMode]) {
        expect(await twoQueryThreads.query(input(mode))).toEqual(await pool.query(input(mode)));
      }
    } finally {
      await twoQueryThreads.close();
    }
  });
});
