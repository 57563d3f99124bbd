/**
 * The readiness checks behind GET /ready: the catalog answers and is migrated,
 * the storage root is writable, and the worker pool runs a task. Each check has
 * a time limit, so a hung dependency reads as "not ready" instead of a hung probe.
 */
import { randomUUID } from 'node:crypto';
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Catalog } from './catalog/connection.ts';
import type { WorkerPool } from './engine/pool.ts';
import type { ErrorCode } from './model/errors.ts';

export type CheckOutcome = 'ok' | string;

export interface ReadinessReport {
  ok: boolean;
  code: 'ready' | Extract<ErrorCode, 'not_ready' | 'shutting_down'>;
  message: string;
  checks: Record<string, CheckOutcome>;
  /** What an operator should fix that does not make the server unready (e.g. it listens beyond loopback with no authentication). */
  warnings: string[];
}

const CHECK_TIMEOUT_MS = 2_000;

export class Readiness {
  private draining = false;

  constructor(
    private readonly deps: { catalog: Catalog; pool: WorkerPool; storageRoot: string; warnings?: string[] },
  ) {}

  /** From now on /ready answers 503, so the load balancer stops sending traffic. */
  startDraining(): void {
    this.draining = true;
  }

  async check(): Promise<ReadinessReport> {
    const warnings = this.deps.warnings ?? [];
    if (this.draining) {
      return { ok: false, code: 'shutting_down', message: 'the server is shutting down', checks: { shutdown: 'in progress' }, warnings };
    }
    const { catalog, pool, storageRoot } = this.deps;
    const entries = await Promise.all(
      Object.entries({
        catalog: () => catalog.check(),
        storage: () => probeWritable(storageRoot),
        workers: () => pool.ping(),
      }).map(async ([name, run]) => [name, await outcome(run)] as const),
    );
    const checks = Object.fromEntries(entries);
    const failing = entries.filter(([, result]) => result !== 'ok');
    if (failing.length === 0) return { ok: true, code: 'ready', message: 'ready', checks, warnings };
    return {
      ok: false,
      code: 'not_ready',
      message: `not ready: ${failing.map(([name, result]) => `${name}: ${result}`).join('; ')}`,
      checks,
      warnings,
    };
  }
}

async function outcome(run: () => Promise<unknown>): Promise<CheckOutcome> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      run(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return 'ok';
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    clearTimeout(timer);
  }
}

async function probeWritable(dir: string): Promise<void> {
  const probe = join(dir, `.ready-${randomUUID()}`);
  await writeFile(probe, 'ok');
  await unlink(probe);
}
