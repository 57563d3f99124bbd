/**
 * An experiment behind a proposal in docs/performance.md: the main thread already parses and
 * validates every JSON batch in JavaScript, and the worker then parses the same JSON again with
 * DuckDB's read_json. Would staging the validated rows in a form DuckDB reads more cheaply pay
 * for the extra JavaScript? Per 5,000-row TSBS batch, one DuckDB thread (as in the workers):
 *
 *   a. today: read_json of the staged document into a typed table;
 *   b. JS: the parsed rows → CSV text (one pass over the validated objects); DuckDB: read_csv with
 *      explicit column types into the same table;
 *   c. DuckDB's appender fed the parsed rows directly (what a worker that parsed the body could do).
 *
 *   node_modules/.bin/bun bench/ingest/staging-formats.ts [--batches 40]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extractDuckDBLibrary, loadDuckDB } from '../../src/engine/duckdb-runtime.ts';
import { percentile } from './load.ts';
import { round } from './server.ts';
import { FIELDS, generate, SCHEMA, TAGS } from './tsbs.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const batches = Number(args.get('batches') ?? 40);

const data = generate({ hosts: 1000, hours: 24, batch: 5000, rows: 1_000_000, partitionKey: {}, cacheRoot: '/tmp/timestore-bench-data' });
const work = mkdtempSync(join(tmpdir(), 'timestore-bench-staging-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const { DuckDBInstance, DuckDBTimestampTZValue } = await loadDuckDB(await extractDuckDBLibrary(join(work, '.runtime')));
const db = await (await DuckDBInstance.create(':memory:', { threads: '1' })).connect();
await db.run(`SET TimeZone = 'UTC'`);
const T: Record<string, string> = { timestamp: 'TIMESTAMPTZ', string: 'VARCHAR', double: 'DOUBLE' };
const columnsDdl = SCHEMA.fields.map((f) => `"${f.name}" ${T[f.type]}`).join(', ');
const rowType = `STRUCT(${columnsDdl})[]`;
const csvColumns = SCHEMA.fields.map((f) => `'${f.name}': '${T[f.type]}'`).join(', ');
const names = SCHEMA.fields.map((f) => f.name);

const results: Record<string, { p50: number; mean: number }> = {};
async function measure(name: string, fn: (i: number) => Promise<unknown> | unknown) {
  for (let i = 0; i < 3; i++) await fn(i);
  const samples: number[] = [];
  for (let i = 0; i < batches; i++) {
    const t = performance.now();
    await fn(i);
    samples.push(performance.now() - t);
  }
  results[name] = { p50: round(percentile(samples, 50), 2), mean: round(samples.reduce((a, b) => a + b, 0) / samples.length, 2) };
  console.log(`${name.padEnd(60)} p50 ${results[name]!.p50.toFixed(2).padStart(7)} ms  mean ${results[name]!.mean.toFixed(2).padStart(7)} ms`);
}

const parsed = await Promise.all(data.files.slice(0, batches).map(async (f) => (JSON.parse(await Bun.file(f).text()) as { rows: Record<string, unknown>[] }).rows));
const reset = () => db.run(`CREATE OR REPLACE TABLE t (${columnsDdl})`);

await measure('a. read_json of the staged document → table', async (i) => {
  await reset();
  await db.run(
    `INSERT INTO t SELECT ${names.map((n) => `r."${n}"`).join(', ')} FROM (SELECT unnest("rows") AS r FROM read_json('${data.files[i]}',
       columns = {'rows': '${rowType}'}, format = 'newline_delimited', records = true, maximum_object_size = 16777216))`,
  );
});

const quote = (s: string) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
function toCsv(rows: Record<string, unknown>[]): string {
  const lines: string[] = [names.join(',')];
  for (const row of rows) {
    let line = '';
    for (let c = 0; c < names.length; c++) {
      const v = row[names[c]!];
      const text = v === null || v === undefined ? '' : typeof v === 'string' ? quote(v) : String(v);
      line += c === 0 ? text : `,${text}`;
    }
    lines.push(line);
  }
  return `${lines.join('\n')}\n`;
}
const csvPaths: string[] = [];
await measure('b1. JS: parsed rows → CSV text + write file', (i) => {
  const path = join(work, `b${i}.csv`);
  writeFileSync(path, toCsv(parsed[i]!));
  csvPaths[i] = path;
});
await measure('b2. read_csv (typed columns) → table', async (i) => {
  await reset();
  await db.run(`INSERT INTO t SELECT * FROM read_csv('${csvPaths[i]}', header = true, auto_detect = false, columns = {${csvColumns}})`);
});

await measure('c. appender fed the parsed rows', async (i) => {
  await reset();
  const appender = await db.createAppender('t');
  for (const row of parsed[i]!) {
    appender.appendTimestampTZ(new DuckDBTimestampTZValue(BigInt(Date.parse(row.timestamp as string)) * 1000n));
    for (const tag of TAGS) appender.appendVarchar(row[tag] as string);
    for (const field of FIELDS) appender.appendDouble(row[field] as number);
    appender.endRow();
  }
  appender.closeSync();
});

const check = await db.runAndReadAll('SELECT count(*)::INTEGER FROM t');
console.log(`(last table holds ${check.getRows()[0]![0]} rows)`);
rmSync(work, { recursive: true, force: true });
console.log(JSON.stringify(results));
process.exit(0);
