/**
 * Transactions whose COMMIT can be lost on the way.
 *
 * When the connection breaks after COMMIT was sent (or before its answer arrived), the client
 * cannot know whether the transaction committed. A writer that stored files before publishing
 * them must then leave those files alone: if the commit happened, a manifest references them.
 * Only the catalog can tell, later: the collector's orphan sweep deletes what it finds
 * unreferenced. A failure inside the transaction's body, or an error the server answered to the
 * COMMIT itself, is a definite rollback.
 */
import type { Sql, TransactionSql } from 'postgres';

/** The transaction may or may not have committed: nothing it wrote may be assumed unreferenced. */
export class CommitOutcomeUnknownError extends Error {
  override name = 'CommitOutcomeUnknownError';
}

/**
 * Runs `body` in a transaction, like `sql.begin`, but tells an unknown commit outcome apart:
 * it throws {@link CommitOutcomeUnknownError} (with the driver's error as `cause`) when the body
 * finished and the COMMIT then failed without the server answering that it rolled back.
 */
export async function inTransaction<T>(sql: Sql, body: (tx: TransactionSql) => Promise<T>): Promise<T> {
  let committing = false;
  try {
    return (await sql.begin(async (tx) => {
      const result = await body(tx);
      committing = true;
      return result;
    })) as T;
  } catch (err) {
    if (committing && !answeredRollback(err)) {
      throw new CommitOutcomeUnknownError(`the catalog commit's outcome is unknown: ${(err as Error)?.message ?? err}`, { cause: err });
    }
    throw err;
  }
}

/**
 * Runs one statement on its own (autocommit), with the same distinction: a failure the server did
 * not answer (the connection broke while it ran) may have committed, and throws
 * {@link CommitOutcomeUnknownError}. Saves a transaction's BEGIN and COMMIT round trips.
 */
export async function inStatement<T>(statement: () => Promise<T>): Promise<T> {
  try {
    return await statement();
  } catch (err) {
    if (!answeredRollback(err)) {
      throw new CommitOutcomeUnknownError(`the catalog write's outcome is unknown: ${(err as Error)?.message ?? err}`, { cause: err });
    }
    throw err;
  }
}

/** An ERROR the server sent in answer to COMMIT (a serialization failure, a deferred constraint): nothing was committed. */
function answeredRollback(err: unknown): boolean {
  const e = err as { name?: string; severity?: string } | undefined;
  return e?.name === 'PostgresError' && e.severity === 'ERROR';
}
