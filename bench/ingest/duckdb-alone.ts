/**
 * The ceiling: the same request bodies written by DuckDB alone, in one process, no HTTP and no
 * catalog. Each batch is read from the generated data (page cache), spooled to a file with
 * fdatasync (as timestore stages every acknowledged body durably), then turned into sorted
 * (by timestamp) ZSTD Parquet with `read_json`:
 *
 * - `per-batch`: every batch becomes its own Parquet file right after it is spooled;
 * - `hourly`: batches are spooled, and every hour of data (by the batch's first timestamp) is
 *   read back with one `read_json` over its spool files and written as one Parquet file.
 *
 * `--format document` reads the bodies as sent (`{schema, partition, rows:[…]}`, one line, read
 * with format 'newline_delimited' and `unnest(rows)`, as src/engine/partition-writer.ts does);
 * `--format ndjson` first converts every body to one row object per line (before timing) to show
 * what the envelope costs.
 *
 * Run by run.ts as a subprocess (so its RSS is DuckDB's own) and prints one JSON line:
 *   bun bench/ingest/duckdb-alone.ts --data <dir> --mode per-batch|hourly [--format document|ndjson] [--threads N]
 */
import { closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { extractDuckDBLibrary, loadDuckDB } from '../../src/engine/duckdb-runtime.ts';
import { SCHEMA } from './tsbs.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const dataDir = args.get('data');
const mode = args.get('mode') ?? 'per-batch';
const format = args.get('format') ?? 'document';
const threads = args.get('threads');
if (!dataDir || !['per-batch', 'hourly'].includes(mode) || !['document', 'ndjson'].includes(format)) {
  console.error('usage: bun bench/ingest/duckdb-alone.ts --data <dir> --mode per-batch|hourly [--format document|ndjson] [--threads N]');
  process.exit(2);
}

const manifest = JSON.parse(readFileSync(join(dataDir, 'manifest.json'), 'utf8')) as {
  batchRows: number[];
  batchTimes: Array<[number, number]>;
  totalRows: number;
};
const files = readdirSync(dataDir).filter((f) => f.startsWith('batch-')).sort().map((f) => join(dataDir, f));
const work = mkdtempSync(join(tmpdir(), 'timestore-bench-duckdb-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const sourceDir = join(work, 'source');
const spoolDir = join(work, 'spool');
const outDir = join(work, 'out');
for (const d of [sourceDir, spoolDir, outDir]) mkdirSync(d);

const SQL_TYPES: Record<string, string> = { timestamp: 'TIMESTAMPTZ', string: 'VARCHAR', double: 'DOUBLE' };
const q = (name: string) => `"${name}"`;
const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;
const columns = SCHEMA.fields.map((f) => `${q(f.name)}: ${lit(SQL_TYPES[f.type]!)}`).join(', ');
const rowType = `STRUCT(${SCHEMA.fields.map((f) => `${q(f.name)} ${SQL_TYPES[f.type]}`).join(', ')})[]`;

// The source of each batch (ndjson is converted before timing).
let sources = files;
if (format === 'ndjson') {
  sources = files.map((file, i) => {
    const body = JSON.parse(readFileSync(file, 'utf8')) as { rows: unknown[] };
    const path = join(sourceDir, `b${i}.ndjson`);
    Bun.write(path, `${body.rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
    return path;
  });
  await Bun.sleep(0);
}

function reader(paths: string[], maxObject: number): string {
  const list = paths.length === 1 ? lit(paths[0]!) : `[${paths.map(lit).join(', ')}]`;
  if (format === 'ndjson') {
    return `SELECT * FROM read_json(${list}, columns = {${columns}}, format = 'newline_delimited', records = true)`;
  }
  return `SELECT ${SCHEMA.fields.map((f) => `r.${q(f.name)}`).join(', ')} FROM (SELECT unnest("rows") AS r FROM read_json(${list}, columns = {'rows': ${lit(rowType)}},
            format = 'newline_delimited', records = true, maximum_object_size = ${maxObject}))`;
}

const { DuckDBInstance } = await loadDuckDB(await extractDuckDBLibrary(join(work, '.runtime')));
const instance = await DuckDBInstance.create(':memory:', threads ? { threads } : {});
const db = await instance.connect();
await db.run(`SET TimeZone = 'UTC'`);
const duckdbThreads = String((await db.runAndReadAll(`SELECT current_setting('threads')`)).getRows()[0]?.[0]);

let outputs = 0;
let spoolSeconds = 0;
let writeSeconds = 0;
let maxBody = 0;
const write = async (paths: string[]) => {
  const t = performance.now();
  const out = join(outDir, `${outputs++}.parquet`);
  await db.run(
    `COPY (SELECT * FROM (${reader(paths, Math.max(16 * 2 ** 20, maxBody + 1))}) ORDER BY ${q('timestamp')}) TO ${lit(out)} (FORMAT parquet, COMPRESSION zstd)`,
  );
  writeSeconds += (performance.now() - t) / 1000;
};

const hourOf = (ms: number) => Math.floor(ms / 3_600_000);
const cpuBefore = process.cpuUsage();
let hourFiles: string[] = [];
let hour = -1;
const started = performance.now();
for (let i = 0; i < sources.length; i++) {
  const t = performance.now();
  const bytes = readFileSync(sources[i]!);
  maxBody = Math.max(maxBody, bytes.byteLength);
  const spool = join(spoolDir, `${i}.json`);
  const fd = openSync(spool, 'w');
  try {
    writeSync(fd, bytes);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  spoolSeconds += (performance.now() - t) / 1000;
  if (mode === 'per-batch') {
    await write([spool]);
  } else {
    const h = hourOf(manifest.batchTimes[i]![0]);
    if (hour !== -1 && h !== hour) {
      await write(hourFiles);
      hourFiles = [];
    }
    hour = h;
    hourFiles.push(spool);
  }
}
if (hourFiles.length > 0) await write(hourFiles);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;

let bytes = 0;
for (const f of readdirSync(outDir)) bytes += statSync(join(outDir, f)).size;
const check = await db.runAndReadAll(`SELECT count(*)::BIGINT FROM read_parquet(${lit(join(outDir, '*.parquet'))})`);
const rowsWritten = Number(check.getRows()[0]![0] as bigint);
const status = readFileSync('/proc/self/status', 'utf8');
const hwm = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
rmSync(work, { recursive: true, force: true });

console.log(
  JSON.stringify({
    mode,
    format,
    duckdbThreads,
    rows: manifest.totalRows,
    rowsWritten,
    seconds: Math.round(seconds * 1000) / 1000,
    rowsPerSecond: Math.round(manifest.totalRows / seconds),
    spoolSeconds: Math.round(spoolSeconds * 1000) / 1000,
    duckdbSeconds: Math.round(writeSeconds * 1000) / 1000,
    cpuSeconds: Math.round(cpuSeconds * 100) / 100,
    cpuMsPerBatch: Math.round(((cpuSeconds * 1000) / manifest.batchRows.length) * 10) / 10,
    files: outputs,
    bytes,
    peakRssBytes: hwm,
  }),
);
process.exit(0);
