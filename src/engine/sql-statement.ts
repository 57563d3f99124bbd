/**
 * Read-only SQL over datasets, on the worker side: what a statement names (parsed by DuckDB
 * itself), and running it in a sandboxed DuckDB instance that sees only the partition files of the
 * datasets the statement names.
 *
 * Parsing (`parseStatement`): `json_serialize_sql` gives the statement's syntax tree, and serializes
 * SELECT statements only (anything else, `COPY`, `ATTACH`, `SET`, `PRAGMA`, `INSTALL`, `LOAD`,
 * `CREATE`, `INSERT`, … is refused). One statement per request. In the tree every table reference
 * must be a dataset (an unqualified name, or `dataset('slug')`), a CTE, a subquery, a join, `VALUES`
 * or one of a few generating table functions; every other table function (every file reader,
 * `glob`, `query`, `query_table`, the `duckdb_*` and `pragma_*` functions) is refused. For each
 * dataset named exactly once, directly in a SELECT's FROM, the comparisons of its WHERE clause's
 * top-level `AND` between one of its columns and a constant (or a bound parameter) are returned,
 * so the query service can prune partitions by time range and column statistics.
 *
 * Running (`runSqlStream`): a DuckDB instance per set of readable directories (the datasets'
 * directories on local targets, the partition cache's directory), made with
 * `allowed_directories` and the macros of sql-macros.ts, then `enable_external_access = false` and
 * `lock_configuration = true`:
 * no file outside those directories can be read or written, no extension loaded, no setting
 * changed, even by a statement the parse step would have let through. A statement runs on that
 * instance's kept connection, which holds one temporary view per dataset the statement names, over
 * `read_parquet` of its pinned files: views are kept while their
 * files are unchanged, and those of datasets the statement does not name are dropped before it runs.
 *
 * Imports `@duckdb/node-api` for types only (see query.ts).
 */
import type { DuckDBConnection, DuckDBInstance, DuckDBPreparedStatement } from '@duckdb/node-api';
import { SQL_TYPES, type FieldType } from '../model/field-types.ts';
import type { FilterOp, FilterValue } from '../model/query.ts';
import { executeStatement, QueryError, streamToPort } from './query.ts';
import type { QueryStreamInput, QueryStreamSummary } from './query-stream-protocol.ts';
import { quoteIdent, sqlString } from './sql.ts';
import { GENERATING_MACROS, SANDBOX_MACROS } from './sql-macros.ts';

/** The longest statement accepted, in characters. */
export const MAX_STATEMENT_LENGTH = 100_000;

/** Table functions a statement may call besides `dataset(slug)`: they generate values and read nothing. */
const GENERATING_FUNCTIONS: ReadonlySet<string> = new Set(['range', 'generate_series', 'unnest', ...GENERATING_MACROS]);

/** Table references that read nothing by themselves. */
const PLAIN_REFERENCES: ReadonlySet<string> = new Set(['JOIN', 'SUBQUERY', 'EMPTY', 'EXPRESSION_LIST', 'PIVOT']);

export type SqlParam = string | number | boolean | null;

/** A comparison of a dataset's column with a constant, from the WHERE clause that reads the dataset directly. */
export interface SqlPredicate {
  /** The column as written (DuckDB matches names without case). */
  column: string;
  op: FilterOp;
  /** `eq`…`lte`: the constant; `in`: see values. */
  value?: FilterValue;
  values?: FilterValue[];
  /** The constant was cast to a timestamp type (`TIMESTAMP '…'`, `'…'::TIMESTAMPTZ`). */
  timestamp?: boolean;
}

export interface DatasetReference {
  /** The slug as written: a table name, or `dataset('slug')`'s argument. */
  name: string;
  /** Comparisons that bound the rows read (ANDed); null when the dataset is named more than once. */
  predicates: SqlPredicate[] | null;
}

export type ParsedStatement =
  | { ok: true; datasets: DatasetReference[] }
  | { ok: false; code: 'sql_error' | 'sql_not_allowed'; message: string; position?: number };

/** Parses `sql` with DuckDB (any connection: nothing is read) and says which datasets it names. */
export async function parseStatement(db: DuckDBConnection, sql: string, params: SqlParam[]): Promise<ParsedStatement> {
  if (typeof sql !== 'string' || sql.trim() === '') return { ok: false, code: 'sql_error', message: 'the statement is empty' };
  if (sql.length > MAX_STATEMENT_LENGTH) {
    return { ok: false, code: 'sql_not_allowed', message: `the statement is ${sql.length} characters long; at most ${MAX_STATEMENT_LENGTH} are accepted` };
  }
  if (sql.includes('\0')) return { ok: false, code: 'sql_error', message: 'the statement contains a NUL character' };
  const prepared = await db.prepare('SELECT json_serialize_sql($1::VARCHAR)');
  let text: string;
  try {
    prepared.bindVarchar(1, sql);
    text = String((await prepared.runAndReadAll()).getRows()[0]?.[0]);
  } catch (error) {
    // Expression depth and the like: DuckDB's parser refused it.
    return { ok: false, code: 'sql_error', message: (error as Error).message };
  } finally {
    prepared.destroySync();
  }
  return analyzeStatement(text, params);
}

interface Serialized {
  error: boolean;
  error_type?: string;
  error_message?: string;
  position?: string;
  statements?: { node: unknown }[];
}

type Node = Record<string, unknown>;

/** The datasets a serialized statement (`json_serialize_sql`) names, or why it is refused. Pure. */
export function analyzeStatement(serializedJson: string, params: SqlParam[]): ParsedStatement {
  const serialized = JSON.parse(serializedJson) as Serialized;
  if (serialized.error) {
    if (serialized.error_type === 'parser') {
      const position = serialized.position === undefined ? undefined : Number(serialized.position);
      return { ok: false, code: 'sql_error', message: `Parser Error: ${serialized.error_message}`, ...(Number.isFinite(position) ? { position } : {}) };
    }
    return { ok: false, code: 'sql_not_allowed', message: `only one SELECT statement (or WITH … SELECT, VALUES) is accepted: ${serialized.error_message}` };
  }
  const statements = serialized.statements ?? [];
  if (statements.length !== 1) return { ok: false, code: 'sql_not_allowed', message: `send exactly one statement, not ${statements.length}` };

  const cteNames = new Set<string>();
  const references: { name: string; ref: Node; selectNode: Node | null }[] = [];
  let refusal: string | null = null;

  const visit = (value: unknown, selectNode: Node | null, direct: boolean): void => {
    if (refusal !== null || value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      for (const item of value) visit(item, selectNode, false);
      return;
    }
    const node = value as Node;
    if (node.type === 'SELECT_NODE') {
      for (const entry of ((node.cte_map as { map?: { key: string }[] } | undefined)?.map ?? [])) cteNames.add(entry.key.toLowerCase());
      for (const [key, child] of Object.entries(node)) visit(child, node, key === 'from_table');
      return;
    }
    if (isTableReference(node)) {
      const type = String(node.type);
      if (type === 'BASE_TABLE') {
        if (node.schema_name || node.catalog_name) {
          refusal = `"${[node.catalog_name, node.schema_name, node.table_name].filter(Boolean).join('.')}": name datasets without a schema or catalog`;
          return;
        }
        references.push({ name: String(node.table_name), ref: node, selectNode: direct ? selectNode : null });
      } else if (type === 'TABLE_FUNCTION') {
        const fn = node.function as Node;
        const name = String(fn.function_name ?? '').toLowerCase();
        if (name === 'dataset' && !fn.schema && !fn.catalog) {
          const args = (fn.children as Node[] | undefined) ?? [];
          const slug = constantOf(args[0], params);
          if (args.length !== 1 || typeof slug?.value !== 'string') {
            refusal = "dataset(…) takes one string: the dataset's slug, e.g. dataset('cpu-usage')";
            return;
          }
          references.push({ name: slug.value, ref: node, selectNode: direct ? selectNode : null });
        } else if (!GENERATING_FUNCTIONS.has(name) || fn.schema || fn.catalog) {
          refusal = `table function ${name}(…) is not available: statements read datasets only (by name, or dataset('slug'))`;
          return;
        }
      } else if (!PLAIN_REFERENCES.has(type)) {
        refusal = `${type.toLowerCase()} is not available in SQL statements`;
        return;
      }
      for (const [key, child] of Object.entries(node)) if (key !== 'function') visit(child, selectNode, false);
      if (type === 'TABLE_FUNCTION') visit((node.function as Node).children, selectNode, false);
      return;
    }
    for (const child of Object.values(node)) visit(child, selectNode, false);
  };
  visit(statements[0]!.node, null, false);
  if (refusal !== null) return { ok: false, code: 'sql_not_allowed', message: refusal };

  // A name that a CTE of the statement defines is the CTE (conservatively, wherever it appears).
  const named = references.filter((r) => r.ref.type !== 'BASE_TABLE' || !cteNames.has(r.name.toLowerCase()));
  const byName = new Map<string, typeof named>();
  for (const r of named) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  const datasets: DatasetReference[] = [...byName].map(([name, refs]) => {
    const only = refs.length === 1 ? refs[0]! : null;
    return { name, predicates: only?.selectNode ? predicatesOf(only.selectNode.where_clause as Node | null, referenceNames(only), params) : only ? [] : null };
  });
  return { ok: true, datasets };
}

/** Table references serialize `type`, `alias`, `sample` and `query_location`, and no expression `class`. */
function isTableReference(node: Node): boolean {
  return typeof node.type === 'string' && 'alias' in node && 'sample' in node && !('class' in node);
}

/** The names a column of this reference may be qualified with (DuckDB compares them without case). */
function referenceNames(r: { name: string; ref: Node }): Set<string> {
  const alias = String(r.ref.alias ?? '');
  return new Set([alias ? alias.toLowerCase() : r.name.toLowerCase()]);
}

const COMPARISONS: Record<string, FilterOp> = {
  COMPARE_EQUAL: 'eq',
  COMPARE_GREATERTHAN: 'gt',
  COMPARE_GREATERTHANOREQUALTO: 'gte',
  COMPARE_LESSTHAN: 'lt',
  COMPARE_LESSTHANOREQUALTO: 'lte',
};
const FLIPPED: Record<string, FilterOp> = { eq: 'eq', gt: 'lt', gte: 'lte', lt: 'gt', lte: 'gte' };

/** The top-level ANDed comparisons of `where` between a column of the reference and a constant. */
function predicatesOf(where: Node | null, qualifiers: Set<string>, params: SqlParam[]): SqlPredicate[] {
  if (!where) return [];
  const conjuncts = where.type === 'CONJUNCTION_AND' ? ((where.children as Node[]) ?? []) : [where];
  const found: SqlPredicate[] = [];
  for (const c of conjuncts) {
    const type = String(c.type);
    if (type in COMPARISONS) {
      let column = columnOf(c.left as Node, qualifiers);
      let constant = constantOf(c.right as Node, params);
      let op = COMPARISONS[type]!;
      if (column === null || constant === null) {
        column = columnOf(c.right as Node, qualifiers);
        constant = constantOf(c.left as Node, params);
        op = FLIPPED[op]!;
      }
      if (column !== null && constant !== null && constant.value !== null) {
        found.push({ column, op, value: constant.value, ...(constant.timestamp ? { timestamp: true } : {}) });
      }
    } else if (type === 'COMPARE_BETWEEN') {
      const column = columnOf(c.input as Node, qualifiers);
      const lower = constantOf(c.lower as Node, params);
      const upper = constantOf(c.upper as Node, params);
      if (column !== null && lower?.value != null) found.push({ column, op: 'gte', value: lower.value, ...(lower.timestamp ? { timestamp: true } : {}) });
      if (column !== null && upper?.value != null) found.push({ column, op: 'lte', value: upper.value, ...(upper.timestamp ? { timestamp: true } : {}) });
    } else if (type === 'COMPARE_IN') {
      const [first, ...rest] = (c.children as Node[]) ?? [];
      const column = first ? columnOf(first, qualifiers) : null;
      const constants = rest.map((r) => constantOf(r, params));
      if (column !== null && constants.length > 0 && constants.every((k) => k !== null && k.value !== null)) {
        found.push({ column, op: 'in', values: constants.map((k) => k!.value as FilterValue) });
      }
    }
  }
  return found;
}

function columnOf(node: Node | undefined, qualifiers: Set<string>): string | null {
  if (!node || node.class !== 'COLUMN_REF') return null;
  const names = node.column_names as string[];
  if (names.length === 1) return names[0]!;
  if (names.length === 2 && qualifiers.has(names[0]!.toLowerCase())) return names[1]!;
  return null;
}

const TIMESTAMP_TYPES = new Set(['TIMESTAMP', 'TIMESTAMP WITH TIME ZONE', 'TIMESTAMP_TZ', 'TIMESTAMPTZ', 'DATE', 'TIMESTAMP_MS', 'TIMESTAMP_NS', 'TIMESTAMP_S']);

/** A constant (a literal, a bound parameter, or a string cast to a timestamp type). */
function constantOf(node: Node | undefined, params: SqlParam[]): { value: FilterValue | null; timestamp?: boolean } | null {
  if (!node) return null;
  if (node.class === 'CONSTANT') {
    const v = node.value as { is_null: boolean; value: unknown; type: { id: string } };
    if (v.is_null) return { value: null };
    if (typeof v.value === 'string' || typeof v.value === 'boolean') return { value: v.value };
    if (typeof v.value === 'number' && Number.isFinite(v.value)) return { value: v.value };
    return null;
  }
  if (node.class === 'PARAMETER') {
    const index = Number(node.identifier);
    if (!Number.isInteger(index) || index < 1 || index > params.length) return null;
    return { value: params[index - 1] as FilterValue | null };
  }
  if (node.class === 'CAST' && !node.try_cast && TIMESTAMP_TYPES.has(String((node.cast_type as { id: string }).id))) {
    const inner = constantOf(node.child as Node, params);
    return inner && typeof inner.value === 'string' ? { value: inner.value, timestamp: true } : null;
  }
  return null;
}

/** A dataset as the sandbox shows it: a view named by its slug over its pinned files. */
export interface SqlTable {
  name: string;
  /** Local Parquet paths; empty for a dataset with no partition to read (the view has no rows). */
  files: string[];
  /** Every field of the dataset's schema, in order: the view's columns. */
  fields: { name: string; type: FieldType }[];
  /** The fields that at least one of the files holds (others are NULL). */
  fieldsInFiles: string[];
  /** Every file was written under one schema version: read as they are, without combining columns by name. */
  oneSchema?: boolean;
}

export interface SqlStatementInput {
  sql: string;
  params: SqlParam[];
  tables: SqlTable[];
  /** Directories the sandbox may read (each ends with `/`): every file of `tables` is under one. */
  readableDirectories: string[];
  timeoutMs: number;
  memoryLimitBytes: number;
  /** Rows answered at most (the stream then says `truncated`). */
  limit: number;
}

export type SqlStreamInput = SqlStatementInput & Pick<QueryStreamInput, 'port' | 'batchRows' | 'idleTimeoutMs'>;

/** The view of one dataset: its fields in schema order, NULL for those no file holds. */
export function viewSql(table: SqlTable): string {
  const present = new Set(table.fieldsInFiles);
  const columns = table.fields.map((f) =>
    table.files.length > 0 && present.has(f.name) ? quoteIdent(f.name) : `CAST(NULL AS ${SQL_TYPES[f.type]}) AS ${quoteIdent(f.name)}`,
  );
  // As the JSON query reads them (query-sql.ts): hive_partitioning off, as partition directories are
  // named `key=value`; union_by_name only across schema versions.
  const byName = table.oneSchema ? '' : ', union_by_name = true';
  const from = table.files.length > 0 ? ` FROM read_parquet([${table.files.map(sqlString).join(', ')}]${byName}, hive_partitioning = false)` : ' WHERE false';
  return `CREATE OR REPLACE TEMP VIEW ${quoteIdent(table.name)} AS SELECT ${columns.join(', ')}${from}`;
}

interface Sandbox {
  key: string;
  instance: DuckDBInstance;
  /** The connection statements run on, kept between statements; made again after a failure. */
  connection: DuckDBConnection | null;
  /** The temporary views that connection holds: the statement that made each, by dataset name. */
  views: Map<string, string>;
}

/**
 * The sandboxed DuckDB instances of one worker thread, by the directories they may read: a few are
 * kept (least recently used dropped), since a dashboard asks the same datasets again and again and
 * an instance costs several milliseconds to make (and keeps its Parquet footer cache). Each keeps
 * one connection and its views: a view is made again only when its files changed (a new manifest
 * version), and views a statement does not name are dropped before it runs, so a statement sees
 * only the datasets it was checked for. Binding a view reads its files' schemas; making it for
 * every statement cost about a millisecond on a one-file dataset.
 */
export class SqlSandboxes {
  private readonly kept: Sandbox[] = [];

  constructor(
    private readonly create: (options: Record<string, string>) => Promise<DuckDBInstance>,
    private readonly tempDirectory: string,
    private readonly keep = 4,
  ) {}

  /** The sandbox's connection with exactly `tables` as views; `release(ok)` after the statement (a failed one drops the connection). */
  async connect(directories: string[], memoryLimitBytes: number, tables: SqlTable[]): Promise<{ db: DuckDBConnection; release(ok: boolean): void }> {
    for (const dir of directories) {
      if (!dir.startsWith('/') || !dir.endsWith('/') || dir.includes('\0')) throw new QueryError('invalid_query', `readable directory ${JSON.stringify(dir)} must be absolute and end with /`);
    }
    const sorted = [...new Set(directories)].sort();
    const key = JSON.stringify([sorted, memoryLimitBytes]);
    const index = this.kept.findIndex((s) => s.key === key);
    let sandbox: Sandbox;
    if (index >= 0) {
      sandbox = this.kept.splice(index, 1)[0]!;
    } else {
      sandbox = { key, instance: await this.open(sorted, memoryLimitBytes), connection: null, views: new Map() };
      while (this.kept.length >= this.keep) close(this.kept.shift()!);
    }
    this.kept.push(sandbox);
    const db = sandbox.connection ?? (await sandbox.instance.connect());
    sandbox.connection = null; // until released: a statement that fails leaves it closed
    const drop = () => {
      db.closeSync();
      sandbox.views.clear();
    };
    try {
      const wanted = new Map(tables.map((t) => [t.name, viewSql(t)]));
      for (const name of [...sandbox.views.keys()]) {
        if (wanted.has(name)) continue;
        await db.run(`DROP VIEW IF EXISTS ${quoteIdent(name)}`);
        sandbox.views.delete(name);
      }
      for (const [name, sql] of wanted) {
        if (sandbox.views.get(name) === sql) continue;
        await db.run(sql);
        sandbox.views.set(name, sql);
      }
    } catch (error) {
      drop();
      throw error;
    }
    return {
      db,
      release: (ok) => {
        if (ok && this.kept.includes(sandbox)) sandbox.connection = db;
        else drop();
      },
    };
  }

  private async open(directories: string[], memoryLimitBytes: number): Promise<DuckDBInstance> {
    const instance = await this.create({
      threads: '1',
      memory_limit: `${memoryLimitBytes} bytes`,
      temp_directory: this.tempDirectory,
      autoinstall_known_extensions: 'false',
      autoload_known_extensions: 'false',
      allow_community_extensions: 'false',
    });
    const db = await instance.connect();
    try {
      // GLOBAL: a plain SET of these is the connection's own, and statements run on other connections.
      await db.run('SET GLOBAL parquet_metadata_cache = true');
      await db.run(`SET GLOBAL TimeZone = 'UTC'`);
      for (const macro of SANDBOX_MACROS) await db.run(macro);
      if (directories.length > 0) await db.run(`SET allowed_directories = [${directories.map(sqlString).join(', ')}]`);
      // Order matters: the allowed directories can only be set while external access is on.
      await db.run('SET enable_external_access = false');
      await db.run('SET lock_configuration = true');
    } catch (error) {
      instance.closeSync();
      throw error;
    } finally {
      db.closeSync();
    }
    return instance;
  }

  close(): void {
    for (const s of this.kept.splice(0)) close(s);
  }
}

function close(sandbox: Sandbox): void {
  sandbox.connection?.closeSync();
  sandbox.connection = null;
  sandbox.instance.closeSync();
}

/** Runs a statement in the sandbox and posts its rows to `input.port` (the query stream protocol). */
export async function runSqlStream(sandboxes: SqlSandboxes, input: SqlStreamInput): Promise<QueryStreamSummary> {
  let held: Awaited<ReturnType<SqlSandboxes['connect']>>;
  try {
    // The views are made before streaming starts.
    held = await sandboxes.connect(input.readableDirectories, input.memoryLimitBytes, input.tables);
  } catch (error) {
    input.port.close();
    throw sqlFailure(error);
  }
  let ok = false;
  try {
    const summary = await streamToPort(input, () => ({
      limit: input.limit,
      run: async (sink) => {
        try {
          await executeStatement(held.db, { sql: input.sql, bind: (p) => bindParams(p, input.params), columns: null, timeoutMs: input.timeoutMs }, sink);
        } catch (error) {
          throw sqlFailure(error);
        }
      },
    }));
    ok = !summary.cancelled;
    return summary;
  } finally {
    held.release(ok);
  }
}

function bindParams(prepared: DuckDBPreparedStatement, params: SqlParam[]): void {
  if (prepared.parameterCount !== params.length) {
    throw new QueryError('sql_error', `the statement has ${prepared.parameterCount} parameters ($1, ?) and ${params.length} values were sent in params`);
  }
  params.forEach((value, i) => {
    const index = i + 1;
    if (value === null) prepared.bindNull(index);
    else if (typeof value === 'string') prepared.bindVarchar(index, value);
    else if (typeof value === 'boolean') prepared.bindBoolean(index, value);
    else if (typeof value === 'number' && Number.isSafeInteger(value)) prepared.bindBigInt(index, BigInt(value));
    else if (typeof value === 'number' && Number.isFinite(value)) prepared.bindDouble(index, value);
    else throw new QueryError('sql_error', `params[${i}] must be a string, a finite number, a boolean or null`);
  });
}

/** DuckDB's errors of the statement as the client's: refused access as `sql_not_allowed`, the rest as `sql_error`. */
function sqlFailure(error: unknown): unknown {
  // A value that does not convert is the statement's fault here (the JSON query calls it invalid_query).
  if (error instanceof QueryError && error.code === 'invalid_query' && error.cause instanceof Error && /^Conversion Error/.test(error.cause.message)) {
    return new QueryError('sql_error', error.cause.message, { cause: error.cause });
  }
  if (error instanceof QueryError || !(error instanceof Error)) return error;
  const message = error.message;
  if (/^Permission Error/.test(message)) return new QueryError('sql_not_allowed', message, { cause: error });
  if (/^(Parser|Binder|Catalog|Conversion|Invalid Input|Not implemented|Out of Range|Type Mismatch|Invalid Type|Syntax|Parameter|Dependency|Constraint|Sequence|Serialization|Invalid) Error/i.test(message)) {
    return new QueryError('sql_error', message, { cause: error });
  }
  return error;
}
