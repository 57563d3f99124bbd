/**
 * SIGKILL of the server, again and again, while clients ingest with idempotency keys: every
 * acknowledged row is queryable afterwards, none twice, in queued and in inline mode.
 */
import { afterEach, describe, expect, test } from 'bun:test';
import { countRows, runLoad, settle } from '../harness/ingest-load.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { type ProcessUnderTest, startProcessUnderTest } from '../harness/process-under-test.ts';
import { prng } from '../harness/prng.ts';

const BATCHES = 150;
const ROWS = 200;
const KILLS = 5;

let server: ProcessUnderTest | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

for (const mode of ['queued', 'inline'] as const) {
  describe(`SIGKILL during ${mode} ingest`, () => {
    test(`${KILLS} kills while ${BATCHES} batches of ${ROWS} rows are sent: 0 rows lost, 0 duplicated`, async () => {
      server = await startProcessUnderTest({
        TIMESTORE_DATABASE_URL: await createTestDatabase('kill'),
        TIMESTORE_INGEST_MODE: mode,
        TIMESTORE_WORKER_THREADS: '1',
      });
      const running = server;
      // A kill after every BATCHES / (KILLS + 1) acknowledgements, at a random moment shortly after.
      const random = prng(mode === 'queued' ? 11 : 12);
      const every = Math.floor(BATCHES / (KILLS + 1));
      const kills: Promise<void>[] = [];
      let restarting = Promise.resolve();
      const report = await runLoad({
        url: running.url,
        slug: 'killed',
        batches: BATCHES,
        rowsPerBatch: ROWS,
        clients: 3,
        onAcknowledged: (count) => {
          if (count % every !== 0 || kills.length >= KILLS) return;
          restarting = restarting.then(() => Bun.sleep(random() * 200)).then(() => running.killAndRestart());
          kills.push(restarting);
        },
      });
      await Promise.all(kills);

      const states = await settle(running.catalog.sql, 'killed');
      const counted = await countRows(running.url, 'killed');
      console.log(
        `kill/${mode}: ${BATCHES} batches × ${ROWS} rows, ${kills.length} kills, ${report.requests} requests, refusals ${JSON.stringify([...report.refusals])}, ` +
          `jobs ${JSON.stringify(states)}, rows ${counted.rows}/${BATCHES * ROWS}, duplicates ${counted.rows - counted.distinct}`,
      );
      expect(kills.length).toBe(KILLS);
      expect(report.acknowledged).toBe(BATCHES);
      expect(states.failed ?? 0).toBe(0);
      expect(counted).toEqual({ rows: BATCHES * ROWS, distinct: BATCHES * ROWS });
      expect([...report.refusals.keys()].filter((k) => k.startsWith('500'))).toEqual([]);
    }, 300_000);
  });
}
