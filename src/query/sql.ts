/**
 * Read-only SQL over datasets (POST/GET /sql): DuckDB parses the statement in a worker and names
 * the datasets it reads (engine/sql-statement.ts; remembered for a repeated statement); the caller's read scope is checked for each
 * before anything else is said about it; each is pinned to its current manifest version for the
 * whole statement (the pins the JSON query takes, released after the last row); its partitions are
 * chosen as a JSON query's are, by the time range and the column comparisons the statement's WHERE
 * clause pushes down; then the statement runs in the worker's sandbox over views of those files.
 *
 * Pushed down, for a dataset named once and directly in a SELECT's FROM: the top-level ANDed
 * comparisons (`=`, `<`, `<=`, `>`, `>=`, `BETWEEN`, `IN`) of one of its columns with a constant or
 * a bound parameter. On the timestamp column they bound the time range (partitions outside it are
 * never listed); on any column they drop partitions whose min/max statistics rule every row out.
 * DuckDB's own Parquet reader skips row groups by their statistics for the rest.
 */
import type { Sql } from 'postgres';
import { findDataset } from '../catalog/datasets.ts';
import type { CatalogCache } from '../catalog/lookup-cache.ts';
import { listActivePartitions } from '../catalog/manifests.ts';
import type { QueryStream, WorkerPool } from '../engine/pool.ts';
import { QueryError, type QueryColumn, type QueryRow } from '../engine/query.ts';
import type { DatasetReference, ParsedStatement, SqlParam, SqlPredicate, SqlTable } from '../engine/sql-statement.ts';
import { AppError, errors, isRequestFault } from '../model/errors.ts';
import { OBJECT_KEY_PREFIXES } from '../model/object-keys.ts';
import type { FilterValue, QueryFilter } from '../model/query.ts';
import type { Dataset, Partition, SchemaField } from '../model/records.ts';
import { type Context, failSpan, NOOP_TRACER, type Tracer } from '../observability/tracing.ts';
import type { ManifestSnapshots } from './manifest-snapshots.ts';
import { selectPartitions } from './manifest-snapshots.ts';
import { fieldsInFiles, prunePartitions } from './prune.ts';
import type { HeldPin, ReaderPins } from './reader-pins.ts';

export interface SqlStatementsOptions {
  sql: Sql;
  pool: WorkerPool;
  pins: ReaderPins;
  snapshots: ManifestSnapshots;
  catalogCache: CatalogCache;
  /** Local paths of partitions' files, held until `release()` (the query service's). */
  acquire(partitions: Partition[]): Promise<{ paths: string[]; release(): void }>;
  maxRows: number;
  timeoutMs: number;
  memoryLimitBytes: number;
  tracer?: Tracer;
}

/** The read check for one dataset the statement names: throws a 401/403 AppError when the caller may not read it. */
export type ReadCheck = (slug: string) => Promise<void>;

export interface SqlAnswer {
  columns: QueryColumn[];
  /** The manifest version each dataset was read at, by slug. */
  manifestVersions: Record<string, number>;
  /** Rows in batches; files and pins are released after the last, or on `return()`. */
  batches: AsyncGenerator<QueryRow[], void, undefined>;
  /** Once the batches are done: whether the row limit cut the answer. */
  truncated(): boolean;
}

interface Read {
  table: SqlTable;
  version: number;
  directories: string[];
  release(): void;
}

/** Parsed statements remembered (least recently used forgotten), and the longest remembered, in characters. */
const REMEMBERED_STATEMENTS = 256;
const MAX_REMEMBERED_STATEMENT = 8192;

export class SqlStatements {
  private readonly tracer: Tracer;
  private readonly parsed = new Map<string, ParsedStatement>();

  constructor(private readonly o: SqlStatementsOptions) {
    this.tracer = o.tracer ?? NOOP_TRACER;
  }

  /** Runs `statement`; resolves once its columns are known (so a refusal is still an error answer). */
  async stream(statement: string, params: SqlParam[], mayRead: ReadCheck, trace?: Context): Promise<SqlAnswer> {
    const span = this.tracer.startSpan('sql', {}, trace);
    const reads: Read[] = [];
    const releaseAll = () => {
      for (const r of reads.splice(0)) r.release();
    };
    try {
      const parsed = await this.parse(statement, params);
      if (!parsed.ok) {
        if (parsed.code === 'sql_not_allowed') throw errors.sql_not_allowed(parsed.message);
        throw errors.sql_error(parsed.message, undefined, parsed.position === undefined ? undefined : locate(statement, parsed.position));
      }
      // Every scope first: a caller learns nothing of a dataset it may not read, not even whether it exists.
      for (const ref of parsed.datasets) await mayRead(ref.name);
      for (const ref of parsed.datasets) reads.push(await this.read(ref));
      span.setAttribute('timestore.sql.datasets', reads.length);

      const stream = this.o.pool.sqlStream(
        {
          sql: statement,
          params,
          tables: reads.map((r) => r.table),
          readableDirectories: [...new Set(reads.flatMap((r) => r.directories))],
          timeoutMs: this.o.timeoutMs,
          memoryLimitBytes: this.o.memoryLimitBytes,
          limit: this.o.maxRows,
        },
        4096,
      );
      let columns: QueryColumn[];
      try {
        columns = await stream.columns();
      } catch (err) {
        throw clientError(err, statement);
      }
      const manifestVersions = Object.fromEntries(reads.map((r) => [r.table.name, r.version]));
      const held = reads.splice(0);
      let ended = false;
      const end = (failure: unknown) => {
        if (ended) return;
        ended = true;
        for (const r of held) r.release();
        if (failure) failSpan(span, failure);
        span.end();
      };
      const batches = rowsOf(stream, statement, end);
      const returnBatches = batches.return.bind(batches);
      batches.return = async (value) => {
        try {
          return await returnBatches(value);
        } finally {
          end(null);
        }
      };
      return { columns, manifestVersions, batches, truncated: () => stream.summary?.truncated ?? false };
    } catch (err) {
      releaseAll();
      if (!(err instanceof AppError && isRequestFault(err.code))) failSpan(span, err);
      span.end();
      throw err;
    }
  }

  /**
   * What the statement names (or why it is refused), from DuckDB's parser in a worker, remembered
   * by statement and parameters: dashboards send the same statements again and again, and the
   * worker task took about a millisecond of a 6 ms statement. The answer depends on nothing else.
   */
  private async parse(statement: string, params: SqlParam[]): Promise<ParsedStatement> {
    const key = statement.length <= MAX_REMEMBERED_STATEMENT ? `${JSON.stringify(params)}\n${statement}` : null;
    const known = key === null ? undefined : this.parsed.get(key);
    if (known) {
      this.parsed.delete(key!);
      this.parsed.set(key!, known);
      return known;
    }
    const parsed = await this.o.pool.sqlParse(statement, params);
    if (key !== null) {
      this.parsed.set(key, parsed);
      if (this.parsed.size > REMEMBERED_STATEMENTS) this.parsed.delete(this.parsed.keys().next().value!);
    }
    return parsed;
  }

  /** One dataset: pinned, its partitions chosen by the pushed-down predicates, its files made local. */
  private async read(ref: DatasetReference): Promise<Read> {
    const found = await findDataset(this.o.sql, ref.name);
    if (!found || found.slug !== ref.name) throw errors.not_found('dataset', ref.name);
    if (found.status === 'archived') throw errors.dataset_archived(`dataset "${found.slug}" is archived and answers no queries`);
    const fields = await this.fieldsOf(found);
    const pin: HeldPin = await this.o.pins.pin(found.id, found.manifestVersion);
    try {
      const version = pin.version;
      const { from, to, filters } = pushedDown(ref.predicates ?? [], fields, found.timestampColumn);
      const selection = { datasetId: found.id, version, from, to };
      const snapshot = await this.o.snapshots.active(found.id, version);
      const overlapping = snapshot ? selectPartitions(snapshot, selection) : await listActivePartitions(this.o.sql, selection);
      const selected = prunePartitions(overlapping, filters, fields);
      const held = selected.length > 0 ? await this.o.acquire(selected) : { paths: [], release() {} };
      const table: SqlTable = {
        name: found.slug,
        files: held.paths,
        fields: fields.map((f) => ({ name: f.name, type: f.type })),
        fieldsInFiles: fieldsInFiles(selected, fields),
        oneSchema: selected.every((p) => p.schemaVersion === selected[0]!.schemaVersion),
      };
      return {
        table,
        version,
        directories: held.paths.map((path) => readableDirectory(path, found.slug)),
        release() {
          held.release();
          pin.release();
        },
      };
    } catch (err) {
      pin.release();
      throw err;
    }
  }

  private async fieldsOf(dataset: Dataset): Promise<SchemaField[]> {
    const version = dataset.schemaVersion === 0 ? null : await this.o.catalogCache.schemaVersion(dataset.id, dataset.schemaVersion);
    return version?.fields ?? [{ name: dataset.timestampColumn, type: 'timestamp', nullable: false }];
  }
}

async function* rowsOf(stream: QueryStream, statement: string, end: (failure: unknown) => void): AsyncGenerator<QueryRow[], void, undefined> {
  let failure: unknown = null;
  try {
    for await (const rows of stream) yield rows;
  } catch (err) {
    failure = clientError(err, statement);
    throw failure;
  } finally {
    end(failure);
  }
}

/** The sandbox may read a local partition's dataset directory (`…/datasets/<slug>/`), or a cached file's directory. */
export function readableDirectory(path: string, slug: string): string {
  const marker = `/${OBJECT_KEY_PREFIXES.partitions}${slug}/`;
  const at = path.lastIndexOf(marker);
  if (at >= 0) return path.slice(0, at + marker.length);
  return path.slice(0, path.lastIndexOf('/') + 1);
}

/** A statement's refusal by DuckDB as the catalogue's error, with where it points in the statement. */
function clientError(err: unknown, statement: string): unknown {
  if (!(err instanceof QueryError)) return err;
  const message = err.message.replace(/^[a-z_]+: /, '');
  if (err.code === 'sql_not_allowed') return errors.sql_not_allowed(message, err);
  if (err.code !== 'sql_error') return err;
  return errors.sql_error(message, err, caretPosition(message, statement));
}

/** The offset of DuckDB's `LINE n: …` caret in the statement, when the quoted line is whole. */
export function caretPosition(message: string, statement: string): { position: number; line: number; column: number } | undefined {
  const m = /\nLINE (\d+): (.*)\n( *)\^/.exec(message);
  if (!m) return undefined;
  const line = Number(m[1]);
  const prefix = `LINE ${m[1]}: `.length;
  const column = m[3]!.length - prefix;
  const lines = statement.split('\n');
  if (column < 0 || line < 1 || line > lines.length || m[2]!.startsWith('...')) return undefined;
  const position = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0) + column;
  return { position, line, column: column + 1 };
}

function locate(statement: string, position: number): { position: number; line: number; column: number } {
  const before = statement.slice(0, position).split('\n');
  return { position, line: before.length, column: before[before.length - 1]!.length + 1 };
}

const SQL_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/** A timestamp constant as DuckDB reads it against a TIMESTAMPTZ column in UTC: [floor, ceil] in ms, or null. */
export function sqlTimestampBounds(text: string): { low: number; high: number } | null {
  const m = SQL_TIMESTAMP.exec(text.trim());
  if (!m) return null;
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', zone] = m;
  let ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  if (Number(y) < 100) return null; // Date.UTC maps years 0–99 to 1900–1999
  if (zone && zone.toUpperCase() !== 'Z') {
    const z = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone)!;
    ms -= (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3] ?? 0)) * 60_000;
  }
  if (Number.isNaN(ms)) return null;
  const fraction = frac ? Number(`0${frac}`) * 1000 : 0;
  return { low: ms + Math.floor(fraction), high: ms + Math.ceil(fraction) };
}

/**
 * What the predicates say about which partitions may hold rows: a time range (from the timestamp
 * column) and column filters for the statistics, each widened so that no partition with a
 * matching row is dropped. Comparisons whose constant is not of the column's kind are left to DuckDB.
 */
export function pushedDown(predicates: SqlPredicate[], fields: SchemaField[], timestampColumn: string): { from?: Date; to?: Date; filters: QueryFilter[] } {
  const byName = new Map(fields.map((f) => [f.name.toLowerCase(), f]));
  let from = Number.NEGATIVE_INFINITY;
  let to = Number.POSITIVE_INFINITY;
  const filters: QueryFilter[] = [];
  for (const p of predicates) {
    const field = byName.get(p.column.toLowerCase());
    if (!field) continue;
    const values = p.op === 'in' ? (p.values ?? []) : [p.value as FilterValue];
    const fits = (v: FilterValue) =>
      field.type === 'string' || field.type === 'timestamp' ? typeof v === 'string' : field.type === 'boolean' ? typeof v === 'boolean' : typeof v === 'number';
    if (!values.every(fits)) continue;
    if (p.timestamp && field.type !== 'timestamp') continue;
    if (field.type === 'timestamp') {
      const bounds = values.map((v) => sqlTimestampBounds(v as string));
      if (bounds.some((b) => b === null)) continue;
      const low = Math.min(...bounds.map((b) => b!.low));
      const high = Math.max(...bounds.map((b) => b!.high));
      if (field.name === timestampColumn) {
        if (p.op === 'gt' || p.op === 'gte' || p.op === 'eq' || p.op === 'in') from = Math.max(from, low);
        if (p.op === 'lt') to = Math.min(to, high);
        if (p.op === 'lte' || p.op === 'eq' || p.op === 'in') to = Math.min(to, high + 1);
        continue;
      }
      continue; // another timestamp column: left to DuckDB's row-group statistics
    }
    filters.push(p.op === 'in' ? { column: field.name, op: 'in', values } : { column: field.name, op: p.op, value: values[0]! });
  }
  return {
    ...(Number.isFinite(from) ? { from: new Date(from) } : {}),
    ...(Number.isFinite(to) ? { to: new Date(to) } : {}),
    filters,
  };
}
