/**
 * Partition writes execute their DuckDB statements on their lane's own thread, and the lifecycle
 * lane's thread runs at the lowest CPU priority.
 *
 * DuckDB's asynchronous calls (`run`, `runAndReadAll`) execute on Bun's native thread pool: two
 * threads on two cores, shared by every lane and by asynchronous file I/O (staging's writes and
 * fsyncs), all at one priority. A pending result driven task by task (`runTask`) executes on the
 * thread that drives it instead (each instance has one DuckDB thread, so no other thread takes
 * its tasks): ingest writes then stop queueing behind file I/O and each other's hand-offs (less
 * CPU per batch, more rows/s: docs/performance.md), and compaction can be given a lower priority,
 * since Linux keeps a nice value per thread.
 *
 * Imports `@duckdb/node-api` for types only (see query.ts): the states below are its
 * `DuckDBPendingResultState` values.
 */
import { dlopen, FFIType } from 'bun:ffi';
import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';

/** What the partition writer runs its statements with: a connection, or {@link onThisThread} of one. */
export type DuckDBRunner = Pick<DuckDBConnection, 'run' | 'runAndReadAll'>;

/** The nice value of the lifecycle lane's thread: the lowest priority there is. */
const BACKGROUND_NICE = 19;
const PRIO_PROCESS = 0;
const RESULT_READY = 0;
const NO_TASKS_AVAILABLE = 3;
/** What `runTask` puts before DuckDB's own message; the asynchronous calls report that message alone. */
const TASK_ERROR_PREFIX = 'Failure running pending result task: ';

/**
 * Lowers the calling thread's CPU priority to {@link BACKGROUND_NICE} (only this thread: on Linux
 * `setpriority` of a thread id is per thread). Returns why it could not, or null.
 */
export function lowerThisThreadsPriority(): string | null {
  try {
    const libc = dlopen('libc.so.6', {
      gettid: { args: [], returns: FFIType.i32 },
      setpriority: { args: [FFIType.i32, FFIType.u32, FFIType.i32], returns: FFIType.i32 },
    });
    try {
      return libc.symbols.setpriority(PRIO_PROCESS, libc.symbols.gettid(), BACKGROUND_NICE) === 0 ? null : 'setpriority failed';
    } finally {
      libc.close();
    }
  } catch (err) {
    return (err as Error).message;
  }
}

/** `db` with its statements executed on the calling thread rather than on Bun's native thread pool. */
export function onThisThread(db: DuckDBConnection): DuckDBRunner {
  const execute = async (sql: string, values?: DuckDBValue[] | Record<string, DuckDBValue>) => {
    const pending = await db.start(sql, values);
    for (;;) {
      let state: number;
      try {
        state = pending.runTask();
      } catch (err) {
        const message = (err as Error).message;
        throw message.startsWith(TASK_ERROR_PREFIX) ? new Error(message.slice(TASK_ERROR_PREFIX.length)) : err;
      }
      if (state === RESULT_READY) return pending;
      // Waiting on something other than CPU (no runnable task): let the event loop turn once.
      if (state === NO_TASKS_AVAILABLE) await Bun.sleep(0);
    }
  };
  return {
    run: async (sql, values) => (await execute(sql, values)).getResult() as ReturnType<DuckDBConnection['run']>,
    runAndReadAll: async (sql, values) => (await execute(sql, values)).readAll(),
  };
}
