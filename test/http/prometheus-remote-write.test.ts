/**
 * Prometheus remote write end to end: a real Prometheus (Debian's package, its own process) scrapes
 * timestore's /metrics every second and remote-writes the samples into the same timestore with an
 * API token; the samples come back through the JSON query API with the values Prometheus's own
 * HTTP API gives for the same series and timestamps. Then hand-built requests: scopes, schema
 * evolution, a retried body, a metric refused by its dataset.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { TokenService } from '../../src/tokens/service.ts';
import { silentLog } from '../harness/catalog.ts';
import { prometheusAvailable, type PrometheusServer, startPrometheus } from '../harness/prometheus-server.ts';
import { REMOTE_WRITE_HEADERS, remoteWriteBody, type SeriesInput } from '../harness/remote-write.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
let prometheus: PrometheusServer;
const secret: Record<string, string> = {};
const bearer = (name: string) => ({ authorization: `Bearer ${secret[name]}` });

// Skipped where Prometheus is not installed, except under CI, where it must run (.ci/run installs it).
const skip = !process.env.CI && !prometheusAvailable();

beforeAll(async () => {
  if (skip) return;
  if (!prometheusAvailable()) throw new Error('the prometheus executable is missing: apt-get install --no-install-recommends prometheus (.ci/run does)');
  ts = await startTestServer({ TIMESTORE_AUTH: 'tokens' });
  const tokens = new TokenService({ sql: ts.sql, log: silentLog, cacheMs: 0 });
  for (const [name, scopes] of Object.entries({ prometheus: ['write'], reader: ['read'], 'write:up-only': ['write:up'] })) {
    secret[name] = (await tokens.create({ name: `prom-${name.replace(':', '-')}`, scopes }, 'test')).secret;
  }
  prometheus = await startPrometheus({
    scrapeTarget: new URL(ts.url).host,
    remoteWriteUrl: `${ts.url}/api/v1/write`,
    bearerToken: secret.prometheus,
  });
});
afterAll(async () => {
  await prometheus?.stop();
  await ts?.stop();
});

const WIDE = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z' };

async function rowsOf(slug: string, filters?: Record<string, unknown>): Promise<Record<string, any>[]> {
  const answer = await postJson(`${ts.url}/datasets/${slug}/query`, { timeRange: WIDE, ...(filters ? { filters: { columns: filters } } : {}), limit: 100_000 }, bearer('reader'));
  if (answer.status === 404) return [];
  expect(answer.status).toBe(200);
  return answer.body.rows;
}

/** Polls until `check` answers a value (not undefined), or fails naming what it waited for. */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  for (const deadline = Date.now() + timeoutMs; ; await Bun.sleep(250)) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; prometheus said:\n${prometheus.output().slice(-3000)}`);
  }
}

const remoteWrite = (series: SeriesInput[], headers: Record<string, string> = bearer('prometheus'), query = '') =>
  fetch(`${ts.url}/api/v1/write${query}`, { method: 'POST', headers: { ...REMOTE_WRITE_HEADERS, ...headers }, body: remoteWriteBody(series) });

describe.skipIf(skip)('a real Prometheus remote-writing timestore\'s own metrics', () => {
  test('each metric is a dataset; samples come back with the timestamps and values Prometheus holds', async () => {
    const instance = new URL(ts.url).host;
    // `up` and `scrape_duration_seconds` are the series Prometheus adds for every scrape.
    const up = await eventually('up rows', async () => {
      const rows = await rowsOf('up');
      return rows.length >= 3 ? rows : undefined;
    });
    for (const row of up) expect(row).toMatchObject({ value: 1, job: 'timestore', instance });

    const durations = await eventually('three scrape_duration_seconds rows', async () => {
      const rows = await rowsOf('scrape_duration_seconds');
      return rows.length >= 3 ? rows : undefined;
    });
    const last = Math.max(...durations.map((r) => Date.parse(r.timestamp)));
    const windowSeconds = Math.ceil((last - Math.min(...durations.map((r) => Date.parse(r.timestamp)))) / 1000) + 1;
    const held = await prometheus.query(`scrape_duration_seconds{job="timestore"}[${windowSeconds}s]`, last);
    expect(held.resultType).toBe('matrix');
    const samples = new Map(held.result[0]!.values!.map(([at, value]) => [Math.round(at * 1000), Number(value)]));
    for (const row of durations) expect({ at: row.timestamp, value: samples.get(Date.parse(row.timestamp)) }).toEqual({ at: row.timestamp, value: row.value });
    // Durations differ from scrape to scrape: the comparison above compared real doubles.
    expect(new Set(durations.map((r) => r.value)).size).toBeGreaterThan(1);

    // timestore's own counter, with its labels as fields and series key, also as an instant query.
    const filter = { route: { eq: '/metrics' }, method: { eq: 'GET' }, status: { eq: '200' } };
    const scrapes = await eventually('timestore_http_requests_total rows', async () => {
      const rows = await rowsOf('timestore_http_requests_total', filter);
      return rows.length >= 2 ? rows : undefined;
    });
    const latest = scrapes.reduce((a, b) => (Date.parse(a.timestamp) > Date.parse(b.timestamp) ? a : b));
    const instant = await prometheus.query('timestore_http_requests_total{route="/metrics",method="GET",status="200"}', Date.parse(latest.timestamp));
    expect(Number(instant.result[0]!.value![1])).toBe(latest.value);
    expect(latest.value).toBeGreaterThan(0);
    expect(Object.keys(latest).sort()).toEqual(['instance', 'job', 'method', 'route', 'status', 'timestamp', 'value']);

    // A histogram's buckets: `le` is a label like any other.
    const buckets = await eventually('bucket rows', async () => {
      const rows = await rowsOf('timestore_http_request_duration_seconds_bucket', { le: { eq: '+Inf' }, route: { eq: '/metrics' } });
      return rows.length > 0 ? rows : undefined;
    });
    expect(buckets[0]!.value).toBeGreaterThan(0);
  }, 120_000);
});

describe.skipIf(skip)('hand-built requests', () => {
  const T = Date.parse('2026-03-01T00:00:00Z');
  const series = (name: string, labels: [string, string][], value: number, at = T): SeriesInput => ({ labels: [['__name__', name], ...labels], samples: [{ value, timestamp: at }] });

  test('credentials: none is a 401, a token without the scope a 403 that stores nothing, write:<slug> only that metric', async () => {
    expect((await remoteWrite([series('denied', [], 1)], {})).status).toBe(401);
    const refused = await remoteWrite([series('denied', [], 1)], bearer('reader'));
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as any).error.code).toBe('forbidden');
    expect((await remoteWrite([series('up', [['job', 'hand']], 1), series('denied', [], 1)], bearer('write:up-only'))).status).toBe(403);
    expect(await rowsOf('denied')).toEqual([]);
    expect(await rowsOf('up', { job: { eq: 'hand' } })).toEqual([]);
    expect((await remoteWrite([series('up', [['job', 'hand']], 1)], bearer('write:up-only'))).status).toBe(204);
    await eventually('the hand-written up row', async () => ((await rowsOf('up', { job: { eq: 'hand' } })).length === 1 ? true : undefined));
  });

  test('a new label adds a field; a retried body is not written twice', async () => {
    const first = [series('evolving', [['a', 'x']], 1), series('evolving', [['a', 'y']], 2)];
    expect((await remoteWrite(first)).status).toBe(204);
    expect((await remoteWrite(first)).status).toBe(204); // Prometheus retrying the same body
    expect((await remoteWrite([series('evolving', [['a', 'x'], ['b', 'new']], 3, T + 1000)])).status).toBe(204);
    const rows = await eventually('three evolving rows', async () => {
      const found = await rowsOf('evolving');
      return found.length >= 3 ? found : undefined;
    });
    await Bun.sleep(500);
    expect((await rowsOf('evolving')).length).toBe(3);
    expect(rows.map((r) => [r.a, r.b ?? null, r.value]).sort()).toEqual([
      ['x', null, 1],
      ['x', 'new', 3],
      ['y', null, 2],
    ]);
  });

  test('a metric its dataset refuses is a 409 naming it; the other metrics are stored', async () => {
    const created = await postJson(
      `${ts.url}/datasets/clash/ingest?wait=true`,
      { schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'value', type: 'string' }] }, partition: { key: {} }, rows: [{ timestamp: '2026-01-01T00:00:00Z', value: 'text' }] },
      bearer('prometheus'),
    );
    expect(created.status).toBe(201);
    const answer = await remoteWrite([series('clash', [], 1), series('fine', [], 2)]);
    expect(answer.status).toBe(409);
    const body = (await answer.json()) as any;
    expect(body.error.code).toBe('field_type_conflict');
    expect(body.error.details).toMatchObject({ metric: 'clash', dataset: 'clash', refusedMetrics: ['clash'], storedMetrics: 1 });
    await eventually('the fine row', async () => ((await rowsOf('fine')).length === 1 ? true : undefined));
  });

  test('a request of metadata only is a 204; datasetPrefix names the datasets; NaN is a null value', async () => {
    const empty = await fetch(`${ts.url}/api/v1/write`, { method: 'POST', headers: { ...REMOTE_WRITE_HEADERS, ...bearer('prometheus') }, body: remoteWriteBody([], { metadata: true }) });
    expect(empty.status).toBe(204);
    expect((await remoteWrite([series('job:requests:rate5m', [['job', 'api']], Number.NaN)], bearer('prometheus'), '?datasetPrefix=rec.')).status).toBe(204);
    const recorded = await eventually('the recorded row', async () => {
      const rows = await rowsOf('rec.job.requests.rate5m');
      return rows.length === 1 ? rows : undefined;
    });
    expect(recorded[0]).toMatchObject({ job: 'api', value: null });
  });
});
