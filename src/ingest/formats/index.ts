/** Request body formats of POST /datasets/:slug/ingest; see each module for its rules. */
import { arrowBatch } from './arrow.ts';
import type { BodyFormat } from '../../model/constraints.ts';
import type { DecodedBatch } from './batch.ts';
import { csvBatch } from './csv.ts';
import { ndjsonBatch } from './ndjson.ts';
import { batchParamsFromQuery } from './query-parameters.ts';

export type { BatchParams, DecodedBatch } from './batch.ts';
export { ACCEPTED_MEDIA_TYPES, bodyFormatOf } from './media-types.ts';
export { jsonBatch, parseJsonBody } from './json.ts';
export { BATCH_QUERY_PARAMETERS, refuseBatchQueryForJson } from './query-parameters.ts';

/** Decodes an NDJSON, CSV or Arrow body, its partition key and other parameters taken from the query string. */
export function decodeRowsBody(format: Exclude<BodyFormat, 'json'>, raw: Uint8Array, query: URLSearchParams): DecodedBatch {
  const params = batchParamsFromQuery(query);
  switch (format) {
    case 'ndjson':
      return ndjsonBatch(raw, params);
    case 'csv':
      return csvBatch(raw, params);
    case 'arrow':
      return arrowBatch(raw, params);
  }
}
