/** The retry delays (src/jobs/backoff.ts): pure, no database. */
import { describe, expect, test } from 'bun:test';
import { retryDelayMs } from '../../src/jobs/backoff.ts';

const backoff = { baseMs: 1_000, maxMs: 300_000 };

describe('retry delays', () => {
  test('double with each attempt from the base, half of each fixed and half random', () => {
    for (const [attempt, full] of [[1, 1_000], [2, 2_000], [3, 4_000], [5, 16_000], [9, 256_000]] as const) {
      expect(retryDelayMs(attempt, backoff, () => 0)).toBe(full / 2);
      expect(retryDelayMs(attempt, backoff, () => 0.5)).toBe(full * 0.75);
      expect(retryDelayMs(attempt, backoff, () => 0.999_999)).toBeLessThan(full);
    }
  });

  test('are capped, also for attempts far beyond where 2^n overflows', () => {
    for (const attempt of [10, 50, 1_024, 1_000_000]) {
      expect(retryDelayMs(attempt, backoff, () => 0)).toBe(150_000);
      expect(retryDelayMs(attempt, backoff, () => 0.999_999)).toBeLessThan(300_000);
    }
  });

  test('treat an attempt number below 1 as the first', () => {
    expect(retryDelayMs(0, backoff, () => 0)).toBe(500);
    expect(retryDelayMs(-3, backoff, () => 0)).toBe(500);
  });

  test('spread jobs that failed together over the upper half of the delay', () => {
    const delays = Array.from({ length: 1_000 }, () => retryDelayMs(4, backoff));
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(4_000);
    expect(Math.max(...delays)).toBeLessThan(8_000);
    expect(new Set(delays).size).toBeGreaterThan(900);
  });

  test('with the defaults and mid-range jitter, a day holds nine retries to reach the cap, then one every 3.75 minutes', () => {
    let elapsed = 0;
    let attempts = 0;
    while (elapsed + retryDelayMs(attempts + 1, backoff, () => 0.5) <= 24 * 3_600_000) elapsed += retryDelayMs(++attempts, backoff, () => 0.5);
    // 0.75 × (1 + 2 + … + 256 s) = 383 s for the first nine, then 225 s each: 9 + floor(86,017 / 225) = 391.
    expect(attempts).toBe(391);
  });
});
