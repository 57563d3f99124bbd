/**
 * A catalog connection lost in the middle of a transaction: the transaction fails with a
 * connection error the caller can handle, the process lives on, and the next statement gets its
 * own answer. postgres.js 3.4.9 as published crashed the process here (a deferred write to the
 * closed socket, thrown outside any promise) and, once that was guarded, answered the next
 * statement with the lost transaction's ROLLBACK result. And on a loaded machine, the transaction's
 * callback, still running after its connection closed, sent its next query to that connection once
 * the pool reconnected it for the next statement: that query was answered by the new connection's
 * startup and the statement got another's answer (`[]`). patches/postgres+3.4.9.patch fixes all
 * three: the callback's queries fail once its connection is lost.
 */
import { afterAll, expect, test } from 'bun:test';
import postgres from 'postgres';
import { isCatalogUnavailable } from '../../src/catalog/db.ts';
import { createTestDatabase } from '../harness/postgres.ts';

const url = await createTestDatabase('connloss');
const sql = postgres(url, { max: 1, onnotice: () => {} });
const admin = postgres(url, { max: 1, onnotice: () => {} });
afterAll(async () => {
  await sql.end();
  await admin.end();
});

test('a transaction whose backend is terminated fails cleanly, and the pool answers correctly afterwards', async () => {
  for (let round = 0; round < 3; round++) {
    let failure: unknown;
    try {
      await sql.begin(async (tx) => {
        const [row] = await tx<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
        await admin`SELECT pg_terminate_backend(${row!.pid})`;
        await Bun.sleep(50);
        await tx`SELECT 1`;
      });
    } catch (err) {
      failure = err;
    }
    expect(isCatalogUnavailable(failure)).toBe(true);
    await Bun.sleep(50); // the deferred write that crashed the process runs on the next turns
    expect([...(await sql`SELECT ${round}::int AS round`)]).toEqual([{ round }]);
  }
});
