/**
 * Tracing end to end: a `traceparent` on a request reaches its log line, the jobs it creates and,
 * with an OTLP endpoint configured, the exported spans: request → job → write, request → query,
 * all in the caller's trace with the right parents. The collector is a small OTLP/HTTP receiver
 * started here that records what is POSTed to /v1/traces.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { Writable } from 'node:stream';
import { findDataset, updateDataset } from '../../src/catalog/datasets.ts';
import { getJob } from '../../src/catalog/job-table.ts';
import { createLogger } from '../../src/log.ts';
import { freePortAsync } from '../harness/ports.ts';
import { againstBinary, postJson, startTestServer, type TestServer } from '../harness/server.ts';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  links: { traceId: string; spanId: string }[];
  attributes: { key: string; value: Record<string, unknown> }[];
  status: { code: number };
  startTimeUnixNano: string;
  endTimeUnixNano: string;
}

/** An OTLP/HTTP JSON receiver: the span batches POSTed to /v1/traces. */
function startReceiver() {
  const requests: { path: string; contentType: string | null; headers: Headers; body: any }[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      requests.push({ path: new URL(req.url).pathname, contentType: req.headers.get('content-type'), headers: req.headers, body: await req.json() });
      return Response.json({});
    },
  });
  const spans = (): OtlpSpan[] =>
    requests.flatMap((r) => (r.body.resourceSpans ?? []).flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans as OtlpSpan[])));
  return { url: `http://127.0.0.1:${server.port}`, requests, spans, stop: () => server.stop(true) };
}

/** A logger writing into an array of parsed lines. */
function capturingLog() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('info', new Writable({
    write(chunk, _enc, done) {
      lines.push(...parsedLines(String(chunk)));
      done();
    },
  }));
  return { log, lines };
}

function parsedLines(text: string): Record<string, unknown>[] {
  return text.split('\n').flatMap((line) => (line.startsWith('{') ? [JSON.parse(line)] : []));
}

/** What the server logged: the capturing logger's lines in process, the binary's output otherwise. */
function loggedBy(ts: TestServer, logs: ReturnType<typeof capturingLog>): Record<string, unknown>[] {
  return againstBinary ? parsedLines(ts.output()) : logs.lines;
}

const attr = (span: OtlpSpan, key: string) => {
  const value = span.attributes.find((a) => a.key === key)?.value;
  return value ? Object.values(value)[0] : undefined;
};
const hex = (n: number) => Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');
const batch = (key: string) => ({
  schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'v', type: 'double' }] },
  partition: { key: { k: key } },
  rows: [{ timestamp: '2026-01-01T00:00:00Z', v: 1 }],
});
const SERVER = 2;
const CONSUMER = 5;

describe('with an OTLP endpoint', () => {
  let receiver: ReturnType<typeof startReceiver>;
  let ts: TestServer;
  let logs: ReturnType<typeof capturingLog>;

  beforeAll(async () => {
    receiver = startReceiver();
    logs = capturingLog();
    ts = await startTestServer(
      { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: 'timestore-under-test', OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-key=s%3Dcret' },
      { log: logs.log },
    );
  });
  afterAll(async () => {
    await ts?.stop();
    receiver?.stop();
  });

  /**
   * The spans of a trace once those named have arrived (a request's span ends just after its
   * response is sent, so a flush right after the answer may precede it). A binary exports its
   * batch every 2 s by itself.
   */
  async function trace(traceId: string, names: string[]): Promise<OtlpSpan[]> {
    for (const deadline = Date.now() + 10_000; ; ) {
      if (!againstBinary) await ts.server.tracing.flush();
      const spans = receiver.spans().filter((s) => s.traceId === traceId);
      if (names.every((n) => spans.some((s) => s.name === n)) || Date.now() > deadline) return spans;
      await Bun.sleep(50);
    }
  }

  test('an ingest request, its job and the write are one trace: request → job ingest → ingest.write', async () => {
    const traceId = hex(32);
    const callerSpan = hex(16);
    const res = await postJson(`${ts.url}/datasets/traced/ingest?wait=true`, batch('a'), {
      traceparent: `00-${traceId}-${callerSpan}-01`,
      'x-request-id': 'traced-ingest',
    });
    expect(res.status).toBe(201);
    const job = await getJob(ts.sql, res.body.id);
    const spans = await trace(traceId, ['POST /datasets/:datasetSlug/ingest', 'job ingest', 'ingest.write', 'engine.write_partitions', 'catalog.publish']);
    const request = spans.find((s) => s.name === 'POST /datasets/:datasetSlug/ingest')!;
    expect(request).toBeDefined();
    expect(request.parentSpanId).toBe(callerSpan);
    expect(request.kind).toBe(SERVER);
    expect(attr(request, 'http.response.status_code')).toBe(201);
    expect(attr(request, 'http.route')).toBe('/datasets/:datasetSlug/ingest');

    // The job row names the request's span; the job's span is its child.
    expect(job!.traceParent).toBe(`00-${traceId}-${request.spanId}-01`);
    const jobSpan = spans.find((s) => s.name === 'job ingest')!;
    expect(jobSpan).toBeDefined();
    expect(jobSpan.parentSpanId).toBe(request.spanId);
    expect(jobSpan.kind).toBe(CONSUMER);
    expect(attr(jobSpan, 'timestore.job.id')).toBe(res.body.id);
    expect(attr(jobSpan, 'timestore.job.outcome')).toBe('succeeded');

    const write = spans.find((s) => s.name === 'ingest.write')!;
    expect(write).toBeDefined();
    expect(write.parentSpanId).toBe(jobSpan.spanId);
    expect(attr(write, 'timestore.dataset.slug')).toBe('traced');
    expect(attr(write, 'timestore.partitions')).toBe(1);
    for (const step of ['engine.write_partitions', 'catalog.publish']) {
      expect(spans.find((s) => s.name === step)?.parentSpanId).toBe(write.spanId);
    }

    // The exporter's request: OTLP/HTTP JSON, the configured headers and service name.
    const sent = receiver.requests.at(-1)!;
    expect(sent.path).toBe('/v1/traces');
    expect(sent.contentType).toContain('application/json');
    expect(sent.headers.get('x-collector-key')).toBe('s=cret');
    const resource = sent.body.resourceSpans[0].resource.attributes as { key: string; value: { stringValue?: string } }[];
    expect(resource.find((a) => a.key === 'service.name')?.value.stringValue).toBe('timestore-under-test');

    // The request's log line carries the trace.
    const lines = loggedBy(ts, logs);
    const line = lines.find((l) => l.msg === 'request' && l.requestId === 'traced-ingest');
    expect(line).toMatchObject({ traceId, spanId: request.spanId, status: 201 });
    expect(lines.find((l) => l.msg === 'ingest: published' && l.traceId === traceId)).toMatchObject({ spanId: write.spanId });
  });

  test('a query is a child of its request: request → query → query.prepare, query.scan → query.statement', async () => {
    const traceId = hex(32);
    const callerSpan = hex(16);
    const res = await postJson(
      `${ts.url}/datasets/traced/query`,
      { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' }, downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'avg', column: 'v' }] } },
      { traceparent: `00-${traceId}-${callerSpan}-01` },
    );
    expect(res.status).toBe(200);
    const spans = await trace(traceId, ['POST /datasets/:datasetSlug/query', 'query', 'query.prepare', 'query.scan', 'query.statement']);
    const request = spans.find((s) => s.name === 'POST /datasets/:datasetSlug/query')!;
    expect(request.parentSpanId).toBe(callerSpan);
    const query = spans.find((s) => s.name === 'query')!;
    expect(query.parentSpanId).toBe(request.spanId);
    expect(attr(query, 'timestore.query.mode')).toBe('downsampled');
    expect(attr(query, 'timestore.query.partitions_scanned')).toBe(1);
    expect(attr(query, 'timestore.query.outcome')).toBe('ok');
    expect(spans.find((s) => s.name === 'query.prepare')?.parentSpanId).toBe(query.spanId);
    const scan = spans.find((s) => s.name === 'query.scan')!;
    expect(scan.parentSpanId).toBe(query.spanId);
    // The statement, timed on the query thread, falls inside the scan timed on the HTTP thread (the
    // SDK starts every span on Date.now(), whole milliseconds: a span's place is known to 1 ms).
    const statement = spans.find((s) => s.name === 'query.statement')!;
    expect(statement.parentSpanId).toBe(scan.spanId);
    expect(attr(statement, 'timestore.query.statement')).toBe('rows');
    const executeMs = Number(attr(statement, 'timestore.query.statement.execute_ms'));
    const ms = (nanos: string) => Number(BigInt(nanos) / 1000n) / 1000;
    const [start, end] = [ms(statement.startTimeUnixNano), ms(statement.endTimeUnixNano)];
    expect(executeMs).toBeGreaterThan(0);
    expect(executeMs).toBeLessThanOrEqual(end - start);
    const onThreadMs = Number(attr(scan, 'timestore.query.scan.on_thread_ms'));
    expect(end - start).toBeLessThanOrEqual(onThreadMs);
    expect(onThreadMs).toBeLessThanOrEqual(ms(scan.endTimeUnixNano) - ms(scan.startTimeUnixNano));
    expect(start).toBeGreaterThanOrEqual(ms(scan.startTimeUnixNano) - 1);
    expect(end).toBeLessThanOrEqual(ms(scan.endTimeUnixNano) + 1);
  });

  test("a query's span says which row of its dataset it ran on: read for it, a recent one, or an outdated one", async () => {
    const datasetRow = async () => {
      const traceId = hex(32);
      const res = await postJson(
        `${ts.url}/datasets/traced/query`,
        { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' }, downsample: { intervalUnit: 'day', aggregations: [{ fn: 'count', alias: 'n' }] } },
        { traceparent: `00-${traceId}-${hex(16)}-01` },
      );
      expect(res.status).toBe(200);
      expect(res.body.manifestVersion).toBe((await findDataset(ts.sql, 'traced'))!.manifestVersion);
      return attr((await trace(traceId, ['query'])).find((s) => s.name === 'query')!, 'timestore.query.dataset_row');
    };
    // This process published a version: the next query's check reads the row; so does the one
    // after, since the row had changed between the last two reads; then the row is trusted.
    expect((await postJson(`${ts.url}/datasets/traced/ingest?wait=true`, batch('c'))).status).toBe(201);
    expect(await datasetRow()).toBe('read');
    expect(await datasetRow()).toBe('read');
    expect(await datasetRow()).toBe('recent');
    expect(await datasetRow()).toBe('recent');
    // Changed elsewhere (as by another process): found out by the query that ran on the old row.
    const dataset = (await findDataset(ts.sql, 'traced'))!;
    await updateDataset(ts.sql, dataset.id, { description: 'changed elsewhere' });
    expect(await datasetRow()).toBe('outdated');
    expect(await datasetRow()).toBe('read');
    expect(await datasetRow()).toBe('recent');
  });

  test('without a traceparent (or with a malformed one) a request starts a new trace; its job still joins it', async () => {
    for (const header of [undefined, 'not-a-traceparent', `00-${'0'.repeat(32)}-${hex(16)}-01`]) {
      const res = await postJson(`${ts.url}/datasets/traced/ingest?wait=true`, batch('b'), header ? { traceparent: header } : {});
      expect(res.status).toBe(201);
      const job = await getJob(ts.sql, res.body.id);
      const [, traceId, requestSpanId] = job!.traceParent!.split('-');
      const spans = await trace(traceId!, ['POST /datasets/:datasetSlug/ingest', 'job ingest']);
      const request = spans.find((s) => s.spanId === requestSpanId)!;
      expect(request.name).toBe('POST /datasets/:datasetSlug/ingest');
      expect(request.parentSpanId ?? '').toBe('');
      expect(spans.find((s) => s.name === 'job ingest')?.parentSpanId).toBe(requestSpanId);
    }
  });

  test('a failed query marks its spans as errors', async () => {
    const traceId = hex(32);
    const res = await postJson(
      `${ts.url}/datasets/traced/query`,
      { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' }, columns: ['missing'] },
      { traceparent: `00-${traceId}-${hex(16)}-01` },
    );
    expect(res.status).toBe(400);
    const query = (await trace(traceId, ['query'])).find((s) => s.name === 'query')!;
    expect(query.status.code).toBe(2);
    expect(attr(query, 'timestore.query.outcome')).toBe('rejected');
  });
});

describe('with an unreachable collector', () => {
  test('requests and jobs still succeed, the failure is logged, and shutdown is not held up', async () => {
    const logs = capturingLog();
    const ts = await startTestServer({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePortAsync()}` }, { log: logs.log });
    try {
      const res = await postJson(`${ts.url}/datasets/lost/ingest?wait=true`, batch('a'), { traceparent: `00-${hex(32)}-${hex(16)}-01` });
      expect(res.status).toBe(201);
    } finally {
      // The exporter retries a refused connection for several seconds; shutdown waits 3 s at most.
      const started = Date.now();
      await ts.stop();
      expect(Date.now() - started).toBeLessThan(8_000);
    }
    expect(loggedBy(ts, logs).some((l) => l.msg === 'tracing: spans could not be exported' || l.msg === 'tracing: gave up sending the last spans')).toBe(true);
  });
});

describe('without an OTLP endpoint', () => {
  let ts: TestServer;
  let logs: ReturnType<typeof capturingLog>;

  beforeAll(async () => {
    logs = capturingLog();
    ts = await startTestServer({}, { log: logs.log });
  });
  afterAll(() => ts?.stop());

  test('the caller\'s traceparent still reaches the log line and the job, unchanged', async () => {
    const traceId = hex(32);
    const callerSpan = hex(16);
    const res = await postJson(`${ts.url}/datasets/untraced/ingest?wait=true`, batch('a'), {
      traceparent: `00-${traceId}-${callerSpan}-01`,
      'x-request-id': 'untraced-ingest',
    });
    expect(res.status).toBe(201);
    if (!againstBinary) expect(ts.server.tracing.enabled).toBe(false);
    expect((await getJob(ts.sql, res.body.id))!.traceParent).toBe(`00-${traceId}-${callerSpan}-01`);
    expect(loggedBy(ts, logs).find((l) => l.msg === 'request' && l.requestId === 'untraced-ingest')).toMatchObject({ traceId, spanId: callerSpan });
  });

  test('a malformed traceparent is not stored', async () => {
    const res = await postJson(`${ts.url}/datasets/untraced/ingest?wait=true`, batch('b'), { traceparent: "00-x'; DROP TABLE jobs; --" });
    expect(res.status).toBe(201);
    expect((await getJob(ts.sql, res.body.id))!.traceParent).toBeNull();
  });
});
