/**
 * The partition writer, run inside a worker thread (task `writePartitions` in worker.ts).
 *
 * Staged inputs (already validated in JS) are read with DuckDB's typed readers (staged-readers.ts);
 * every (partition key, window) group becomes ONE Parquet file ({@link PARQUET_FORMAT}, sorted by the
 * sort columns if any, then the timestamp column) named `<outputDir>/<uuid>.parquet`. Row counts,
 * time range and per-column min/max/null counts come from the data (partition-statistics.ts); size
 * and sha256 from the written file. No row passes through JavaScript.
 *
 * The main thread imports this module's types only (`import type`): at run time it is loaded by the
 * worker, after DuckDB's native library, and it never imports `@duckdb/node-api` at run time.
 */
import { randomUUID } from 'node:crypto';
import { statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { DuckDBRunner } from './own-thread.ts';
import { SQL_TYPES } from '../model/field-types.ts';
import { isoFromMicrosFixed } from '../model/timestamps.ts';
import { partitionKeyId, type SchemaField } from '../model/records.ts';
import {
  fromReturnedStatistic,
  microsFromStatistic,
  type PartitionColumnStatistics,
  returnedStatistics,
  statistic,
  statisticSql,
  statisticsOfFile,
} from './partition-statistics.ts';
import { assertIdentifier, quoteIdent, sqlString } from './sql.ts';
import { useMemoryLimit, useTimeZone } from './session-settings.ts';
import { type ReadGroup, readerSql, readGroups, type StagedInput, type StagedInputFormat, withoutRanges } from './staged-readers.ts';

/** A field of the schema version a partition is written with. */
export type PartitionField = SchemaField;

export type { StagedInput, StagedInputFormat } from './staged-readers.ts';
export { readCsvHeader } from './staged-readers.ts';
export type { ColumnStatisticValue, PartitionColumnStatistics } from './partition-statistics.ts';

export interface WritePartitionsInput {
  inputs: StagedInput[];
  /** The (union) schema to write, in column order. */
  fields: PartitionField[];
  /** A field of type `timestamp`; files are sorted by it and split into windows of it. */
  timestampColumn: string;
  /** Window length; windows are aligned to the UNIX epoch (e.g. 86400 = UTC days). */
  windowSeconds: number;
  /** An existing local directory that receives the files. */
  outputDir: string;
  /**
   * Rows per Parquet row group. Default: DuckDB's 122,880, or 16,384 with `sortColumns`, so that a
   * filter on them skips most of a file (bench/query "Layouts": hourly files ordered by host in
   * 16 Ki-row groups took 0.33–0.63× the time of hourly files in time order on five TSBS shapes).
   */
  rowGroupSize?: number;
  /**
   * Fields that rows are ordered by within a file, before the timestamp. Names that are not among
   * `fields` (a batch of an older schema version) or name the timestamp are left out.
   */
  sortColumns?: string[];
  /**
   * Order `sortColumns` by how many distinct values each has in the inputs, most first, instead of
   * as given: a filter on the most selective column (a host among a thousand) then skips the most
   * row groups by their min/max, and the columns after it only break its ties. For a dataset's
   * default series key (its string fields), whose order nobody chose.
   */
  sortByDistinctValues?: boolean;
  /**
   * `v2` (default, {@link PARQUET_FORMAT}): DataPageV2 with delta and byte-stream-split encodings.
   * `v1`: the encodings every Parquet reader knows, for a reader outside DuckDB that needs them.
   */
  parquetVersion?: 'v1' | 'v2';
}

/**
 * How every partition file is encoded (ingest and compaction alike). Parquet v2 stores doubles
 * byte-stream-split, which leaves LZ4 little to gain over ZSTD: on the TSBS cpu rows sorted by host
 * in 16 Ki-row groups, LZ4_RAW wrote 39.3 MiB against ZSTD's 37.4 (v1: 67.6 against 42.8), in about
 * 0.7× the time, and scans that read many values took 0.55–0.9× as long (decompressing ZSTD was
 * most of them). docs/performance.md, "File format".
 */
export const PARQUET_FORMAT = { version: 'v2', compression: 'lz4_raw' } as const;

export interface WrittenPartition {
  /** `<outputDir>/<uuid>.parquet` */
  path: string;
  partitionKey: Record<string, string>;
  /** Start of the window the rows fall in (ISO-8601, UTC). */
  windowStart: string;
  /** Smallest and largest timestamp in the file (ISO-8601 UTC, microseconds). */
  startTime: string;
  endTime: string;
  rowCount: number;
  sizeBytes: number;
  /** `sha256:<hex>` of the file's bytes. */
  checksum: string;
  columnStatistics: Record<string, PartitionColumnStatistics>;
}

export type WritePartitionsResult = WrittenPartition[];

const FORMATS: ReadonlySet<string> = new Set<StagedInputFormat>(['json-document', 'ndjson', 'csv', 'parquet']);

/** Columns of the staging table that are not fields; `$` keeps them apart from any valid field name. */
const KEY_COLUMN = quoteIdent('$key');
const WINDOW_COLUMN = quoteIdent('$window');

let taskCounter = 0;

/** What both ways of writing share. */
interface Plan extends ValidInput {
  db: DuckDBRunner;
  outputDir: string;
  parquetOptions: string;
  /** Distinct partition keys, in order of first appearance. */
  keys: Record<string, string>[];
}

/**
 * Runs the partition writer on `db`; see the module comment.
 *
 * The inputs of one partition key whose rows fall in one window (what ingest writes nearly always)
 * go straight from the readers into one sorted COPY, whose statistics DuckDB returns: no staging
 * table, no statistics query. The others (several windows, or a single-file attempt that failed)
 * take the staging table, which splits rows by window and names the input that cannot be read.
 */
export async function writePartitions(db: DuckDBRunner, request: WritePartitionsInput): Promise<WritePartitionsResult> {
  const valid = validate(request);
  if (request.inputs.length === 0) return [];
  const input = { ...request, inputs: request.inputs.map((staged) => withoutRanges(staged, request.outputDir)) };
  const parquetOptions = [
    'FORMAT parquet',
    `COMPRESSION ${PARQUET_FORMAT.compression}`,
    ...(valid.rowGroupSize === undefined ? [] : [`ROW_GROUP_SIZE ${valid.rowGroupSize}`]),
    `PARQUET_VERSION ${input.parquetVersion ?? PARQUET_FORMAT.version}`,
  ].join(', ');

  // Inputs with equal partition keys share files; keys are compared with sorted entries.
  const keys: Record<string, string>[] = [];
  const byKey = new Map<string, StagedInput[]>();
  for (const staged of input.inputs) {
    const id = partitionKeyId(staged.partitionKey);
    const group = byKey.get(id);
    if (group) group.push(staged);
    else {
      byKey.set(id, [staged]);
      keys.push({ ...staged.partitionKey });
    }
  }
  const plan: Plan = { ...valid, db, outputDir: input.outputDir, parquetOptions, keys };

  const results: WrittenPartition[] = [];
  await useMemoryLimit(db, null); // a query before may have left its own
  // Strings without an offset are UTC: the CSV reader and casts interpret them in the session's
  // TimeZone (the JSON reader already reads them as UTC).
  const previousTimeZone = await useTimeZone(db, 'UTC', { known: false });
  try {
    if (input.sortByDistinctValues && valid.sortColumns.length > 1) {
      plan.sortColumns = await byDistinctValues(db, input.inputs, valid.fields, valid.sortColumns);
      plan.order = orderBy(plan.sortColumns, valid.timestampColumn);
    }
    const rest: StagedInput[][] = [];
    for (const [keyId, inputs] of [...byKey.values()].entries()) {
      const written = mayShareWindow(inputs, valid.windowMicros) && (await writeOneFile(plan, keyId, inputs, results));
      if (!written) rest.push(inputs);
    }
    if (rest.length > 0) await writeByWindow(plan, rest.flat(), results);
    return results.sort((a, b) => keys.indexOf(a.partitionKey) - keys.indexOf(b.partitionKey) || a.windowStart.localeCompare(b.windowStart));
  } catch (error) {
    for (const file of results) removeFile(file.path);
    throw error;
  } finally {
    await useTimeZone(db, previousTimeZone);
  }
}

/** False when the inputs' time spans say their rows are in different windows; true when they may not be. */
function mayShareWindow(inputs: StagedInput[], windowMicros: bigint): boolean {
  const windows = new Set<bigint>();
  for (const { timeSpan } of inputs) {
    if (!timeSpan) continue;
    for (const at of [timeSpan.min, timeSpan.max]) {
      const millis = Date.parse(at);
      if (Number.isNaN(millis)) return true;
      windows.add(windowOf(BigInt(millis) * 1000n, windowMicros));
    }
  }
  return windows.size <= 1;
}

function windowOf(micros: bigint, windowMicros: bigint): bigint {
  return micros - (((micros % windowMicros) + windowMicros) % windowMicros);
}

/**
 * Writes one partition key's inputs as one file in one statement. False (nothing left behind) when
 * the rows turn out to span several windows or any input cannot be read this way: the staging
 * table then writes them, and reports what is wrong.
 */
async function writeOneFile(plan: Plan, keyId: number, inputs: StagedInput[], results: WrittenPartition[]): Promise<boolean> {
  const { db, fields, timestampColumn } = plan;
  const path = join(plan.outputDir, `${randomUUID()}.parquet`);
  let returned: Record<string, unknown>;
  try {
    const reader = await db.runAndReadAll(
      `COPY (SELECT * FROM (${await rowsOf(db, inputs, fields)}) ORDER BY ${plan.order})
       TO ${sqlString(path)} (${plan.parquetOptions}, RETURN_STATS)`,
    );
    returned = reader.getRowObjectsJS()[0] as Record<string, unknown>;
  } catch {
    removeFile(path);
    return false;
  }
  const rowCount = Number(returned.count as bigint);
  const stats = returnedStatistics(returned.column_statistics);
  const time = stats.get(timestampColumn);
  const nullTimes = Number(time?.null_count ?? 0);
  if (nullTimes > 0) {
    removeFile(path);
    throw new Error(`${nullTimes} row(s) with partition key ${JSON.stringify(plan.keys[keyId])} have no value for the timestamp column ${timestampColumn}`);
  }
  const start = time?.min === undefined ? null : microsFromStatistic(time.min);
  const end = time?.max === undefined ? null : microsFromStatistic(time.max);
  const window = start === null ? null : windowOf(start, plan.windowMicros);
  if (rowCount === 0 || start === null || end === null || window !== windowOf(end, plan.windowMicros)) {
    removeFile(path);
    return rowCount === 0; // no rows, no file; several windows: the staging table splits them
  }

  const columnStatistics: Record<string, PartitionColumnStatistics> = {};
  const recount: PartitionField[] = [];
  for (const f of fields) {
    const column = stats.get(f.name);
    const statistic = column ? fromReturnedStatistic(f.type, column, rowCount) : null;
    if (statistic) columnStatistics[f.name] = statistic;
    else recount.push(f);
  }
  if (recount.length > 0) Object.assign(columnStatistics, await statisticsOfFile(db, path, recount));
  results.push({
    path,
    partitionKey: plan.keys[keyId]!,
    windowStart: isoFromMicrosFixed(window),
    startTime: isoFromMicrosFixed(start),
    endTime: isoFromMicrosFixed(end),
    rowCount,
    ...(await describeFile(path)),
    columnStatistics,
  });
  return true;
}

/**
 * Writes inputs through a staging table: each row tagged with its input's partition key and its
 * window, one file per (key, window) group, statistics from one query over the table. Inputs are
 * read one by one, so an error names the input that cannot be read.
 */
async function writeByWindow(plan: Plan, inputs: StagedInput[], results: WrittenPartition[]): Promise<void> {
  const { db, fields, timestampColumn, keys } = plan;
  const table = quoteIdent(`partition_writer_${process.pid}_${++taskCounter}`);
  const ts = quoteIdent(timestampColumn);
  const keyIds = new Map(keys.map((key, id) => [partitionKeyId(key), id]));
  try {
    await db.run(
      `CREATE TEMPORARY TABLE ${table} (${KEY_COLUMN} INTEGER, ${WINDOW_COLUMN} BIGINT, ${fields
        .map((f) => `${quoteIdent(f.name)} ${SQL_TYPES[f.type]}`)
        .join(', ')})`,
    );
    for (const staged of inputs) {
      const us = `epoch_us(s.${ts})`;
      const insert = (reader: string) =>
        db.run(
          `INSERT INTO ${table}
           SELECT $key::INTEGER, ${us} - ((${us} % $window::BIGINT) + $window::BIGINT) % $window::BIGINT, s.*
           FROM (${reader}) AS s`,
          { key: keyIds.get(partitionKeyId(staged.partitionKey))!, window: plan.windowMicros.toString() },
        );
      await insertStaged(db, staged, fields, insert);
    }

    const stats = await db.runAndReadAll(
      `SELECT ${KEY_COLUMN}, ${WINDOW_COLUMN}::VARCHAR, count(*)::BIGINT, epoch_us(min(${ts}))::VARCHAR, epoch_us(max(${ts}))::VARCHAR,
              ${fields.map(statisticSql).join(', ')}
      FROM ${table} GROUP BY ${KEY_COLUMN}, ${WINDOW_COLUMN} ORDER BY ${KEY_COLUMN}, ${WINDOW_COLUMN} NULLS FIRST`,
    );
    const groups = stats.getRows();
    for (const row of groups) {
      if (row[1] === null) {
        throw new Error(
          `${row[2]} row(s) with partition key ${JSON.stringify(keys[Number(row[0])])} have no value for the timestamp column ${timestampColumn}`,
        );
      }
    }

    for (const row of groups) {
      const keyId = Number(row[0]);
      const window = row[1] as string;
      const path = join(plan.outputDir, `${randomUUID()}.parquet`);
      try {
        await db.run(
          `COPY (SELECT ${fields.map((f) => quoteIdent(f.name)).join(', ')} FROM ${table}
                 WHERE ${KEY_COLUMN} = $key::INTEGER AND ${WINDOW_COLUMN} = $window::BIGINT ORDER BY ${plan.order})
           TO $path (${plan.parquetOptions})`,
          { key: keyId, window, path },
        );
      } catch (error) {
        removeFile(path);
        throw error;
      }
      const columnStatistics: Record<string, PartitionColumnStatistics> = {};
      fields.forEach((f, i) => {
        const [min, max, nulls] = row.slice(5 + i * 3, 8 + i * 3);
        columnStatistics[f.name] = statistic(f.type, min, max, Number(nulls as bigint));
      });
      results.push({
        path,
        partitionKey: keys[keyId]!,
        windowStart: isoFromMicrosFixed(BigInt(window)),
        startTime: isoFromMicrosFixed(BigInt(row[3] as string)),
        endTime: isoFromMicrosFixed(BigInt(row[4] as string)),
        rowCount: Number(row[2] as bigint),
        ...(await describeFile(path)),
        columnStatistics,
      });
    }
  } finally {
    await db.run(`DROP TABLE IF EXISTS ${table}`);
  }
}

type Insert = (reader: string) => Promise<unknown>;

/** Reads one input into the staging table; errors name the input. */
async function insertStaged(db: DuckDBRunner, staged: StagedInput, fields: PartitionField[], insert: Insert): Promise<void> {
  const [group] = readGroups([staged], fields);
  try {
    if (staged.format !== 'json-document') {
      await insert(await readerSql(db, group!, fields));
      return;
    }
    // A document spread over several lines fails as one line at its first line. A failed INSERT
    // leaves nothing behind.
    try {
      await insert(await readerSql(db, group!, fields));
    } catch {
      await insert(await readerSql(db, group!, fields, true));
    }
  } catch (error) {
    if (staged.format === 'csv' || staged.format === 'parquet') throw readError(staged, error);
    // JSON allows an object to repeat a key, and validation (JSON.parse) kept the last value;
    // DuckDB's JSON reader refuses such objects ("duplicate key"), or first fails to cast the
    // earlier value. Read the rows as validation did; if that fails too, the input is bad.
    try {
      await insertLastKeyWins(db, staged, group!, fields, insert);
    } catch (retryError) {
      throw readError(staged, isDuplicateKeyError(error) ? retryError : error);
    }
  }
}

function isDuplicateKeyError(error: unknown): boolean {
  return /has duplicate key/.test(String((error as Error)?.message ?? error));
}

/** Rewrites a JSON input as NDJSON through JSON.parse (the last of repeated keys wins) and reads that. */
async function insertLastKeyWins(db: DuckDBRunner, staged: StagedInput, group: ReadGroup, fields: PartitionField[], insert: Insert): Promise<void> {
  const text = await Bun.file(staged.path).text();
  const rows: unknown[] =
    staged.format === 'json-document'
      ? ((JSON.parse(text) as { rows: unknown[] }).rows ?? [])
      : text.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line));
  const rewritten = `${staged.path}.last-key-wins.ndjson`;
  await Bun.write(rewritten, rows.map((row) => JSON.stringify(row)).join('\n'));
  try {
    await insert(await readerSql(db, { ...group, format: 'ndjson', paths: [rewritten] }, fields));
  } finally {
    removeFile(rewritten);
  }
}

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // never created, or already gone
  }
}

function readError(staged: StagedInput, error: unknown): Error {
  const detail = error instanceof Error ? error.message : String(error);
  return new Error(`cannot read staged ${staged.format} input ${staged.path}: ${detail}`, { cause: error });
}

async function describeFile(path: string): Promise<{ sizeBytes: number; checksum: string }> {
  const file = Bun.file(path);
  const hasher = new Bun.CryptoHasher('sha256');
  for await (const chunk of file.stream()) hasher.update(chunk);
  return { sizeBytes: statSync(path).size, checksum: `sha256:${hasher.digest('hex')}` };
}

const SORTED_ROW_GROUP_ROWS = 16_384;

interface ValidInput {
  fields: PartitionField[];
  timestampColumn: string;
  windowMicros: bigint;
  rowGroupSize: number | undefined;
  sortColumns: string[];
  /** ORDER BY of a file's rows: the sort columns, then the timestamp. */
  order: string;
}

function validate(input: WritePartitionsInput): ValidInput {
  if (!Array.isArray(input.fields) || input.fields.length === 0) throw new Error('fields must be a non-empty array');
  const seen = new Set<string>();
  for (const field of input.fields) {
    assertIdentifier(field?.name, 'field name');
    if (!Object.hasOwn(SQL_TYPES, field.type)) throw new Error(`field ${field.name} has unknown type ${JSON.stringify(field.type)}`);
    // DuckDB identifiers are case-insensitive.
    const folded = field.name.toLowerCase();
    if (seen.has(folded)) throw new Error(`field name ${field.name} appears twice (names are case-insensitive)`);
    seen.add(folded);
  }
  assertIdentifier(input.timestampColumn, 'timestamp column');
  const tsField = input.fields.find((f) => f.name === input.timestampColumn);
  if (tsField?.type !== 'timestamp') throw new Error(`timestamp column ${input.timestampColumn} must be a field of type timestamp`);
  if (!Number.isSafeInteger(input.windowSeconds) || input.windowSeconds <= 0) {
    throw new Error(`windowSeconds must be a positive integer, got ${input.windowSeconds}`);
  }
  const { rowGroupSize } = input;
  if (rowGroupSize !== undefined && (!Number.isSafeInteger(rowGroupSize) || rowGroupSize <= 0)) {
    throw new Error(`rowGroupSize must be a positive integer, got ${rowGroupSize}`);
  }
  if (input.parquetVersion !== undefined && input.parquetVersion !== 'v1' && input.parquetVersion !== 'v2') {
    throw new Error(`parquetVersion must be v1 or v2, got ${JSON.stringify(input.parquetVersion)}`);
  }
  if (input.sortColumns !== undefined && !Array.isArray(input.sortColumns)) throw new Error('sortColumns must be an array');
  const sortColumns = (input.sortColumns ?? []).filter((c) => c !== input.timestampColumn && input.fields.some((f) => f.name === c));
  if (!Array.isArray(input.inputs)) throw new Error('inputs must be an array');
  for (const staged of input.inputs) {
    if (typeof staged?.path !== 'string' || staged.path === '') throw new Error('every input needs a path');
    if (!FORMATS.has(staged.format)) throw new Error(`input ${staged.path} has unknown format ${JSON.stringify(staged.format)}`);
    const key = staged.partitionKey;
    if (typeof key !== 'object' || key === null || Array.isArray(key) || Object.values(key).some((v) => typeof v !== 'string')) {
      throw new Error(`input ${staged.path} needs a partitionKey of string values`);
    }
    if (staged.fields !== undefined && (!Array.isArray(staged.fields) || !staged.fields.includes(input.timestampColumn))) {
      throw new Error(`input ${staged.path}: fields must be an array of field names that includes the timestamp column`);
    }
  }
  let isDirectory = false;
  try {
    isDirectory = statSync(input.outputDir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDirectory) throw new Error(`outputDir ${input.outputDir} is not an existing directory`);
  return {
    fields: input.fields,
    timestampColumn: input.timestampColumn,
    windowMicros: BigInt(input.windowSeconds) * 1_000_000n,
    rowGroupSize: rowGroupSize ?? (sortColumns.length > 0 ? SORTED_ROW_GROUP_ROWS : undefined),
    sortColumns,
    order: orderBy(sortColumns, input.timestampColumn),
  };
}

function orderBy(sortColumns: string[], timestampColumn: string): string {
  return [...sortColumns, timestampColumn].map(quoteIdent).join(', ');
}

/** A query over every row of the inputs: their typed readers, one per read group, as one UNION ALL. */
async function rowsOf(db: DuckDBRunner, inputs: StagedInput[], fields: PartitionField[]): Promise<string> {
  return (await Promise.all(readGroups(inputs, fields).map((group) => readerSql(db, group, fields)))).join(' UNION ALL ');
}

/** `sortColumns` by their approximate number of distinct values in the inputs, most first (ties as given). */
async function byDistinctValues(db: DuckDBRunner, inputs: StagedInput[], fields: PartitionField[], sortColumns: string[]): Promise<string[]> {
  const counts = (
    await db.runAndReadAll(`SELECT ${sortColumns.map((c) => `approx_count_distinct(${quoteIdent(c)})`).join(', ')} FROM (${await rowsOf(db, inputs, fields)})`)
  ).getRows()[0]!;
  return sortColumns.map((name, i) => ({ name, i, n: Number(counts[i]) })).sort((a, b) => b.n - a.n || a.i - b.i).map((c) => c.name);
}
