/**
 * The batch parameters of NDJSON, CSV and Arrow bodies, which carry only rows, from the query
 * string:
 *
 *   ?key.instrument=A&key.site=x                 partition key {"instrument":"A","site":"x"} (none: {})
 *   &timeRange.start=2026-01-01T00:00:00Z&timeRange.end=2026-01-02T00:00:00Z   (both or neither)
 *   &datasetName=Weather                          display name when the batch creates the dataset
 *   &storageTargetId=local                        storage target (id or name) for this batch
 *
 * JSON bodies carry these in the body, so there the query parameters are refused rather than
 * silently ignored. `wait` is the route's own and allowed with every format.
 */
import type { AppError } from '../../model/errors.ts';
import { refuse } from '../../model/constraints.ts';
import type { BatchParams } from './batch.ts';

const KEY_PREFIX = 'key.';
const SCALARS = ['timeRange.start', 'timeRange.end', 'datasetName', 'storageTargetId'] as const;
/** Query parameters that are not batch parameters. */
const ROUTE_PARAMETERS = new Set(['wait']);

export const BATCH_QUERY_PARAMETERS = ['key.<name>', ...SCALARS];

export function batchParamsFromQuery(query: URLSearchParams): BatchParams {
  const key: Record<string, string> = {};
  const scalars: Partial<Record<(typeof SCALARS)[number], string>> = {};
  for (const [name, value] of query) {
    if (ROUTE_PARAMETERS.has(name)) continue;
    if (name.startsWith(KEY_PREFIX)) {
      const part = name.slice(KEY_PREFIX.length);
      if (Object.hasOwn(key, part)) throw queryError(`query parameter "${name}" is given twice`, name);
      key[part] = value;
    } else if ((SCALARS as readonly string[]).includes(name)) {
      const scalar = name as (typeof SCALARS)[number];
      if (scalars[scalar] !== undefined) throw queryError(`query parameter "${name}" is given twice`, name);
      scalars[scalar] = value;
    } else {
      throw queryError(
        `unknown query parameter "${name}": the partition key is sent as key.<name>=<value> (e.g. ?key.instrument=A); ` +
          `other batch parameters: ${SCALARS.join(', ')}`,
        name,
      );
    }
  }
  const start = scalars['timeRange.start'];
  const end = scalars['timeRange.end'];
  if ((start === undefined) !== (end === undefined)) {
    throw refuse('time_range', 'send both timeRange.start and timeRange.end, or neither', {
      parameter: start === undefined ? 'timeRange.start' : 'timeRange.end',
    });
  }
  const params: BatchParams = { partition: { key } };
  if (start !== undefined && end !== undefined) params.partition.timeRange = { start, end };
  if (scalars.datasetName !== undefined) params.datasetName = scalars.datasetName;
  if (scalars.storageTargetId !== undefined) params.storageTargetId = scalars.storageTargetId;
  return params;
}

/** A JSON body carries its own partition and names: refuse the query forms instead of ignoring them. */
export function refuseBatchQueryForJson(query: URLSearchParams): void {
  for (const name of query.keys()) {
    if (name.startsWith(KEY_PREFIX) || (SCALARS as readonly string[]).includes(name)) {
      throw queryError(
        `query parameter "${name}" is for NDJSON, CSV and Arrow bodies; a JSON body carries partition.key, partition.timeRange, datasetName and storageTargetId itself`,
        name,
      );
    }
  }
}

function queryError(message: string, parameter: string): AppError {
  return refuse('query_parameter', message, { parameter });
}
