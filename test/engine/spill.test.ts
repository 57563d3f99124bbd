/**
 * TIMESTORE_DUCKDB_MAX_SPILL_BYTES reaches every DuckDB instance as its max_temp_directory_size,
 * each instance spilling into a directory of its own under the runtime directory.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkerPool, uniformLanes } from '../../src/engine/pool.ts';

let dir: string;
let capped: WorkerPool;
let uncapped: WorkerPool;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'timestore-spill-'));
  capped = await WorkerPool.start({ ...uniformLanes(1), maxSpillBytes: 3 * 1024 ** 3 }, join(dir, 'capped'));
  uncapped = await WorkerPool.start(1, join(dir, 'uncapped'));
});

afterAll(async () => {
  await Promise.all([capped?.close(), uncapped?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

test('the spill limit is each instance\'s max_temp_directory_size; without it DuckDB keeps its own default', async () => {
  const limited = await capped.ping();
  expect(limited.spill.maxSize).toMatch(/^3(\.0)? GiB$/);
  expect(limited.spill.directory).toBe(join(dir, 'capped', 'duckdb-spill', `thread-${limited.threadId}`));
  expect((await uncapped.ping()).spill.maxSize).toMatch(/available disk space/);
});
