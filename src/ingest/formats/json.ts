/** application/json: the `{schema, partition, rows, ...}` document, staged as it arrived. */
import type { IngestBatch } from '../accept.ts';
import { AppError } from '../../errors.ts';
import { validateRows } from '../validation.ts';
import { type DecodedBatch, hashRequest } from './batch.ts';

/** Parses a JSON request body (the route then checks it against the IngestBody schema). */
export function parseJsonBody(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new AppError(400, 'invalid_json', `the request body is not valid JSON: ${(err as Error).message}`);
  }
}

export function jsonBatch(batch: IngestBatch, raw: Uint8Array): DecodedBatch {
  return {
    format: 'json',
    partition: batch.partition,
    ...(batch.datasetName === undefined ? {} : { datasetName: batch.datasetName }),
    ...(batch.storageTargetId === undefined ? {} : { storageTargetId: batch.storageTargetId }),
    declare: () => batch.schema.fields,
    validate: (rules) => validateRows(batch.rows, rules),
    staged: () => ({ bytes: raw, format: 'json-document', extension: 'json' }),
    requestHash: () => hashRequest(raw, 'json'),
  };
}
