/**
 * The partition writer, run inside a worker thread (task `writePartitions` in worker.ts).
 *
 * Staged inputs (already validated in JS) are read with DuckDB's typed readers into one temporary
 * table, each row tagged with its input's partition key and its time window; every
 * (partition key, window) group becomes ONE Parquet file (ZSTD, sorted by the sort columns if any,
 * then the timestamp column) named `<outputDir>/<uuid>.parquet`. Row counts, time range and per-column min/max/null counts are
 * computed in SQL from the data; size and sha256 come from the written file. No row passes
 * through JavaScript.
 *
 * The main thread imports this module's types only (`import type`): at run time it is loaded by the
 * worker, after DuckDB's native library, and it never imports `@duckdb/node-api` at run time.
 */
import { randomUUID } from 'node:crypto';
import { statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { type FieldType, SQL_TYPES } from '../model/field-types.ts';
import { isoFromMicrosFixed } from '../model/timestamps.ts';
import type { SchemaField } from '../model/records.ts';
import { assertIdentifier, quoteIdent, sqlString } from './sql.ts';
import { useMemoryLimit } from './memory-limit.ts';

/** A field of the schema version a partition is written with. */
export type PartitionField = SchemaField;

/**
 * How a staged file is laid out.
 * - `json-document`: one JSON object (an ingest request body) whose `rows` key is an array of row
 *   objects; every other key is ignored.
 * - `ndjson`: one row object per line.
 * - `csv`: RFC 4180 (`,` delimiter, `"` quote, `""` escape), a header line naming the columns in any
 *   order; an empty unquoted field is NULL, a quoted empty field (`""`) is the empty string.
 * - `parquet`: a partition file this writer wrote (compaction merges them); columns are matched by
 *   name, so a file written with an older schema version reads its missing columns as NULL.
 *
 * In every format, keys/columns not in `fields` are ignored and fields missing from a row (or from
 * the whole file) are NULL. A timestamp without offset is UTC.
 */
export type StagedInputFormat = 'json-document' | 'ndjson' | 'csv' | 'parquet';

export interface StagedInput {
  /** A local file. */
  path: string;
  format: StagedInputFormat;
  /** The partition key of every row in this input, e.g. `{ instrument: 'A' }`. */
  partitionKey: Record<string, string>;
  /**
   * Names of the fields this input was validated against (its batch's schema version; they include
   * the timestamp column). The others of `fields`, added by later batches, are NULL for its rows:
   * a key the batch carried as an unknown field is not read into a field of the same name added
   * since. Default: all of `fields`.
   */
  fields?: string[];
}

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
   * `v1` (default): the encodings every Parquet reader knows. `v2`: DataPageV2 with delta and
   * byte-stream-split encodings, about 15% smaller on metrics data and as fast to write, but older
   * readers outside DuckDB may not read it.
   */
  parquetVersion?: 'v1' | 'v2';
}

export type ColumnStatisticValue = string | number | boolean | null;

/**
 * Statistics of one column in one file. `min`/`max` are null when every value is null; timestamps
 * are ISO-8601 UTC strings with microseconds; strings longer than {@link MAX_STRING_STATISTIC}
 * characters give a truncated `min` (still a lower bound) and no `max`.
 */
export interface PartitionColumnStatistics {
  min: ColumnStatisticValue;
  max?: ColumnStatisticValue;
  nulls: number;
}

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

/** Longest string kept verbatim in column statistics. */
export const MAX_STRING_STATISTIC = 256;

const FORMATS: ReadonlySet<string> = new Set<StagedInputFormat>(['json-document', 'ndjson', 'csv', 'parquet']);

/** Columns of the staging table that are not fields; `$` keeps them apart from any valid field name. */
const KEY_COLUMN = quoteIdent('$key');
const WINDOW_COLUMN = quoteIdent('$window');

/** DuckDB's own per-object limit (16 MiB); json-document inputs raise it to their file size. */
const MIN_MAX_OBJECT_SIZE = 16 * 1024 * 1024;

let taskCounter = 0;

/** Runs the partition writer on `db`; see the module comment. */
export async function writePartitions(db: DuckDBConnection, input: WritePartitionsInput): Promise<WritePartitionsResult> {
  const { fields, timestampColumn, windowMicros, rowGroupSize, sortColumns } = validate(input);
  if (input.inputs.length === 0) return [];
  const parquetOptions = [
    'FORMAT parquet',
    'COMPRESSION zstd',
    ...(rowGroupSize === undefined ? [] : [`ROW_GROUP_SIZE ${rowGroupSize}`]),
    ...(input.parquetVersion === 'v2' ? ['PARQUET_VERSION v2'] : []),
  ].join(', ');

  // Inputs with equal partition keys share groups; keys are compared with sorted entries.
  const keys: Record<string, string>[] = [];
  const keyIds = new Map<string, number>();
  const inputKeyIds = input.inputs.map((staged) => {
    const canonical = JSON.stringify(Object.entries(staged.partitionKey).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    let id = keyIds.get(canonical);
    if (id === undefined) {
      id = keys.length;
      keys.push({ ...staged.partitionKey });
      keyIds.set(canonical, id);
    }
    return id;
  });

  const table = quoteIdent(`partition_writer_${process.pid}_${++taskCounter}`);
  const ts = quoteIdent(timestampColumn);
  const order = [...sortColumns.map(quoteIdent), ts].join(', ');
  const columns = fields.map((f) => quoteIdent(f.name));
  const written: string[] = [];
  const previousTimeZone = await currentTimeZone(db);
  await useMemoryLimit(db, null); // a query before may have left its own
  try {
    // Strings without an offset are UTC: the CSV reader and casts interpret them in the session's
    // TimeZone (the JSON reader already reads them as UTC).
    await db.run(`SET TimeZone = 'UTC'`);
    await db.run(
      `CREATE TEMPORARY TABLE ${table} (${KEY_COLUMN} INTEGER, ${WINDOW_COLUMN} BIGINT, ${fields
        .map((f) => `${quoteIdent(f.name)} ${SQL_TYPES[f.type]}`)
        .join(', ')})`,
    );

    for (const [index, staged] of input.inputs.entries()) {
      const own = staged.fields ? fields.filter((f) => staged.fields!.includes(f.name)) : fields;
      const read = new Set(own.map((f) => f.name));
      const us = `epoch_us(s.${ts})`;
      const insert = async (reader: ReaderSql) =>
        db.run(
          `INSERT INTO ${table}
           SELECT $key::INTEGER, ${us} - ((${us} % $window::BIGINT) + $window::BIGINT) % $window::BIGINT, ${fields
             .map((f) => (read.has(f.name) ? `s.${quoteIdent(f.name)}` : `NULL::${SQL_TYPES[f.type]}`))
             .join(', ')}
           FROM (${reader.sql}) AS s`,
          { ...reader.params, key: inputKeyIds[index]!, window: windowMicros },
        );
      try {
        await insertStaged(staged, own, insert, db);
      } catch (error) {
        if (staged.format === 'csv' || staged.format === 'parquet') throw readError(staged, error);
        // JSON allows an object to repeat a key, and validation (JSON.parse) kept the last value;
        // DuckDB's JSON reader refuses such objects ("duplicate key"), or first fails to cast the
        // earlier value. Read the rows as validation did; if that fails too, the input is bad.
        try {
          await insertLastKeyWins(staged, own, insert);
        } catch (retryError) {
          throw readError(staged, isDuplicateKeyError(error) ? retryError : error);
        }
      }
    }

    const stats = await db.runAndReadAll(
      `SELECT ${KEY_COLUMN}, ${WINDOW_COLUMN}::VARCHAR, count(*)::BIGINT, epoch_us(min(${ts}))::VARCHAR, epoch_us(max(${ts}))::VARCHAR, ${fields
        .map((f) => {
          const c = quoteIdent(f.name);
          const [min, max] = f.type === 'timestamp' ? [`epoch_us(min(${c}))::VARCHAR`, `epoch_us(max(${c}))::VARCHAR`] : [`min(${c})`, `max(${c})`];
          return `${min}, ${max}, (count(*) - count(${c}))::BIGINT`;
        })
        .join(', ')}
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

    const results: WrittenPartition[] = [];
    for (const row of groups) {
      const keyId = Number(row[0]);
      const window = row[1] as string;
      const rowCount = Number(row[2] as bigint);
      const path = join(input.outputDir, `${randomUUID()}.parquet`);
      written.push(path);
      await db.run(
        `COPY (SELECT ${columns.join(', ')} FROM ${table}
               WHERE ${KEY_COLUMN} = $key::INTEGER AND ${WINDOW_COLUMN} = $window::BIGINT ORDER BY ${order})
         TO $path (${parquetOptions})`,
        { key: keyId, window, path },
      );
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
        rowCount,
        ...(await describeFile(path)),
        columnStatistics,
      });
    }
    return results;
  } catch (error) {
    for (const path of written) {
      try {
        unlinkSync(path);
      } catch {
        // never created
      }
    }
    throw error;
  } finally {
    await db.run(`DROP TABLE IF EXISTS ${table}`);
    await db.run(`SET TimeZone = ${sqlString(previousTimeZone)}`);
  }
}

interface ReaderSql {
  /** A SELECT producing exactly the fields, in order, with their SQL types. */
  sql: string;
  params: Record<string, string | number>;
}

type Insert = (reader: ReaderSql) => Promise<unknown>;

async function insertStaged(staged: StagedInput, fields: PartitionField[], insert: Insert, db: DuckDBConnection): Promise<void> {
  if (staged.format === 'json-document') {
    // A document on one line (as JSON.stringify and most clients send it) reads about twice as
    // fast with format 'newline_delimited' as with 'unstructured'. A document spread over
    // several lines fails that way at its first line (which cannot be a complete value) and is
    // read again as 'unstructured'. A failed INSERT leaves nothing behind.
    try {
      await insert(jsonDocumentReader(staged, fields, 'newline_delimited'));
    } catch {
      await insert(jsonDocumentReader(staged, fields, 'unstructured'));
    }
  } else {
    await insert(await readerSql(staged, fields, db));
  }
}

function isDuplicateKeyError(error: unknown): boolean {
  return /has duplicate key/.test(String((error as Error)?.message ?? error));
}

/** Rewrites a JSON input as NDJSON through JSON.parse (the last of repeated keys wins) and reads that. */
async function insertLastKeyWins(staged: StagedInput, fields: PartitionField[], insert: Insert): Promise<void> {
  const text = await Bun.file(staged.path).text();
  const rows: unknown[] =
    staged.format === 'json-document'
      ? ((JSON.parse(text) as { rows: unknown[] }).rows ?? [])
      : text.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line));
  const rewritten = `${staged.path}.last-key-wins.ndjson`;
  await Bun.write(rewritten, rows.map((row) => JSON.stringify(row)).join('\n'));
  try {
    await insert(await readerSql({ ...staged, path: rewritten, format: 'ndjson' }, fields));
  } finally {
    try {
      unlinkSync(rewritten);
    } catch {
      // already gone
    }
  }
}

/** Reads a json-document input: the array under its `rows` key, every other key ignored. */
function jsonDocumentReader(staged: StagedInput, fields: PartitionField[], format: 'newline_delimited' | 'unstructured'): ReaderSql {
  // The whole document is one JSON value, so the reader's object size limit must cover the file.
  const rowType = `STRUCT(${fields.map((f) => `${quoteIdent(f.name)} ${SQL_TYPES[f.type]}`).join(', ')})[]`;
  return {
    sql: `SELECT ${fields.map((f) => `r.${quoteIdent(f.name)}`).join(', ')}
          FROM (SELECT unnest("rows") AS r
                FROM read_json($path, columns = {'rows': ${sqlString(rowType)}}, format = $format,
                               records = true, maximum_object_size = $maxObject::UINTEGER))`,
    params: { path: staged.path, format, maxObject: maxObjectSize(staged) },
  };
}

/** Reads an ndjson, csv or parquet input as exactly the fields, in order. */
async function readerSql(staged: StagedInput, fields: PartitionField[], db?: DuckDBConnection): Promise<ReaderSql> {
  const typed = (f: PartitionField) => `${sqlString(f.name)}: ${sqlString(SQL_TYPES[f.type])}`;
  switch (staged.format) {
    case 'json-document':
      return jsonDocumentReader(staged, fields, 'unstructured');
    case 'ndjson':
      return {
        sql: `SELECT ${fields.map((f) => quoteIdent(f.name)).join(', ')}
              FROM read_json($path, columns = {${fields.map(typed).join(', ')}}, format = 'newline_delimited',
                             records = true, maximum_object_size = $maxObject::UINTEGER)`,
        params: { path: staged.path, maxObject: maxObjectSize(staged) },
      };
    case 'parquet': {
      if (!db) throw new Error('a parquet input needs the connection to read its schema');
      const present = new Set(
        (await db.runAndReadAll(`SELECT name FROM parquet_schema($path)`, { path: staged.path })).getRows().map((r) => String(r[0])),
      );
      const select = (f: PartitionField) =>
        present.has(f.name) ? `CAST(${quoteIdent(f.name)} AS ${SQL_TYPES[f.type]}) AS ${quoteIdent(f.name)}` : `NULL::${SQL_TYPES[f.type]} AS ${quoteIdent(f.name)}`;
      return { sql: `SELECT ${fields.map(select).join(', ')} FROM read_parquet($path)`, params: { path: staged.path } };
    }
    case 'csv': {
      // Columns are typed by name, so the header is read first; unknown columns are read as text
      // and dropped, absent fields become NULL. With explicit columns DuckDB only skips the header
      // line, so the names read here are the names it uses.
      let header: string[];
      try {
        header = await readCsvHeader(staged.path);
      } catch (error) {
        throw readError(staged, error);
      }
      // Timestamps are read as text and cast: the CSV reader turns an unparseable TIMESTAMPTZ value
      // into NULL without an error (it does raise one for the other types).
      const types = new Map(fields.map((f) => [f.name, f.type === 'timestamp' ? 'VARCHAR' : SQL_TYPES[f.type]]));
      const present = new Set(header);
      const select = (f: PartitionField) => {
        const name = quoteIdent(f.name);
        if (!present.has(f.name)) return `NULL::${SQL_TYPES[f.type]} AS ${name}`;
        return f.type === 'timestamp' ? `CAST(${name} AS TIMESTAMPTZ) AS ${name}` : name;
      };
      return {
        sql: `SELECT ${fields.map(select).join(', ')}
              FROM read_csv($path, header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
                            allow_quoted_nulls = false,
                            columns = {${header.map((h, i) => `${sqlString(types.has(h) ? h : `$unused${i}`)}: ${sqlString(types.get(h) ?? 'VARCHAR')}`).join(', ')}})`,
        params: { path: staged.path },
      };
    }
  }
}

/** Longest CSV header line read. */
const MAX_CSV_HEADER_BYTES = 1024 * 1024;

/** The column names in the first record of an RFC 4180 CSV file (a UTF-8 BOM is skipped). */
export async function readCsvHeader(path: string): Promise<string[]> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let text = '';
  let bytes = 0;
  for await (const chunk of Bun.file(path).stream()) {
    bytes += chunk.byteLength;
    text += decoder.decode(chunk, { stream: true });
    const names = parseCsvRecord(text);
    if (names) return names;
    if (bytes > MAX_CSV_HEADER_BYTES) throw new Error(`no header line within the first ${MAX_CSV_HEADER_BYTES} bytes`);
  }
  text += decoder.decode();
  const names = parseCsvRecord(text, true);
  if (!names || (names.length === 1 && names[0] === '')) throw new Error('the file has no header line');
  return names;
}

/** The first record of `text`, or undefined when it may continue past the end (unless `atEnd`). */
function parseCsvRecord(text: string, atEnd = false): string[] | undefined {
  const names: string[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let value = '';
  let quoted = false;
  while (i < text.length) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (i + 1 >= text.length && !atEnd) return undefined;
        if (text[i + 1] === '"') {
          value += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else {
        value += ch;
      }
      i += 1;
    } else if (ch === '"') {
      quoted = true;
      i += 1;
    } else if (ch === ',') {
      names.push(value);
      value = '';
      i += 1;
    } else if (ch === '\n' || ch === '\r') {
      names.push(value);
      return names;
    } else {
      value += ch;
      i += 1;
    }
  }
  if (!atEnd || quoted) {
    if (quoted && atEnd) throw new Error('unterminated quoted name in the header line');
    return undefined;
  }
  names.push(value);
  return names;
}

function maxObjectSize(staged: StagedInput): number {
  let size: number;
  try {
    size = statSync(staged.path).size;
  } catch (error) {
    throw readError(staged, error);
  }
  return Math.min(Math.max(MIN_MAX_OBJECT_SIZE, size + 1), 0xffffffff);
}

function readError(staged: StagedInput, error: unknown): Error {
  const detail = error instanceof Error ? error.message : String(error);
  return new Error(`cannot read staged ${staged.format} input ${staged.path}: ${detail}`, { cause: error });
}

async function currentTimeZone(db: DuckDBConnection): Promise<string> {
  const reader = await db.runAndReadAll(`SELECT current_setting('TimeZone')`);
  return String(reader.getRows()[0]?.[0] ?? 'UTC');
}

function statistic(type: FieldType, min: unknown, max: unknown, nulls: number): PartitionColumnStatistics {
  switch (type) {
    case 'timestamp':
      return { min: min === null ? null : isoFromMicrosFixed(BigInt(min as string)), max: max === null ? null : isoFromMicrosFixed(BigInt(max as string)), nulls };
    case 'integer':
      return { min: min === null ? null : Number(min as bigint), max: max === null ? null : Number(max as bigint), nulls };
    case 'string': {
      const minimum = min === null ? null : truncate(min as string);
      if (max !== null && (max as string).length > MAX_STRING_STATISTIC) return { min: minimum, nulls };
      return { min: minimum, max: max as string | null, nulls };
    }
    default:
      return { min: min as number | boolean | null, max: max as number | boolean | null, nulls };
  }
}

/** A prefix of at most MAX_STRING_STATISTIC UTF-16 units that does not split a surrogate pair. */
function truncate(value: string): string {
  if (value.length <= MAX_STRING_STATISTIC) return value;
  const end = MAX_STRING_STATISTIC;
  const code = value.charCodeAt(end - 1);
  return value.slice(0, code >= 0xd800 && code <= 0xdbff ? end - 1 : end);
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
  windowMicros: string;
  rowGroupSize: number | undefined;
  sortColumns: string[];
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
    windowMicros: (BigInt(input.windowSeconds) * 1_000_000n).toString(),
    rowGroupSize: rowGroupSize ?? (sortColumns.length > 0 ? SORTED_ROW_GROUP_ROWS : undefined),
    sortColumns,
  };
}
