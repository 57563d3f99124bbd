/**
 * DuckDB alone, the floor of bench/query: one in-memory DuckDB instance in its own process, no
 * HTTP, no catalog, no worker pool. run.ts starts it once and drives it over stdin/stdout, one JSON
 * command per line, one JSON answer per line, so that its timings can be interleaved with the
 * HTTP ones (A, B, A, B…) and a busy moment on the shared machine hits both alike.
 *
 *   bun bench/query/duckdb-alone.ts [--threads 1]
 *
 * Commands:
 * - `{"op":"query","sql":…,"params":[…]}`: prepare, bind, run and read every row (values
 *   converted to JS, as a client would), timed inside this process: `{ms, rows}`. `params` are
 *   the server's bound parameters (src/engine/query-sql.ts `SqlParam`, bigints as strings). This
 *   is what a timestore worker does for a query, minus the timeout timer, the memory-limit SET
 *   and the JSON conversion of the rows.
 * - `{"op":"exec","sql":…,"threads":N}`: runs a statement (writing a layout), with `threads` for
 *   its duration: `{ms}`.
 * - `{"op":"quit"}`.
 *
 * `threads` defaults to 1, as each timestore worker thread's DuckDB instance (src/engine/worker.ts).
 */
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { extractDuckDBLibrary, loadDuckDB } from '../../src/engine/duckdb-runtime.ts';

type Param =
  | { type: 'varchar'; value: string }
  | { type: 'double'; value: number }
  | { type: 'bigint'; value: string }
  | { type: 'boolean'; value: boolean }
  | { type: 'varchar[]'; value: string[] };

type Command =
  | { op: 'query'; sql: string; params?: Param[] }
  | { op: 'exec'; sql: string; threads?: number }
  | { op: 'quit' };

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const threads = args.get('threads') ?? '1';

const { DuckDBInstance } = await loadDuckDB(await extractDuckDBLibrary(join(tmpdir(), 'timestore-bench-duckdb-runtime')));
const instance = await DuckDBInstance.create(':memory:', { threads });
const db = await instance.connect();
await db.run(`SET TimeZone = 'UTC'`);

const reply = (answer: unknown) => process.stdout.write(`${JSON.stringify(answer)}\n`);
reply({ ready: true, threads, duckdb: String((await db.runAndReadAll('SELECT version()')).getRows()[0]?.[0]) });

for await (const line of console) {
  if (!line.trim()) continue;
  let command: Command;
  try {
    command = JSON.parse(line) as Command;
  } catch (error) {
    reply({ error: `bad command: ${(error as Error).message}` });
    continue;
  }
  try {
    if (command.op === 'quit') break;
    if (command.op === 'exec') {
      const started = performance.now();
      if (command.threads) await db.run(`SET threads = ${Number(command.threads)}`);
      try {
        await db.run(command.sql);
      } finally {
        if (command.threads) await db.run(`SET threads = ${Number(threads)}`);
      }
      reply({ ms: performance.now() - started });
      continue;
    }
    if (command.op === 'query') {
      const started = performance.now();
      const prepared = await db.prepare(command.sql);
      try {
        (command.params ?? []).forEach((p, i) => {
          const index = i + 1;
          if (p.type === 'varchar') prepared.bindVarchar(index, p.value);
          else if (p.type === 'double') prepared.bindDouble(index, p.value);
          else if (p.type === 'bigint') prepared.bindBigInt(index, BigInt(p.value));
          else if (p.type === 'boolean') prepared.bindBoolean(index, p.value);
          else prepared.bindList(index, p.value);
        });
        const reader = await prepared.runAndReadAll();
        const rows = reader.getRows().length;
        reply({ ms: performance.now() - started, rows });
      } finally {
        prepared.destroySync();
      }
      continue;
    }
    reply({ error: `unknown op ${(command as { op?: string }).op}` });
  } catch (error) {
    reply({ error: (error as Error).message.split('\n')[0] });
  }
}
process.exit(0);
