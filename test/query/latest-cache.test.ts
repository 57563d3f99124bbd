/**
 * The latest-value cache's own logic (src/query/latest-cache.ts) with an in-memory source: folding
 * (late rows, ties), what newer manifest versions make it read or rebuild, the bound and eviction.
 * The catalog and the files are exercised end to end in latest.test.ts.
 */
import { describe, expect, test } from 'bun:test';
import type { QueryRow } from '../../src/engine/query.ts';
import type { Partition, SchemaField } from '../../src/model/records.ts';
import { compareValues, LatestCache, type LatestDataset, type LatestSource, type LatestTable, MAX_ANSWERS, planAdvance } from '../../src/query/latest-cache.ts';

const FIELDS: SchemaField[] = [
  { name: 'ts', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'v', type: 'double' },
];

let nextId = 0;
function partition(added: number, rows: QueryRow[], removed: number | null = null): Partition & { rows: QueryRow[] } {
  const times = rows.map((r) => Date.parse(r.ts as string));
  return {
    id: `p${nextId++}`,
    addedVersion: added,
    removedVersion: removed,
    rowCount: rows.length,
    startTime: new Date(Math.min(...times)),
    endTime: new Date(Math.max(...times)),
    rows,
  } as unknown as Partition & { rows: QueryRow[] };
}

const row = (ts: string, host: string, v: number | null): QueryRow => ({ ts, host, v });

/** A dataset whose manifest is a list of partitions with versions, and whose "files" are their rows. */
class FakeDataset implements LatestSource {
  partitions: (Partition & { rows: QueryRow[] })[] = [];
  reasons = new Map<number, string>();
  version = 0;
  scans: string[][] = [];

  publish(reason: string, add: QueryRow[][], remove: Partition[] = []): void {
    this.version++;
    this.reasons.set(this.version, reason);
    for (const p of remove) p.removedVersion = this.version;
    for (const rows of add) this.partitions.push(partition(this.version, rows));
  }

  dataset(): LatestDataset {
    return { id: 'd', manifestVersion: this.version, schemaVersion: 1, timestampColumn: 'ts', fields: FIELDS, key: ['host'] };
  }

  activeAt(version: number) {
    return this.partitions.filter((p) => p.addedVersion <= version && (p.removedVersion === null || p.removedVersion > version));
  }

  async pinned<T>(_id: string, atLeast: number, read: (version: number) => Promise<T>): Promise<T> {
    return read(Math.max(atLeast, this.version));
  }
  async active(_id: string, version: number) {
    return this.activeAt(version);
  }
  async changes(_id: string, after: number, upTo: number) {
    const partitions = this.partitions.filter(
      (p) => (p.addedVersion > after && p.addedVersion <= upTo) || (p.removedVersion !== null && p.removedVersion > after && p.removedVersion <= upTo),
    );
    const removals = [...this.reasons].filter(([v]) => v > after && v <= upTo && partitions.some((p) => p.removedVersion === v)).map(([version, reason]) => ({ version, reason }));
    return { partitions: partitions.map((p) => ({ ...p })), removals };
  }
  async latestRows(_d: LatestDataset, partitions: readonly Partition[], limit: number) {
    this.scans.push(partitions.map((p) => p.id));
    const best = new Map<string, QueryRow>();
    for (const p of partitions) {
      for (const r of this.partitions.find((x) => x.id === p.id)!.rows) {
        const kept = best.get(r.host as string);
        if (!kept || later(r, kept)) best.set(r.host as string, r);
      }
    }
    const rows = [...best.values()];
    return { rows: rows.slice(0, limit), truncated: rows.length > limit };
  }
}

/** The reference order, written out: time, then host, then v (NULL lowest). */
function later(a: QueryRow, b: QueryRow): boolean {
  for (const [name, type] of [['ts', 'timestamp'], ['host', 'string'], ['v', 'double']] as const) {
    const c = compareValues(a[name] ?? null, b[name] ?? null, type);
    if (c !== 0) return c > 0;
  }
  return false;
}

async function latest(cache: LatestCache, data: FakeDataset): Promise<Record<string, QueryRow> | string> {
  const outcome = await cache.table(data.dataset());
  if ('declined' in outcome) return outcome.declined;
  return Object.fromEntries([...outcome.table.rows.values()].map((r) => [r.host as string, r]));
}

describe('folding newer versions', () => {
  test('a late row with an older time never replaces a newer one; equal times pick by the other fields; only new files are read', async () => {
    const data = new FakeDataset();
    data.publish('ingest', [[row('2026-01-01T00:00:10.000Z', 'a', 1), row('2026-01-01T00:00:05.000Z', 'b', 1)]]);
    const cache = new LatestCache(data, 100);
    expect(await latest(cache, data)).toEqual({ a: row('2026-01-01T00:00:10.000Z', 'a', 1), b: row('2026-01-01T00:00:05.000Z', 'b', 1) });

    data.publish('ingest', [[row('2026-01-01T00:00:01.000Z', 'a', 99), row('2026-01-01T00:00:05.000Z', 'b', 0.5)]]); // late; a tie that loses
    data.publish('ingest', [[row('2026-01-01T00:00:05.000Z', 'b', 2), row('2026-01-01T00:00:10.000001Z', 'c', null)]]); // a tie that wins; a microsecond later
    expect(await latest(cache, data)).toEqual({
      a: row('2026-01-01T00:00:10.000Z', 'a', 1),
      b: row('2026-01-01T00:00:05.000Z', 'b', 2),
      c: row('2026-01-01T00:00:10.000001Z', 'c', null),
    });
    expect(data.scans.map((s) => s.length)).toEqual([1, 2]); // the seed, then the two new files
    expect(cache.stats()).toMatchObject({ loads: 1, advances: 1, rebuilds: 0, series: 3, datasets: 1 });
  });

  test('compaction of folded files reads nothing; a removal that spares the kept rows reads nothing; one that takes a kept row rebuilds', async () => {
    const data = new FakeDataset();
    data.publish('ingest', [[row('2026-01-01T00:00:00.000Z', 'a', 1)]]);
    data.publish('ingest', [[row('2026-01-02T00:00:00.000Z', 'a', 2), row('2026-01-02T00:00:00.000Z', 'b', 2)]]);
    data.publish('ingest', [[row('2026-01-03T00:00:00.000Z', 'b', 3)]]);
    const cache = new LatestCache(data, 100);
    await latest(cache, data);
    const [day1, day2, day3] = data.partitions;
    data.publish('compaction', [[...day2!.rows, ...day3!.rows]], [day2!, day3!]);
    data.publish('retention', [], [day1!]); // holds no kept row
    data.scans.length = 0;
    expect(await latest(cache, data)).toEqual({ a: row('2026-01-02T00:00:00.000Z', 'a', 2), b: row('2026-01-03T00:00:00.000Z', 'b', 3) });
    expect(data.scans).toEqual([]);
    expect(cache.stats()).toMatchObject({ loads: 1, advances: 1, rebuilds: 0 });

    data.publish('retention', [], [data.partitions[3]!]); // the compacted file: both kept rows go
    expect(await latest(cache, data)).toEqual({});
    expect(cache.stats()).toMatchObject({ loads: 2, rebuilds: 1 });
  });

  test('a compaction output whose inputs were not all folded in is read', async () => {
    const data = new FakeDataset();
    data.publish('ingest', [[row('2026-01-01T00:00:00.000Z', 'a', 1)]]);
    const cache = new LatestCache(data, 100);
    await latest(cache, data);
    data.publish('ingest', [[row('2026-01-01T00:00:01.000Z', 'a', 2)]]);
    data.publish('compaction', [[...data.partitions[0]!.rows, ...data.partitions[1]!.rows]], [data.partitions[0]!, data.partitions[1]!]);
    data.scans.length = 0;
    expect(await latest(cache, data)).toEqual({ a: row('2026-01-01T00:00:01.000Z', 'a', 2) });
    expect(data.scans).toEqual([[data.partitions[2]!.id]]);
  });
});

describe('planAdvance', () => {
  const p = (id: string, addedVersion: number, removedVersion: number | null, rowCount = 10) =>
    ({ id, addedVersion, removedVersion, rowCount, startTime: new Date(0), endTime: new Date(1) }) as unknown as Partition;
  const never = () => false;

  test('ingest versions: read what they added and is still active', () => {
    const plan = planAdvance(3, 6, { partitions: [p('x', 4, null), p('y', 5, null), p('z', 7, null)], removals: [] }, never);
    expect({ rebuild: plan.rebuild, read: plan.read.map((q) => q.id) }).toEqual({ rebuild: false, read: ['x', 'y'] });
  });

  test('a compaction whose row counts differ is not trusted as one', () => {
    const changes = { partitions: [p('old', 1, 5, 10), p('out', 5, null, 9)], removals: [{ version: 5, reason: 'compaction' }] };
    expect(planAdvance(3, 5, changes, () => true).rebuild).toBe(true);
    expect(planAdvance(3, 5, { ...changes, partitions: [p('old', 1, 5, 10), p('out', 5, null, 10)] }, () => true)).toEqual({ rebuild: false, read: [] });
  });

  test('a new partition removed again before the target version is never read; one removed by retention without a kept row changes nothing', () => {
    const changes = {
      partitions: [p('new', 4, 5), p('kept', 1, 6), p('later', 6, null)],
      removals: [
        { version: 5, reason: 'retention' },
        { version: 6, reason: 'retention' },
      ],
    };
    expect(planAdvance(3, 6, changes, never).read.map((q) => q.id)).toEqual(['later']);
    expect(planAdvance(3, 6, changes, (q) => q.id === 'kept').rebuild).toBe(true);
    expect(planAdvance(3, 6, changes, (q) => q.id === 'new').rebuild).toBe(false); // its rows were never folded in
  });
});

describe('the bound', () => {
  test('a dataset with more series than the bound is declined, other datasets are dropped least recently used first', async () => {
    const big = new FakeDataset();
    big.publish('ingest', [['a', 'b', 'c', 'd'].map((h) => row('2026-01-01T00:00:00.000Z', h, 1))]);
    const cache = new LatestCache(big, 3);
    expect(await latest(cache, big)).toBe('over_limit');
    expect(await latest(cache, big)).toBe('over_limit');
    expect(big.scans).toHaveLength(1); // declined until something changes, not seeded per query
    expect(cache.stats().series).toBe(0);

    const small = (id: string, hosts: string[]) => {
      const data = new FakeDataset();
      data.publish('ingest', [hosts.map((h) => row('2026-01-01T00:00:00.000Z', h, 1))]);
      return { data, dataset: () => ({ ...data.dataset(), id }) };
    };
    const x = small('x', ['a', 'b']);
    const y = small('y', ['a', 'b']);
    const shared = new LatestCache(
      {
        pinned: (id, v, read) => (id === 'x' ? x.data : y.data).pinned(id, v, read),
        active: (id, v) => (id === 'x' ? x.data : y.data).active(id, v),
        changes: (id, a, b) => (id === 'x' ? x.data : y.data).changes(id, a, b),
        latestRows: (d, ps, limit) => (d.id === 'x' ? x.data : y.data).latestRows(d, ps, limit),
      },
      3,
    );
    await shared.table(x.dataset());
    await shared.table(y.dataset()); // 4 rows > 3: x goes
    expect(shared.stats()).toMatchObject({ datasets: 1, series: 2, loads: 2 });
    const again = await shared.table(x.dataset());
    expect('table' in again && again.waited).toBe(true);
    expect(shared.stats()).toMatchObject({ datasets: 1, series: 2, loads: 3 });
  });

  test('a dataset dropped while it is being brought forward is seeded again, and the count of rows stays true', async () => {
    const x = new FakeDataset();
    const y = new FakeDataset();
    x.publish('ingest', [[row('2026-01-01T00:00:00.000Z', 'a', 1), row('2026-01-01T00:00:00.000Z', 'b', 1)]]);
    y.publish('ingest', [[row('2026-01-01T00:00:00.000Z', 'c', 1), row('2026-01-01T00:00:00.000Z', 'd', 1)]]);
    let gate: (() => void) | undefined;
    const of = (id: string) => (id === 'x' ? x : y);
    const cache = new LatestCache(
      {
        pinned: (id, v, read) => of(id).pinned(id, v, read),
        active: (id, v) => of(id).active(id, v),
        changes: (id, a, b) => of(id).changes(id, a, b),
        latestRows: async (d, ps, limit) => {
          if (d.id === 'x' && gate === undefined && x.version > 1) await new Promise<void>((resolve) => (gate = resolve));
          return of(d.id).latestRows(d, ps, limit);
        },
      },
      3,
    );
    const dataset = (id: string) => ({ ...of(id).dataset(), id });
    await cache.table(dataset('x'));
    x.publish('ingest', [[row('2026-01-02T00:00:00.000Z', 'e', 1)]]);
    const advancing = cache.table(dataset('x'));
    while (!gate) await Bun.sleep(1);
    await cache.table(dataset('y')); // 2 + 2 > 3: x is dropped while its update waits
    gate();
    const answer = await advancing;
    expect('table' in answer && [...answer.table.rows.keys()].sort()).toEqual(['["a"]', '["b"]', '["e"]']);
    expect(cache.stats()).toMatchObject({ datasets: 1, series: 3 });
  });

  test('0 turns the cache off', async () => {
    const data = new FakeDataset();
    data.publish('ingest', [[row('2026-01-01T00:00:00.000Z', 'a', 1)]]);
    expect(await latest(new LatestCache(data, 0), data)).toBe('disabled');
    expect(data.scans).toEqual([]);
  });
});

describe('answers kept while the rows stay', () => {
  async function table(cache: LatestCache, data: FakeDataset) {
    const outcome = await cache.table(data.dataset());
    if ('declined' in outcome) throw new Error(outcome.declined);
    return outcome.table;
  }
  const all = (t: LatestTable) => () => ({ rows: [...t.rows.values()] });

  test('the same request gets the same answer until a publish changes the rows; one that changes none keeps it', async () => {
    const data = new FakeDataset();
    data.publish('ingest', [[row('2026-01-01T00:00:10.000Z', 'a', 1), row('2026-01-01T00:00:10.000Z', 'b', 1)]]);
    const cache = new LatestCache(data, 100);
    let computed = 0;
    const ask = async (request: string) => {
      const t = await table(cache, data);
      return t.remembered(request, () => (computed++, all(t)()));
    };
    const first = await ask('every row');
    expect(await ask('every row')).toBe(first);
    expect(computed).toBe(1);

    data.publish('ingest', [[row('2026-01-01T00:00:01.000Z', 'a', 5)]]); // late: the kept rows stay
    expect(await ask('every row')).toBe(first);
    expect(computed).toBe(1);

    data.publish('ingest', [[row('2026-01-01T00:00:20.000Z', 'a', 2)]]);
    const after = await ask('every row');
    expect(computed).toBe(2);
    expect(after.rows).toContainEqual(row('2026-01-01T00:00:20.000Z', 'a', 2));
  });

  test(`at most ${MAX_ANSWERS} answers, with no more rows together than the table, least recently asked dropped first; null answers kept too`, async () => {
    const data = new FakeDataset();
    data.publish('ingest', [[row('2026-01-01T00:00:10.000Z', 'a', 1), row('2026-01-01T00:00:10.000Z', 'b', 1)]]);
    const t = await table(new LatestCache(data, 100), data);
    let computed = 0;
    const one = (request: string) => t.remembered(request, () => (computed++, { rows: [request] }));
    const none = (request: string) => t.remembered(request, () => (computed++, null));

    expect(none('nothing')).toBeNull();
    expect(none('nothing')).toBeNull();
    expect(computed).toBe(1);

    one('x'); // rows so far: 1 of 2
    t.remembered('both', () => (computed++, { rows: [1, 2] })); // 3 > 2: x goes
    expect(computed).toBe(3);
    one('x');
    expect(computed).toBe(4); // computed again; 'both' made room
    t.remembered('both', () => (computed++, { rows: [1, 2] }));
    expect(computed).toBe(5);

    const before = computed;
    for (let i = 0; i < MAX_ANSWERS + 1; i++) none(`n${i}`);
    expect(computed).toBe(before + MAX_ANSWERS + 1);
    none(`n${MAX_ANSWERS}`); // the newest stays
    expect(computed).toBe(before + MAX_ANSWERS + 1);
    none('n0'); // the oldest went
    expect(computed).toBe(before + MAX_ANSWERS + 2);
    expect(t.remembered('too big', () => ({ rows: [1, 2, 3] }))).toEqual({ rows: [1, 2, 3] }); // answered, not kept
    expect(t.remembered('too big', () => ({ rows: [] }))).toEqual({ rows: [] });
  });
});

describe('comparing values as DuckDB does', () => {
  test('strings by code point (UTF-8 bytes), not UTF-16 units; timestamps with microseconds; big integers exactly; NULL lowest', () => {
    expect(compareValues('\u{1f600}', '\uff61', 'string')).toBeGreaterThan(0);
    expect(compareValues('a', 'ab', 'string')).toBeLessThan(0);
    expect(compareValues('2026-01-01T00:00:00.000001Z', '2026-01-01T00:00:00.000Z', 'timestamp')).toBeGreaterThan(0);
    expect(compareValues('2026-01-01T00:00:00.001Z', '2026-01-01T00:00:00.000999Z', 'timestamp')).toBeGreaterThan(0);
    expect(compareValues('9007199254740993', '9007199254740992', 'integer')).toBeGreaterThan(0);
    expect(compareValues(-1, '9007199254740993', 'integer')).toBeLessThan(0);
    expect(compareValues(null, false, 'boolean')).toBeLessThan(0);
    expect(compareValues(true, false, 'boolean')).toBeGreaterThan(0);
  });
});
