/**
 * The worker pool: Piscina threads, each with its own DuckDB instance (see worker.ts), in one
 * lane per workload (lanes.ts): ingest writes, queries, streamed queries, lifecycle writes, and
 * the readiness ping. All DuckDB work goes through here.
 */
import { mkdirSync } from 'node:fs';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { join } from 'node:path';
import { extractDuckDBLibrary } from './duckdb-runtime.ts';
import { Lane, type LaneLimits, type LaneStats, type Workload } from './lanes.ts';
import type { WritePartitionsInput, WritePartitionsResult } from './partition-writer.ts';
import { readsInAnyOrder } from './query-sql.ts';
import { decodeQueryOutput, type EncodedQueryOutput, QueryError, type QueryColumn, type QueryInput, type QueryOutput, type QueryRow, toQueryError } from './query.ts';
import type { QueryStreamControl, QueryStreamInput, QueryStreamMessage, QueryStreamSummary } from './query-stream-protocol.ts';
import type { ParsedStatement, SqlParam, SqlStatementInput, SqlStreamInput } from './sql-statement.ts';
import type { PingResult, ThreadWarmUp, WarmUpInput, WorkerData } from './worker.ts';

/**
 * The worker module's path inside the compiled binary, defined by scripts/build.ts
 * (undefined from source). Compiled, this module is inlined into the main entry, whose
 * `import.meta.url` is the binary's own (`/$bunfs/root/timestore`), so a URL relative to it
 * would miss the worker, which is bundled as a separate entry point elsewhere in /$bunfs.
 */
declare const TIMESTORE_COMPILED_WORKER: string | undefined;
const WORKER_FILENAME =
  typeof TIMESTORE_COMPILED_WORKER === 'string' ? TIMESTORE_COMPILED_WORKER : new URL('./worker.ts', import.meta.url).href;

/** Threads and queue bound of each workload's lane (see lanes.ts); the health lane is always one thread. */
export interface WorkerPoolOptions {
  lanes: Record<Exclude<Workload, 'health'>, LaneLimits>;
  /** Most bytes each DuckDB instance may spill to its temp directory (max_temp_directory_size); null: DuckDB's default. */
  maxSpillBytes?: number | null;
}

/** Every lane of `threads` threads with a queue of 64: for tests and tools that need no tuning. */
export function uniformLanes(threads: number): WorkerPoolOptions {
  const lane = { threads, maxQueue: 64 };
  return { lanes: { ingest: lane, query: lane, stream: lane, lifecycle: lane } };
}

/** What warming has done since the pool started (see {@link WorkerPool.warmQueryThreads}). */
export interface WarmUpStats {
  /** Query threads that ran the made-up queries. */
  threadsCompiled: number;
  /** Footers read into a query thread's cache ahead of its queries (one per file per thread). */
  footersRead: number;
}

export class WorkerPool {
  private readonly warmed: WarmUpStats = { threadsCompiled: 0, footersRead: 0 };

  private constructor(private readonly lanes: Record<Workload, Lane>) {}

  /**
   * Starts the lanes (a number: {@link uniformLanes}); `runtimeDir` receives DuckDB's native
   * library when running compiled, and the instances' spill directories.
   */
  static async start(options: WorkerPoolOptions | number, runtimeDir: string): Promise<WorkerPool> {
    const { lanes, maxSpillBytes = null } = typeof options === 'number' ? uniformLanes(options) : options;
    const workerData: Omit<WorkerData, 'workload'> = {
      duckdbLibraryPath: await extractDuckDBLibrary(runtimeDir),
      duckdbTempDirectory: join(runtimeDir, 'duckdb-spill'),
      duckdbMaxTempDirectoryBytes: maxSpillBytes,
    };
    // DuckDB creates its temp directory when it first spills, but not the directories above it:
    // without them a query or write that outgrows its memory limit failed with an IO error.
    mkdirSync(workerData.duckdbTempDirectory, { recursive: true });
    const worker = { filename: WORKER_FILENAME, workerData };
    return new WorkerPool({
      ingest: new Lane('ingest', lanes.ingest, worker),
      query: new Lane('query', lanes.query, worker),
      stream: new Lane('stream', lanes.stream, worker),
      lifecycle: new Lane('lifecycle', lanes.lifecycle, worker),
      // /ready's engine check waits behind nothing: one thread that only answers pings.
      health: new Lane('health', { threads: 1, maxQueue: 16, eager: true }, worker),
    });
  }

  /** Whether no lane but the readiness ping's has a task in flight. */
  private idle(): boolean {
    return Object.values(this.lanes).every((lane) => lane.workload === 'health' || !lane.busy);
  }

  /** Threads over every lane. */
  get threads(): number {
    return Object.values(this.lanes).reduce((n, lane) => n + lane.stats().threads, 0);
  }

  /** Proves a worker thread answers and its DuckDB instance runs SQL, on the health lane (never behind other work). */
  ping(): Promise<PingResult> {
    return this.lanes.health.run(null, { name: 'ping' });
  }

  /** Writes staged inputs as Parquet files, one per (partition key, time window), with their statistics. */
  writePartitions(input: WritePartitionsInput, workload: 'ingest' | 'lifecycle' = 'ingest'): Promise<WritePartitionsResult> {
    return this.lanes[workload].run(input, { name: 'writePartitions' });
  }

  /**
   * Runs a query over local Parquet files (see query.ts) and returns its rows, at most
   * `mode.limit`. Fails with a {@link QueryError} (`query_timeout`, `query_memory_limit`,
   * `invalid_query`) or DuckDB's own error.
   */
  async query(input: QueryInput): Promise<QueryOutput> {
    const { columns, truncated, rowsJson } = await this.queryEncoded(input);
    return { columns, truncated, rows: JSON.parse(new TextDecoder().decode(rowsJson)) as QueryRow[] };
  }

  /**
   * The same, with the rows left as UTF-8 JSON (for an answer that sends them on as JSON), and the
   * DuckDB threads it ran on: a query that may read its rows in any order (`readsInAnyOrder`: a raw
   * read, or a downsample without first/last) and starts while no other DuckDB work runs (no
   * write, stream, lifecycle task or other query) runs on as many as the query lane has threads
   * (TIMESTORE_WORKER_THREADS, by default one per core), so that a lone large scan uses the
   * machine; anything else on one, so that many run side by side.
   */
  async queryEncoded(input: QueryInput): Promise<EncodedQueryOutput & { threads: number }> {
    const threads = readsInAnyOrder(input) && this.idle() ? this.lanes.query.stats().threads : 1;
    try {
      return await this.queryOn(input, threads);
    } catch (error) {
      // Every thread's hash tables need memory of their own before any of it can spill: a query
      // that one thread answers within its memory limit can run out of it on several.
      if (threads > 1 && error instanceof QueryError && error.code === 'query_memory_limit') return this.queryOn(input, 1);
      throw error;
    }
  }

  private async queryOn(input: QueryInput, threads: number): Promise<EncodedQueryOutput & { threads: number }> {
    let buffer: Uint8Array;
    try {
      // The worker answers with the output in a transferred buffer (encodeQueryOutput).
      buffer = await this.lanes.query.run({ ...input, threads }, { name: 'query' });
    } catch (error) {
      throw toQueryError(error);
    }
    return { ...decodeQueryOutput(buffer), threads };
  }

  /**
   * Warms every thread of the query lane (see warm-up.ts): `compile` runs made-up queries so that
   * the thread's JavaScript is compiled, and `files` (local Parquet files) have their footers read
   * into each thread's DuckDB cache. One task per thread, all started at once; a query that
   * arrives meanwhile waits for a thread like any other. Nothing is done (an empty list) while the
   * query lane has a task in flight: warming must not hold up queries.
   */
  async warmQueryThreads(options: { compile: boolean; files: string[] }): Promise<ThreadWarmUp[]> {
    if (this.lanes.query.busy) return [];
    const parties = this.lanes.query.stats().threads;
    const started = new SharedArrayBuffer(4);
    const tasks = Array.from({ length: parties }, async () => {
      const result = await this.lanes.query.run<ThreadWarmUp>({ ...options, started, parties } satisfies WarmUpInput, { name: 'warmUp' });
      if (result.queries > 0) this.warmed.threadsCompiled++;
      this.warmed.footersRead += result.footers;
      return result;
    });
    return Promise.all(tasks);
  }

  /** For metrics: what {@link warmQueryThreads} has done since start. */
  warmUpStats(): WarmUpStats {
    return { ...this.warmed };
  }

  /**
   * Runs a query and yields its rows in batches of `batchRows` as the worker reads them. The
   * worker stays at most two batches ahead of the consumer, so memory stays bounded whatever the
   * result's size; leaving the loop early (`break`, `return()`) cancels the query. The query holds
   * one worker thread until it ends, is cancelled, or the consumer takes no batch for
   * `idleTimeoutMs` (default 120 s; then it fails with `query_stream_abandoned`). Runs on the
   * stream lane: throws {@link WorkloadBusyError} at once when that lane is full.
   */
  queryStream(input: QueryInput, batchRows = 10_000, options: { idleTimeoutMs?: number } = {}): QueryStream {
    return this.stream('queryStream', (port) => ({
      ...input,
      port,
      batchRows,
      ...(options.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: options.idleTimeoutMs }),
    }));
  }


  /** Parses a read-only SQL statement (sql-statement.ts): the datasets it names, or why it is refused. */
  sqlParse(sql: string, params: SqlParam[]): Promise<ParsedStatement> {
    return this.lanes.query.run({ sql, params }, { name: 'sqlParse' });
  }

  /**
   * Runs a read-only SQL statement in the worker's sandbox, its rows streamed as by
   * {@link queryStream}, on the stream lane (every SQL answer is streamed).
   */
  sqlStream(input: SqlStatementInput, batchRows = 10_000): QueryStream {
    return this.stream('sqlStream', (port): SqlStreamInput => ({ ...input, port, batchRows }));
  }

  /** Runs a streaming task on the stream lane, its batches coming back over a port of its own. */
  private stream(name: 'queryStream' | 'sqlStream', task: (port: MessagePort) => QueryStreamInput | SqlStreamInput): QueryStream {
    const { port1, port2 } = new MessageChannel();
    // Piscina's TransferList type is inferred from MessagePort#postMessage, whose overloads differ
    // between Node's and Bun's typings; a MessagePort is transferable in both.
    let done: Promise<QueryStreamSummary>;
    try {
      done = this.lanes.stream.run(task(port2), { name, transferList: [port2] as never });
    } catch (error) {
      port1.close();
      port2.close();
      throw error;
    }
    return new QueryStream(port1, done);
  }


  /** For metrics: each lane's threads, running and waiting tasks, refusals and utilization. */
  stats(): Record<Workload, LaneStats & { utilization: number }> {
    const entries = Object.entries(this.lanes).map(([workload, lane]) => [workload, { ...lane.stats(), utilization: lane.utilization }]);
    return Object.fromEntries(entries) as Record<Workload, LaneStats & { utilization: number }>;
  }

  /** Waits for running tasks, then stops every thread. */
  async close(): Promise<void> {
    await Promise.all(Object.values(this.lanes).map((lane) => lane.close()));
  }
}

/**
 * The rows of a streamed query, in batches: `for await (const rows of stream)`. `columns()` answers
 * before the first batch; `summary` is set once the last batch has been taken. A failure of the
 * query rejects `columns()` (while pending) and the iteration.
 */
export class QueryStream implements AsyncIterable<QueryRow[]> {
  /** Set when the stream has ended: the row count and whether the limit cut the result. */
  summary: { rowCount: number; truncated: boolean } | undefined;
  private readonly batches: Uint8Array[] = [];
  private columnList: QueryColumn[] | undefined;
  private failure: unknown;
  private failed = false;
  /** The worker's `end` message arrived. */
  private ended = false;
  /** The task settled without `end` to come (failed or cancelled), or the port is closed. */
  private closed = false;
  private wake: (() => void) | undefined;
  private readonly decoder = new TextDecoder();

  constructor(
    private readonly port: MessagePort,
    done: Promise<QueryStreamSummary>,
  ) {
    port.on('message', (message: QueryStreamMessage) => {
      if (message.type === 'columns') this.columnList = message.columns;
      else if (message.type === 'rows') this.batches.push(message.json);
      else if (message.type === 'end') {
        this.summary = { rowCount: message.rowCount, truncated: message.truncated };
        this.ended = true;
        this.close();
      }
      this.notify();
    });
    // The task's result and the port's messages travel on different channels, so either may come
    // first. The worker posts `end` before it resolves: on success the port stays open until `end`
    // has arrived; a cancelled or failed task posts no `end`.
    done.then(
      (summary) => {
        if (summary.cancelled) this.close();
      },
      (error) => {
        this.failed = true;
        this.failure = toQueryError(error);
        this.close();
      },
    );
  }

  /** The result's columns, known as soon as the query has started. */
  async columns(): Promise<QueryColumn[]> {
    while (this.columnList === undefined) {
      if (this.failed) throw this.failure;
      if (this.closed) throw new Error('the query stream was closed before its columns were known');
      await this.changed();
    }
    return this.columnList;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<QueryRow[], void, undefined> {
    try {
      while (true) {
        if (this.failed) throw this.failure;
        const json = this.batches.shift();
        if (json) {
          this.send({ type: 'ack' });
          yield JSON.parse(this.decoder.decode(json)) as QueryRow[];
          continue;
        }
        if (this.ended) return;
        if (this.closed) throw new Error('the query stream was cancelled');
        await this.changed();
      }
    } finally {
      // A consumer that leaves early cancels the query; the port closes when the task settles.
      if (!this.ended && !this.closed) this.send({ type: 'cancel' });
    }
  }

  /** Stops the query whether or not it was read from (a consumer that leaves before iterating). */
  cancel(): void {
    if (!this.ended) this.send({ type: 'cancel' });
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private send(message: QueryStreamControl): void {
    if (!this.closed) this.port.postMessage(message);
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.port.close();
    this.notify();
  }
}
