/**
 * The storage root's file system full (a small tmpfs mounted by the test, so it needs root)
 * while clients ingest onto it: new batches are refused with 507 storage_full (or 503), never a
 * 500; batches acknowledged before retry and land once space is back; nothing is lost or doubled.
 */
import { afterAll, describe, expect, test } from 'bun:test';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { countRows, runLoad, settle } from '../harness/ingest-load.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { type ProcessUnderTest, startProcessUnderTest } from '../harness/process-under-test.ts';

const BATCHES = 100;
const ROWS = 200;
const FULL_MS = 10_000;
const asRoot = process.getuid?.() === 0;

let mountPoint: string | undefined;
let server: ProcessUnderTest | undefined;
afterAll(async () => {
  await server?.stop().catch(() => {});
  if (mountPoint) {
    spawnSync('umount', ['-l', mountPoint]);
    rmSync(mountPoint, { recursive: true, force: true });
  }
});

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr}`);
}

describe.skipIf(!asRoot)('the storage root\'s file system full during ingest', () => {
  test(`full for ${FULL_MS / 1000} s: 507 meanwhile, 0 rows lost, 0 duplicated, recovered`, async () => {
    mountPoint = mkdtempSync(join(tmpdir(), 'timestore-full-'));
    // Room for DuckDB's native library (extracted there by the compiled binary) and the batches.
    run('mount', ['-t', 'tmpfs', '-o', 'size=320m', 'tmpfs', mountPoint]);
    const root = join(mountPoint, 'root');
    server = await startProcessUnderTest(
      { TIMESTORE_DATABASE_URL: await createTestDatabase('full'), TIMESTORE_WORKER_THREADS: '1', TIMESTORE_JOB_RETRY_MAX_DELAY_SECONDS: '2' },
      { storageRoot: root },
    );
    const running = server;
    const filler = join(mountPoint, 'filler');
    const readyWhileFull: number[] = [];
    let full: Promise<void> | undefined;
    const report = await runLoad({
      url: running.url,
      slug: 'full',
      batches: BATCHES,
      rowsPerBatch: ROWS,
      clients: 3,
      onAcknowledged: (count) => {
        if (count !== 30 || full) return;
        full = (async () => {
          // At once (batches acknowledged a moment ago are still being written), then every block left.
          const free = statfsSync(mountPoint!);
          spawnSync('fallocate', ['-l', String(free.bavail * free.bsize), filler]);
          spawnSync('dd', ['if=/dev/zero', `of=${filler}-rest`, 'bs=64k'], { encoding: 'utf8' });
          const until = Date.now() + FULL_MS;
          while (Date.now() < until) {
            const ready = await fetch(`${running.url}/ready`).catch(() => null);
            if (ready) readyWhileFull.push(ready.status);
            await Bun.sleep(500);
          }
          rmSync(filler);
          rmSync(`${filler}-rest`);
        })();
      },
    });
    await full;

    const states = await settle(running.catalog!.sql, 'full');
    const counted = await countRows(running.url, 'full');
    const [retried] = await running.catalog!.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM jobs WHERE kind = 'ingest' AND attempts > 1`;
    console.log(
      `disk-full: ${BATCHES} batches × ${ROWS} rows, full for ${FULL_MS / 1000} s, ${report.requests} requests, ` +
        `refusals ${JSON.stringify([...report.refusals])}, /ready while full ${JSON.stringify([...new Set(readyWhileFull)])}, ` +
        `jobs ${JSON.stringify(states)}, retried jobs ${retried!.n}, rows ${counted.rows}/${BATCHES * ROWS}, duplicates ${counted.rows - counted.distinct}`,
    );
    expect(report.acknowledged).toBe(BATCHES);
    expect(report.refusals.get('507 storage_full') ?? 0).toBeGreaterThan(0);
    expect([...report.refusals.keys()].filter((k) => !/^(507 storage_full|503 storage_unavailable)$/.test(k))).toEqual([]);
    expect(readyWhileFull).toContain(503);
    expect(states.failed ?? 0).toBe(0);
    expect(counted).toEqual({ rows: BATCHES * ROWS, distinct: BATCHES * ROWS });
    // Recovered: a new batch is acknowledged and written at once.
    const after = await runLoad({ url: running.url, slug: 'after-full', batches: 1, rowsPerBatch: 1, clients: 1 });
    expect(after.refusals.size).toBe(0);
  }, 300_000);
});
