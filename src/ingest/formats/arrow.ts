/**
 * application/vnd.apache.arrow.stream: an Arrow IPC stream (the IPC file format is read too),
 * decoded with apache-arrow. Its schema declares the batch's fields, as `schema.fields` does in a
 * JSON batch (so an Arrow stream may create the dataset and add nullable fields):
 *
 *   Timestamp (any unit; with a time zone or without, read as UTC), Date  → timestamp
 *   Utf8, LargeUtf8, dictionary-encoded Utf8                               → string
 *   Float16/32/64                                                          → double
 *   Int8…Int64, Uint8…Uint64                                               → integer
 *   Bool                                                                   → boolean
 *
 * Any other type is a 400 naming the column. Where the dataset already defines a column, a type
 * that converts without loss is read as the dataset's: integers into a double field, strings
 * into a timestamp field (checked with the JSON grammar). Arrow nullability is not carried over
 * (fields are nullable unless the dataset says otherwise). Rows are checked with the JSON
 * batch's rules (validation.ts), then staged as NDJSON with timestamps as ISO-8601 UTC strings
 * with microseconds.
 */
import { DataType as Types, type Field, makeVector, MessageReader, Precision, type RecordBatch, RecordBatchFileReader, Table, tableFromIPC, TimeUnit, type Vector } from 'apache-arrow';
import { Footer } from 'apache-arrow/ipc/metadata/file';
import type { FieldType } from '../../model/field-types.ts';
import type { SchemaVersion } from '../../model/records.ts';
import { refuse } from '../../model/constraints.ts';
import { FIELD_NAME } from '../../model/schema.ts';
import { validateRows } from '../validation.ts';
import { type BatchParams, type DecodedBatch, hashRequest } from './batch.ts';

/** One chunk's values as JavaScript values (null where the value is null), appended to `out` from `at`. */
type Materialize = (chunk: Vector, out: unknown[], at: number) => void;

interface Column {
  name: string;
  type: FieldType;
  materialize: Materialize;
  vector: Vector;
}

/** `maxRows`: the most rows a batch may carry (TIMESTORE_INGEST_MAX_BATCH_ROWS), checked before any row is decoded. */
export function arrowBatch(raw: Uint8Array, params: BatchParams, maxRows: number): DecodedBatch {
  let table: Table;
  try {
    table = readIpc(raw);
  } catch (err) {
    throw refuse('arrow_stream', `the body is not an Arrow IPC stream: ${(err as Error).message}`);
  }
  // Every stored row costs at least one byte of the body (a one-byte dictionary index for its
  // timestamp); a record batch's declared length is only a number, which decoding would believe.
  if (table.numRows > raw.byteLength) {
    throw refuse('arrow_stream', `the Arrow stream declares ${table.numRows} rows in a body of ${raw.byteLength} bytes; its record batch lengths do not match its data`, {
      rows: table.numRows,
      bytes: raw.byteLength,
    });
  }
  if (table.numRows > maxRows) throw tooManyRows(table.numRows, maxRows);
  if (table.schema.fields.length === 0) throw refuse('arrow_stream', 'the Arrow stream has no schema (no columns)');
  const columns = table.schema.fields.map((field, i) => column(field, table.getChildAt(i)!));
  let lines: string[] | undefined;

  return {
    format: 'arrow',
    ...params,
    declare: (latest) => columns.map((c) => ({ name: c.name, type: declaredType(c, latest) })),
    validate(rules) {
      const rows = toRows(columns, table.numRows);
      const summary = validateRows(rows, rules);
      lines = rows.map((row) => JSON.stringify(row));
      return summary;
    },
    stagesBodyAsReceived: false,
    staged() {
      if (!lines) throw new Error('staged() before validate()');
      return { bytes: new TextEncoder().encode(`${lines.join('\n')}\n`), format: 'ndjson', extension: 'ndjson' };
    },
    requestHash: () => hashRequest(raw, 'arrow', params),
  };
}

const FILE_MAGIC = 'ARROW1';
/** A FileBlock of the footer: offset (int64), metadata length (int32, padded), body length (int64). */
const FILE_BLOCK_BYTES = 24;

/**
 * An Arrow IPC stream as it is; an IPC file (`ARROW1` … footer, its int32 length, `ARROW1`) read
 * block by block from its footer. apache-arrow's own file reader loops forever, on the event loop,
 * when a footer block points at a message that is not a record batch (it rereads the same block:
 * a 307-byte body froze the server), and trusts the footer's counts without checking them against
 * the bytes. So the counts must fit the footer (24 bytes a block), and each block must hold a
 * record batch.
 */
function readIpc(raw: Uint8Array): Table {
  const magicAt = (at: number) => at >= 0 && Buffer.from(raw.buffer, raw.byteOffset + at, FILE_MAGIC.length).toString('latin1') === FILE_MAGIC;
  if (raw.length < FILE_MAGIC.length || !magicAt(0)) {
    checkDeclaredLengths(raw, raw);
    return tableFromIPC(raw); // a stream is read up to its bytes
  }
  const footerEnd = raw.length - FILE_MAGIC.length - 4;
  if (footerEnd < 8 || !magicAt(raw.length - FILE_MAGIC.length)) throw new Error('an Arrow IPC file must end with its footer and ARROW1');
  const footerLength = new DataView(raw.buffer, raw.byteOffset + footerEnd, 4).getInt32(0, true);
  if (footerLength <= 0 || footerLength > footerEnd - 8) throw new Error(`the Arrow IPC file's footer length ${footerLength} does not fit the file`);
  const footer = Footer.decode(raw.subarray(footerEnd - footerLength, footerEnd));
  const blocks = footer.numRecordBatches + footer.numDictionaries;
  if (!(blocks >= 0 && blocks * FILE_BLOCK_BYTES <= footerLength)) throw new Error(`the Arrow IPC file's footer counts ${blocks} blocks in ${footerLength} bytes`);
  checkDeclaredLengths(raw.subarray(8, footerEnd - footerLength), raw); // the messages, after ARROW1 and its padding
  const reader = RecordBatchFileReader.from(raw).open();
  const batches = Array.from({ length: reader.numRecordBatches }, (_, i) => {
    const batch = reader.readRecordBatch(i) as RecordBatch | null; // a sync reader: the body is in memory
    if (!batch) throw new Error(`block ${i} of the Arrow IPC file's footer is not a record batch`);
    return batch;
  });
  return new Table(reader.schema, batches);
}

/**
 * Refuses messages whose batches declare more values (rows, or a column's values) than the whole
 * body has bytes, before apache-arrow allocates for them: a declared length is only a number (a
 * 391-byte stream declaring billions of rows took gigabytes to decode). Every value stored costs
 * at least a bit of the body, so a byte per value is a generous bound for what timestore takes.
 */
function checkDeclaredLengths(messages: Uint8Array, body: Uint8Array): void {
  const reader = new MessageReader(messages);
  for (let message = reader.readMessage(); message; message = reader.readMessage()) {
    const batch = message.isRecordBatch() ? message.header() : message.isDictionaryBatch() ? message.header().data : null;
    if (batch) {
      const declared = Math.max(batch.length, ...batch.nodes.map((node) => node.length));
      if (!(declared <= body.byteLength)) throw new Error(`a batch declares ${declared} values in a body of ${body.byteLength} bytes`);
    }
    if (message.bodyLength > 0) reader.readMessageBody(message.bodyLength);
  }
}

/** The declared type: the Arrow type's, or the dataset's where the Arrow values convert to it without loss. */
function declaredType(column: Column, latest: SchemaVersion | null): FieldType {
  const existing = latest?.fields.find((f) => f.name === column.name)?.type;
  if (existing === 'double' && column.type === 'integer') return 'double';
  if (existing === 'timestamp' && column.type === 'string') return 'timestamp';
  return column.type;
}

function column(field: Field, vector: Vector): Column {
  if (!FIELD_NAME.test(field.name)) {
    throw refuse(
      'field_name',
      `column "${field.name}" of the Arrow schema is not a safe identifier: use letters, digits and _, starting with a letter or _ (at most 63)`,
      { field: field.name },
    );
  }
  const base = { name: field.name, vector };
  const type = field.type;
  if (Types.isTimestamp(type)) return { ...base, type: 'timestamp', materialize: timestamps(type.unit) };
  if (Types.isDate(type)) return { ...base, type: 'timestamp', materialize: each((chunk, i) => isoFromMillis(chunk.get(i) as number)) };
  if (isText(type) || (Types.isDictionary(type) && isText(type.dictionary))) return { ...base, type: 'string', materialize: each((chunk, i) => chunk.get(i)) };
  if (Types.isFloat(type)) {
    // Half floats are stored as 16-bit integers: only get() converts them.
    return { ...base, type: 'double', materialize: type.precision === Precision.HALF ? each((chunk, i) => chunk.get(i)) : numbers };
  }
  if (Types.isInt(type)) return { ...base, type: 'integer', materialize: numbers };
  if (Types.isBool(type)) return { ...base, type: 'boolean', materialize: each((chunk, i) => chunk.get(i)) };
  throw refuse(
    'arrow_type',
    `column "${field.name}" has Arrow type ${String(field.type)}, which timestore does not store; ` +
      'send timestamps (Timestamp or Date), strings (Utf8), doubles (Float), integers (Int) or booleans (Bool)',
    { field: field.name, arrowType: String(field.type) },
  );
}

const isText = (type: Field['type']) => Types.isUtf8(type) || Types.isLargeUtf8(type) || Types.isUtf8View(type);

/** Values through apache-arrow's get(), nulls skipped. */
function each(read: (chunk: Vector, index: number) => unknown): Materialize {
  return (chunk, out, at) => {
    const hasNulls = chunk.nullCount > 0;
    for (let i = 0; i < chunk.length; i++) out[at + i] = hasNulls && !chunk.isValid(i) ? null : read(chunk, i);
  };
}

/** Fixed-width numbers straight from the chunk's buffer (64-bit integers arrive as bigint). */
const numbers: Materialize = (chunk, out, at) => {
  const values = chunk.data[0]!.values as ArrayLike<number | bigint>;
  const hasNulls = chunk.nullCount > 0;
  for (let i = 0; i < chunk.length; i++) out[at + i] = hasNulls && !chunk.isValid(i) ? null : Number(values[i]);
};

/** Timestamps from their raw 64-bit values (apache-arrow's get() rounds them to milliseconds). */
function timestamps(unit: TimeUnit): Materialize {
  return (chunk, out, at) => {
    const values = chunk.data[0]!.values as BigInt64Array;
    const hasNulls = chunk.nullCount > 0;
    for (let i = 0; i < chunk.length; i++) {
      out[at + i] = hasNulls && !chunk.isValid(i) ? null : isoFromUnit(values[i]!, unit);
    }
  };
}

const MAX_EXACT = Number.MAX_SAFE_INTEGER;

/** ISO-8601 UTC with microseconds from a count of `unit` since the epoch. */
function isoFromUnit(value: bigint, unit: TimeUnit): string {
  const number = Number(value);
  if (unit === TimeUnit.SECOND) return isoFromMillis(number * 1000, 0);
  if (unit === TimeUnit.MILLISECOND) return isoFromMillis(number, 0);
  if (unit === TimeUnit.MICROSECOND && Math.abs(number) <= MAX_EXACT) {
    const millis = Math.floor(number / 1000);
    return isoFromMillis(millis, number - millis * 1000);
  }
  const perMilli = unit === TimeUnit.MICROSECOND ? 1_000n : 1_000_000n;
  const millis = floorDiv(value, perMilli);
  return isoFromMillis(Number(millis), Number((value - millis * perMilli) / (perMilli / 1000n)));
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b < 0n ? q - 1n : q;
}

/** Beyond JavaScript's Date range. */
const MAX_MILLIS = 8.64e15;

/**
 * ISO-8601 UTC, with microseconds when `micros` (0–999) is given. Years outside 1–9999 give
 * strings the timestamp grammar refuses, so they fail validation as `invalid_timestamp`.
 */
function isoFromMillis(millis: number, micros?: number): string {
  if (!(Math.abs(millis) <= MAX_MILLIS)) return `${millis} milliseconds since 1970`;
  const iso = new Date(millis).toISOString();
  if (micros === undefined) return iso;
  return `${iso.slice(0, -1)}${micros < 10 ? '00' : micros < 100 ? '0' : ''}${micros}Z`;
}

/** Row objects (null values left out), in stream order. */
function toRows(columns: Column[], rowCount: number): Record<string, unknown>[] {
  const values = columns.map((c) => {
    const out: unknown[] = new Array(rowCount);
    let at = 0;
    for (const data of c.vector.data) {
      c.materialize(makeVector(data), out, at);
      at += data.length;
    }
    return out;
  });
  const rows: Record<string, unknown>[] = new Array(rowCount);
  for (let r = 0; r < rowCount; r++) {
    const row: Record<string, unknown> = {};
    for (let c = 0; c < columns.length; c++) {
      const value = values[c]![r];
      if (value !== null) row[columns[c]!.name] = value;
    }
    rows[r] = row;
  }
  return rows;
}

/** The refusal of a batch over TIMESTORE_INGEST_MAX_BATCH_ROWS (any format). */
export function tooManyRows(rows: number, maxRows: number) {
  return refuse('batch_rows', `the batch has ${rows} rows; a batch may carry at most ${maxRows} (TIMESTORE_INGEST_MAX_BATCH_ROWS): split it`, {
    rows,
    limit: maxRows,
  });
}
