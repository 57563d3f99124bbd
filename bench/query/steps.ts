/**
 * Where a query's time goes, step by step, from the server's own trace: an OTLP/HTTP receiver here
 * takes the spans of each request (docs/api.md, "Tracing") and prints, per TSBS shape, the median
 * of each step between the client's send and its last byte.
 *
 *   OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces ./timestore serve   (its usual settings)
 *   node_modules/.bin/bun bench/query/steps.ts --url http://127.0.0.1:4100 [--dataset cpu]
 *       [--receiver-port 4318] [--shapes single-groupby-1-1-1,…] [--n 200] [--gap-ms 5] [--seed 1]
 *       [--hosts 1000] [--hours 24] [--start 2016-01-01T00:00:00Z] [--timestamp-column timestamp]
 *
 * The server must hold the TSBS data (bench/ingest, or the peers benchmark's); the requests are
 * sent one at a time, `--gap-ms` apart (as a client waiting on each answer sends them), each with
 * its own sampled `traceparent`. Steps (ms), each from span durations (the SDK starts every span
 * on Date.now(), so where a span starts is known only to the millisecond; how long it lasts, to the
 * microsecond):
 *   client           send to the answer's last byte, as the client sees it
 *   request          the server's request span
 *   outside query    request minus the query span: the scope check (one catalog read), body
 *                    parsing and validation, the answer built and sent
 *   prepare          query.prepare: snapshot, pins, pruning, local files
 *   thread trips     query.scan minus the task's time on its query thread: the hand-off there and
 *                    the output's hand-back
 *   on thread        the task's time on the query thread besides its statements: checking and
 *                    building the statement, the session's settings
 *   statements       the query.statement spans together, DuckDB's share of the request
 *   <role> execute / read   each query.statement: DuckDB binding, planning and running it; then
 *                    reading and converting every row (`files`: which files hold a match, a raw
 *                    read's first statement; `rows`: the answer's)
 *   query rest       the query span minus query.prepare and query.scan
 */
import { parseArgs } from 'node:util';
import { prng } from '../../test/harness/prng.ts';
import { percentile } from '../ingest/load.ts';
import { instances, SHAPES } from './shapes.ts';

// Unknown options and missing values are refused by parseArgs itself.
const { values: given } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:4100' },
    dataset: { type: 'string', default: 'cpu' },
    'receiver-port': { type: 'string', default: '4318' },
    shapes: { type: 'string', default: 'single-groupby-1-1-1,single-groupby-5-8-1,cpu-max-all-8,double-groupby-1,high-cpu-1' },
    n: { type: 'string', default: '200' },
    'gap-ms': { type: 'string', default: '5' },
    seed: { type: 'string', default: '1' },
    hosts: { type: 'string', default: '1000' },
    hours: { type: 'string', default: '24' },
    start: { type: 'string', default: '2016-01-01T00:00:00Z' },
    // The peers benchmark's data calls it `ts`.
    'timestamp-column': { type: 'string', default: 'timestamp' },
  },
});
const opts = { ...given, receiverPort: Number(given['receiver-port']), n: Number(given.n), gapMs: Number(given['gap-ms']), seed: Number(given.seed), hosts: Number(given.hosts), hours: Number(given.hours) };

interface Span {
  name: string;
  start: number;
  end: number;
  attributes: Record<string, unknown>;
}

const spans = new Map<string, Span[]>();
const ms = (nanos: string) => Number(BigInt(nanos) / 1000n) / 1000;
const receiver = Bun.serve({
  port: opts.receiverPort,
  hostname: '127.0.0.1',
  async fetch(req) {
    const body = (await req.json()) as any;
    for (const rs of body.resourceSpans ?? []) {
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          const attributes = Object.fromEntries((s.attributes ?? []).map((a: any) => [a.key, Object.values(a.value)[0]]));
          const list = spans.get(s.traceId) ?? [];
          list.push({ name: s.name, start: ms(s.startTimeUnixNano), end: ms(s.endTimeUnixNano), attributes });
          spans.set(s.traceId, list);
        }
      }
    }
    return Response.json({});
  },
});

const hex = (bytes: number) => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
const space = { hosts: opts.hosts, startMs: Date.parse(opts.start), hours: opts.hours, timestampColumn: given['timestamp-column'] };
const sent: { shape: string; traceId: string; clientMs: number }[] = [];
const shapes = opts.shapes.split(',');
for (const name of shapes) {
  const shape = SHAPES.find((s) => s.name === name);
  if (!shape) throw new Error(`unknown shape ${name}; known: ${SHAPES.map((s) => s.name).join(', ')}`);
  for (const body of instances(shape, space, opts.n, prng(opts.seed))) {
    await Bun.sleep(opts.gapMs);
    const traceId = hex(16);
    const started = performance.now();
    const res = await fetch(`${opts.url}/datasets/${opts.dataset}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${hex(8)}-01` },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${name}: HTTP ${res.status}: ${text.slice(0, 300)}`);
    sent.push({ shape: name, traceId, clientMs: performance.now() - started });
  }
}

// Spans are exported in batches (every 2 s): wait until every request's have come.
const complete = (traceId: string) => {
  const names = (spans.get(traceId) ?? []).map((s) => s.name);
  return names.includes('POST /datasets/:datasetSlug/query') && names.includes('query');
};
const deadline = Date.now() + 30_000;
while (!sent.every((s) => complete(s.traceId)) && Date.now() < deadline) await Bun.sleep(200);
receiver.stop(true);

const rows: Record<string, string | number>[] = [];
for (const name of shapes) {
  const steps: Record<string, number[]> = {};
  const add = (step: string, value: number) => (steps[step] ??= []).push(value);
  let missing = 0;
  for (const { traceId, clientMs } of sent.filter((s) => s.shape === name)) {
    const list = spans.get(traceId) ?? [];
    const one = (n: string) => list.find((s) => s.name === n);
    const request = one('POST /datasets/:datasetSlug/query');
    const query = one('query');
    if (!request || !query) {
      missing += 1;
      continue;
    }
    const duration = (span: Span | undefined) => (span ? span.end - span.start : 0);
    const prepare = one('query.prepare');
    const scan = one('query.scan');
    add('client', clientMs);
    add('request', duration(request));
    add('outside query', duration(request) - duration(query));
    if (prepare) add('prepare', duration(prepare));
    const statements = list.filter((s) => s.name === 'query.statement');
    if (scan && statements.length > 0) {
      const onThread = Number(scan.attributes['timestore.query.scan.on_thread_ms']);
      add('thread trips', duration(scan) - onThread);
      const inStatements = statements.reduce((sum, s) => sum + duration(s), 0);
      add('on thread', onThread - inStatements);
      add('statements', inStatements);
      for (const s of statements) {
        const role = String(s.attributes['timestore.query.statement']);
        const execute = Number(s.attributes['timestore.query.statement.execute_ms']);
        add(`${role} execute`, execute);
        add(`${role} read`, duration(s) - execute);
      }
    }
    add('query rest', duration(query) - duration(prepare) - duration(scan));
  }
  const row: Record<string, string | number> = { shape: name, n: steps.client?.length ?? 0 };
  for (const [step, values] of Object.entries(steps)) row[step] = Math.round(percentile(values, 50) * 1000) / 1000;
  if (missing > 0) row.missing = missing;
  rows.push(row);
}
const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
console.log(`| ${columns.join(' | ')} |\n| ${columns.map(() => '---').join(' | ')} |`);
for (const r of rows) console.log(`| ${columns.map((c) => r[c] ?? '').join(' | ')} |`);
