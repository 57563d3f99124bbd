/**
 * Warming a query thread, so that the first queries a fresh process (or a fresh file) answers
 * cost what later ones do. Two costs fall on a thread's first queries, measured on one host's hour
 * of TSBS rows (one DuckDB thread; 2.1–2.4 ms once warm):
 *
 * - JavaScript not yet compiled: each worker thread has an engine of its own, so the code that
 *   prepares a statement, reads its chunks and converts their values runs interpreted until the
 *   thread has answered some dozens of queries (the thread's first query 16–21 ms, the next ones
 *   3.6–5).
 * - Parquet footers not yet read: DuckDB keeps them per instance (`parquet_metadata_cache`), so
 *   each thread reads and decodes a file's footer on its first query of it (a one-host hour on a
 *   compacted file of 1 M rows: 3.5–5 ms the first time on a thread, 2.2–3 after).
 *
 * {@link warmUp} answers queries of the same forms as the service's over a small file of made-up
 * rows, then reads the footers of the files it is given.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { QueryInput } from './query-sql.ts';
import { runQuery } from './query.ts';
import { sqlString } from './sql.ts';

/** Rounds of the made-up queries: enough for the engine to compile the hot paths (10 already took the first real queries from 16–21 ms to 5–6). */
const ROUNDS = 20;

/** What {@link warmUp} did, for the log. */
export interface WarmUpResult {
  queries: number;
  footers: number;
  ms: number;
}

/**
 * Runs the made-up queries (when `compile`) in `scratchDir`, then reads each of `files`' footers
 * into the instance's cache. A file that cannot be read is skipped: it may have been removed since.
 */
export async function warmUp(db: DuckDBConnection, input: { compile: boolean; files: string[]; scratchDir: string }): Promise<WarmUpResult> {
  const started = performance.now();
  let queries = 0;
  if (input.compile) queries = await compileQueryPath(db, input.scratchDir);
  let footers = 0;
  for (const file of input.files) {
    try {
      await db.run(`SELECT 1 FROM read_parquet(${sqlString(file)}) LIMIT 1`);
      footers++;
    } catch {
      // Gone or unreadable: the query that names it will say so.
    }
  }
  return { queries, footers, ms: Math.round(performance.now() - started) };
}

async function compileQueryPath(db: DuckDBConnection, scratchDir: string): Promise<number> {
  const file = join(scratchDir, `warm-up-${crypto.randomUUID()}.parquet`);
  // Two hours of per-second rows of three series, sorted by series then time, as compaction writes them.
  await db.run(
    `COPY (SELECT TIMESTAMPTZ '2000-01-01 00:00:00+00' + to_seconds(i // 3) AS ts, 'series-' || (i % 3) AS series,
            i * 0.5 AS value, i AS count, i % 2 = 0 AS flag
          FROM range(21600) AS t(i) ORDER BY series, ts)
     TO ${sqlString(file)} (FORMAT parquet)`,
  );
  try {
    const fields: QueryInput['fields'] = [
      { name: 'ts', type: 'timestamp' },
      { name: 'series', type: 'string' },
      { name: 'value', type: 'double' },
      { name: 'count', type: 'integer' },
      { name: 'flag', type: 'boolean' },
    ];
    const base: Omit<QueryInput, 'mode'> = {
      files: [file],
      fields,
      timestampColumn: 'ts',
      timeRange: { start: '2000-01-01T00:00:00.000Z', end: '2000-01-01T01:00:00.000Z' },
      filters: [{ column: 'series', op: 'eq', value: 'series-1' }],
      timeoutMs: 10_000,
      fieldsInFiles: fields.map((f) => f.name),
      oneSchema: true,
    };
    const forms: QueryInput[] = [
      {
        ...base,
        mode: { kind: 'downsample', intervalUnit: 'minute', intervalSize: 1, aggregations: [{ fn: 'max', column: 'value', alias: 'max_value' }], groupBy: [], order: 'asc', limit: 10_000 },
      },
      {
        ...base,
        filters: [],
        mode: {
          kind: 'downsample',
          intervalUnit: 'minute',
          intervalSize: 10,
          aggregations: [
            { fn: 'avg', column: 'value', alias: 'mean' },
            { fn: 'sum', column: 'count', alias: 'total' },
          ],
          groupBy: ['series'],
          order: 'asc',
          limit: 10_000,
        },
      },
      { ...base, filters: [...base.filters, { column: 'value', op: 'gt', value: 100 }], mode: { kind: 'raw', columns: ['series', 'value', 'count', 'flag'], order: 'asc', limit: 500 } },
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (const form of forms) {
        // Each form has rows, so that the code converting them is what gets compiled.
        if ((await runQuery(db, form)).rows.length === 0) throw new Error(`warm-up: a made-up ${form.mode.kind} query answered no rows`);
      }
    }
    return ROUNDS * forms.length;
  } finally {
    await rm(file, { force: true });
  }
}
