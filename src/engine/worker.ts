/**
 * A Piscina worker thread. Each thread lazily opens one in-memory DuckDB
 * instance on its first task and reuses it for the thread's lifetime; the HTTP
 * thread never runs DuckDB. Tasks are the named exports below
 * (`pool.run(input, { name })`). Nothing here opens PostgreSQL.
 */
import { threadId, workerData } from 'node:worker_threads';
import type { DuckDBConnection } from '@duckdb/node-api';
import { loadDuckDB } from './duckdb-runtime.ts';
import { writePartitions as writePartitionsWith, type WritePartitionsInput, type WritePartitionsResult } from './partition-writer.ts';

export interface WorkerData {
  duckdbLibraryPath: string;
}

let connection: Promise<DuckDBConnection> | undefined;

function duckdb(): Promise<DuckDBConnection> {
  connection ??= (async () => {
    const { DuckDBInstance } = await loadDuckDB((workerData as WorkerData).duckdbLibraryPath);
    // One thread per instance: the pool already runs one instance per core.
    const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
    return instance.connect();
  })();
  return connection;
}

export interface PingResult {
  duckdbVersion: string;
  threadId: number;
}

/** Proves the thread answers and its DuckDB instance runs SQL. */
export async function ping(): Promise<PingResult> {
  const db = await duckdb();
  const reader = await db.runAndReadAll('SELECT version() AS v');
  return { duckdbVersion: String(reader.getRowObjects()[0]?.v), threadId };
}

/** Writes staged inputs as Parquet partition files, one per (partition key, time window); see partition-writer.ts. */
export async function writePartitions(input: WritePartitionsInput): Promise<WritePartitionsResult> {
  return writePartitionsWith(await duckdb(), input);
}
