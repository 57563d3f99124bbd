/**
 * TSBS cpu-only query shapes as timestore query requests (POST /datasets/:slug/query), each
 * instance drawn with a seeded PRNG as TSBS draws them: random hosts (distinct) and a random start
 * (whole minutes) such that the range fits in the data.
 *
 * | shape | TSBS | here |
 * | --- | --- | --- |
 * | single-groupby-1-1-1 | max(usage_user) per minute, 1 host, 1 h | downsample minute, max, `hostname eq` |
 * | single-groupby-5-8-1 | max of 5 metrics per minute, 8 hosts, 1 h | downsample minute, 5 × max, `hostname in` (8) |
 * | cpu-max-all-8 | max of all 10 metrics per hour, 8 hosts, 8 h | downsample hour, 10 × max, `hostname in` (8) |
 * | double-groupby-1 | avg(usage_user) per hour and host, all hosts, 12 h | downsample hour, avg, groupBy hostname |
 * | high-cpu-1 | every row with usage_user > 90, 1 host, 12 h | raw (all columns), `usage_user gt 90`, `hostname eq` |
 * | lastpoint | the latest row of every host | downsample over the whole range in ONE bucket (36,500 days: every time from 1970 to 2069 falls in bucket 0), groupBy hostname, `last` of the 10 metrics and `max` of the timestamp |
 *
 * lastpoint is the nearest the API can express: `last(x)` is DuckDB `arg_max(x, timestamp)`, so
 * the answer is the latest value of each metric per host (the 9 other tags, constant per host, are
 * not returned; add them to groupBy to get them).
 */
import { FIELDS } from '../ingest/tsbs.ts';

export interface QueryBody {
  timeRange: { start: string; end: string };
  columns?: string[];
  filters?: { columns?: Record<string, Record<string, unknown>> };
  downsample?: {
    intervalUnit: string;
    intervalSize?: number;
    aggregations: { fn: string; column: string; alias?: string }[];
    groupBy?: string[];
  };
  limit?: number;
  order?: 'asc' | 'desc';
}

export interface Space {
  hosts: number;
  /** First timestamp of the data (ms) and its length in hours. */
  startMs: number;
  hours: number;
  /** The dataset's timestamp column (default `timestamp`; the peers benchmark's data calls it `ts`). */
  timestampColumn?: string;
}

export interface Shape {
  name: string;
  /** Length of the time range in hours (lastpoint: the whole data). */
  rangeHours: (space: Space) => number;
  body: (space: Space, random: () => number, range: { start: Date; end: Date }) => QueryBody;
}

const MINUTE = 60_000;
const HOUR = 3_600_000;

export function pickHosts(random: () => number, hosts: number, n: number): string[] {
  const chosen = new Set<number>();
  while (chosen.size < Math.min(n, hosts)) chosen.add(Math.floor(random() * hosts));
  return [...chosen].map((h) => `host_${h}`);
}

/** A random range of `hours` inside the data, starting on a whole minute. */
export function randomRange(random: () => number, space: Space, hours: number): { start: Date; end: Date } {
  const slots = Math.max(0, Math.floor(((space.hours - hours) * HOUR) / MINUTE));
  const start = space.startMs + Math.floor(random() * (slots + 1)) * MINUTE;
  return { start: new Date(start), end: new Date(start + hours * HOUR) };
}

const iso = (d: Date) => d.toISOString();
const hostFilter = (hosts: string[]) => ({ hostname: hosts.length === 1 ? { eq: hosts[0] } : { in: hosts } });

export const SHAPES: Shape[] = [
  {
    name: 'single-groupby-1-1-1',
    rangeHours: () => 1,
    body: (space, random, range) => ({
      timeRange: { start: iso(range.start), end: iso(range.end) },
      filters: { columns: hostFilter(pickHosts(random, space.hosts, 1)) },
      downsample: { intervalUnit: 'minute', aggregations: [{ fn: 'max', column: 'usage_user' }] },
      limit: 1000,
    }),
  },
  {
    name: 'single-groupby-5-8-1',
    rangeHours: () => 1,
    body: (space, random, range) => ({
      timeRange: { start: iso(range.start), end: iso(range.end) },
      filters: { columns: hostFilter(pickHosts(random, space.hosts, 8)) },
      downsample: { intervalUnit: 'minute', aggregations: FIELDS.slice(0, 5).map((column) => ({ fn: 'max', column })) },
      limit: 1000,
    }),
  },
  {
    name: 'cpu-max-all-8',
    rangeHours: () => 8,
    body: (space, random, range) => ({
      timeRange: { start: iso(range.start), end: iso(range.end) },
      filters: { columns: hostFilter(pickHosts(random, space.hosts, 8)) },
      downsample: { intervalUnit: 'hour', aggregations: FIELDS.map((column) => ({ fn: 'max', column })) },
      limit: 1000,
    }),
  },
  {
    name: 'double-groupby-1',
    rangeHours: () => 12,
    body: (_space, _random, range) => ({
      timeRange: { start: iso(range.start), end: iso(range.end) },
      downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'usage_user' }], groupBy: ['hostname'] },
      limit: 100_000,
    }),
  },
  {
    name: 'high-cpu-1',
    rangeHours: () => 12,
    body: (space, random, range) => ({
      timeRange: { start: iso(range.start), end: iso(range.end) },
      filters: { columns: { usage_user: { gt: 90 }, ...hostFilter(pickHosts(random, space.hosts, 1)) } },
      limit: 10_000,
    }),
  },
  {
    name: 'lastpoint',
    rangeHours: (space) => space.hours,
    body: (space, _random, range) => ({
      timeRange: { start: iso(range.start), end: iso(range.end) },
      downsample: {
        intervalUnit: 'day',
        intervalSize: 36_500,
        aggregations: [{ fn: 'max', column: space.timestampColumn ?? 'timestamp', alias: 'last_time' }, ...FIELDS.map((column) => ({ fn: 'last', column }))],
        groupBy: ['hostname'],
      },
      limit: 100_000,
    }),
  },
];

/** The one-hour queries of the growth comparison. */
export const GROWTH_SHAPES: Shape[] = [
  SHAPES[0]!,
  {
    name: 'hour-all-hosts',
    rangeHours: () => 1,
    body: (_space, _random, range) => ({
      timeRange: { start: iso(range.start), end: iso(range.end) },
      downsample: { intervalUnit: 'minute', aggregations: [{ fn: 'avg', column: 'usage_user' }, { fn: 'max', column: 'usage_user' }] },
      limit: 1000,
    }),
  },
];

/** `n` instances of a shape over `space` (seeded by the shape's name and `seed`). */
export function instances(
  shape: Shape,
  space: Space,
  n: number,
  random: () => number,
  range?: (random: () => number) => { start: Date; end: Date },
): QueryBody[] {
  const out: QueryBody[] = [];
  for (let i = 0; i < n; i++) {
    const r = range ? range(random) : randomRange(random, space, shape.rangeHours(space));
    out.push(shape.body(space, random, r));
  }
  return out;
}
