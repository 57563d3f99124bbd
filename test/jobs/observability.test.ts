/**
 * The job runner's spans and metrics: a span per job attempt in the trace of the request that
 * created the job, the batch's work under the first job's span with links to the others, failed
 * attempts and job latency by outcome.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import type { Catalog } from '../../src/catalog/connection.ts';
import { createDataset } from '../../src/catalog/datasets.ts';
import { enqueueJob, getJob } from '../../src/catalog/job-table.ts';
import { JobRunner, PermanentJobError } from '../../src/jobs/runner.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { inSpan } from '../../src/observability/tracing.ts';
import { openTestCatalog, silentLog } from '../harness/catalog.ts';
import { parsePrometheusText } from '../harness/prometheus.ts';

let catalog: Catalog;
const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
const tracer = provider.getTracer('test');
const runners: JobRunner[] = [];
let queueSeq = 0;
const newQueue = () => `obs${++queueSeq}`;

beforeAll(async () => {
  catalog = await openTestCatalog();
});
afterEach(async () => {
  await Promise.all(runners.splice(0).map((r) => r.stop(1_000)));
  exporter.reset();
});
afterAll(async () => {
  await catalog.close();
  await provider.shutdown();
});

const hex = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');
const traceparent = () => ({ traceId: hex(32), spanId: hex(16) });

async function until(check: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await Bun.sleep(10);
  }
}

function runner(metrics: Metrics): JobRunner {
  const r = new JobRunner({ catalog, log: silentLog, concurrency: 1, pollIntervalMs: 50, retryBaseMs: 10, retryMaxMs: 20, tracer, metrics });
  runners.push(r);
  return r;
}

const jobSpans = (jobId: string) =>
  exporter.getFinishedSpans().filter((s) => s.name === 'job k' && s.attributes['timestore.job.id'] === jobId);

describe('job runner observability', () => {
  test('a retried job: one span per attempt, children of the request, and its failures and latency counted', async () => {
    const metrics = new Metrics();
    const queue = newQueue();
    let calls = 0;
    const r = runner(metrics).register(
      'k',
      async () => {
        if (++calls === 1) throw new Error('transient');
      },
      { queue },
    );
    const parent = traceparent();
    const { job } = await enqueueJob(catalog.sql, { queue, kind: 'k', payload: {}, traceParent: `00-${parent.traceId}-${parent.spanId}-01` });
    await r.start();
    await until(async () => (await getJob(catalog.sql, job.id))?.state === 'succeeded' && jobSpans(job.id).length === 2);

    const [first, second] = jobSpans(job.id).sort((x, y) => Number(x.attributes['timestore.job.attempt']) - Number(y.attributes['timestore.job.attempt']));
    for (const span of [first!, second!]) {
      expect(span.spanContext().traceId).toBe(parent.traceId);
      expect(span.parentSpanContext?.spanId).toBe(parent.spanId);
      expect(span.kind).toBe(SpanKind.CONSUMER);
    }
    expect(first!.attributes['timestore.job.outcome']).toBe('retry');
    expect(first!.status.code).toBe(SpanStatusCode.ERROR);
    expect(first!.events.some((e) => e.name === 'exception')).toBe(true);
    expect(second!.attributes['timestore.job.outcome']).toBe('succeeded');

    const exposition = parsePrometheusText(await metrics.render());
    expect(exposition.value('timestore_job_attempt_failures_total', { kind: 'k' })).toBe(1);
    expect(exposition.value('timestore_job_latency_seconds_count', { kind: 'k', outcome: 'succeeded' })).toBe(1);
    expect(exposition.value('timestore_job_latency_seconds_count', { kind: 'k', outcome: 'failed' })).toBeUndefined();
  });

  test('a job that fails for good counts as failed', async () => {
    const metrics = new Metrics();
    const queue = newQueue();
    const r = runner(metrics).register('k', async () => Promise.reject(new PermanentJobError('bad payload')), { queue });
    const { job } = await enqueueJob(catalog.sql, { queue, kind: 'k', payload: {} });
    await r.start();
    await until(async () => (await getJob(catalog.sql, job.id))?.state === 'failed' && jobSpans(job.id).length === 1);
    expect(jobSpans(job.id)[0]!.attributes['timestore.job.outcome']).toBe('failed');
    const exposition = parsePrometheusText(await metrics.render());
    expect(exposition.value('timestore_job_latency_seconds_count', { kind: 'k', outcome: 'failed' })).toBe(1);
    expect(exposition.value('timestore_job_attempt_failures_total', { kind: 'k' })).toBe(1);
  });

  test('a coalesced batch: its work is a child of the first job\'s span and links to the others', async () => {
    const queue = newQueue();
    const dataset = await createDataset(catalog.sql, { slug: `obs-${queue}` });
    const parents = [traceparent(), traceparent(), traceparent()];
    const ids: string[] = [];
    for (const p of parents) {
      ids.push((await enqueueJob(catalog.sql, { queue, kind: 'k', datasetId: dataset.id, payload: {}, traceParent: `00-${p.traceId}-${p.spanId}-01` })).job.id);
    }
    let batchSize = 0;
    const r = runner(new Metrics()).register(
      'k',
      async (jobs, ctx) => {
        batchSize = jobs.length;
        await inSpan(tracer, 'work', ctx.trace.context, async () => {}, { links: ctx.trace.links });
      },
      { queue, coalesce: { maxJobs: 10 } },
    );
    await r.start();
    await until(() => exporter.getFinishedSpans().filter((s) => s.name === 'job k').length === 3);
    expect(batchSize).toBe(3);

    const spanOf = (id: string) => jobSpans(id)[0] as ReadableSpan;
    const [leader, ...followers] = ids.map(spanOf);
    parents.forEach((p, i) => expect(spanOf(ids[i]!).spanContext().traceId).toBe(p.traceId)); // each job in its own request's trace
    const work = exporter.getFinishedSpans().find((s) => s.name === 'work')!;
    expect(work.parentSpanContext?.spanId).toBe(leader!.spanContext().spanId);
    expect(work.links.map((l) => l.context.spanId).sort()).toEqual(followers.map((f) => f.spanContext().spanId).sort());
    for (const f of followers) expect(f.links.map((l) => l.context.spanId)).toEqual([leader!.spanContext().spanId]);
  });
});
