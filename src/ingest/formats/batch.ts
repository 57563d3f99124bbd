/**
 * A batch as acceptBatch sees it, whatever the request body's format: where its
 * schema comes from, how its rows are checked, and what is staged for the
 * partition writer. One module per format (json, ndjson, csv, arrow) builds it.
 */
import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type { SchemaField, SchemaVersion } from '../../model/records.ts';
import type { StagedInputFormat } from '../../engine/partition-writer.ts';
import { AppError } from '../../model/errors.ts';
import { type BodyFormat, type IngestFormat, refuse } from '../../model/constraints.ts';
import type { StagedExtension } from '../../model/object-keys.ts';
import type { BatchSummary, RowRules } from '../validation.ts';

/** What a batch says about itself besides its rows: in the JSON body, or in query parameters for the other formats. */
export interface BatchParams {
  partition: { key: Record<string, string>; timeRange?: { start: string; end: string } };
  datasetName?: string;
  storageTargetId?: string;
}

export interface StagedBody {
  bytes: Uint8Array;
  format: StagedInputFormat;
  /** File name extension of the staged object, e.g. `csv`. */
  extension: StagedExtension;
}

export interface DecodedBatch extends BatchParams {
  format: IngestFormat;
  /** The idempotency key the body carries (a JSON body's `idempotencyKey`); the header's wins. */
  idempotencyKey?: string;
  /**
   * The fields the batch declares, given the dataset's latest schema version (null when the
   * dataset has none yet); null when the format carries no schema and the dataset's is used.
   */
  declare(latest: SchemaVersion | null): SchemaField[] | null;
  /**
   * Checks every row (the first bad one is a 400 naming its index and field); throws, stores
   * nothing. A format whose parse is long yields to the event loop as it goes (a promise).
   */
  validate(rules: RowRules): BatchSummary | Promise<BatchSummary>;
  /** The bytes to stage: after validate() passed, or at any time when `stagesBodyAsReceived`. */
  staged(): StagedBody;
  /** The staged bytes are the request body itself, known before the rows are checked. */
  stagesBodyAsReceived: boolean;
  /** sha256 (hex) identifying the request for idempotency: same key and same hash → the same job. */
  requestHash(): string;
}

/**
 * The idempotency hash: the raw body, and for formats whose partition key and other
 * parameters come from the query string, those too (the same CSV sent for
 * another partition key is another request).
 */
export function hashRequest(raw: Uint8Array, format: BodyFormat, params?: BatchParams): string {
  const hash = createHash('sha256').update(raw);
  if (params) {
    const key = Object.keys(params.partition.key)
      .sort()
      .map((name) => [name, params.partition.key[name]]);
    hash.update(
      JSON.stringify({
        format,
        key,
        timeRange: params.partition.timeRange ?? null,
        datasetName: params.datasetName ?? null,
        storageTargetId: params.storageTargetId ?? null,
      }),
    );
  }
  return hash.digest('hex');
}

/** A 5,000-row body takes a few ms to check: other requests' I/O moves between chunks of this many rows. */
export const YIELD_EVERY_ROWS = 1000;

/** Lets the event loop run what waits (I/O callbacks first) before going on. */
export const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Adds the (1-based) line of the body to a row error, for line-oriented formats. */
export function atLine(error: unknown, line: number | undefined): unknown {
  if (line !== undefined && error instanceof AppError && typeof error.details === 'object' && error.details !== null) {
    (error.details as Record<string, unknown>).line = line;
  }
  return error;
}

/** Decodes UTF-8 text without a leading BOM, refusing invalid bytes (DuckDB's readers would refuse them later). */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw notUtf8(what);
  }
}

/** Refuses bytes that are not UTF-8, as decodeUtf8 does, for a body parsed without decoding it. */
export function checkUtf8(bytes: Uint8Array, what: string): void {
  if (!isUtf8(bytes)) throw notUtf8(what);
}

const notUtf8 = (what: string) => refuse('encoding', `the ${what} body is not valid UTF-8`);

/** Whether JSON bytes hold a `\u` escape at all: rows parsed from bytes skip the lone-surrogate walk only when none does. */
export function hasUnicodeEscape(bytes: Uint8Array): boolean {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes('\\u');
}

/**
 * Whether JSON text has a `\uD800`–`\uDFFF` escape: text without one holds no lone surrogate (UTF-8
 * cannot encode one). A scan for `\u` (fast, and most bodies have none) rather than a regular expression.
 */
export function hasSurrogateEscape(text: string): boolean {
  for (let at = text.indexOf('\\u'); at >= 0; at = text.indexOf('\\u', at + 2)) {
    const d = text.charCodeAt(at + 2) | 0x20; // lower case
    const next = text.charCodeAt(at + 3) | 0x20;
    if (d === 0x64 && (next === 0x38 || next === 0x39 || (next >= 0x61 && next <= 0x66))) return true; // d, 8 9 a–f
  }
  return false;
}

/**
 * Refuses (400 `invalid_unicode`) parsed JSON that holds a string or key with a lone UTF-16
 * surrogate: JSON.parse takes `"\ud800"`, DuckDB's JSON reader refuses the whole file. `text` is
 * the JSON it was parsed from; the walk only happens when it has a surrogate escape at all.
 * `where` names the value in the message, e.g. `row 3` or `the request body`.
 */
export function refuseLoneSurrogates(text: string, value: unknown, where: (path: (string | number)[]) => { message: string; details: Record<string, unknown> }): void {
  if (!hasSurrogateEscape(text)) return;
  const path = loneSurrogatePath(value);
  if (path === null) return;
  const at = where(path);
  throw refuse('unicode', `${at.message}: a string holds an unpaired UTF-16 surrogate (a \\uD800–\\uDFFF escape without its pair), which cannot be stored`, {
    ...at.details,
    path: path.join('.'),
  });
}

/** The path to the first string or key of `value` that is not well-formed UTF-16, or null. Iterative: JSON may nest deeply. */
function loneSurrogatePath(value: unknown): (string | number)[] | null {
  const stack: { value: unknown; path: (string | number)[] }[] = [{ value, path: [] }];
  while (stack.length > 0) {
    const { value: v, path } = stack.pop()!;
    if (typeof v === 'string') {
      if (!v.isWellFormed()) return path;
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: [...path, i] });
    } else if (v !== null && typeof v === 'object') {
      for (const key of Object.keys(v)) {
        if (!key.isWellFormed()) return [...path, key];
        stack.push({ value: (v as Record<string, unknown>)[key], path: [...path, key] });
      }
    }
  }
  return null;
}
