/** application/json: the `{schema, partition, rows, ...}` document, staged as it arrived. */
import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { MAX_FIELDS, MAX_IDEMPOTENCY_KEY_LENGTH, refuse } from '../../model/constraints.ts';
import { FieldTypeSchema } from '../../model/field-types.ts';
import { validateRows } from '../validation.ts';
import { checkUtf8, type DecodedBatch, decodeUtf8, hashRequest, hasUnicodeEscape, nextTurn, refuseLoneSurrogates, YIELD_EVERY_ROWS } from './batch.ts';
import { SPACE, scanRowArray, skip } from './row-scan.ts';

const EXAMPLE = {
  schema: {
    fields: [
      { name: 'timestamp', type: 'timestamp' },
      { name: 'temperature_c', type: 'double' },
      { name: 'status', type: 'string' },
    ],
  },
  partition: { key: { instrument: 'A' } },
  rows: [
    { timestamp: '2026-01-01T00:00:00Z', temperature_c: 21.5, status: 'ok' },
    { timestamp: '2026-01-01T00:01:00Z', temperature_c: 21.7, status: 'ok' },
  ],
};

/** The JSON body (the route's OpenAPI document shows it). Its `date-time` format is the one Elysia registers. */
export const IngestBody = Type.Object(
  {
    schema: Type.Object({
      fields: Type.Array(
        Type.Object({
          name: Type.String({ description: 'Letters, digits and _, starting with a letter or _.' }),
          type: FieldTypeSchema,
          nullable: Type.Optional(Type.Boolean({ description: 'Default true (the timestamp column is never null).' })),
        }),
        { minItems: 1, maxItems: MAX_FIELDS },
      ),
    }),
    partition: Type.Object({
      key: Type.Record(Type.String(), Type.String(), { description: 'Partition key, e.g. {"instrument":"A"}: rows with the same key share files.' }),
      timeRange: Type.Optional(
        Type.Object(
          { start: Type.String({ format: 'date-time' }), end: Type.String({ format: 'date-time' }) },
          { description: 'When given, every row must fall in [start, end).' },
        ),
      ),
    }),
    rows: Type.Array(Type.Record(Type.String(), Type.Unknown()), { description: 'Row objects; timestamps as ISO-8601 strings.' }),
    datasetName: Type.Optional(Type.String({ description: 'Display name when this batch creates the dataset.' })),
    storageTargetId: Type.Optional(Type.String({ description: 'Storage target (id or name) for this batch; default: the dataset\'s, else the server\'s. Another than the dataset\'s needs the admin scope (403); a first batch that names one (an administrator\'s) makes it the new dataset\'s.' })),
    idempotencyKey: Type.Optional(
      Type.String({ minLength: 1, maxLength: MAX_IDEMPOTENCY_KEY_LENGTH, description: 'Same as the Idempotency-Key header (the header wins).' }),
    ),
  },
  { example: EXAMPLE },
);

export type JsonBatchBody = Static<typeof IngestBody>;

/**
 * The body is checked against IngestBody except that `rows` is only checked to be an array here:
 * validateRows checks every row against the dataset schema anyway, and checking 5,000 rows twice
 * cost more than parsing them.
 */
const IngestBodyCheck = TypeCompiler.Compile(Type.Object({ ...IngestBody.properties, rows: Type.Array(Type.Unknown()) }));

/**
 * Parses a JSON request body (valid UTF-8, checked before) and checks its shape. The body is
 * staged as it arrived, so what DuckDB's reader refuses anywhere in it is refused here: lone
 * surrogate escapes (also in keys that are not fields, or in datasetName). Exported for its test.
 */
export function parseJsonBody(bytes: Uint8Array): JsonBatchBody {
  const value = parsedFromBytes(bytes) ?? parseText(bytes);
  if (!IngestBodyCheck.Check(value)) throw refuse('body_shape', 'body', IngestBodyCheck.Errors(value).First());
  return value as JsonBatchBody;
}

/**
 * The body's one JSON value, parsed from the bytes without decoding them into a string first;
 * undefined when that does not go cleanly, or the body has a `\u` escape (a lone surrogate needs
 * the text to find): parseText then parses it again and says what is wrong.
 */
function parsedFromBytes(bytes: Uint8Array): unknown {
  if (hasUnicodeEscape(bytes)) return undefined;
  const parsed = Bun.JSONL.parseChunk(bytes);
  return parsed.error === null && parsed.done && parsed.values.length === 1 ? parsed.values[0] : undefined;
}

function parseText(bytes: Uint8Array): unknown {
  const text = decodeUtf8(bytes, 'JSON');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw refuse('json_syntax', `the request body is not valid JSON: ${(err as Error).message}`);
  }
  refuseLoneSurrogates(text, value, (path) =>
    path[0] === 'rows' && typeof path[1] === 'number'
      ? { message: `row ${path[1]}`, details: { index: path[1] } }
      : { message: 'the request body', details: {} },
  );
  return value;
}

/**
 * The document parsed without its rows, which are then checked straight from the bytes
 * (row-scan.ts) rather than parsed: `rows` is where the rows' bytes are. Null when the body is not
 * plainly one object with `rows` once (or the rest does not parse cleanly): parseJsonBody then
 * parses all of it, and says what is wrong.
 */
function parsedWithoutRows(bytes: Uint8Array): { body: JsonBatchBody; rows: { start: number; end: number } } | null {
  const rows = rowsRange(bytes);
  if (!rows) return null;
  const rest = new Uint8Array(rows.start + 1 + bytes.length - rows.end);
  rest.set(bytes.subarray(0, rows.start));
  rest[rows.start] = ZERO; // the placeholder, which `rows` must read back as
  rest.set(bytes.subarray(rows.end), rows.start + 1);
  const value = parsedFromBytes(rest) as Record<string, unknown> | undefined;
  if (typeof value !== 'object' || value === null || value.rows !== 0) return null;
  value.rows = [];
  return IngestBodyCheck.Check(value) ? { body: value as JsonBatchBody, rows } : null;
}

const ZERO = 0x30;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const ROWS = new TextEncoder().encode('rows');

/**
 * Where the value of the document's top-level `rows` key is, found by a walk that skips the other
 * values without parsing them; null unless the body is one object that names `rows` once, without
 * escapes in any key.
 */
function rowsRange(bytes: Uint8Array): { start: number; end: number } | null {
  const n = bytes.length;
  let i = skipSpace(bytes, bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0);
  if (bytes[i++] !== 0x7b) return null;
  let found: { start: number; end: number } | null = null;
  for (;;) {
    i = skipSpace(bytes, i);
    if (bytes[i] !== QUOTE) return null;
    const keyStart = i + 1;
    i = stringEnd(bytes, i);
    if (i < 0 || bytes.subarray(keyStart, i - 1).includes(BACKSLASH)) return null;
    const isRows = i - 1 - keyStart === ROWS.length && ROWS.every((b, k) => bytes[keyStart + k] === b);
    i = skipSpace(bytes, i);
    if (bytes[i] !== 0x3a) return null;
    const start = skipSpace(bytes, i + 1);
    // The rows are usually the last member: their array then ends at the document's last `]`,
    // which saves walking all of it (the scan checks it, and the rest's parse what follows it).
    const last = isRows && !found ? lastMemberEnd(bytes) : -1;
    i = last > start ? last : valueEnd(bytes, start);
    if (i < 0) return null;
    if (isRows) {
      if (found) return null;
      found = { start, end: i };
    }
    i = skipSpace(bytes, i);
    const c = bytes[i++];
    if (c === 0x2c) continue;
    if (c === 0x7d) break;
    return null;
  }
  return found && skipSpace(bytes, i) === n ? found : null;
}

/** The index after the document's last `]` when only whitespace and the closing `}` follow it, else -1. */
function lastMemberEnd(bytes: Uint8Array): number {
  let i = bytes.length - 1;
  while (i >= 0 && SPACE[bytes[i]!] === 1) i--;
  if (bytes[i--] !== 0x7d) return -1;
  while (i >= 0 && SPACE[bytes[i]!] === 1) i--;
  return bytes[i] === 0x5d ? i + 1 : -1;
}

const skipSpace = (bytes: Uint8Array, i: number) => skip(bytes, i, bytes.length, SPACE);

/** The index after the string whose opening quote is at bytes[i], or -1. */
function stringEnd(bytes: Uint8Array, i: number): number {
  for (i++; i < bytes.length; i++) {
    const c = bytes[i];
    if (c === QUOTE) return i + 1;
    if (c === BACKSLASH) i++;
  }
  return -1;
}

/** The index after the JSON value that starts at bytes[i] (strings and nesting followed, nothing checked), or -1. */
function valueEnd(bytes: Uint8Array, i: number): number {
  const n = bytes.length;
  let depth = 0;
  while (i < n) {
    const c = bytes[i]!;
    if (c === QUOTE) {
      i = stringEnd(bytes, i);
      if (i < 0) return -1;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      i++;
    } else if (c === 0x7d || c === 0x5d) {
      if (depth === 0) return i; // the end of the enclosing object
      depth--;
      i++;
    } else if (depth === 0 && (c === 0x2c || SPACE[c] === 1)) {
      return i;
    } else {
      i++;
    }
    if (depth === 0 && (c === QUOTE || c === 0x7d || c === 0x5d)) return i;
  }
  return depth === 0 ? i : -1;
}

export function jsonBatch(raw: Uint8Array): DecodedBatch {
  checkUtf8(raw, 'JSON');
  const split = parsedWithoutRows(raw);
  const batch = split?.body ?? parseJsonBody(raw);
  return {
    format: 'json',
    partition: batch.partition,
    ...(batch.datasetName === undefined ? {} : { datasetName: batch.datasetName }),
    ...(batch.storageTargetId === undefined ? {} : { storageTargetId: batch.storageTargetId }),
    ...(batch.idempotencyKey === undefined ? {} : { idempotencyKey: batch.idempotencyKey }),
    declare: () => batch.schema.fields,
    validate: split
      ? async (rules) =>
          (await scanRowArray(raw.subarray(split.rows.start, split.rows.end), rules, YIELD_EVERY_ROWS, nextTurn)) ?? validateRows(parseJsonBody(raw).rows, rules)
      : (rules) => validateRows(batch.rows, rules),
    stagesBodyAsReceived: true,
    staged: () => ({ bytes: raw, format: 'json-document', extension: 'json' }),
    requestHash: () => hashRequest(raw, 'json'),
  };
}
