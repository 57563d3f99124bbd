/**
 * A batch as acceptBatch sees it, whatever the request body's format: where its
 * schema comes from, how its rows are checked, and what is staged for the
 * partition writer. One module per format (json, ndjson, csv, arrow) builds it.
 */
import { createHash } from 'node:crypto';
import type { SchemaField, SchemaVersion } from '../../catalog/types.ts';
import type { StagedInputFormat } from '../../engine/partition-writer.ts';
import { AppError } from '../../errors.ts';
import type { BatchSummary, RowRules } from '../validation.ts';

/** How the request body was sent (chosen by Content-Type). */
export type BodyFormat = 'json' | 'ndjson' | 'csv' | 'arrow';

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
  extension: string;
}

export interface DecodedBatch extends BatchParams {
  format: BodyFormat;
  /**
   * The fields the batch declares, given the dataset's latest schema version (null when the
   * dataset has none yet); null when the format carries no schema and the dataset's is used.
   */
  declare(latest: SchemaVersion | null): SchemaField[] | null;
  /** Checks every row (the first bad one is a 400 naming its index and field); throws, stores nothing. */
  validate(rules: RowRules): BatchSummary;
  /** The bytes to stage, after validate() passed. */
  staged(): StagedBody;
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
    throw new AppError(400, 'invalid_encoding', `the ${what} body is not valid UTF-8`);
  }
}
