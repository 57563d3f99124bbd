/**
 * A request id on every response (the caller's `x-request-id` when it is
 * sane, else a new one) and one structured log line per request with method,
 * route, status and duration.
 */
import { Elysia } from 'elysia';
import type { Logger } from '../log.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const started = new WeakMap<Request, { id: string; at: number }>();

export function requestId(request: Request): string {
  return started.get(request)?.id ?? 'unknown';
}

export function requestLog(log: Logger) {
  return new Elysia({ name: 'timestore/request-log' })
    .onRequest(({ request, set }) => {
      const given = request.headers.get('x-request-id');
      const id = given && REQUEST_ID.test(given) ? given : crypto.randomUUID();
      started.set(request, { id, at: performance.now() });
      set.headers['x-request-id'] = id;
    })
    .onAfterResponse({ as: 'global' }, ({ request, route, set, path }) => {
      const start = started.get(request);
      const status = typeof set.status === 'number' ? set.status : 200;
      log.info(
        {
          requestId: start?.id,
          method: request.method,
          route: route || path,
          status,
          durationMs: start ? Math.round((performance.now() - start.at) * 100) / 100 : undefined,
        },
        'request',
      );
    });
}
