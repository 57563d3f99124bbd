/**
 * Request body formats of POST /datasets/:slug/ingest; see each module for its rules. Every body
 * goes through decodeBody, whatever its format.
 */
import { arrowBatch } from './arrow.ts';
import type { BodyFormat } from '../../model/constraints.ts';
import type { DecodedBatch } from './batch.ts';
import { csvBatch } from './csv.ts';
import { jsonBatch } from './json.ts';
import { ndjsonBatch } from './ndjson.ts';
import { batchParamsFromQuery, refuseBatchQueryForJson } from './query-parameters.ts';

export type { BatchParams, DecodedBatch } from './batch.ts';
export { bodyFormatOf } from './media-types.ts';
export { tooManyRows } from './arrow.ts';

/** TIMESTORE_INGEST_MAX_BATCH_ROWS's default. */
export const DEFAULT_MAX_BATCH_ROWS = 1_000_000;

/**
 * Decodes a request body as received: a JSON document carries its partition key and other
 * parameters, NDJSON, CSV and Arrow bodies take them from the query string. Rows are checked
 * later, by the batch's `validate`.
 */
export function decodeBody(format: BodyFormat, raw: Uint8Array, query: URLSearchParams, maxRows = DEFAULT_MAX_BATCH_ROWS): DecodedBatch {
  if (format === 'json') {
    refuseBatchQueryForJson(query);
    return jsonBatch(raw);
  }
  const params = batchParamsFromQuery(query);
  switch (format) {
    case 'ndjson':
      return ndjsonBatch(raw, params);
    case 'csv':
      return csvBatch(raw, params);
    case 'arrow':
      return arrowBatch(raw, params, maxRows);
  }
}
