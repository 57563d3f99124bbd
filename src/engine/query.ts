/**
 * The query task, run inside a worker thread (tasks `query` and `queryStream` in worker.ts) on the
 * thread's DuckDB connection. The caller (the query service) has already checked the request
 * against the dataset's schema, pruned partitions and made every file local; this module checks
 * the input again (identifiers, types, shapes), builds one parameterised statement
 * (query-sql.ts), runs it and converts the values:
 *
 * - timestamps: ISO-8601 UTC with `Z` and milliseconds (`2026-01-01T00:00:00.000Z`, as
 *   `Date#toISOString`), with six fractional digits when the value has sub-millisecond precision
 *   (`…00.000001Z`);
 * - BIGINT/HUGEINT (integer columns, `count`, `sum` of integers): a number when it is a safe
 *   integer, else its decimal string;
 * - DOUBLE: a number (rows travel between threads as JSON, so a non-finite double, which ingest
 *   refuses but an overflowing `sum` could produce, arrives as null); VARCHAR: a string; BOOLEAN:
 *   a boolean; NULL: null.
 *
 * Semantics worth knowing (see query-sql.ts for the SQL):
 * - downsample buckets are aligned to the UNIX epoch in UTC and labelled by their start, under the
 *   timestamp column's name. Weeks are 7-day buckets from 1970-01-01, a THURSDAY (not ISO weeks);
 *   months are calendar months in UTC, `intervalSize` months counted from 1970-01;
 * - `count` counts the column's non-null values; `count` of `*` counts rows; `count_distinct`
 *   counts distinct non-null values; `first`/`last` are the column's value at the earliest/latest
 *   timestamp among the bucket's rows where the column is not null (DuckDB `arg_min`/`arg_max`;
 *   on equal timestamps any of the tied rows); `percentile` is `quantile_cont` (linear
 *   interpolation), `median` its 0.5;
 * - filters never match NULL except `neq` (NULL is not equal to a value), `eq null` (IS NULL) and
 *   `neq null` (IS NOT NULL);
 * - raw rows are ordered by time only (rows with equal timestamps come in no defined order); groups
 *   within a bucket by the groupBy columns ascending, NULLs last;
 * - `latest` answers one row per `by` combination, its latest by model/series.ts `latestRowOrder`
 *   (time, then every field as a tie-break: one answer whatever the files), ordered by `by`.
 *
 * The session's TimeZone is set to UTC for the query (and left so), and `memory_limit` to
 * `memoryLimitBytes` (the instance's own limit when not given), left so until a task needs another
 * (session-settings.ts; the worker runs one task at a time; the limit is instance-wide). A query running longer than `timeoutMs` is interrupted (DuckDB
 * connection interrupt) and fails with {@link QueryError} `query_timeout` (footers are read while
 * the statement is prepared, which DuckDB cannot interrupt; the timeout then strikes right after);
 * running out of memory fails with `query_memory_limit`; a value that does not convert to its
 * column's type with `invalid_query`.
 *
 * Like partition-writer.ts, this module imports `@duckdb/node-api` for types only: at run time it
 * is loaded by the worker after DuckDB's native library. The main thread may import it (for
 * {@link QueryError} and the types); it never touches DuckDB there.
 */
import type { DuckDBConnection, DuckDBDataChunk, DuckDBPreparedStatement, DuckDBResult, DuckDBType } from '@duckdb/node-api';
import type { FieldType } from '../model/field-types.ts';
import { isoFromMicrosTrimmed } from '../model/timestamps.ts';
import { type BuiltQuery, buildQuery, InvalidQueryError, MAX_TIMER_MS, type QueryColumn, type QueryInput, type QueryRow, type QueryValue, type SqlParam } from './query-sql.ts';
import { useMemoryLimit, useThreads, useTimeZone } from './session-settings.ts';
import {
  MAX_BATCH_ROWS,
  type QueryStreamControl,
  type QueryStreamInput,
  type QueryStreamMessage,
  type QueryStreamSummary,
  STREAM_WINDOW,
} from './query-stream-protocol.ts';

export type { QueryColumn, QueryField, QueryInput, QueryRow, QueryValue } from './query-sql.ts';

export interface QueryOutput {
  columns: QueryColumn[];
  rows: QueryRow[];
  /** True when the query had more than `limit` rows (only `limit` are returned). */
  truncated: boolean;
}

/** The output and when each of the query's statements ran, for its trace. */
export type TimedQueryOutput = QueryOutput & { statements: StatementTiming[] };

/** As the worker sends it: also the task's time on its query thread, up to encoding its output. */
export type WorkerQueryOutput = TimedQueryOutput & { onThreadMs: number };

/** When one statement ran: epoch milliseconds from the thread's time origin and `performance.now()` (comparable across threads). */
export interface StatementTimes {
  startedAt: number;
  /** DuckDB had bound, planned and run the statement: to its end when materialized, to its first rows when streamed. */
  executedAt: number;
  /** Its last row was read and converted. */
  endedAt: number;
}

/** `files`: the statement that finds which files hold a match (a raw read's first); `rows`: the answer's. */
export type StatementTiming = StatementTimes & { role: 'files' | 'rows' };

function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * A query's output as the worker sends it: one UTF-8 buffer, a JSON line with `columns`,
 * `truncated` and `rowCount`, a newline, then the rows as a JSON array. The main thread reads the
 * head and hands the rows on as bytes (an HTTP answer needs them as JSON anyway); parsing and
 * re-serialising 13,000 rows took about 11 ms of its time.
 */
export function encodeQueryOutput(output: WorkerQueryOutput): Uint8Array {
  const { rows, ...rest } = output;
  return new TextEncoder().encode(`${JSON.stringify({ ...rest, rowCount: rows.length })}\n${JSON.stringify(rows)}`);
}

/** {@link WorkerQueryOutput} with its rows left as bytes. */
export type EncodedQueryOutput = Omit<WorkerQueryOutput, 'rows'> & {
  rowCount: number;
  /** The rows, a JSON array of row objects, UTF-8. */
  rowsJson: Uint8Array;
};

/** The parts of {@link encodeQueryOutput}'s buffer, the rows left as bytes. */
export function decodeQueryOutput(buffer: Uint8Array): EncodedQueryOutput {
  const newline = buffer.indexOf(0x0a); // JSON text never holds a raw newline
  const head = JSON.parse(new TextDecoder().decode(buffer.subarray(0, newline))) as Omit<EncodedQueryOutput, 'rowsJson'>;
  return { ...head, rowsJson: buffer.subarray(newline + 1) };
}

export type QueryErrorCode = 'query_timeout' | 'query_memory_limit' | 'invalid_query' | 'query_stream_abandoned' | 'sql_error' | 'sql_not_allowed';

/**
 * A failure with a machine-readable code. The message starts with `<code>: ` so the code survives
 * the trip out of the worker thread; {@link toQueryError} restores the class on the other side.
 */
export class QueryError extends Error {
  override name = 'QueryError';
  constructor(
    readonly code: QueryErrorCode,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${detail}`, options);
  }
}

const CODES: ReadonlySet<string> = new Set<QueryErrorCode>(['query_timeout', 'query_memory_limit', 'invalid_query', 'query_stream_abandoned', 'sql_error', 'sql_not_allowed']);

/** `error` as a {@link QueryError} when its message carries one of the codes; else unchanged. */
export function toQueryError(error: unknown): unknown {
  if (error instanceof QueryError || !(error instanceof Error)) return error;
  const match = /^([a-z_]+): ([\s\S]*)$/.exec(error.message);
  if (!match || !CODES.has(match[1]!)) return error;
  return new QueryError(match[1] as QueryErrorCode, match[2]!, { cause: error });
}

/** Runs a query and returns every row (at most `limit`). */
export async function runQuery(db: DuckDBConnection, input: QueryInput): Promise<TimedQueryOutput> {
  const built = build(input);
  const rows: QueryRow[] = [];
  let columns: QueryColumn[] = [];
  let truncated = false;
  const statements = await execute(db, input, built, { materialize: true }, {
    onColumns: (c) => {
      columns = c;
    },
    onRow: (row) => {
      if (rows.length === built.limit) {
        truncated = true;
        return false;
      }
      rows.push(row);
      return true;
    },
  });
  return { columns, rows, truncated, statements };
}

/** Runs a query and posts its rows to `input.port` in batches; see {@link QueryStreamMessage}. */
export async function runQueryStream(db: DuckDBConnection, input: QueryStreamInput): Promise<QueryStreamSummary> {
  return streamToPort(input, () => {
    const built = build(input);
    return { limit: built.limit, run: (sink) => execute(db, input, built, { materialize: false }, sink) };
  });
}

/**
 * Posts the rows a statement yields to `input.port` in batches (see {@link QueryStreamMessage}),
 * at most `limit` rows, under the protocol's flow control. `start` checks and builds the statement
 * (a failure there fails the stream like a failure of the statement); `run` executes it into a sink.
 */
export async function streamToPort(
  input: Pick<QueryStreamInput, 'port' | 'batchRows' | 'idleTimeoutMs'>,
  start: () => { limit: number; run(sink: Sink): Promise<unknown> },
): Promise<QueryStreamSummary> {
  const { port, batchRows } = input;
  const idleTimeoutMs = input.idleTimeoutMs ?? 120_000;
  if (!port || typeof port.postMessage !== 'function') throw new QueryError('invalid_query', 'queryStream needs a MessagePort');
  try {
    if (!Number.isSafeInteger(batchRows) || batchRows <= 0 || batchRows > MAX_BATCH_ROWS) {
      throw new QueryError('invalid_query', `batchRows must be an integer from 1 to ${MAX_BATCH_ROWS}, got ${batchRows}`);
    }
    if (!Number.isFinite(idleTimeoutMs) || idleTimeoutMs <= 0 || idleTimeoutMs > MAX_TIMER_MS) {
      throw new QueryError('invalid_query', `idleTimeoutMs must be a positive number up to ${MAX_TIMER_MS}, got ${idleTimeoutMs}`);
    }
    const { limit, run } = start();
    let credits = STREAM_WINDOW;
    let cancelled = false;
    let wake: (() => void) | undefined;
    let execution: Execution | undefined;
    port.on('message', (message: QueryStreamControl) => {
      if (message?.type === 'ack') credits += 1;
      else if (message?.type === 'cancel') {
        cancelled = true;
        execution?.interrupt();
      }
      wake?.();
    });
    const encoder = new TextEncoder();
    const send = async (batch: QueryRow[]) => {
      if (credits === 0) {
        // Waiting for the consumer is not query time.
        execution?.pause();
        try {
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(
              () => reject(new QueryError('query_stream_abandoned', `the consumer took no batch for ${idleTimeoutMs} ms`)),
              idleTimeoutMs,
            );
            wake = () => {
              if (credits > 0 || cancelled) {
                clearTimeout(timer);
                wake = undefined;
                resolve();
              }
            };
          });
        } finally {
          execution?.resume();
        }
      }
      if (cancelled) return;
      credits -= 1;
      const json = encoder.encode(JSON.stringify(batch));
      port.postMessage({ type: 'rows', json, count: batch.length } satisfies QueryStreamMessage, [json.buffer as ArrayBuffer]);
    };

    let batch: QueryRow[] = [];
    let rowCount = 0;
    let truncated = false;
    const reading = run({
      onStart: (e) => {
        execution = e;
      },
      onColumns: (columns) => port.postMessage({ type: 'columns', columns } satisfies QueryStreamMessage),
      onRow: (row) => {
        if (cancelled) return false;
        if (rowCount === limit) {
          truncated = true;
          return false;
        }
        rowCount += 1;
        batch.push(row);
        return true;
      },
      onChunkEnd: async () => {
        while (batch.length >= batchRows && !cancelled) {
          const full = batch.length === batchRows ? batch : batch.slice(0, batchRows);
          batch = batch.length === batchRows ? [] : batch.slice(batchRows);
          await send(full);
        }
        return !cancelled;
      },
      isCancelled: () => cancelled,
    });
    try {
      await reading;
    } catch (error) {
      // A cancel that interrupted DuckDB mid-read is not a failure.
      if (!cancelled) throw error;
    }
    execution = undefined; // DuckDB is done: no time budget, nothing to interrupt.
    // What is left when reading stopped (end of result, or the limit mid-chunk), in full batches.
    for (let i = 0; i < batch.length && !cancelled; i += batchRows) await send(batch.slice(i, i + batchRows));
    if (!cancelled) port.postMessage({ type: 'end', truncated, rowCount } satisfies QueryStreamMessage);
    return { rowCount, truncated, cancelled };
  } finally {
    port.close();
  }
}

function build(input: QueryInput): BuiltQuery {
  try {
    return buildQuery(input);
  } catch (error) {
    if (error instanceof InvalidQueryError) throw new QueryError('invalid_query', error.message);
    throw error;
  }
}

export interface Sink {
  onStart?(execution: Execution): void;
  onColumns(columns: QueryColumn[]): void;
  /** Returns false to stop reading. */
  onRow(row: QueryRow): boolean;
  /** After each chunk's rows; may wait (stream back-pressure). Returns false to stop reading. */
  onChunkEnd?(): Promise<boolean>;
  isCancelled?(): boolean;
}

/**
 * The time budget of one query: a timer that interrupts DuckDB when it runs out. Paused while a
 * stream waits for its consumer.
 */
export class Execution {
  expired = false;
  /** A DuckDB call is in flight (an interrupt reaches it). */
  active = false;
  private remaining: number;
  private startedAt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly db: DuckDBConnection,
    readonly timeoutMs: number,
  ) {
    this.remaining = timeoutMs;
  }

  resume(): void {
    if (this.timer !== undefined || this.expired) return;
    this.startedAt = performance.now();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.expired = true;
      this.interrupt();
    }, Math.max(0, this.remaining));
  }

  pause(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.remaining -= performance.now() - this.startedAt;
  }

  /** Interrupts the running DuckDB call, if any (an interrupt while idle is never sent). */
  interrupt(): void {
    if (this.active) this.db.interrupt();
  }

  /** Runs one DuckDB call within the budget. */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    this.check();
    this.active = true;
    try {
      return await fn();
    } finally {
      this.active = false;
    }
  }

  check(): void {
    if (this.expired) throw this.timeoutError();
  }

  timeoutError(cause?: unknown): QueryError {
    return new QueryError('query_timeout', `the query ran longer than its limit of ${this.timeoutMs} ms and was interrupted`, { cause });
  }
}

async function execute(db: DuckDBConnection, input: QueryInput, built: BuiltQuery, how: { materialize: boolean }, sink: Sink): Promise<StatementTiming[]> {
  // The session stays in UTC afterwards (nothing in the worker wants another zone; the partition
  // writer sets and restores its own), and under the query's memory limit until a task needs another.
  await useTimeZone(db, 'UTC');
  await useMemoryLimit(db, input.memoryLimitBytes ?? null);
  await useThreads(db, input.threads ?? 1);
  let statement = built;
  let timeoutMs = input.timeoutMs;
  const timings: StatementTiming[] = [];
  if (built.narrowing) {
    const { holding, times } = await filesHoldingMatches(db, built.narrowing, timeoutMs);
    timings.push({ role: 'files', ...times });
    timeoutMs = Math.max(1, timeoutMs - (times.endedAt - times.startedAt));
    // The same query over the files that hold a match (none: a statement of no rows with the columns'
    // types). Those files may lack fields that others have, unless all share one schema version.
    if (holding.size < input.files.length) {
      const files = input.files.filter((file) => holding.has(file));
      statement = build({ ...input, files, ...(input.oneSchema ? {} : { fieldsInFiles: undefined }) });
    }
  }
  const { sql, params, columns } = statement;
  const times = await executeStatement(db, { sql, bind: (prepared) => bind(prepared, params), columns, timeoutMs, keep: true, ...how }, sink);
  timings.push({ role: 'rows', ...times });
  return timings;
}

/** The files a {@link BuiltQuery.narrowing} statement names. */
async function filesHoldingMatches(
  db: DuckDBConnection,
  narrowing: NonNullable<BuiltQuery['narrowing']>,
  timeoutMs: number,
): Promise<{ holding: Set<string>; times: StatementTimes }> {
  const holding = new Set<string>();
  const times = await executeStatement(
    db,
    { sql: narrowing.sql, bind: (prepared) => bind(prepared, narrowing.params), columns: ['file'], timeoutMs, keep: true, materialize: true },
    {
      onColumns() {},
      onRow(row) {
        holding.add(row.file as string);
        return true;
      },
    },
  );
  return { holding, times };
}

/** One statement for {@link executeStatement}: its text, how its parameters are bound, its columns' names. */
export interface Statement {
  sql: string;
  bind(prepared: DuckDBPreparedStatement): void;
  /** The columns' names as answered; null: the names DuckDB gives them (a repeated name gets `_2`, `_3`, …). */
  columns: string[] | null;
  timeoutMs: number;
  /**
   * Keep the prepared statement for the next one of the same text on this connection (statements
   * built here, whose texts are few: files and values are parameters).
   */
  keep?: boolean;
  /**
   * Run it to the end in one call and read its rows from memory, for a result that is kept whole
   * anyway (bounded by the statement's LIMIT): one trip to DuckDB instead of one per chunk and a
   * last empty one, 0.15 ms of a one-host hour. Streamed answers fetch chunk by chunk.
   */
  materialize?: boolean;
}

/**
 * Prepared statements kept per connection by their text, at most {@link KEPT_STATEMENTS}, the
 * least recently used dropped first. Preparing (parsing, binding, planning) was 0.4 ms of a 4.6 ms
 * one-host query through HTTP (docs/performance.md). A statement is taken out while it runs and
 * put back only after its rows were read to the end, never after a failure.
 */
const kept = new WeakMap<DuckDBConnection, Map<string, DuckDBPreparedStatement>>();
const KEPT_STATEMENTS = 32;

function takeKept(db: DuckDBConnection, sql: string): DuckDBPreparedStatement | undefined {
  const statements = kept.get(db);
  const prepared = statements?.get(sql);
  if (prepared) statements!.delete(sql);
  return prepared;
}

function putBack(db: DuckDBConnection, sql: string, prepared: DuckDBPreparedStatement): void {
  let statements = kept.get(db);
  if (!statements) kept.set(db, (statements = new Map()));
  const older = statements.get(sql);
  if (older) {
    statements.delete(sql);
    older.destroySync();
  }
  statements.set(sql, prepared);
  if (statements.size > KEPT_STATEMENTS) {
    const [oldest, statement] = statements.entries().next().value!;
    statements.delete(oldest);
    statement.destroySync();
  }
}

/** Prepares, binds and runs one statement into `sink` (streamed, or whole) within its time budget, converting every value. */
export async function executeStatement(db: DuckDBConnection, statement: Statement, sink: Sink): Promise<StatementTimes> {
  const startedAt = wallClockMs();
  let executedAt = startedAt;
  const execution = new Execution(db, statement.timeoutMs);
  sink.onStart?.(execution);
  let prepared: DuckDBPreparedStatement | undefined;
  let exhausted = false;
  try {
    execution.resume();
    prepared = statement.keep ? takeKept(db, statement.sql) : undefined;
    if (prepared) prepared.clearBindings();
    // prepare() refuses text with more than one statement.
    else prepared = await execution.call(() => db.prepare(statement.sql));
    statement.bind(prepared);
    const materialized = statement.materialize ? await execution.call(() => prepared!.run()) : null;
    const result: DuckDBResult = materialized ?? (await execution.call(() => prepared!.stream()));
    executedAt = wallClockMs();
    // A materialized result has run to its end: nothing is left open, whatever the sink reads.
    if (materialized) exhausted = true;
    let next = 0;
    const nextChunk = (): Promise<DuckDBDataChunk | null> | DuckDBDataChunk | null =>
      materialized ? (next < materialized.chunkCount ? materialized.getChunk(next++) : null) : execution.call(() => result.fetchChunk());
    const converters = result.columnTypes().map(converterFor);
    const names = statement.columns ?? distinctNames(result.columnNames());
    if (converters.length !== names.length) throw new Error(`the query returned ${converters.length} columns, expected ${names.length}`);
    sink.onColumns(names.map((name, i) => ({ name, type: converters[i]!.type })));

    reading: while (true) {
      const chunk = await nextChunk();
      if (!chunk || chunk.rowCount === 0) {
        exhausted = true;
        break;
      }
      const count = chunk.rowCount;
      const columns = names.map((_, i) => chunk.getColumnVector(i));
      for (let r = 0; r < count; r++) {
        const row: QueryRow = {};
        for (let c = 0; c < names.length; c++) row[names[c]!] = converters[c]!.convert(columns[c]!.getItem(r));
        if (!sink.onRow(row)) break reading;
      }
      if (sink.onChunkEnd && !(await sink.onChunkEnd())) break;
    }
    execution.check();
    if (exhausted && statement.keep) {
      putBack(db, statement.sql, prepared);
      prepared = undefined;
    }
    return { startedAt, executedAt, endedAt: wallClockMs() };
  } catch (error) {
    throw classify(error, execution, sink.isCancelled?.() ?? false);
  } finally {
    execution.pause();
    prepared?.destroySync();
    // The next statement on the connection ends a streaming result left open by an early stop
    // (limit, cancel, failure), releasing what it holds now rather than at the next task.
    if (!exhausted) await db.run('SELECT 1');
  }
}

/** Column names made unique for row objects: the second `x` becomes `x_2`. */
function distinctNames(names: string[]): string[] {
  const taken = new Set<string>();
  return names.map((name) => {
    let unique = name;
    for (let n = 2; taken.has(unique); n++) unique = `${name}_${n}`;
    taken.add(unique);
    return unique;
  });
}

function classify(error: unknown, execution: Execution, cancelled: boolean): unknown {
  if (error instanceof QueryError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/^INTERRUPT Error/.test(message) || execution.expired) {
    if (execution.expired) return execution.timeoutError(error);
    if (cancelled) return new Error('the query was cancelled', { cause: error });
  }
  if (/^Conversion Error/.test(message)) {
    // A value that does not convert to its column's type (e.g. a malformed timestamp string).
    return new QueryError('invalid_query', message.split('\n')[0]!, { cause: error });
  }
  if (/Out of Memory Error/i.test(message) && /max_temp_directory_size/.test(message)) {
    return new QueryError(
      'query_memory_limit',
      `the query needed more disk to spill to than TIMESTORE_DUCKDB_MAX_SPILL_BYTES allows: ${message.split('\n')[0]}`,
      { cause: error },
    );
  }
  if (/Out of Memory Error/i.test(message)) {
    return new QueryError('query_memory_limit', `the query needed more memory than its limit allows: ${message.split('\n')[0]}`, { cause: error });
  }
  return error;
}

function bind(prepared: DuckDBPreparedStatement, params: SqlParam[]): void {
  params.forEach((p, i) => {
    const index = i + 1;
    switch (p.type) {
      case 'varchar':
        prepared.bindVarchar(index, p.value);
        break;
      case 'double':
        prepared.bindDouble(index, p.value);
        break;
      case 'bigint':
        prepared.bindBigInt(index, p.value);
        break;
      case 'boolean':
        prepared.bindBoolean(index, p.value);
        break;
      case 'varchar[]':
        // The list's type (VARCHAR[]) is inferred from its string items.
        prepared.bindList(index, p.value);
        break;
    }
  });
}

interface Converter {
  type: FieldType;
  convert(value: unknown): QueryValue;
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

const integer = (value: unknown): QueryValue => {
  if (value === null) return null;
  if (typeof value === 'number') return value;
  const big = value as bigint;
  return big >= MIN_SAFE && big <= MAX_SAFE ? Number(big) : big.toString();
};

/** Timestamps as ISO strings; a column's converter remembers its last one (a bucket's label repeats on every row of its groups). */
function timestampConverter(): (value: unknown) => QueryValue {
  let lastMicros: bigint | undefined;
  let lastIso = '';
  return (value) => {
    if (value === null) return null;
    const micros = (value as { micros: bigint }).micros;
    if (micros !== lastMicros) {
      lastMicros = micros;
      lastIso = isoFromMicrosTrimmed(micros);
    }
    return lastIso;
  };
}

const passThrough = (value: unknown): QueryValue => value as QueryValue;

function converterFor(type: DuckDBType): Converter {
  const name = type.toString();
  switch (name) {
    case 'TIMESTAMP WITH TIME ZONE':
    case 'TIMESTAMP':
      return { type: 'timestamp', convert: timestampConverter() };
    case 'BIGINT':
    case 'HUGEINT':
    case 'UBIGINT':
    case 'UHUGEINT':
    case 'INTEGER':
    case 'UINTEGER':
    case 'SMALLINT':
    case 'USMALLINT':
    case 'TINYINT':
    case 'UTINYINT':
      return { type: 'integer', convert: integer };
    case 'DOUBLE':
    case 'FLOAT':
      return { type: 'double', convert: passThrough };
    case 'VARCHAR':
      return { type: 'string', convert: passThrough };
    case 'BOOLEAN':
      return { type: 'boolean', convert: passThrough };
    default:
      if (name.startsWith('DECIMAL')) {
        return { type: 'double', convert: (v) => (v === null ? null : (v as { toDouble(): number }).toDouble()) };
      }
      return { type: 'string', convert: (v) => (v === null ? null : String(v)) };
  }
}
