/**
 * In-process signals between code that enqueues or waits for jobs and the
 * runners of this process. They complement NOTIFY (which a real PostgreSQL
 * delivers to every process, and the embedded catalog delivers to nobody):
 * a local enqueue wakes the local runner without a round trip, and a waiter
 * hears at once about a job this process finished.
 */
import { EventEmitter } from 'node:events';
import type { EnqueuedJob } from '../catalog/job-table.ts';

const wakes = new EventEmitter().setMaxListeners(0);
const finishes = new EventEmitter().setMaxListeners(0);

/**
 * Wakes this process's runners that serve `queue`. Call it after the
 * transaction that enqueued commits: a runner woken earlier cannot see the row.
 * With the jobs enqueued, a runner whose next claim waits for a coalescing
 * budget wakes only if they may fill it (runner.ts); without, it always wakes.
 */
export function wakeLocalRunners(queue: string, enqueued?: readonly EnqueuedJob[]): void {
  wakes.emit('wake', queue, enqueued);
}

export function onLocalWake(fn: (queue: string, enqueued?: readonly EnqueuedJob[]) => void): () => void {
  wakes.on('wake', fn);
  return () => wakes.off('wake', fn);
}

/** Announces that a job reached succeeded or failed (committed). */
export function announceFinished(jobId: string): void {
  finishes.emit(jobId);
}

/** Resolves true when `jobId` is announced, false after `ms`; cancel() stops listening. */
export function nextFinish(jobId: string, ms: number): { promise: Promise<boolean>; cancel(): void } {
  let cancel = () => {};
  const promise = new Promise<boolean>((resolve) => {
    const done = (heard: boolean) => {
      clearTimeout(timer);
      finishes.off(jobId, onFinish);
      resolve(heard);
    };
    const onFinish = () => done(true);
    const timer = setTimeout(() => done(false), Math.max(0, ms));
    finishes.on(jobId, onFinish);
    cancel = () => done(false);
  });
  return { promise, cancel };
}
