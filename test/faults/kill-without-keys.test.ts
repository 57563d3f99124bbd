/**
 * SIGKILL of the server, again and again, while clients send batches without idempotency keys, as
 * most agents do. Such a batch of an existing dataset is acknowledged once its staging log's record
 * (body and job) is durable, before its job row exists (src/ingest/logged-jobs.ts). Every
 * acknowledged batch is queryable afterwards exactly once, whether its job row was inserted before
 * the kill or replayed from the log by the process that started after it; a batch that got no
 * answer is there whole or not at all (its client was not told either way), never twice.
 */
import { afterEach, describe, expect, test } from 'bun:test';
import { BASE_TIME, loadBatch } from '../harness/ingest-load.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { type ProcessUnderTest, startProcessUnderTest } from '../harness/process-under-test.ts';
import { prng } from '../harness/prng.ts';
import { postJson } from '../harness/server.ts';

const BATCHES = 120;
/** 600 rows 100 ms apart: batch i is exactly minute i. */
const ROWS = 600;
const CLIENTS = 8;
const KILLS = 4;

let server: ProcessUnderTest | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

/** Rows per minute of the load, i.e. per batch. */
async function rowsPerBatch(url: string): Promise<number[]> {
  const res = await postJson(`${url}/datasets/unkeyed/query`, {
    timeRange: { start: new Date(BASE_TIME).toISOString(), end: new Date(BASE_TIME + BATCHES * 60_000).toISOString() },
    downsample: { intervalUnit: 'minute', aggregations: [{ fn: 'count', column: 'seq', alias: 'rows' }] },
  });
  if (res.status !== 200) throw new Error(`count query answered ${res.status}: ${JSON.stringify(res.body)}`);
  const counts = new Array<number>(BATCHES).fill(0);
  for (const row of res.body.rows as Array<{ timestamp: string; rows: number }>) counts[(Date.parse(row.timestamp) - BASE_TIME) / 60_000] = Number(row.rows);
  return counts;
}

for (const catalog of ['embedded', 'PostgreSQL'] as const) {
  describe(`SIGKILL during ingest without idempotency keys, ${catalog} catalog`, () => {
    test(`${KILLS} kills while ${CLIENTS} clients send ${BATCHES} batches once each: every acknowledged batch kept once, none twice`, async () => {
      server = await startProcessUnderTest({
        ...(catalog === 'PostgreSQL' ? { TIMESTORE_DATABASE_URL: await createTestDatabase('kill_unkeyed') } : {}),
        TIMESTORE_WORKER_THREADS: '1',
      });
      const running = server;
      const created = await postJson(`${running.url}/datasets/unkeyed/ingest?wait=true`, loadBatch(0, ROWS));
      expect(created.status).toBe(201);
      const acknowledged = new Set<number>([0]);
      const unanswered = new Set<number>();
      const random = prng(21);
      const every = Math.floor(BATCHES / (KILLS + 1));
      const kills: Promise<void>[] = [];
      let restarting = Promise.resolve();
      let next = 1;
      await Promise.all(
        Array.from({ length: CLIENTS }, async () => {
          while (next < BATCHES) {
            const i = next++;
            try {
              const res = await postJson(`${running.url}/datasets/unkeyed/ingest`, loadBatch(i, ROWS));
              if (res.status !== 202) throw new Error(`batch ${i} answered ${res.status}: ${JSON.stringify(res.body)}`);
              acknowledged.add(i);
              if (acknowledged.size % every === 0 && kills.length < KILLS) {
                restarting = restarting.then(() => Bun.sleep(random() * 5)).then(() => running.killAndRestart());
                kills.push(restarting);
              }
            } catch (err) {
              if ((err as Error).message.startsWith(`batch ${i} answered`) && !/answered 5\d\d/.test((err as Error).message)) throw err;
              unanswered.add(i); // killed while it was sent: sent once, never again
              await restarting;
            }
          }
        }),
      );
      await Promise.all(kills);

      // Jobs a killed process owed are inserted from its logs by the one that follows: at once on
      // an embedded catalog, once the logs are a minute old on a shared one.
      const deadline = Date.now() + 240_000;
      let counts = await rowsPerBatch(running.url);
      while ([...acknowledged].some((i) => counts[i] !== ROWS) && Date.now() < deadline) {
        await Bun.sleep(1_000);
        counts = await rowsPerBatch(running.url);
      }
      const missing = [...acknowledged].filter((i) => counts[i] !== ROWS);
      const partialOrDouble = counts.flatMap((n, i) => (n !== 0 && n !== ROWS ? [`${i}: ${n}`] : []));
      const keptUnanswered = [...unanswered].filter((i) => counts[i] === ROWS).length;
      console.log(
        `kill-unkeyed/${catalog}: ${BATCHES} batches, ${kills.length} kills, ${acknowledged.size} acknowledged, ${unanswered.size} unanswered (${keptUnanswered} of them kept), ` +
          `missing ${JSON.stringify(missing)}, partial or double ${JSON.stringify(partialOrDouble)}`,
      );
      expect(kills.length).toBe(KILLS);
      expect(acknowledged.size + unanswered.size).toBe(BATCHES);
      expect(missing).toEqual([]);
      expect(partialOrDouble).toEqual([]);
      // The load went through the path under test: some batches were acknowledged on a log's record.
      expect(running.output()).toContain('jobs of acknowledged batches inserted from a staging log');
    }, 420_000);
  });
}
