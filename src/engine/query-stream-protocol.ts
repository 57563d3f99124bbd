/**
 * The protocol between a streaming query on a worker thread (runQueryStream in query.ts) and its
 * consumer on the main thread (WorkerPool#queryStream in pool.ts): the task's input, the messages
 * each side posts over the task's MessagePort, and the flow-control window.
 */
import type { MessagePort } from 'node:worker_threads';
import type { QueryColumn, QueryInput, QueryRow } from './query-sql.ts';

export interface QueryStreamInput extends QueryInput {
  /** Receives the messages of {@link QueryStreamMessage}; answers with {@link QueryStreamControl}. */
  port: MessagePort;
  /** Rows per posted batch (the last may be short). */
  batchRows: number;
  /**
   * How long the worker waits for the consumer to take a batch before it gives up
   * (`query_stream_abandoned`), so a consumer that goes away without cancelling does not hold the
   * worker forever. Default 120000.
   */
  idleTimeoutMs?: number;
}

/**
 * Worker → consumer, in order: one `columns`, any number of `rows` (UTF-8 JSON of a
 * {@link QueryRow} array, its buffer transferred), then `end`. On failure the task's promise
 * rejects instead of an `end`.
 */
export type QueryStreamMessage =
  | { type: 'columns'; columns: QueryColumn[] }
  | { type: 'rows'; json: Uint8Array; count: number }
  | { type: 'end'; truncated: boolean; rowCount: number };

/**
 * Consumer → worker. Every `rows` message must be acknowledged with `ack` once consumed: the worker
 * keeps at most {@link STREAM_WINDOW} batches unacknowledged, which bounds memory on both sides.
 * `cancel` stops the query (the task then resolves with what was sent).
 */
export type QueryStreamControl = { type: 'ack' } | { type: 'cancel' };

export interface QueryStreamSummary {
  rowCount: number;
  truncated: boolean;
  cancelled: boolean;
}

/** Batches in flight (posted, not yet acknowledged) per stream. */
export const STREAM_WINDOW = 2;
/** The largest `batchRows` a stream takes. */
export const MAX_BATCH_ROWS = 100_000;
