/**
 * Closing the worker pool while its threads work (a server stopped in the middle of writes): every
 * task admitted before the close finishes, a task sent after it is refused, and the process lives.
 * Before, Piscina's close could terminate a thread inside a DuckDB call and abort the process.
 */
import { expect, test } from 'bun:test';
import { join } from 'node:path';

test('closing the pool with every thread busy waits for their tasks; a task sent after the close is refused; a second close returns with the first; no abort', () => {
  const child = Bun.spawnSync([process.execPath, join(import.meta.dir, 'fixtures/close-busy-pool.ts')], { stdout: 'pipe', stderr: 'pipe', timeout: 50_000 });
  const stderr = child.stderr.toString();
  expect({ exitCode: child.exitCode, aborted: stderr.includes('terminate called') }).toEqual({ exitCode: 0, aborted: false });
  const outcome = JSON.parse(child.stdout.toString()) as { tasks: string[]; late: string };
  expect(outcome.tasks).toEqual(Array(4).fill('wrote 1'));
  expect(outcome.late).toBe('the worker pool is closing: the ingest lane takes no new task (writePartitions)');
}, 60_000);
