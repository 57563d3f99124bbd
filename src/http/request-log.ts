/**
 * A request id on every response (the caller's `x-request-id` when it is
 * sane, else a new one) and one structured log line per request with method,
 * route, status and duration; with the request's trace (its `traceparent`,
 * see observability/tracing.ts) a span per request and `traceId`/`spanId` on
 * the line, and the request counted in the HTTP metrics.
 */
import { Elysia } from 'elysia';
import type { Logger } from '../log.ts';
import type { Metrics } from '../observability/metrics.ts';
import {
  type Context, contextFromTraceparent, contextWith, NOOP_TRACER, type Span, SpanKind, type Tracer, traceFields, traceparentOf,
} from '../observability/tracing.ts';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const started = new WeakMap<Request, { id: string; at: number; span: Span }>();

export function requestId(request: Request): string {
  return started.get(request)?.id ?? 'unknown';
}

/** The trace context of a request (its span), for the spans of the work it does. */
export function requestTraceContext(request: Request): Context | undefined {
  const span = started.get(request)?.span;
  return span ? contextWith(span) : undefined;
}

/** The `traceparent` the request hands on to the jobs it creates: its own span, else null. */
export function requestTraceparent(request: Request): string | null {
  return traceparentOf(started.get(request)?.span);
}

export interface RequestObservers {
  tracer?: Tracer;
  metrics?: Metrics;
}

export function requestLog(log: Logger, observers: RequestObservers = {}) {
  const tracer = observers.tracer ?? NOOP_TRACER;
  return new Elysia({ name: 'timestore/request-log' })
    .onRequest(({ request, set }) => {
      const given = request.headers.get('x-request-id');
      const id = given && REQUEST_ID.test(given) ? given : crypto.randomUUID();
      const span = tracer.startSpan(
        request.method,
        { kind: SpanKind.SERVER, attributes: { 'http.request.method': request.method, 'url.path': new URL(request.url).pathname, 'timestore.request_id': id } },
        contextFromTraceparent(request.headers.get('traceparent')),
      );
      started.set(request, { id, at: performance.now(), span });
      set.headers['x-request-id'] = id;
    })
    .onAfterResponse({ as: 'global' }, ({ request, route, set, path }) => {
      const start = started.get(request);
      const status = typeof set.status === 'number' ? set.status : 200;
      const seconds = start ? (performance.now() - start.at) / 1000 : undefined;
      // A route template, never a raw path of an unmatched request (unbounded label values).
      const template = route || (status < 400 ? path : 'unmatched');
      if (start) {
        start.span.updateName(`${request.method} ${template}`);
        start.span.setAttribute('http.response.status_code', status);
        if (route) start.span.setAttribute('http.route', route);
        if (status >= 500) start.span.setStatus({ code: 2 /* SpanStatusCode.ERROR */ });
        start.span.end();
      }
      if (seconds !== undefined) observers.metrics?.httpRequest(request.method, template, status, seconds);
      log.info(
        {
          requestId: start?.id,
          ...traceFields(start?.span),
          method: request.method,
          route: route || path,
          status,
          durationMs: seconds !== undefined ? Math.round(seconds * 100_000) / 100 : undefined,
        },
        'request',
      );
    });
}
