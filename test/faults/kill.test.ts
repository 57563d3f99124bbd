/**
 * SIGKILL of the server, again and again, while clients ingest with idempotency keys: every
 * acknowledged row is queryable afterwards, none twice, in queued and in inline mode, on a real
 * PostgreSQL and on the embedded catalog (whose WAL fsyncs run off the HTTP thread while answers
 * wait for them: src/catalog/embedded-session.ts).
 */
import { afterEach, describe, expect, test } from 'bun:test';
import { countRows, runLoad, settle, settleOverHttp } from '../harness/ingest-load.ts';
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

const runs = [
  { mode: 'queued', catalog: 'PostgreSQL', seed: 11 },
  { mode: 'inline', catalog: 'PostgreSQL', seed: 12 },
  { mode: 'queued', catalog: 'embedded', seed: 13 },
  { mode: 'inline', catalog: 'embedded', seed: 14 },
] as const;

for (const { mode, catalog, seed } of runs) {
  describe(`SIGKILL during ${mode} ingest, ${catalog} catalog`, () => {
    test(`${KILLS} kills while ${BATCHES} batches of ${ROWS} rows are sent: 0 rows lost, 0 duplicated`, async () => {
      server = await startProcessUnderTest({
        ...(catalog === 'PostgreSQL' ? { TIMESTORE_DATABASE_URL: await createTestDatabase('kill') } : {}),
        TIMESTORE_INGEST_MODE: mode,
        TIMESTORE_WORKER_THREADS: '1',
      });
      const running = server;
      // A kill after every BATCHES / (KILLS + 1) acknowledgements, at a random moment shortly after.
      const random = prng(seed);
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

      const states = running.catalog ? await settle(running.catalog.sql, 'killed') : await settleOverHttp(running.url, 'killed');
      const counted = await countRows(running.url, 'killed');
      console.log(
        `kill/${mode}/${catalog}: ${BATCHES} batches × ${ROWS} rows, ${kills.length} kills, ${report.requests} requests, refusals ${JSON.stringify([...report.refusals])}, ` +
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
