/**
 * A Piscina worker thread. Each thread lazily opens one in-memory DuckDB
 * instance on its first task and reuses it for the thread's lifetime; the HTTP
 * thread never runs DuckDB. Tasks are the named exports below
 * (`pool.run(input, { name })`). Nothing here opens PostgreSQL.
 */
import { join } from 'node:path';
import { threadId, workerData } from 'node:worker_threads';
import type { DuckDBConnection } from '@duckdb/node-api';
import { move } from 'piscina';
import { type DuckDBRunner, lowerThisThreadsPriority, onThisThread } from './own-thread.ts';
import { loadDuckDB } from './duckdb-runtime.ts';
import type { Workload } from './lanes.ts';
import { writePartitions as writePartitionsWith, type WritePartitionsInput, type WritePartitionsResult } from './partition-writer.ts';
import { encodeQueryOutput, type QueryInput, runQuery, runQueryStream } from './query.ts';
import type { QueryStreamInput, QueryStreamSummary } from './query-stream-protocol.ts';
import { type ParsedStatement, parseStatement, type SqlParam, SqlSandboxes, type SqlStreamInput, runSqlStream } from './sql-statement.ts';
import { warmUp as warmUpWith, type WarmUpResult } from './warm-up.ts';

export interface WorkerData {
  /** The lane this thread serves (set by its lane). */
  workload: Workload;
  duckdbLibraryPath: string;
  duckdbTempDirectory: string;
  /** DuckDB's max_temp_directory_size per instance, in bytes; null: DuckDB's default (90% of the free disk). */
  duckdbMaxTempDirectoryBytes: number | null;
}

let connection: Promise<DuckDBConnection> | undefined;

function duckdb(): Promise<DuckDBConnection> {
  connection ??= (async () => {
    const data = workerData as WorkerData;
    const { DuckDBInstance } = await loadDuckDB(data.duckdbLibraryPath);
    // One thread per instance: the pool already runs one instance per core.
    // Spills go under the storage root's runtime directory, not the process's working directory,
    // a directory per instance: each one counts (and, on close, removes) only its own files.
    const options: Record<string, string> = { threads: '1', temp_directory: join(data.duckdbTempDirectory, `thread-${threadId}`) };
    if (data.duckdbMaxTempDirectoryBytes !== null) options.max_temp_directory_size = `${data.duckdbMaxTempDirectoryBytes} bytes`;
    const instance = await DuckDBInstance.create(':memory:', options);
    const db = await instance.connect();
    // Partition files never change once written (a new file gets a new name), so their footers are
    // read once and kept (DuckDB's LRU, bounded by its own memory accounting): a one-host query on
    // a host-sorted daily file took 2.6–3.0 ms with it against 4.2–5.7 ms without. Not settable at
    // create time: the setting belongs to the Parquet extension, loaded on first use.
    await db.run('SET parquet_metadata_cache = true');
    return db;
  })();
  return connection;
}

export interface PingResult {
  duckdbVersion: string;
  threadId: number;
  /** Where the instance spills and how much it may (DuckDB's temp_directory and max_temp_directory_size, as it reports them). */
  spill: { directory: string; maxSize: string };
}

/** Proves the thread answers and its DuckDB instance runs SQL. */
export async function ping(): Promise<PingResult> {
  const db = await duckdb();
  const reader = await db.runAndReadAll(
    `SELECT version() AS v, current_setting('temp_directory') AS directory, current_setting('max_temp_directory_size') AS max_size`,
  );
  const row = reader.getRowObjects()[0]!;
  return { duckdbVersion: String(row.v), threadId, spill: { directory: String(row.directory), maxSize: String(row.max_size) } };
}

/**
 * Partition writes (the ingest and lifecycle lanes) execute on this thread rather than on Bun's
 * native pool, the lifecycle's at the lowest CPU priority so that compaction takes what ingest and
 * queries leave (see own-thread.ts). Those lanes run nothing but partition writes, so their
 * session settings are the runner's alone.
 */
let writer: Promise<DuckDBRunner> | undefined;

function partitionWriter(): Promise<DuckDBRunner> {
  writer ??= duckdb().then((db) => {
    if ((workerData as WorkerData).workload === 'lifecycle') {
      const refused = lowerThisThreadsPriority();
      if (refused) console.warn(`timestore: lifecycle work runs at normal CPU priority (${refused})`);
    }
    return onThisThread(db);
  });
  return writer;
}

/** Writes staged inputs as Parquet partition files, one per (partition key, time window); see partition-writer.ts. */
export async function writePartitions(input: WritePartitionsInput): Promise<WritePartitionsResult> {
  return writePartitionsWith(await partitionWriter(), input);
}

/**
 * Runs a query over local Parquet files; see query.ts. The output travels back as UTF-8 JSON in a
 * transferred buffer (decoded by the pool): measured about twice as fast as structured-cloning
 * the row objects, on both threads.
 */
export async function query(input: QueryInput): Promise<Uint8Array> {
  const started = performance.now();
  const output = await runQuery(await duckdb(), input);
  return move(encodeQueryOutput({ ...output, onThreadMs: performance.now() - started })) as Uint8Array;
}

/** What one {@link warmUp} task of a lane's warming is given (see pool.ts `warmQueryThreads`). */
export interface WarmUpInput {
  compile: boolean;
  files: string[];
  /** Counts the lane's warm-up tasks that have started (an Int32Array over it). */
  started: SharedArrayBuffer;
  /** The tasks of this warming, one per thread of the lane. */
  parties: number;
}

/** What a {@link warmUp} task reports: what warm-up.ts did, and on which thread. */
export type ThreadWarmUp = WarmUpResult & { threadId: number };

/** How long a warm-up task waits for its siblings to start, each on a thread of its own. */
const WARM_UP_GATHER_MS = 200;

/**
 * Warms this thread for queries (see warm-up.ts). The tasks of one warming wait until all have
 * started, at most {@link WARM_UP_GATHER_MS}, so that no thread runs two of them while another
 * runs none (a task only starts on a free thread).
 */
export async function warmUp(input: WarmUpInput): Promise<ThreadWarmUp> {
  const db = await duckdb();
  const started = new Int32Array(input.started);
  Atomics.add(started, 0, 1);
  Atomics.notify(started, 0);
  const deadline = performance.now() + WARM_UP_GATHER_MS;
  for (let seen = Atomics.load(started, 0); seen < input.parties; seen = Atomics.load(started, 0)) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    Atomics.wait(started, 0, seen, left);
  }
  const data = workerData as WorkerData;
  return { ...(await warmUpWith(db, { compile: input.compile, files: input.files, scratchDir: data.duckdbTempDirectory })), threadId };
}

/** Runs a query and posts its rows to `input.port` in batches; see query.ts. */
export async function queryStream(input: QueryStreamInput): Promise<QueryStreamSummary> {
  return runQueryStream(await duckdb(), input);
}

/** Parses a read-only SQL statement and names the datasets it reads; see sql-statement.ts. */
export async function sqlParse(input: { sql: string; params: SqlParam[] }): Promise<ParsedStatement> {
  return parseStatement(await duckdb(), input.sql, input.params);
}

let sandboxes: SqlSandboxes | undefined;

/** Runs a read-only SQL statement in a sandboxed DuckDB instance, its rows posted in batches; see sql-statement.ts. */
export async function sqlStream(input: SqlStreamInput): Promise<QueryStreamSummary> {
  const data = workerData as WorkerData;
  sandboxes ??= new SqlSandboxes(
    async (options) => (await loadDuckDB(data.duckdbLibraryPath)).DuckDBInstance.create(':memory:', options),
    join(data.duckdbTempDirectory, 'sql'),
  );
  return runSqlStream(sandboxes, input);
}
