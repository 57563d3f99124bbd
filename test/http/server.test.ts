import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MIGRATIONS } from '../../src/catalog/migrate.ts';
import { createTestDatabase } from '../harness/postgres.ts';
import { type ServerProcess, spawnServer } from '../harness/server-process.ts';

let server: ServerProcess;
let databaseUrl: string;

beforeAll(async () => {
  databaseUrl = await createTestDatabase();
  server = await spawnServer({ env: { TIMESTORE_DATABASE_URL: databaseUrl, TIMESTORE_PG_SCHEMA: 'ts_http' } });
});
afterAll(async () => {
  await server?.stop();
});

describe('a running server', () => {
  test('GET /health is 200 with a request id', async () => {
    const res = await fetch(`${server.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('a request id sent by the caller is echoed', async () => {
    const res = await fetch(`${server.url}/health`, { headers: { 'x-request-id': 'lb-1234' } });
    expect(res.headers.get('x-request-id')).toBe('lb-1234');
  });

  test('GET /ready is 200 and names each check', async () => {
    const res = await fetch(`${server.url}/ready`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready', checks: { catalog: 'ok', storage: 'ok', workers: 'ok' } });
  });

  test('the server process keeps freed memory 1 s before returning it to the kernel, unless its environment says otherwise', async () => {
    const environment = (pid: number) => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    // The process that was started is the one serving (it replaced itself, it did not fork).
    expect(environment(server.proc.pid)).toContain('MIMALLOC_PURGE_DELAY=1000');
    const configured = await spawnServer({ env: { TIMESTORE_DATABASE_URL: await createTestDatabase(), MIMALLOC_PURGE_DELAY: '25' } });
    try {
      expect(environment(configured.proc.pid)).toContain('MIMALLOC_PURGE_DELAY=25');
      expect(environment(configured.proc.pid)).not.toContain('MIMALLOC_PURGE_DELAY=1000');
    } finally {
      expect(await configured.stop()).toBe(0);
    }
  });

  test('an unknown route is a 404 in the common error shape', async () => {
    const res = await fetch(`${server.url}/no/such/route`, { method: 'POST' });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(await res.json()).toEqual({ error: { code: 'route_not_found', message: 'no route for POST /no/such/route' } });
  });

  test('Swagger UI has an example for the dataset routes, the GET query and gap filling', async () => {
    const doc = (await (await fetch(`${server.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, any>> };
    // The generator puts a response schema's example beside it, on the response.
    const example = (op: any) => op.responses['200'].example ?? op.responses['200'].content['application/json'].schema.example;
    expect(example(doc.paths['/datasets']!.get).datasets[0].seriesKey).toEqual(['hostname']);
    expect(example(doc.paths['/datasets/{datasetSlug}']!.get).timeRange.earliest).toBeString();
    const parameters = Object.fromEntries((doc.paths['/datasets/{datasetSlug}/query']!.get.parameters as any[]).map((p) => [p.name, p]));
    for (const name of ['from', 'to', 'interval', 'agg', 'fill']) expect(parameters[name]?.schema?.example, name).toBeDefined();
    const body = doc.paths['/datasets/{datasetSlug}/query']!.post.requestBody.content['application/json'].schema;
    expect(body.example.downsample.fill).toBe('previous');
    expect(body.example.downsample.aggregations.some((a: { fill?: unknown }) => a.fill === 'linear')).toBe(true);
  });

  test('the OpenAPI document has title, version and description, and each route its response schemas', async () => {
    const res = await fetch(`${server.url}/openapi.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      info: { title: string; version: string; description: string };
      paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema?: unknown }> }> }>>;
    };
    expect(doc.info.title).toBe('timestore');
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(doc.info.description.length).toBeGreaterThan(20);
    expect(Object.keys(doc.paths).sort()).toEqual([
      '/admin/datasets',
      '/admin/datasets/{datasetId}',
      '/admin/datasets/{datasetId}/audit',
      '/admin/datasets/{datasetId}/lifecycle',
      '/admin/datasets/{datasetId}/manifest',
      '/admin/datasets/{datasetId}/retention',
      '/admin/datasets/{datasetId}/storage-target',
      '/admin/jobs',
      '/admin/jobs/{jobId}',
      '/admin/jobs/{jobId}/retry',
      '/admin/storage-targets',
      '/admin/tokens',
      '/admin/tokens/{tokenId}',
      '/api/v1/write',
      '/api/v2/write',
      '/api/v3/write_lp',
      '/datasets',
      '/datasets/{datasetSlug}',
      '/datasets/{datasetSlug}/ingest',
      '/datasets/{datasetSlug}/latest',
      '/datasets/{datasetSlug}/query',
      '/health',
      '/ingestion/jobs/{jobId}',
      '/metrics',
      '/ready',
      '/sql',
      '/write',
    ]);
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const success = Object.entries(operation.responses).filter(([status]) => status.startsWith('2'));
        expect(success.length, `${method} ${path} documents a success response`).toBeGreaterThan(0);
        for (const [status, response] of Object.entries(operation.responses)) {
          // 204 (Prometheus remote write) has no body.
          if (status === '204') {
            expect(response.content, `${method} ${path} 204 has no body`).toBeUndefined();
            continue;
          }
          // Every answer is JSON except the Prometheus text of /metrics.
          const type = path === '/metrics' && status === '200' ? 'text/plain; version=0.0.4' : 'application/json';
          expect(response.content?.[type]?.schema, `${method} ${path} ${status} has a schema`).toBeDefined();
        }
      }
    }
    expect(doc.paths['/ready']?.get?.responses['503']).toBeDefined();
    expect((doc.paths['/datasets/{datasetSlug}/ingest']?.post as any)?.requestBody?.content?.['application/json']?.schema).toBeDefined();
    const remoteWrite = doc.paths['/api/v1/write']?.post as any;
    expect(remoteWrite?.requestBody?.content?.['application/x-protobuf']?.schema).toEqual({ type: 'string', format: 'binary' });
    expect(remoteWrite?.description).toContain('remote write 1.0');
  });

  test('one structured log line per request with method, route, status and duration', async () => {
    await fetch(`${server.url}/health`, { headers: { 'x-request-id': 'log-probe' } });
    await fetch(`${server.url}/missing`, { headers: { 'x-request-id': 'log-probe-404' } });
    await Bun.sleep(200);
    const lines = server
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const ok = lines.find((l) => l.requestId === 'log-probe');
    expect(ok).toMatchObject({ level: 'info', msg: 'request', method: 'GET', route: '/health', status: 200 });
    expect(typeof ok?.durationMs).toBe('number');
    expect(lines.find((l) => l.requestId === 'log-probe-404')).toMatchObject({ status: 404 });
  });
});

describe('process lifecycle', () => {
  // Processes of one catalog with the local driver share one storage root (docs/operations.md, "Supported topologies").
  const roots: string[] = [];
  const sharedRoot = () => {
    roots.push(mkdtempSync(join(tmpdir(), 'timestore-root-')));
    return roots.at(-1)!;
  };
  afterAll(() => roots.forEach((root) => rmSync(root, { recursive: true, force: true })));

  test('SIGTERM drains and exits 0; a restart applies no migration twice', async () => {
    const storageRoot = sharedRoot();
    const other = await spawnServer({ env: { TIMESTORE_DATABASE_URL: databaseUrl, TIMESTORE_PG_SCHEMA: 'ts_restart' }, storageRoot });
    expect(other.output()).toContain(`"applied":${JSON.stringify(MIGRATIONS.map((m) => m.name))}`);
    const started = Date.now();
    expect(await other.stop('SIGTERM')).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(other.output()).toContain('shutdown complete');

    const again = await spawnServer({ env: { TIMESTORE_DATABASE_URL: databaseUrl, TIMESTORE_PG_SCHEMA: 'ts_restart' }, storageRoot });
    expect(again.output()).toContain('"applied":[]');
    expect(await again.stop('SIGINT')).toBe(0);
  });

  test('two servers booting against one database at once both come up', async () => {
    const env = { TIMESTORE_DATABASE_URL: databaseUrl, TIMESTORE_PG_SCHEMA: 'ts_pair' };
    const storageRoot = sharedRoot();
    const [a, b] = await Promise.all([spawnServer({ env, storageRoot }), spawnServer({ env, storageRoot })]);
    const applied = [a.output(), b.output()].map((out) => out.includes(`"applied":${JSON.stringify(MIGRATIONS.map((m) => m.name))}`));
    expect(applied.filter(Boolean)).toHaveLength(1);
    expect(await Promise.all([a.stop(), b.stop()])).toEqual([0, 0]);
  });
});
