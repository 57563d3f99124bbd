/** application/json: the `{schema, partition, rows, ...}` document, staged as it arrived. */
import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { MAX_FIELDS, MAX_IDEMPOTENCY_KEY_LENGTH, refuse } from '../../model/constraints.ts';
import { FieldTypeSchema } from '../../model/field-types.ts';
import { validateRows } from '../validation.ts';
import { checkUtf8, type DecodedBatch, decodeUtf8, hashRequest, hasUnicodeEscape, refuseLoneSurrogates } from './batch.ts';

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
 * Parses a JSON request body and checks its shape. The body is staged as it arrived, so what
 * DuckDB's reader refuses anywhere in it is refused here: bytes that are not UTF-8, and lone
 * surrogate escapes (also in keys that are not fields, or in datasetName).
 */
function parseJsonBody(bytes: Uint8Array): JsonBatchBody {
  checkUtf8(bytes, 'JSON');
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

export function jsonBatch(raw: Uint8Array): DecodedBatch {
  const batch = parseJsonBody(raw);
  return {
    format: 'json',
    partition: batch.partition,
    ...(batch.datasetName === undefined ? {} : { datasetName: batch.datasetName }),
    ...(batch.storageTargetId === undefined ? {} : { storageTargetId: batch.storageTargetId }),
    ...(batch.idempotencyKey === undefined ? {} : { idempotencyKey: batch.idempotencyKey }),
    declare: () => batch.schema.fields,
    validate: (rules) => validateRows(batch.rows, rules),
    stagesBodyAsReceived: true,
    staged: () => ({ bytes: raw, format: 'json-document', extension: 'json' }),
    requestHash: () => hashRequest(raw, 'json'),
  };
}
