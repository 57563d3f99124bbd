/**
 * How long a job waits before its next attempt: exponential in the attempt, capped, with "equal
 * jitter" (half fixed, half random), so jobs that failed together (a storage outage) do not all
 * come back at the same instant. Whether the retry happens at all is the job table's decision
 * (catalog/job-table.ts `failJob`): only while it falls due by the job's retry deadline.
 */
export interface Backoff {
  /** The first retry's delay, before jitter. */
  baseMs: number;
  /** No retry waits longer than this. */
  maxMs: number;
}

/** The delay after failed attempt number `attempt` (1 for the first); `random` returns [0, 1). */
export function retryDelayMs(attempt: number, backoff: Backoff, random: () => number = Math.random): number {
  const exponent = Math.min(Math.max(0, attempt - 1), 62); // 2 ** 62 is far past any cap, and finite
  const delay = Math.min(backoff.maxMs, backoff.baseMs * 2 ** exponent);
  return delay / 2 + random() * (delay / 2);
}
