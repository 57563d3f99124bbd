/**
 * Scope checks that let a request go on before they have finished (auth.ts, routes whose scope
 * option says `dataset: 'recent'`): the check passed on the dataset's row as this process last
 * read it, and its confirmation, the catalog's row read now, is still on its way. Nothing may be
 * answered before it arrives: the handler compares the rows (its answer waits for the
 * confirmation) and the error handler lets a refusal take the place of any other error, so a
 * caller the catalog now refuses learns nothing else.
 */
import type { Dataset } from '../model/records.ts';

const pending = new WeakMap<Request, Promise<Dataset | null>>();

export function awaitingConfirmation(request: Request, confirmation: Promise<Dataset | null>): void {
  // Whoever answers awaits it; until then a refusal is not an unhandled rejection.
  confirmation.catch(() => {});
  pending.set(request, confirmation);
}

/**
 * The catalog's row of the dataset the request's check passed on (null: the dataset is gone since),
 * once the check is confirmed; rejects with the check's refusal (401, 403) or the catalog's failure.
 * Undefined when the check read the catalog itself.
 */
export function confirmedDatasetOf(request: Request): Promise<Dataset | null> | undefined {
  return pending.get(request);
}

/** What the request's pending check failed with, once it has finished; null when it passed or there is none. */
export async function checkFailureOf(request: Request): Promise<unknown> {
  try {
    await pending.get(request);
    return null;
  } catch (failure) {
    return failure;
  }
}
