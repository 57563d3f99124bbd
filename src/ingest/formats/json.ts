/** application/json: the `{schema, partition, rows, ...}` document, staged as it arrived. */
import type { IngestBatch } from '../accept.ts';
import { refuse } from '../../model/constraints.ts';
import { validateRows } from '../validation.ts';
import { type DecodedBatch, decodeUtf8, hashRequest, refuseLoneSurrogates } from './batch.ts';

/**
 * Parses a JSON request body (the route then checks it against the IngestBody schema). The body is
 * staged as it arrived, so what DuckDB's reader refuses anywhere in it is refused here: bytes that
 * are not UTF-8, and lone surrogate escapes (also in keys that are not fields, or in datasetName).
 */
export function parseJsonBody(bytes: Uint8Array): unknown {
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

export function jsonBatch(batch: IngestBatch, raw: Uint8Array): DecodedBatch {
  return {
    format: 'json',
    partition: batch.partition,
    ...(batch.datasetName === undefined ? {} : { datasetName: batch.datasetName }),
    ...(batch.storageTargetId === undefined ? {} : { storageTargetId: batch.storageTargetId }),
    declare: () => batch.schema.fields,
    validate: (rules) => validateRows(batch.rows, rules),
    stagesBodyAsReceived: true,
    staged: () => ({ bytes: raw, format: 'json-document', extension: 'json' }),
    requestHash: () => hashRequest(raw, 'json'),
  };
}
