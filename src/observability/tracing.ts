/**
 * Tracing: W3C trace context in, OTLP/HTTP spans out.
 *
 * A request's `traceparent` header (when valid) is the parent of the request's span; the request
 * span's own context is what the request hands on: it is stored on the jobs the request creates
 * (`jobs.trace_parent`), so a job's span is a child of the request that queued it, in the same
 * trace, whichever process runs the job. Spans: `<METHOD> <route>` (server) → `job <kind>`
 * (consumer, one per job) → `ingest.write` and its steps; `<METHOD> <route>` → `query` and its steps.
 *
 * With an OTLP endpoint configured (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), spans are batched and sent as OTLP/HTTP JSON by the
 * OpenTelemetry JS SDK; sampling follows the caller's `sampled` flag and records every trace that
 * starts here. Without one, the tracer is a no-op that still carries the caller's context
 * unchanged, so `traceparent` reaches the logs and the jobs either way.
 *
 * Each server has its own provider and passes contexts explicitly (no global provider, context
 * manager or propagator is registered), so several servers in one process do not meet.
 */
import {
  type Attributes, type Context, type Link, ProxyTracerProvider, ROOT_CONTEXT, type Span, type SpanContext, SpanKind,
  SpanStatusCode, type Tracer, trace, TraceFlags,
} from '@opentelemetry/api';
import { type ExportResult, ExportResultCode, parseTraceParent } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, type ReadableSpan, type SpanExporter, TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { Logger } from '../log.ts';
import { VERSION } from '../version.ts';

export { type Context, type Link, type Span, SpanKind, type Tracer };

export interface TracingConfig {
  /** Full URL spans are POSTed to (…/v1/traces); null: tracing off. */
  tracesEndpoint: string | null;
  headers: Record<string, string>;
  serviceName: string;
}

/** A tracer that records nothing and hands its parent's context on unchanged. */
export const NOOP_TRACER: Tracer = new ProxyTracerProvider().getTracer('timestore');

export class Tracing {
  private constructor(
    readonly tracer: Tracer,
    readonly enabled: boolean,
    private readonly provider: TracerProvider | null,
    private readonly log?: Logger,
  ) {}

  static disabled(): Tracing {
    return new Tracing(NOOP_TRACER, false, null);
  }

  static create(config: TracingConfig, log: Logger, options: { scheduledDelayMillis?: number } = {}): Tracing {
    if (!config.tracesEndpoint) return Tracing.disabled();
    const exporter = new LoggingExporter(new OTLPTraceExporter({ url: config.tracesEndpoint, headers: config.headers }), log);
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': config.serviceName, 'service.version': VERSION }),
      sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
      spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: options.scheduledDelayMillis ?? 2_000, exportTimeoutMillis: 10_000 })],
    });
    log.info({ endpoint: config.tracesEndpoint, serviceName: config.serviceName }, 'tracing: exporting spans over OTLP/HTTP');
    return new Tracing(provider.getTracer('timestore', VERSION), true, provider, log);
  }

  /** Sends the spans still queued (a failure is logged by the exporter, not thrown). */
  async flush(): Promise<void> {
    await this.provider?.forceFlush().catch(() => {});
  }

  /**
   * Sends the spans still queued and stops exporting; safe to call more than once. Waits at most
   * `timeoutMs` (an unreachable collector must not hold up the process's shutdown).
   */
  async shutdown(timeoutMs = 3_000): Promise<void> {
    if (!this.provider) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    });
    const gaveUp = await Promise.race([this.provider.shutdown().then(() => false), timedOut]);
    clearTimeout(timer);
    if (gaveUp) this.log?.warn({ timeoutMs }, 'tracing: gave up sending the last spans');
  }
}

/**
 * The span context a W3C `traceparent` header names, or null when it is absent or malformed
 * (then the request starts a new trace, as the W3C recommendation says).
 */
export function parseTraceparent(header: string | null | undefined): SpanContext | null {
  if (!header || header.length > 512) return null;
  const parsed = parseTraceParent(header.trim());
  return parsed ? { ...parsed, isRemote: true } : null;
}

/** A context whose parent is the given `traceparent` (the root context when there is none). */
export function contextFromTraceparent(header: string | null | undefined): Context {
  const parent = parseTraceparent(header);
  return parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : ROOT_CONTEXT;
}

/** `00-<trace id>-<span id>-<flags>` for a span, or null when it has no valid context. */
export function traceparentOf(span: Span | undefined): string | null {
  const sc = span?.spanContext();
  if (!sc || !trace.isSpanContextValid(sc)) return null;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & TraceFlags.SAMPLED ? 1 : 0).toString(16).padStart(2, '0')}`;
}

/** The ids a log line carries to be found with its trace; empty when there is no trace. */
export function traceFields(span: Span | undefined): { traceId?: string; spanId?: string } {
  const sc = span?.spanContext();
  return sc && trace.isSpanContextValid(sc) ? { traceId: sc.traceId, spanId: sc.spanId } : {};
}

/** A context whose active span is `span`, for starting its children. */
export function contextWith(span: Span, parent: Context = ROOT_CONTEXT): Context {
  return trace.setSpan(parent, span);
}

/** Ends a span as failed with the error recorded on it. */
export function failSpan(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/**
 * Runs `fn` in a child span of `parent`: the span ends when `fn` settles, failed (with the error)
 * when it throws.
 */
export async function inSpan<T>(
  tracer: Tracer,
  name: string,
  parent: Context,
  fn: (span: Span, context: Context) => Promise<T>,
  options: { attributes?: Attributes; links?: Link[]; kind?: SpanKind } = {},
): Promise<T> {
  const span = tracer.startSpan(name, options, parent);
  try {
    return await fn(span, trace.setSpan(parent, span));
  } catch (err) {
    failSpan(span, err);
    throw err;
  } finally {
    span.end();
  }
}

/** The SDK reports export failures only to its diagnostic logger (off by default): log them, at most once a minute. */
class LoggingExporter implements SpanExporter {
  private lastWarning = 0;
  private suppressed = 0;

  constructor(
    private readonly inner: SpanExporter,
    private readonly log: Logger,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) {
        const now = Date.now();
        if (now - this.lastWarning >= 60_000) {
          this.log.warn({ err: result.error, spans: spans.length, suppressedSinceLast: this.suppressed }, 'tracing: spans could not be exported');
          this.lastWarning = now;
          this.suppressed = 0;
        } else {
          this.suppressed++;
        }
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}
