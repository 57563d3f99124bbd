/**
 * How the partition writer reads staged inputs: DuckDB's typed readers (JSON, CSV, Parquet), one
 * SELECT per group of inputs that read alike, each producing exactly the fields of the schema being
 * written, in order, with NULL for the fields an input was not validated against.
 *
 * Loaded by the worker only (see partition-writer.ts).
 */
import { randomUUID } from 'node:crypto';
import { closeSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { DuckDBRunner } from './own-thread.ts';
import { parseCsv } from '../model/csv.ts';
import { endsLine, LINE_FEED } from '../model/staged-lines.ts';
import { SQL_TYPES } from '../model/field-types.ts';
import type { SchemaField } from '../model/records.ts';
import { quoteIdent, sqlString } from './sql.ts';

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
  /**
   * The earliest and latest timestamp of its rows (ISO-8601), when known (an ingest job's payload,
   * a partition's range). Only a hint: it lets the writer skip the single-file path for inputs
   * whose rows certainly span several windows.
   */
  timeSpan?: { min: string; max: string };
  /**
   * Only these bytes of `path` are the input, one range after another, each on lines of its own
   * (NDJSON or JSON documents: batches' bodies in a shared staged object). Default: the whole file.
   */
  ranges?: Array<{ offset: number; length: number }>;
}

/** Copies go through this, read and written a piece at a time (grown once, for a range larger than it). */
let copyBuffer = new Uint8Array(1024 * 1024);

/**
 * An input of byte ranges made an input of its own file in `dir` (readers take whole files),
 * copied here in the writer's thread, with a buffer that is reused: the bytes are in the page
 * cache, and copying them costs less than a trip through the main thread would.
 */
export function withoutRanges(input: StagedInput, dir: string): StagedInput {
  if (!input.ranges) return input;
  const path = join(dir, `ranges-${randomUUID()}.${input.format === 'ndjson' ? 'ndjson' : 'json'}`);
  const from = openSync(input.path, 'r');
  try {
    const to = openSync(path, 'wx');
    try {
      for (const range of input.ranges) {
        if (copyBuffer.byteLength < range.length + 1) copyBuffer = new Uint8Array(range.length + 1);
        const read = range.length === 0 ? 0 : readSync(from, copyBuffer, 0, range.length, range.offset);
        if (read !== range.length) throw new Error(`${input.path} ends before the bytes ${range.offset}–${range.offset + range.length} of a batch`);
        let end = read;
        if (!endsLine(copyBuffer, end)) copyBuffer[end++] = LINE_FEED;
        for (let written = 0; written < end; ) written += writeSync(to, copyBuffer, written, end - written);
      }
    } finally {
      closeSync(to);
    }
  } finally {
    closeSync(from);
  }
  const { ranges: _, ...whole } = input;
  return { ...whole, path };
}

/** Inputs that one SELECT reads: same format and same fields read (and, for CSV, one file). */
export interface ReadGroup {
  format: StagedInputFormat;
  paths: string[];
  /** The fields read from the files; the others are NULL. */
  read: ReadonlySet<string>;
}

/** DuckDB's own per-object limit (16 MiB); JSON inputs raise it to their largest file's size. */
const MIN_MAX_OBJECT_SIZE = 16 * 1024 * 1024;

/** Groups inputs that one reader can read together (a CSV file is read alone: its header types it). */
export function readGroups(inputs: StagedInput[], fields: SchemaField[]): ReadGroup[] {
  const groups = new Map<string, ReadGroup>();
  for (const [index, staged] of inputs.entries()) {
    const read = new Set(staged.fields ? fields.filter((f) => staged.fields!.includes(f.name)).map((f) => f.name) : fields.map((f) => f.name));
    const id = staged.format === 'csv' ? `csv ${index}` : `${staged.format} ${[...read].join(',')}`;
    const group = groups.get(id);
    if (group) group.paths.push(staged.path);
    else groups.set(id, { format: staged.format, paths: [staged.path], read });
  }
  return [...groups.values()];
}

/**
 * A SELECT of exactly `fields`, in order, over a group's files. JSON documents are read as one
 * line each (`newline_delimited`, about twice as fast) unless `multiLine` (a document spread over
 * several lines, which fails the other way at its first line).
 */
export async function readerSql(db: DuckDBRunner, group: ReadGroup, fields: SchemaField[], multiLine = false): Promise<string> {
  const paths = `[${group.paths.map(sqlString).join(', ')}]`;
  const typed = (f: SchemaField) => `${sqlString(f.name)}: ${sqlString(SQL_TYPES[f.type])}`;
  const own = fields.filter((f) => group.read.has(f.name));
  const project = (column: (f: SchemaField) => string) =>
    fields.map((f) => (group.read.has(f.name) ? `${column(f)} AS ${quoteIdent(f.name)}` : `NULL::${SQL_TYPES[f.type]} AS ${quoteIdent(f.name)}`)).join(', ');
  switch (group.format) {
    case 'json-document': {
      // The whole document is one JSON value, so the reader's object size limit must cover the file.
      const rowType = `STRUCT(${own.map((f) => `${quoteIdent(f.name)} ${SQL_TYPES[f.type]}`).join(', ')})[]`;
      return `SELECT ${project((f) => `r.${quoteIdent(f.name)}`)}
              FROM (SELECT unnest("rows") AS r
                    FROM read_json(${paths}, columns = {'rows': ${sqlString(rowType)}},
                                   format = ${multiLine ? "'unstructured'" : "'newline_delimited'"},
                                   records = true, maximum_object_size = ${maxObjectSize(group.paths)}))`;
    }
    case 'ndjson':
      return `SELECT ${project((f) => quoteIdent(f.name))}
              FROM read_json(${paths}, columns = {${own.map(typed).join(', ')}}, format = 'newline_delimited',
                             records = true, maximum_object_size = ${maxObjectSize(group.paths)})`;
    case 'parquet': {
      // Files of one schema version have the same columns: read together when they do.
      const { present, uniform } = await parquetColumns(db, group.paths);
      const column = (f: SchemaField) => (present.has(f.name) ? `CAST(${quoteIdent(f.name)} AS ${SQL_TYPES[f.type]})` : `NULL::${SQL_TYPES[f.type]}`);
      return `SELECT ${project(column)} FROM read_parquet(${paths}${uniform ? '' : ', union_by_name = true'})`;
    }
    case 'csv': {
      // Columns are typed by name, so the header is read first; unknown columns are read as text
      // and dropped, absent fields become NULL. With explicit columns DuckDB only skips the header
      // line, so the names read here are the names it uses.
      const header = await readCsvHeader(group.paths[0]!);
      // Timestamps are read as text and cast: the CSV reader turns an unparseable TIMESTAMPTZ value
      // into NULL without an error (it does raise one for the other types).
      const types = new Map(own.map((f) => [f.name, f.type === 'timestamp' ? 'VARCHAR' : SQL_TYPES[f.type]]));
      const present = new Set(header);
      const column = (f: SchemaField) => {
        if (!present.has(f.name)) return `NULL::${SQL_TYPES[f.type]}`;
        return f.type === 'timestamp' ? `CAST(${quoteIdent(f.name)} AS TIMESTAMPTZ)` : quoteIdent(f.name);
      };
      return `SELECT ${project(column)}
              FROM read_csv(${paths}, header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
                            allow_quoted_nulls = false,
                            columns = {${header.map((h, i) => `${sqlString(types.has(h) ? h : `$unused${i}`)}: ${sqlString(types.get(h) ?? 'VARCHAR')}`).join(', ')}})`;
    }
  }
}

/** The columns of Parquet files, and whether every file has all of them. */
async function parquetColumns(db: DuckDBRunner, paths: string[]): Promise<{ present: Set<string>; uniform: boolean }> {
  const rows = (await db.runAndReadAll(`SELECT file_name, name FROM parquet_schema([${paths.map(sqlString).join(', ')}])`)).getRows();
  const perFile = new Map<string, Set<string>>();
  for (const [file, name] of rows) {
    const names = perFile.get(String(file)) ?? new Set<string>();
    names.add(String(name));
    perFile.set(String(file), names);
  }
  const present = new Set(rows.map((r) => String(r[1])));
  return { present, uniform: [...perFile.values()].every((names) => names.size === present.size) };
}

/** Longest CSV header line read. */
const MAX_CSV_HEADER_BYTES = 1024 * 1024;

/** The column names in the first record of an RFC 4180 CSV file (model/csv.ts; a UTF-8 BOM is skipped). */
export async function readCsvHeader(path: string): Promise<string[]> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let text = '';
  let bytes = 0;
  for await (const chunk of Bun.file(path).stream()) {
    bytes += chunk.byteLength;
    text += decoder.decode(chunk, { stream: true });
    const names = firstCsvRecord(text, false);
    if (names) return names;
    if (bytes > MAX_CSV_HEADER_BYTES) throw new Error(`no header line within the first ${MAX_CSV_HEADER_BYTES} bytes`);
  }
  text += decoder.decode();
  const names = firstCsvRecord(text, true);
  if (!names || (names.length === 1 && names[0] === '')) throw new Error('the file has no header line');
  return names;
}

/** The first record of `text`, or undefined when it may continue past the end (unless `atEnd`). */
function firstCsvRecord(text: string, atEnd: boolean): string[] | undefined {
  let names: string[] | undefined;
  let end: number;
  try {
    end = parseCsv(text, (values, count) => {
      names = values.slice(0, count).map((name) => name ?? '');
      return true;
    });
  } catch (err) {
    if (!atEnd) return undefined; // e.g. a quoted name that goes on in the next chunk
    throw err;
  }
  // A record that ends at the end of the text may go on (or end "\r" of a "\r\n") in the next chunk.
  return atEnd || end < text.length ? names : undefined;
}

function maxObjectSize(paths: string[]): number {
  const largest = Math.max(...paths.map((path) => statSync(path).size));
  return Math.min(Math.max(MIN_MAX_OBJECT_SIZE, largest + 1), 0xffffffff);
}
