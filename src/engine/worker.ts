/**
 * A Piscina worker thread. Each thread lazily opens one in-memory DuckDB
 * instance on its first task and reuses it for the thread's lifetime; the HTTP
 * thread never runs DuckDB. Tasks are the named exports below
 * (`pool.run(input, { name })`). Nothing here opens PostgreSQL.
 */
import { join } from 'node:path';
import { threadId, workerData } from 'node:worker_threads';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { move } from 'piscina';
import { loadDuckDB } from './duckdb-runtime.ts';
import { writePartitions as writePartitionsWith, type WritePartitionsInput, type WritePartitionsResult } from './partition-writer.ts';
import { encodeQueryOutput, type QueryInput, runQuery, runQueryStream } from './query.ts';
import type { QueryStreamInput, QueryStreamSummary } from './query-stream-protocol.ts';
import { type ParsedStatement, parseStatement, type SqlParam, SqlSandboxes, type SqlStreamInput, runSqlStream } from './sql-statement.ts';

export interface WorkerData {
  duckdbLibraryPath: string;
  duckdbTempDirectory: string;
  /** DuckDB's max_temp_directory_size per instance, in bytes; null: DuckDB's default (90% of the free disk). */
  duckdbMaxTempDirectoryBytes: number | null;
  /** The pool's channel naming new partition files whose footers this thread reads ahead (query lanes); null: none. */
  footerChannel: string | null;
}

let engine: Promise<{ instance: DuckDBInstance; db: DuckDBConnection }> | undefined;

function duckdb(): Promise<DuckDBConnection> {
  return open().then((e) => e.db);
}

function open(): Promise<{ instance: DuckDBInstance; db: DuckDBConnection }> {
  engine ??= (async () => {
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
    return { instance, db };
  })();
  return engine;
}

/** Files whose footers this thread has read ahead (the newest kept, to bound the set). */
const warmed = new Set<string>();
const MAX_WARMED = 10_000;
/** The reading ahead this thread was sent, one batch after the other. */
let warming: Promise<void> = Promise.resolve();
/** Set by the lane's close task: nothing more is read ahead. */
let stopped = false;

/**
 * Reads the footers of new partition files into this instance's metadata cache, so that the first
 * query of each file on this thread does not (a footer of a compacted 1 M-row file is read and
 * parsed in several milliseconds). Outside any task, on a connection of its own, so that it runs
 * beside the queries instead of in their turn; the lane's close task waits for it. A file that
 * cannot be read (gone since) is left to the query that needs it.
 */
function warmFooters(paths: string[]): void {
  warming = warming
    .then(async () => {
      const fresh = paths.filter((path) => !warmed.has(path));
      if (fresh.length === 0 || stopped) return;
      const reader = await (await open()).instance.connect();
      try {
        for (const path of fresh) {
          if (stopped) return;
          // Binding the scan reads the footer; LIMIT 0 reads nothing else.
          const read = await reader.run('SELECT 1 FROM read_parquet($1) LIMIT 0', [path]).then(
            () => true,
            () => false,
          );
          if (!read) continue;
          warmed.add(path);
          if (warmed.size > MAX_WARMED) warmed.delete(warmed.values().next().value!);
        }
      } finally {
        reader.closeSync();
      }
    })
    .catch(() => {}); // nothing read ahead: the queries read the footers themselves
}

const footerChannel = (workerData as WorkerData | undefined)?.footerChannel ? new BroadcastChannel((workerData as WorkerData).footerChannel!) : null;
if (footerChannel) footerChannel.onmessage = (event) => warmFooters((event as MessageEvent<{ paths: string[] }>).data.paths);

/** How many files' footers this thread has read ahead, once what it was sent so far is done (for tests). */
export async function footersWarmed(): Promise<number> {
  await warming;
  return warmed.size;
}

/** The query lanes' close task (lanes.ts): stops reading ahead and waits for what is under way; answers the thread's id. */
export async function stopReadingAhead(): Promise<number> {
  stopped = true;
  footerChannel?.close();
  await warming;
  return threadId;
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

/** Writes staged inputs as Parquet partition files, one per (partition key, time window); see partition-writer.ts. */
export async function writePartitions(input: WritePartitionsInput): Promise<WritePartitionsResult> {
  return writePartitionsWith(await duckdb(), input);
}

/**
 * Runs a query over local Parquet files; see query.ts. The output travels back as UTF-8 JSON in a
 * transferred buffer (decoded by the pool): measured about twice as fast as structured-cloning
 * the row objects, on both threads.
 */
export async function query(input: QueryInput): Promise<Uint8Array> {
  return move(encodeQueryOutput(await runQuery(await duckdb(), input))) as Uint8Array;
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
