/**
 * The latest row of every series of a dataset (model/series.ts), kept in this process so that
 * "latest per series" is answered without opening a file.
 *
 * An entry records the manifest version it reflects. Every query passes the dataset's current
 * version, read from the catalog for that query, so an entry is never used behind a version that
 * any process has published: when the catalog is ahead, the entry is first brought forward by
 * what the versions in between changed (`planAdvance`):
 * - partitions added: the latest rows of their files are read (one statement in a worker) and
 *   folded in; a row replaces the kept row of its series only when it comes later in the
 *   latest-row order, so a late row with an older timestamp never replaces a newer one, and
 *   reading a row twice changes nothing;
 * - partitions removed by compaction: their rows live on, unchanged, in the partitions the same
 *   version added (checked by row counts), so nothing changes, and those outputs need no reading
 *   when every input was already folded in;
 * - partitions removed otherwise (retention, or anything else): removing rows never makes another
 *   row later, so the entry stays right unless a removed file may hold a kept row; when the time
 *   span of a removed partition covers the timestamp of a kept row, the entry is rebuilt;
 * - a new schema version or series key: rebuilt.
 * The same code runs when this process publishes (the ingest writer calls back), so the next query
 * usually finds the entry current; publishes of other processes are caught up at the next query.
 *
 * Bounded: `maxSeries` rows across datasets. A dataset with more series is declined (its queries
 * read files) until something removes rows from it; datasets used least recently are dropped to
 * make room.
 *
 * What is derived from an entry's rows (their key order, the answers to the requests asked of
 * them) is kept until the rows change, so the same request asked again at the same rows (a
 * dashboard's poll, say) costs a map look-up: at most {@link MAX_ANSWERS} answers an entry, whose
 * rows together are at most the entry's own, the least recently asked dropped first.
 */
import type { QueryRow, QueryValue } from '../engine/query.ts';
import type { FieldType } from '../model/field-types.ts';
import type { Partition, SchemaField } from '../model/records.ts';
import { latestRowOrder } from '../model/series.ts';
import { fixedMicros } from '../model/timestamps.ts';

/** A dataset as one query saw it in the catalog, with its series key. */
export interface LatestDataset {
  id: string;
  manifestVersion: number;
  schemaVersion: number;
  timestampColumn: string;
  fields: SchemaField[];
  key: string[];
}

/** What the versions after one up to another changed. */
export interface ManifestChanges {
  /** Partitions the versions added or removed (catalog/manifests.ts `listPartitionChanges`). */
  partitions: Partition[];
  /** Each version in the range that removed partitions, with the reason it was published for. */
  removals: { version: number; reason: string }[];
}

/** What the cache reads, through the query service: the catalog and the files. */
export interface LatestSource {
  /** Runs `read` with the dataset's files held at its current manifest version, which is at least `atLeast`. */
  pinned<T>(datasetId: string, atLeast: number, read: (version: number) => Promise<T>): Promise<T>;
  active(datasetId: string, version: number): Promise<readonly Partition[]>;
  changes(datasetId: string, after: number, upTo: number): Promise<ManifestChanges>;
  /** The latest row (every field) of each series in these partitions, at most `limit`; `truncated` when there are more. */
  latestRows(dataset: LatestDataset, partitions: readonly Partition[], limit: number): Promise<{ rows: QueryRow[]; truncated: boolean }>;
}

/** The kept rows of one dataset at one manifest version. */
export interface LatestTable {
  version: number;
  key: readonly string[];
  /** Series (see {@link seriesId}) → its latest row, with every field of the schema it was read with. */
  rows: ReadonlyMap<string, QueryRow>;
  /** Compares two rows in the latest-row order. */
  compare: RowComparator;
  /** The rows ordered by the key's columns, ascending, NULLs last (computed once per version). */
  sorted(): readonly QueryRow[];
  /**
   * The answer to the request `request` names: `answer()`'s, or the same object kept from an
   * earlier call of the same request while the rows have not changed since.
   */
  remembered<T extends { rows: readonly unknown[] } | null>(request: string, answer: () => T): T;
}

/** Most answers kept for one entry's rows (see the module's comment). */
export const MAX_ANSWERS = 8;

/** What is computed from an entry's rows, replaced as a whole when they change. */
interface Derived {
  /** `rows` sorted by the entry's `byKey`. */
  sorted: QueryRow[] | null;
  /** Request → answer, least recently asked first. */
  answers: Map<string, { rows: readonly unknown[] } | null>;
  /** Rows of the kept answers together. */
  answerRows: number;
}

function derived(): Derived {
  return { sorted: null, answers: new Map(), answerRows: 0 };
}

function remember<T extends { rows: readonly unknown[] } | null>(kept: Derived, request: string, answer: () => T, budget: number): T {
  if (kept.answers.has(request)) {
    const found = kept.answers.get(request) as T;
    kept.answers.delete(request);
    kept.answers.set(request, found);
    return found;
  }
  const computed = answer();
  const rows = computed?.rows.length ?? 0;
  for (const [oldest, old] of kept.answers) {
    if (kept.answers.size < MAX_ANSWERS && kept.answerRows + rows <= budget) break;
    kept.answers.delete(oldest);
    kept.answerRows -= old?.rows.length ?? 0;
  }
  if (rows <= budget) {
    kept.answers.set(request, computed);
    kept.answerRows += rows;
  }
  return computed;
}

export type LatestDecline = 'disabled' | 'over_limit';

export interface LatestCacheStats {
  datasets: number;
  series: number;
  /** Answers from rows that were current when the query came. */
  hits: number;
  /** Answers after the query waited for the entry to be seeded or brought forward. */
  misses: number;
  /** Queries answered from files instead, by reason. */
  fallbacks: Record<LatestFallback, number>;
  /** Entries seeded (or rebuilt) from every active file. */
  loads: number;
  /** Entries brought forward by newer manifest versions. */
  advances: number;
  /** Entries rebuilt because rows they kept may have been removed, or the schema or series key changed. */
  rebuilds: number;
}

/**
 * Why a query was answered from files: `disabled` (TIMESTORE_QUERY_LATEST_CACHE_SERIES=0),
 * `over_limit` (more series than the cache may hold), `request` (the request needs rows the cache
 * does not keep: filters on other columns, a partition-key filter, a series whose latest row is
 * past the time range, …), `error` (bringing the entry forward failed).
 */
export type LatestFallback = LatestDecline | 'request' | 'error';

interface Entry {
  datasetId: string;
  schemaVersion: number;
  key: string[];
  version: number;
  /** Null: declined, the dataset has more series than the cache may hold. */
  rows: Map<string, QueryRow> | null;
  compare: RowComparator;
  byKey: (a: QueryRow, b: QueryRow) => number;
  /** Computed from `rows` as they are now; replaced when they change. */
  derived: Derived;
}

export class LatestCache {
  /** Least recently used first. */
  private readonly entries = new Map<string, Entry>();
  private readonly updates = new Map<string, Promise<void>>();
  private total = 0;
  private readonly counts = { hits: 0, misses: 0, loads: 0, advances: 0, rebuilds: 0 };
  private readonly fallbacks: Record<LatestFallback, number> = { disabled: 0, over_limit: 0, request: 0, error: 0 };

  constructor(
    private readonly source: LatestSource,
    private readonly maxSeries: number,
  ) {}

  get enabled(): boolean {
    return this.maxSeries > 0;
  }

  /**
   * The dataset's latest rows at its manifest version `dataset.manifestVersion` or later, after
   * seeding or bringing the entry forward when needed; `waited` says whether that happened.
   */
  async table(dataset: LatestDataset): Promise<{ table: LatestTable; waited: boolean } | { declined: LatestDecline }> {
    if (!this.enabled) return { declined: 'disabled' };
    let waited = false;
    for (;;) {
      const entry = this.entries.get(dataset.id);
      if (entry && fits(entry, dataset) && entry.version >= dataset.manifestVersion) {
        this.touch(entry);
        const rows = entry.rows;
        if (!rows) return { declined: 'over_limit' };
        const kept = entry.derived;
        const table: LatestTable = {
          version: entry.version,
          key: entry.key,
          rows,
          compare: entry.compare,
          sorted: () => (kept.sorted ??= [...rows.values()].sort(entry.byKey)),
          remembered: (request, answer) => remember(kept, request, answer, Math.max(rows.size, 1)),
        };
        return { table, waited };
      }
      waited = true;
      let update = this.updates.get(dataset.id);
      if (!update) {
        update = this.update(dataset).finally(() => this.updates.delete(dataset.id));
        this.updates.set(dataset.id, update);
      }
      await update;
    }
  }

  /** Counts an answer given from a table that `table()` returned. */
  answered(waited: boolean): void {
    if (waited) this.counts.misses++;
    else this.counts.hits++;
  }

  fellBack(reason: LatestFallback): void {
    this.fallbacks[reason]++;
  }

  /** Whether the cache keeps rows of this dataset (a publish then brings them forward at once). */
  holds(datasetId: string): boolean {
    return Boolean(this.entries.get(datasetId)?.rows);
  }

  stats(): LatestCacheStats {
    return { datasets: this.entries.size, series: this.total, ...this.counts, fallbacks: { ...this.fallbacks } };
  }

  private async update(dataset: LatestDataset): Promise<void> {
    await this.source.pinned(dataset.id, dataset.manifestVersion, async (version) => {
      const entry = this.entries.get(dataset.id);
      if (!entry || !fits(entry, dataset)) {
        if (entry) this.counts.rebuilds++;
        return this.seed(dataset, version);
      }
      if (entry.version >= version) return;
      const changes = await this.source.changes(dataset.id, entry.version, version);
      const plan = planAdvance(entry.version, version, changes, keptRowsIn(entry, dataset.timestampColumn));
      if (plan.rebuild) {
        this.counts.rebuilds++;
        return this.seed(dataset, version);
      }
      let found: { rows: QueryRow[]; truncated: boolean } | null = null;
      if (entry.rows && plan.read.length > 0) found = await this.source.latestRows(dataset, plan.read, this.maxSeries);
      // Dropped meanwhile to make room for another dataset: the next query seeds it again.
      if (this.entries.get(dataset.id) !== entry) return;
      if (found?.truncated) this.decline(entry);
      else if (found) this.fold(entry, found.rows);
      entry.version = version;
      this.counts.advances++;
    });
  }

  private async seed(dataset: LatestDataset, version: number): Promise<void> {
    const active = await this.source.active(dataset.id, version);
    const { rows, truncated } = active.length > 0 ? await this.source.latestRows(dataset, active, this.maxSeries) : { rows: [], truncated: false };
    this.remove(dataset.id);
    const entry: Entry = {
      datasetId: dataset.id,
      schemaVersion: dataset.schemaVersion,
      key: [...dataset.key],
      version,
      rows: new Map(),
      compare: rowComparator(latestRowOrder(dataset.fields, dataset.timestampColumn)),
      byKey: keyComparator(dataset.key, dataset.fields),
      derived: derived(),
    };
    this.entries.set(dataset.id, entry);
    this.counts.loads++;
    if (truncated) this.decline(entry);
    else this.fold(entry, rows);
  }

  /** Keeps each row that is later than its series' kept row. */
  private fold(entry: Entry, rows: QueryRow[]): void {
    const kept = entry.rows!;
    const before = kept.size;
    let changed = false;
    for (const row of rows) {
      const id = seriesId(entry.key, row);
      const current = kept.get(id);
      if (!current || entry.compare.rows(row, current) > 0) {
        kept.set(id, row);
        changed = true;
      }
    }
    if (changed) entry.derived = derived();
    this.total += kept.size - before;
    if (kept.size > this.maxSeries) {
      this.decline(entry);
      return;
    }
    this.makeRoom(entry);
  }

  private decline(entry: Entry): void {
    this.total -= entry.rows?.size ?? 0;
    entry.rows = null;
  }

  /** Drops the datasets used least recently until the rows fit. */
  private makeRoom(keep: Entry): void {
    for (const entry of this.entries.values()) {
      if (this.total <= this.maxSeries) return;
      if (entry !== keep) this.remove(entry.datasetId);
    }
  }

  private remove(datasetId: string): void {
    const entry = this.entries.get(datasetId);
    if (!entry) return;
    this.total -= entry.rows?.size ?? 0;
    this.entries.delete(datasetId);
  }

  private touch(entry: Entry): void {
    this.entries.delete(entry.datasetId);
    this.entries.set(entry.datasetId, entry);
  }
}

/** An entry answers a query of the dataset only with the schema version and series key it was built with. */
function fits(entry: Entry, dataset: LatestDataset): boolean {
  return entry.schemaVersion === dataset.schemaVersion && entry.key.length === dataset.key.length && entry.key.every((c, i) => c === dataset.key[i]);
}

/** The identity of a row's series: its values of the key's columns. */
export function seriesId(key: readonly string[], row: QueryRow): string {
  return JSON.stringify(key.map((c) => row[c] ?? null));
}

/**
 * Whether the time span of a partition covers the timestamp of a kept row (the partition's rows
 * may include it). Declined entries keep no rows: any removal may matter.
 */
function keptRowsIn(entry: Entry, timestampColumn: string): (p: Partition) => boolean {
  if (!entry.rows) return () => true;
  let times: number[] | undefined;
  return (p) => {
    times ??= [...entry.rows!.values()].map((r) => millisOf(r[timestampColumn] as string)).sort((a, b) => a - b);
    // The catalog's times may have lost their microseconds: a millisecond either side.
    const [low, high] = [p.startTime.getTime() - 1, p.endTime.getTime() + 1];
    let [lo, hi] = [0, times.length];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (times[mid]! < low) lo = mid + 1;
      else hi = mid;
    }
    return lo < times.length && times[lo]! <= high;
  };
}

/** The manifest reason compaction publishes with (lifecycle/compaction.ts); another reason is treated as one that may delete rows. */
const COMPACTION = 'compaction';

/**
 * What bringing an entry from version `from` to `to` takes: the partitions whose rows must be
 * read, or a rebuild. `holdsKeptRow` says whether a partition may hold a row the entry keeps.
 * Versions are walked in order; "folded" are partitions whose rows the entry reflects (those
 * active at `from`, and compaction outputs of folded inputs).
 */
export function planAdvance(
  from: number,
  to: number,
  changes: ManifestChanges,
  holdsKeptRow: (p: Partition) => boolean,
): { rebuild: boolean; read: Partition[] } {
  const reasons = new Map(changes.removals.map((r) => [r.version, r.reason]));
  const added = new Map<number, Partition[]>();
  const removed = new Map<number, Partition[]>();
  for (const p of changes.partitions) {
    if (p.addedVersion > from && p.addedVersion <= to) push(added, p.addedVersion, p);
    if (p.removedVersion !== null && p.removedVersion > from && p.removedVersion <= to) push(removed, p.removedVersion, p);
  }
  const versions = [...new Set([...added.keys(), ...removed.keys()])].sort((a, b) => a - b);
  const folded = new Set<string>();
  const toRead = new Map<string, Partition>();
  const isFolded = (p: Partition) => p.addedVersion <= from || folded.has(p.id);
  for (const version of versions) {
    const adds = added.get(version) ?? [];
    const removes = removed.get(version) ?? [];
    if (removes.length > 0) {
      const rows = (list: Partition[]) => list.reduce((n, p) => n + p.rowCount, 0);
      if (reasons.get(version) === COMPACTION && rows(removes) === rows(adds)) {
        // The same rows, rewritten: read the outputs only when some input's rows are not folded in yet.
        const allFolded = removes.every(isFolded);
        for (const p of removes) toRead.delete(p.id);
        for (const p of adds) {
          if (allFolded) folded.add(p.id);
          else toRead.set(p.id, p);
        }
        continue;
      }
      // Rows may be gone: only a kept row's disappearance matters.
      if (removes.some((p) => isFolded(p) && holdsKeptRow(p))) return { rebuild: true, read: [] };
      for (const p of removes) toRead.delete(p.id);
    }
    for (const p of adds) toRead.set(p.id, p);
  }
  return { rebuild: false, read: [...toRead.values()] };
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

// ---------------------------------------------------------------------------------------------
// Comparing values as DuckDB does (query answers' JSON values: ISO timestamps, numbers or decimal
// strings for integers, strings, booleans, null).

export interface RowComparator {
  /** > 0 when `a` comes later than `b` in the latest-row order. */
  rows(a: QueryRow, b: QueryRow): number;
}

/** Orders rows by these columns, NULLs last whatever the direction (as the statements order groups). */
export function keyComparator(
  columns: readonly string[],
  fields: readonly Pick<SchemaField, 'name' | 'type'>[],
  order: 'asc' | 'desc' = 'asc',
): (a: QueryRow, b: QueryRow) => number {
  const types = columns.map((c) => fields.find((f) => f.name === c)?.type ?? 'string');
  const sign = order === 'asc' ? 1 : -1;
  return (a, b) => {
    for (let i = 0; i < columns.length; i++) {
      const [x, y] = [a[columns[i]!] ?? null, b[columns[i]!] ?? null];
      if (x === null || y === null) {
        if (x === y) continue;
        return x === null ? 1 : -1;
      }
      const d = compareValues(x, y, types[i]!);
      if (d !== 0) return sign * d;
    }
    return 0;
  };
}

function rowComparator(order: readonly Pick<SchemaField, 'name' | 'type'>[]): RowComparator {
  return {
    rows(a, b) {
      for (const f of order) {
        const c = compareValues(a[f.name] ?? null, b[f.name] ?? null, f.type);
        if (c !== 0) return c;
      }
      return 0;
    },
  };
}

/**
 * Orders two values of one field as DuckDB orders them, NULL lowest: strings by their UTF-8 bytes
 * (code points), timestamps by instant (microseconds included), integers beyond 2^53 (decimal
 * strings) exactly, false before true.
 */
export function compareValues(a: QueryValue, b: QueryValue, type: FieldType): number {
  if (a === b) return 0;
  if (a === null) return -1;
  if (b === null) return 1;
  switch (type) {
    case 'string':
      return compareCodePoints(a as string, b as string);
    case 'timestamp': {
      const [x, y] = [fixedMicros(a as string), fixedMicros(b as string)];
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case 'integer':
      if (typeof a === 'number' && typeof b === 'number') return Math.sign(a - b);
      return BigInt(a as number | string) < BigInt(b as number | string) ? -1 : BigInt(a as number | string) > BigInt(b as number | string) ? 1 : 0;
    case 'double':
      return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
    case 'boolean':
      return Number(a) - Number(b);
  }
}

/**
 * UTF-16 code units order like code points (and UTF-8 bytes) except that surrogates (U+D800–DFFF,
 * halves of code points above U+FFFF) sort below U+E000–FFFF: those are moved above it.
 */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

function millisOf(iso: string): number {
  return Date.parse(`${iso.slice(0, 23)}Z`);
}
