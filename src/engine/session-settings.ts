/**
 * A connection's DuckDB session settings, switched only when a task needs another value, with the
 * current values remembered per connection so that an unchanged setting costs no statement:
 *
 * - `memory_limit`: queries run under the query limit, partition writes under the instance's own
 *   (read once, before any task changed it). Switching costs about 1.5 ms each way; setting and
 *   restoring it around every query took 3–4 ms of a 40 ms one-hour query. (`RESET memory_limit`
 *   is not used: it puts the setting back but leaves the buffer pool's limit where it was.)
 * - `TimeZone`: queries run in UTC. A `SET TimeZone` before every query cost about 0.5 ms of a
 *   6 ms one-host query.
 * - `threads`: one, except for a query that the pool starts while no other DuckDB work runs
 *   (pool.ts). A switch costs about 0.5 ms.
 *
 * Imports `@duckdb/node-api` for types only (see query.ts).
 */
import type { DuckDBRunner } from './own-thread.ts';
import { sqlString } from './sql.ts';

interface Session {
  baselineMemoryLimit: string;
  memoryLimit: string;
  timeZone: string;
  threads: number;
}

const sessions = new WeakMap<DuckDBRunner, Session>();

async function sessionOf(db: DuckDBRunner): Promise<Session> {
  let session = sessions.get(db);
  if (!session) {
    const [memoryLimit, timeZone, threads] = (
      await db.runAndReadAll(`SELECT current_setting('memory_limit'), current_setting('TimeZone'), current_setting('threads')`)
    ).getRows()[0]!;
    session = { baselineMemoryLimit: String(memoryLimit), memoryLimit: String(memoryLimit), timeZone: String(timeZone), threads: Number(threads) };
    sessions.set(db, session);
  }
  return session;
}

/** Makes `limit` (bytes; `null`: the instance's own) the connection's memory limit. */
export async function useMemoryLimit(db: DuckDBRunner, limit: number | null): Promise<void> {
  const session = await sessionOf(db);
  if (limit !== null && (!Number.isSafeInteger(limit) || limit <= 0)) throw new Error(`memory limit must be a positive integer of bytes, got ${limit}`);
  const wanted = limit === null ? session.baselineMemoryLimit : `${limit} bytes`;
  if (wanted === session.memoryLimit) return;
  await db.run(`SET memory_limit = ${sqlString(wanted)}`);
  session.memoryLimit = wanted;
}

/**
 * Makes `zone` the connection's TimeZone and returns the one it replaces. `known: false` reads the
 * current zone from DuckDB first instead of trusting the remembered one (for a caller that restores
 * it afterwards and must not depend on every change having gone through here).
 */
export async function useTimeZone(db: DuckDBRunner, zone: string, { known = true } = {}): Promise<string> {
  const session = await sessionOf(db);
  if (!known) session.timeZone = String((await db.runAndReadAll(`SELECT current_setting('TimeZone')`)).getRows()[0]?.[0]);
  const previous = session.timeZone;
  if (zone === previous) return previous;
  await db.run(`SET TimeZone = ${sqlString(zone)}`);
  session.timeZone = zone;
  return previous;
}

/** Makes `threads` the DuckDB instance's thread count (a worker's instance serves its one connection). */
export async function useThreads(db: DuckDBRunner, threads: number): Promise<void> {
  const session = await sessionOf(db);
  if (threads === session.threads) return;
  await db.run(`SET threads = ${Math.trunc(threads)}`);
  session.threads = threads;
}
