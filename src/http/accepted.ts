/**
 * How routes answer with a job, the same way everywhere: `?wait=true` or `Prefer: wait=<seconds>`
 * waits at most {@link MAX_WAIT_MS} for it to finish; a job that has not finished by then is
 * answered 202 with a `Location` header and a `statusUrl` naming where to follow it.
 *
 * A waiting request sends no byte until it answers, and the server closes connections that are
 * silent for its idle timeout (TIMESTORE_HTTP_IDLE_TIMEOUT_SECONDS, 30 s by default, which is
 * shorter than the wait): such a request extends its own connection's timeout first.
 */
import type { Server } from 'bun';
import type { TProperties } from '@sinclair/typebox';
import { t } from 'elysia';

/** The longest a request waits for a job, on every route. */
export const MAX_WAIT_MS = 60_000;

/** Extra seconds past a wait before the connection counts as idle: the answer is written after the wait. */
const IDLE_MARGIN_SECONDS = 15;

/** Bun accepts at most this many seconds for a connection's idle timeout; 0 turns it off. */
const MAX_IDLE_SECONDS = 255;

/**
 * How long the client asks to wait, in ms: `Prefer: wait=N` (seconds, capped), else `?wait=true`
 * (or `1`), else `always` (inline ingestion): the cap; else 0.
 */
export function requestedWaitMs(prefer: string | null | undefined, wait: string | undefined, always = false): number {
  const match = prefer ? /(?:^|[\s,;])wait=(\d+)/i.exec(prefer) : null;
  if (match) return Math.min(Number(match[1]) * 1000, MAX_WAIT_MS);
  if (wait === 'true' || wait === '1' || always) return MAX_WAIT_MS;
  return 0;
}

/** Keeps the request's connection open for `ms` without a byte sent (a wait, a query that answers at its end). */
export function keepOpenFor(server: Server<unknown> | null | undefined, request: Request, ms: number): void {
  if (!server || ms <= 0) return;
  const seconds = Math.ceil(ms / 1000) + IDLE_MARGIN_SECONDS;
  server.timeout(request, seconds > MAX_IDLE_SECONDS ? 0 : seconds);
}

/** Sets the 202 status and `Location` header; returns the URL for the body's `statusUrl`. */
export function accepted(set: { status?: number | string; headers: Record<string, unknown> }, statusUrl: string): string {
  set.status = 202;
  set.headers.location = statusUrl;
  return statusUrl;
}

const LOCATION_HEADER = {
  Location: { description: 'Where to follow the job (the same URL as `statusUrl`).', schema: { type: 'string' } },
};

/**
 * The body of a 202: the job's id, state and `statusUrl`, plus `extra` properties. The `headers`
 * option is copied into the OpenAPI response object by the documentation generator.
 */
export function acceptedBody<P extends TProperties>(extra: P, description: string) {
  return t.Object(
    {
      jobId: t.String(),
      state: t.String({ description: '`queued` or `running`: the job has not finished yet.' }),
      statusUrl: t.String({ description: 'Where to follow the job (also in the `Location` header).' }),
      ...extra,
    },
    { description, headers: LOCATION_HEADER },
  );
}
