/**
 * The readers' routes in header mode: GET /datasets/:slug describes a dataset as its rows say
 * (time range, row count, series key, schema), and GET /datasets/:slug/query answers exactly what
 * the POST form answers for the same question, refusals included.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
const START = Date.UTC(2026, 4, 1);
const MINUTE = 60_000;
const ROWS = Array.from({ length: 240 }, (_, i) => ({
  timestamp: new Date(START + i * 37_000 + 123).toISOString(),
  host: `h${i % 4}`,
  usage: (i * 17) % 101,
  n: i % 7,
  up: i % 3 !== 0,
}));
const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'usage', type: 'double' },
  { name: 'n', type: 'integer' },
  { name: 'up', type: 'boolean' },
];

// The one scope this server knows (TIMESTORE_REQUIRE_SCOPE, which writes and administration fall back to too).
const READ = { 'x-iam-scopes': 'read' };

beforeAll(async () => {
  ts = await startTestServer({ TIMESTORE_REQUIRE_SCOPE: 'read' });
  for (const batch of [ROWS.slice(0, 100), ROWS.slice(100)]) {
    const res = await postJson(`${ts.url}/datasets/metrics/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: {} }, rows: batch }, READ);
    expect(res.status).toBe(201);
  }
  expect((await postJson(`${ts.url}/admin/datasets`, { slug: 'empty' }, READ)).status).toBe(201);
}, 120_000);

afterAll(async () => {
  await ts?.stop();
});

const get = async (path: string, headers: Record<string, string> = READ) => {
  const res = await fetch(`${ts.url}${path}`, { headers });
  return { status: res.status, body: (await res.json()) as any };
};

describe('GET /datasets and /datasets/:slug', () => {
  test('a dataset as its rows say: time range, row count, series key, schema', async () => {
    const { status, body } = await get('/datasets/metrics');
    expect(status).toBe(200);
    expect(body).toMatchObject({
      slug: 'metrics',
      status: 'active',
      timestampColumn: 'timestamp',
      seriesKey: ['host'],
      timeRange: { earliest: ROWS[0]!.timestamp, latest: ROWS.at(-1)!.timestamp },
      rowCount: ROWS.length,
    });
    expect(body.schema.fields.map((f: { name: string; type: string }) => [f.name, f.type])).toEqual(FIELDS.map((f) => [f.name, f.type]));
    expect(body.partitionCount).toBeGreaterThan(0);
  });

  test('a dataset without rows, the list, its pages, a missing dataset', async () => {
    expect((await get('/datasets/empty')).body).toMatchObject({ slug: 'empty', schema: null, timeRange: null, rowCount: 0, seriesKey: [] });
    expect((await get('/datasets')).body.datasets.map((d: { slug: string }) => d.slug)).toEqual(['metrics', 'empty']);
    const first = (await get('/datasets?limit=1')).body;
    expect(first.datasets.map((d: { slug: string }) => d.slug)).toEqual(['metrics']);
    const second = (await get(`/datasets?limit=1&cursor=${first.nextCursor}`)).body;
    expect(second).toMatchObject({ datasets: [{ slug: 'empty' }], nextCursor: null });
    expect((await get('/datasets?search=EMP')).body.datasets.map((d: { slug: string }) => d.slug)).toEqual(['empty']);
    expect(await get('/datasets/nope')).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect((await get('/datasets', {})).status).toBe(401);
  });
});

describe('GET /datasets/:slug/query is the POST question', () => {
  const from = START + 90_000;
  const to = START + 100 * MINUTE;
  const post = (body: unknown) => postJson(`${ts.url}/datasets/metrics/query`, body, READ);
  const timeRange = { start: new Date(from).toISOString(), end: new Date(to).toISOString() };

  test.each([
    [
      'downsampled, grouped, filled, percentile',
      `from=${from}&to=${to}&interval=300000&agg=avg:usage,p90:usage&agg=count::rows&groupBy=host&fill=linear`,
      {
        downsample: {
          intervalUnit: 'minute',
          intervalSize: 5,
          aggregations: [{ fn: 'avg', column: 'usage' }, { fn: 'percentile', column: 'usage', percentile: 0.9, alias: 'p90_usage' }, { fn: 'count', alias: 'rows' }],
          groupBy: ['host'],
          fill: 'linear',
        },
      },
    ],
    [
      'ISO times, unit intervals, filters typed by their column',
      `from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}&interval=1h&agg=max:n:top&filter=host:h1,h2&filter=up:true&filter=host:h3&filter=n:3`,
      {
        downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'max', column: 'n', alias: 'top' }] },
        filters: { columns: { host: { in: ['h1', 'h2', 'h3'] }, up: { eq: true }, n: { eq: 3 } } },
      },
    ],
    ['raw, columns, order, limit', `from=${from}&to=${to}&columns=host,usage&order=desc&limit=7`, { columns: ['host', 'usage'], order: 'desc', limit: 7 }],
  ])('%s', async (_, query, body) => {
    const viaGet = await get(`/datasets/metrics/query?${query}`);
    const viaPost = await post({ timeRange, ...body });
    expect(viaPost.status).toBe(200);
    expect(viaGet.body.error).toBeUndefined();
    expect(viaGet.status).toBe(200);
    expect(viaGet.body).toEqual(viaPost.body);
    expect(viaGet.body.rows.length).toBeGreaterThan(0);
  });

  test('CSV streams the same rows', async () => {
    const url = `${ts.url}/datasets/metrics/query?from=${from}&to=${to}&interval=60000&agg=avg:usage&fill=previous`;
    const csv = await (await fetch(url, { headers: { ...READ, accept: 'text/csv' } })).text();
    const json = (await get(`/datasets/metrics/query?from=${from}&to=${to}&interval=60000&agg=avg:usage&fill=previous`)).body;
    expect(csv.trim().split('\r\n')).toEqual(['timestamp,avg_usage', ...json.rows.map((r: any) => `${r.timestamp},${r.avg_usage ?? ''}`)]);
  });

  test.each([
    ['unknown column', `agg=avg:nope&interval=60000`, { downsample: { intervalUnit: 'minute', aggregations: [{ fn: 'avg', column: 'nope' }] } }, 'unknown_column'],
    ['fill that does not fit', `agg=max:host&interval=60000&fill=linear`, { downsample: { intervalUnit: 'minute', aggregations: [{ fn: 'max', column: 'host' }], fill: 'linear' } }, 'invalid_fill'],
    ['too many buckets', `agg=avg:usage&interval=1000&fill=null`, { downsample: { intervalUnit: 'second', aggregations: [{ fn: 'avg', column: 'usage' }], fill: 'null' } }, 'too_many_buckets'],
  ])('the same refusal: %s', async (_, query, body, code) => {
    const wide = { from: START, to: START + 200_000_000 };
    const viaGet = await get(`/datasets/metrics/query?from=${wide.from}&to=${wide.to}&${query}`);
    const viaPost = await post({ timeRange: { start: new Date(wide.from).toISOString(), end: new Date(wide.to).toISOString() }, ...body });
    expect(viaPost.body.error.code).toBe(code);
    expect(viaGet).toEqual({ status: viaPost.status, body: viaPost.body });
  });

  test.each([
    ['from after to', `from=${to}&to=${from}&interval=60000&agg=avg:usage`, 'invalid_time_range'],
    ['agg without interval', `from=${from}&to=${to}&agg=avg:usage`, 'invalid_aggregation'],
    ['an unknown fn', `from=${from}&to=${to}&interval=60000&agg=mode:usage`, 'invalid_aggregation'],
    ['an interval that is not one', `from=${from}&to=${to}&interval=soon&agg=avg:usage`, 'validation_failed'],
    ['a filter value of the wrong type', `from=${from}&to=${to}&filter=n:three`, 'invalid_filter'],
    ['an unknown parameter', `from=${from}&to=${to}&bogus=1`, 'validation_failed'],
    ['no range', `interval=60000&agg=avg:usage`, 'validation_failed'],
  ])('refused: %s', async (_, query, code) => {
    const { status, body } = await get(`/datasets/metrics/query?${query}`);
    expect(status).toBe(400);
    expect(body.error.code).toBe(code);
  });
});
