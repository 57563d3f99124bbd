/**
 * Where the rows of a batch are checked. NDJSON and CSV bodies, whose rows are all the work, go
 * to a pool of worker threads (row-check-worker.ts): the HTTP thread stays free for other
 * requests while a body is parsed, and its staging I/O runs meanwhile (accept.ts). JSON and Arrow
 * bodies are already decoded on the HTTP thread and are checked there. With no threads, every
 * batch is checked on the HTTP thread.
 */
import Piscina from 'piscina';
import { fromErrorData } from '../errors.ts';
import type { DecodedBatch } from './formats/batch.ts';
import type { RowCheckResult, RowCheckTask } from './row-check-worker.ts';
import type { BatchSummary, RowRules } from './validation.ts';

/**
 * The worker module's path inside the compiled binary, defined by scripts/build.ts (undefined
 * from source); see the same construction in engine/pool.ts.
 */
declare const TIMESTORE_COMPILED_ROW_CHECK_WORKER: string | undefined;
const WORKER_FILENAME =
  typeof TIMESTORE_COMPILED_ROW_CHECK_WORKER === 'string' ? TIMESTORE_COMPILED_ROW_CHECK_WORKER : new URL('./row-check-worker.ts', import.meta.url).href;

export class RowChecks {
  private readonly piscina: Piscina | null;

  constructor(threads: number) {
    this.piscina = threads > 0 ? new Piscina({ filename: WORKER_FILENAME, minThreads: threads, maxThreads: threads, idleTimeout: Number.POSITIVE_INFINITY }) : null;
  }

  /** Checks every row of `batch` (raw body `body`) against `rules`; throws the refusal as batch.validate() would. */
  async validate(batch: DecodedBatch, body: Uint8Array, rules: RowRules): Promise<BatchSummary> {
    if (!this.piscina || (batch.format !== 'ndjson' && batch.format !== 'csv')) return batch.validate(rules);
    const task: RowCheckTask = {
      format: batch.format,
      body,
      params: { partition: batch.partition, datasetName: batch.datasetName, storageTargetId: batch.storageTargetId },
      rules,
    };
    const result: RowCheckResult = await this.piscina.run(task, { name: 'checkRows' });
    if ('refusal' in result) throw fromErrorData(result.refusal);
    return result.summary;
  }

  async close(): Promise<void> {
    await this.piscina?.close();
  }
}
