/**
 * Why a write of staged batches failed: because of the batches themselves (the same batches would
 * fail again, so the batch that cannot be written must be found and failed alone), or because of
 * the moment (storage or catalog unreachable, memory or disk short: the whole set is retried
 * later, and splitting it would only repeat the failure many times against a component that is
 * down).
 */
import { CommitOutcomeUnknownError } from '../catalog/transaction.ts';
import { StorageError } from '../storage/driver.ts';

/** Where a write failed: fetching the staged bodies, DuckDB writing Parquet, storing the files, publishing them. */
export type WriteStep = 'read' | 'write' | 'store' | 'publish';

/** A failure of one step of a write, classified. */
export class WriteStepError extends Error {
  override name = 'WriteStepError';
  constructor(
    readonly step: WriteStep,
    /** True when the batches written caused it (see {@link isDataFailure}). */
    readonly dataFailure: boolean,
    cause: unknown,
  ) {
    super(`${STEP_NAMES[step]} failed: ${(cause as Error)?.message ?? cause}`, { cause });
  }
}

const STEP_NAMES: Record<WriteStep, string> = {
  read: 'reading the staged batch',
  write: 'writing Parquet',
  store: 'storing the partition files',
  publish: 'publishing the manifest version',
};

/** DuckDB failures that say nothing about the rows: memory, disk, file handles, a stopped thread. */
const TRANSIENT_ENGINE = /Out of Memory Error|No space left on device|Disk quota exceeded|Too many open files|IO Error|Terminating worker thread/i;

/** PostgreSQL error classes raised by the values written: data exception, integrity constraint, program limit. */
const DATA_SQLSTATE_CLASSES = new Set(['22', '23', '54']);

/**
 * Whether a failure at `step` is the data's. Unknown failures of DuckDB count as the data's (its
 * errors about values are many and worded freely; those about resources are few); unknown
 * failures of storage and the catalog count as the moment's.
 */
export function isDataFailure(step: WriteStep, error: unknown): boolean {
  switch (step) {
    case 'read':
      // The staged body is gone or its location is not one this target can hold.
      return error instanceof StorageError && error.code !== 'failed';
    case 'write':
      return !TRANSIENT_ENGINE.test(error instanceof Error ? error.message : String(error));
    case 'store':
      return error instanceof StorageError && (error.code === 'invalid_key' || /ENAMETOOLONG|KeyTooLong/.test(error.detail));
    case 'publish': {
      if (error instanceof CommitOutcomeUnknownError) return false;
      const code = (error as { code?: unknown } | undefined)?.code;
      return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) && DATA_SQLSTATE_CLASSES.has(code.slice(0, 2));
    }
  }
}

/** Runs one step, turning its failure into a classified {@link WriteStepError}. */
export async function step<T>(name: WriteStep, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof WriteStepError) throw err;
    throw new WriteStepError(name, isDataFailure(name, err), err);
  }
}
