/**
 * Reading input files as batches for the server: NDJSON, CSV and line protocol split at record
 * boundaries (CSV repeats its header in each batch), Arrow IPC re-sliced into streams of at most
 * `batchRows` rows, Parquet read by DuckDB and sent as Arrow IPC.
 *
 * Each batch carries its offset (the index of its first row in the input), which with the input's
 * identity makes the batch's idempotency key: a re-run sends the same batches under the same keys.
 */
import { createHash } from 'node:crypto';
import { realpathSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { Bool, Field, Float64, Int64, RecordBatchReader, Schema, Table, TimestampMicrosecond, Utf8, type DataType, tableToIPC, vectorFromArray } from 'apache-arrow';
import { extractDuckDBLibrary, loadDuckDB } from '../engine/duckdb-runtime.ts';

export const FORMATS = ['ndjson', 'csv', 'lp', 'arrow', 'parquet'] as const;
export type Format = (typeof FORMATS)[number];

const EXTENSIONS: Record<string, Format> = {
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
  '.json': 'ndjson',
  '.csv': 'csv',
  '.lp': 'lp',
  '.line': 'lp',
  '.influx': 'lp',
  '.txt': 'lp',
  '.arrow': 'arrow',
  '.arrows': 'arrow',
  '.ipc': 'arrow',
  '.feather': 'arrow',
  '.parquet': 'parquet',
};

export const CONTENT_TYPES: Record<Format, string> = {
  ndjson: 'application/x-ndjson',
  csv: 'text/csv',
  lp: 'text/plain; charset=utf-8',
  arrow: 'application/vnd.apache.arrow.stream',
  parquet: 'application/vnd.apache.arrow.stream',
};

/** The format of an input named `path` ('-' is stdin), or null when its extension names none. */
export function formatOf(path: string): Format | null {
  return EXTENSIONS[extname(path.replace(/\.gz$/, '')).toLowerCase()] ?? null;
}

export interface Batch {
  offset: number;
  rows: number;
  body: Uint8Array;
  idempotencyKey: string;
  /** How far into the input (in bytes of its size) this batch ends: the progress bar's measure. */
  position: number;
}

export interface Input {
  path: string;
  format: Format;
  /** Bytes, or null for stdin. */
  size: number | null;
}

const encoder = new TextEncoder();

export function describeInput(path: string, format: Format): Input {
  return { path, format, size: path === '-' ? null : statSync(path).size };
}

/** The batches of one input, in order. */
export function readBatches(input: Input, batchRows: number): AsyncGenerator<Batch> {
  const identity = input.path === '-' ? null : fileIdentity(input.path);
  const key = (offset: number, rows: number, body: Uint8Array) =>
    `timestore-cli:${identity ?? `stdin-${sha256(body).slice(0, 24)}`}:${input.format}:${offset}+${rows}`;
  switch (input.format) {
    case 'arrow':
      return arrowBatches(input, batchRows, key);
    case 'parquet':
      return parquetBatches(input, batchRows, key);
    default:
      return textBatches(input, batchRows, key);
  }
}

type KeyOf = (offset: number, rows: number, body: Uint8Array) => string;

/** A file is the same file while its path, size and modification time are. */
function fileIdentity(path: string): string {
  const stat = statSync(path);
  return sha256(encoder.encode(`${realpathSync(path)}\0${stat.size}\0${stat.mtimeMs}`)).slice(0, 24);
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function byteStream(path: string): AsyncIterable<Uint8Array> {
  return (path === '-' ? Bun.stdin.stream() : Bun.file(path).stream()) as unknown as AsyncIterable<Uint8Array>;
}

/** Records of a line-based format: lines, except that a CSV record continues while a quoted field is open. */
async function* records(input: Input): AsyncGenerator<{ text: string; position: number }> {
  const decoder = new TextDecoder();
  let pending = '';
  let record = '';
  let quotes = 0;
  let position = 0;
  const csv = input.format === 'csv';
  const take = function* (line: string) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (!csv) {
      if (line.trim() !== '' && !(input.format === 'lp' && line.trimStart().startsWith('#'))) yield line;
      return;
    }
    record = record === '' && quotes === 0 ? line : `${record}\n${line}`;
    for (let i = 0; i < line.length; i++) if (line.charCodeAt(i) === 34) quotes++;
    if (quotes % 2 === 0) {
      if (record !== '') yield record;
      record = '';
      quotes = 0;
    }
  };
  for await (const chunk of byteStream(input.path)) {
    position += chunk.byteLength;
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split('\n');
    pending = lines.pop() as string;
    for (const line of lines) for (const text of take(line)) yield { text, position };
  }
  pending += decoder.decode();
  for (const text of take(pending)) yield { text, position };
  if (record !== '') yield { text: record, position };
}

async function* textBatches(input: Input, batchRows: number, key: KeyOf): AsyncGenerator<Batch> {
  let header: string | null = null;
  let lines: string[] = [];
  let offset = 0;
  let position = 0;
  const flush = (): Batch => {
    const text = `${header !== null ? `${header}\n` : ''}${lines.join('\n')}\n`;
    const body = encoder.encode(text);
    const batch = { offset, rows: lines.length, body, idempotencyKey: key(offset, lines.length, body), position };
    offset += lines.length;
    lines = [];
    return batch;
  };
  for await (const record of records(input)) {
    if (input.format === 'csv' && header === null) {
      header = record.text;
      continue;
    }
    lines.push(record.text);
    position = record.position;
    if (lines.length >= batchRows) yield flush();
  }
  position = input.size ?? position;
  if (lines.length > 0) yield flush();
}

async function* arrowBatches(input: Input, batchRows: number, key: KeyOf): AsyncGenerator<Batch> {
  const bytes = input.path === '-' ? await Bun.stdin.bytes() : await Bun.file(input.path).bytes();
  let table: Table;
  try {
    table = new Table([...RecordBatchReader.from(bytes)]);
  } catch (err) {
    throw new Error(`${input.path}: not an Arrow IPC file or stream (${(err as Error).message})`);
  }
  let offset = 0;
  for (const recordBatch of table.batches) {
    for (let begin = 0; begin < recordBatch.numRows; begin += batchRows) {
      const slice = recordBatch.slice(begin, Math.min(begin + batchRows, recordBatch.numRows));
      const body = tableToIPC(new Table([slice]), 'stream');
      yield { offset, rows: slice.numRows, body, idempotencyKey: key(offset, slice.numRows, body), position: progressOf(input, offset + slice.numRows, table.numRows) };
      offset += slice.numRows;
    }
  }
}

function progressOf(input: Input, done: number, total: number): number {
  return total === 0 ? (input.size ?? 0) : Math.round(((input.size ?? 0) * done) / total);
}

/**
 * Parquet's types as the ingest route's Arrow types: timestamps and dates as microseconds since
 * the epoch, integers as Int64, floating and decimal numbers as Float64, booleans, the rest as text.
 */
function parquetColumn(name: string, duckType: string): { select: string; arrow: DataType; convert: (v: unknown) => unknown } {
  const quoted = `"${name.replace(/"/g, '""')}"`;
  if (/^(TIMESTAMP|DATE)/.test(duckType)) {
    return { select: `epoch_us(${quoted}::TIMESTAMP)`, arrow: new TimestampMicrosecond('UTC'), convert: (v) => (v === null ? null : Number(v as bigint) / 1000) };
  }
  if (/^(TINYINT|SMALLINT|INTEGER|BIGINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|HUGEINT)$/.test(duckType)) {
    return { select: `${quoted}::BIGINT`, arrow: new Int64(), convert: (v) => (v === null ? null : BigInt(v as bigint)) };
  }
  if (/^(FLOAT|DOUBLE|REAL|DECIMAL)/.test(duckType)) return { select: `${quoted}::DOUBLE`, arrow: new Float64(), convert: (v) => v };
  if (duckType === 'BOOLEAN') return { select: quoted, arrow: new Bool(), convert: (v) => v };
  return { select: `${quoted}::VARCHAR`, arrow: new Utf8(), convert: (v) => v };
}

async function* parquetBatches(input: Input, batchRows: number, key: KeyOf): AsyncGenerator<Batch> {
  if (input.path === '-') throw new Error('Parquet cannot be read from stdin: name the file');
  const duckdb = await loadDuckDB(await extractDuckDBLibrary(join(tmpdir(), 'timestore-runtime')));
  const instance = await duckdb.DuckDBInstance.create(':memory:');
  const db = await instance.connect();
  try {
    const source = `read_parquet('${input.path.replace(/'/g, "''")}')`;
    const described = (await (await db.runAndReadAll(`DESCRIBE SELECT * FROM ${source}`)).getRowObjectsJS()) as { column_name: string; column_type: string }[];
    const columns = described.map((c) => ({ name: c.column_name, ...parquetColumn(c.column_name, c.column_type) }));
    const total = Number((await (await db.runAndReadAll(`SELECT count(*) AS n FROM ${source}`)).getRowObjectsJS())[0]!.n);
    const schema = new Schema(columns.map((c) => new Field(c.name, c.arrow, true)));
    const result = await db.stream(`SELECT ${columns.map((c) => c.select).join(', ')} FROM ${source}`);
    let values: unknown[][] = columns.map(() => []);
    let buffered = 0;
    let offset = 0;
    const flush = (): Batch => {
      const vectors = Object.fromEntries(columns.map((c, i) => [c.name, vectorFromArray(values[i]!, schema.fields[i]!.type)]));
      const body = tableToIPC(new Table(vectors), 'stream');
      const batch = { offset, rows: buffered, body, idempotencyKey: key(offset, buffered, body), position: progressOf(input, offset + buffered, total) };
      offset += buffered;
      values = columns.map(() => []);
      buffered = 0;
      return batch;
    };
    while (true) {
      const chunk = await result.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      const vectors = columns.map((_, i) => chunk.getColumnVector(i));
      for (let r = 0; r < chunk.rowCount; r++) {
        for (let c = 0; c < columns.length; c++) values[c]!.push(columns[c]!.convert(vectors[c]!.getItem(r)));
        if (++buffered >= batchRows) yield flush();
      }
    }
    if (buffered > 0) yield flush();
  } finally {
    db.closeSync();
    instance.closeSync();
  }
}
