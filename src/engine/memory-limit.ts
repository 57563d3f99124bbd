/**
 * A connection's DuckDB `memory_limit`, switched only when a task needs another one: queries run
 * under the query limit, partition writes under the instance's own (read once, before any task
 * changed it). Switching costs about 1.5 ms each way; setting and restoring it around every query
 * took 3–4 ms of a 40 ms one-hour query.
 *
 * (`RESET memory_limit` is not used: it puts the setting back but leaves the buffer pool's limit
 * where it was.) Imports `@duckdb/node-api` for types only (see query.ts).
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { sqlString } from './sql.ts';

const limits = new WeakMap<DuckDBConnection, { baseline: string; current: string }>();

/** Makes `limit` (bytes; `null`: the instance's own) the connection's memory limit. */
export async function useMemoryLimit(db: DuckDBConnection, limit: number | null): Promise<void> {
  let state = limits.get(db);
  if (!state) {
    const baseline = String((await db.runAndReadAll(`SELECT current_setting('memory_limit')`)).getRows()[0]?.[0]);
    state = { baseline, current: baseline };
    limits.set(db, state);
  }
  if (limit !== null && (!Number.isSafeInteger(limit) || limit <= 0)) throw new Error(`memory limit must be a positive integer of bytes, got ${limit}`);
  const wanted = limit === null ? state.baseline : `${limit} bytes`;
  if (wanted === state.current) return;
  await db.run(`SET memory_limit = ${sqlString(wanted)}`);
  state.current = wanted;
}
