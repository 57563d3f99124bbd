/**
 * A Piscina worker thread that checks the rows of NDJSON and CSV bodies (row-checks.ts): the
 * same decoders and rules as on the HTTP thread, run here so that parsing a body does not hold up
 * every other request. A refusal comes back as data and is rebuilt as the same AppError.
 */
import { AppError, type AppErrorData, errorData } from '../errors.ts';
import type { BatchParams } from './formats/batch.ts';
import { csvBatch } from './formats/csv.ts';
import { ndjsonBatch } from './formats/ndjson.ts';
import type { BatchSummary, RowRules } from './validation.ts';

export interface RowCheckTask {
  format: 'ndjson' | 'csv';
  body: Uint8Array;
  params: BatchParams;
  rules: RowRules;
}

export type RowCheckResult = { summary: BatchSummary } | { refusal: AppErrorData };

export function checkRows(task: RowCheckTask): RowCheckResult {
  const batch = (task.format === 'ndjson' ? ndjsonBatch : csvBatch)(task.body, task.params);
  try {
    return { summary: batch.validate(task.rules) };
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return { refusal: errorData(err) };
  }
}
