/**
 * The scope matrix: every route × {no header, wrong scope, right scope, dataset override}.
 * It fails when a route is added without a scope rule or without a row here.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findDataset, updateDataset } from '../../src/catalog/datasets.ts';
import { enqueueJob } from '../../src/catalog/job-table.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
let jobOfOpen = '';
let jobOfGuarded = '';
/** Failed jobs for the operator routes: each request takes its own, as one retried or deleted is no longer failed. */
const failedJobs = { retry: [] as string[], delete: [] as string[] };
const takeFailed = (action: keyof typeof failedJobs) => failedJobs[action].pop() ?? 'none-left';
let made = 0;
const scratch = mkdtempSync(join(tmpdir(), 'timestore-scopes-'));

const scopes = { read: 'ts:read', write: 'ts:write', admin: 'ts:admin' };
const batch = {
  schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'v', type: 'double' }] },
  partition: { key: {} },
  rows: [{ timestamp: '2026-01-01T00:00:00Z', v: 1 }],
};

beforeAll(async () => {
  ts = await startTestServer({
    TIMESTORE_REQUIRE_SCOPE: scopes.read,
    TIMESTORE_REQUIRE_WRITE_SCOPE: scopes.write,
    TIMESTORE_ADMIN_SCOPE: scopes.admin,
  });
  const write = { 'x-iam-scopes': scopes.write };
  jobOfOpen = (await postJson(`${ts.url}/datasets/plain/ingest?wait=true`, batch, write)).body.id;
  jobOfGuarded = (await postJson(`${ts.url}/datasets/guarded/ingest?wait=true`, batch, write)).body.id;
  // The guarded dataset names its own scopes, which override the server-wide ones.
  const guarded = await findDataset(ts.sql, 'guarded');
  await updateDataset(ts.sql, guarded!.id, {
    metadata: { iam: { readScopes: ['guarded:read'], writeScopes: ['guarded:write'] } },
  });
  for (const action of ['retry', 'delete'] as const) {
    for (let i = 0; i < 10; i++) {
      const { job } = await enqueueJob(ts.sql, { queue: 'scopes-idle', kind: 'k', payload: {} }); // nobody runs it
      await ts.sql`UPDATE jobs SET state = 'failed', finished_at = now() WHERE id = ${job.id}`;
      failedJobs[action].push(job.id);
    }
  }
});
afterAll(async () => {
  await ts.stop();
  rmSync(scratch, { recursive: true, force: true });
});

type Rule = 'open' | 'read' | 'write' | 'admin';
interface RouteCase {
  rule: Rule;
  /** A request on a dataset without its own scopes, and on one with them (for dataset-scoped rules). */
  request(dataset: 'plain' | 'guarded' | 'missing'): { method: string; path: string; body?: unknown };
}

const ROUTES: Record<string, RouteCase> = {
  'GET /health': { rule: 'open', request: () => ({ method: 'GET', path: '/health' }) },
  'GET /ready': { rule: 'open', request: () => ({ method: 'GET', path: '/ready' }) },
  'GET /metrics': { rule: 'open', request: () => ({ method: 'GET', path: '/metrics' }) },
  'POST /datasets/:datasetSlug/ingest': {
    rule: 'write',
    request: (d) => ({ method: 'POST', path: `/datasets/${d}/ingest`, body: batch }),
  },
  'POST /datasets/:datasetSlug/query': {
    rule: 'read',
    request: (d) => ({
      method: 'POST',
      path: `/datasets/${d}/query`,
      body: { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' } },
    }),
  },
  'POST /datasets/:datasetSlug/latest': {
    rule: 'read',
    request: (d) => ({ method: 'POST', path: `/datasets/${d}/latest`, body: {} }),
  },
  'GET /admin/datasets': { rule: 'admin', request: () => ({ method: 'GET', path: '/admin/datasets' }) },
  'POST /admin/datasets': { rule: 'admin', request: () => ({ method: 'POST', path: '/admin/datasets', body: { slug: `made-${++made}` } }) },
  'GET /admin/datasets/:datasetId': { rule: 'admin', request: (d) => ({ method: 'GET', path: `/admin/datasets/${d}` }) },
  'PATCH /admin/datasets/:datasetId': {
    rule: 'admin',
    request: (d) => ({ method: 'PATCH', path: `/admin/datasets/${d}`, body: { description: 'checked by the scope matrix' } }),
  },
  'GET /admin/datasets/:datasetId/manifest': { rule: 'admin', request: (d) => ({ method: 'GET', path: `/admin/datasets/${d}/manifest` }) },
  'GET /admin/datasets/:datasetId/retention': { rule: 'admin', request: (d) => ({ method: 'GET', path: `/admin/datasets/${d}/retention` }) },
  'PUT /admin/datasets/:datasetId/retention': {
    rule: 'admin',
    request: (d) => ({ method: 'PUT', path: `/admin/datasets/${d}/retention`, body: { rules: {} } }),
  },
  'PUT /admin/datasets/:datasetId/storage-target': {
    rule: 'admin',
    request: (d) => ({ method: 'PUT', path: `/admin/datasets/${d}/storage-target`, body: { storageTargetId: 'local' } }),
  },
  'GET /admin/datasets/:datasetId/audit': { rule: 'admin', request: (d) => ({ method: 'GET', path: `/admin/datasets/${d}/audit` }) },
  'POST /admin/datasets/:datasetId/lifecycle': { rule: 'admin', request: (d) => ({ method: 'POST', path: `/admin/datasets/${d}/lifecycle` }) },
  'GET /admin/jobs': { rule: 'admin', request: () => ({ method: 'GET', path: '/admin/jobs?state=failed' }) },
  'GET /admin/jobs/:jobId': { rule: 'admin', request: () => ({ method: 'GET', path: `/admin/jobs/${jobOfOpen}` }) },
  'POST /admin/jobs/:jobId/retry': { rule: 'admin', request: () => ({ method: 'POST', path: `/admin/jobs/${takeFailed('retry')}/retry` }) },
  'DELETE /admin/jobs/:jobId': { rule: 'admin', request: () => ({ method: 'DELETE', path: `/admin/jobs/${takeFailed('delete')}` }) },
  'GET /admin/storage-targets': { rule: 'admin', request: () => ({ method: 'GET', path: '/admin/storage-targets' }) },
  'POST /admin/storage-targets': {
    rule: 'admin',
    request: () => ({ method: 'POST', path: '/admin/storage-targets', body: { name: `made-${++made}`, kind: 'local', config: { root: `${scratch}/t${made}` } } }),
  },
  'GET /ingestion/jobs/:jobId': {
    rule: 'write',
    request: (d) => ({
      method: 'GET',
      path: `/ingestion/jobs/${d === 'plain' ? jobOfOpen : d === 'guarded' ? jobOfGuarded : '00000000-0000-4000-8000-000000000000'}`,
    }),
  },
};

async function send(c: RouteCase, dataset: 'plain' | 'guarded' | 'missing', scopeHeader?: string): Promise<number> {
  const { method, path, body } = c.request(dataset);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (scopeHeader !== undefined) headers['x-iam-scopes'] = scopeHeader;
  const res = await fetch(`${ts.url}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  await res.arrayBuffer();
  return res.status;
}

describe('scope matrix', () => {
  test('every route declares a scope rule in the OpenAPI document and has a row in this matrix', async () => {
    const doc = (await (await fetch(`${ts.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, Record<string, unknown>>> };
    const declared: string[] = [];
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const key = `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`;
        declared.push(key);
        expect(operation['x-timestore-scope'], `${key} declares x-timestore-scope`).toBe(ROUTES[key]?.rule);
      }
    }
    expect(declared.sort()).toEqual(Object.keys(ROUTES).sort());
  });

  for (const [name, c] of Object.entries(ROUTES)) {
    const right = c.rule === 'open' ? undefined : scopes[c.rule];
    test(`${name} (${c.rule}): no header, wrong scope, right scope`, async () => {
      if (c.rule === 'open') {
        expect(await send(c, 'plain')).toBe(200);
        expect(await send(c, 'plain', 'something:else')).toBe(200);
        return;
      }
      expect(await send(c, 'plain')).toBe(401);
      expect(await send(c, 'plain', 'something:else')).toBe(403);
      if (c.request('plain').body) {
        // Scopes are checked before the body is validated: no 400 tells an outsider anything.
        const res = await fetch(`${ts.url}${c.request('plain').path}`, { method: c.request('plain').method, headers: { 'content-type': 'application/json' }, body: '{}' });
        expect(res.status).toBe(401);
      }
      expect(await send(c, 'plain', `other, ${right}`)).toBeLessThan(400);
    });

    if (c.rule === 'read' || c.rule === 'write') {
      test(`${name}: a dataset's own scopes override the server-wide ones, and a missing dataset reveals nothing`, async () => {
        const own = c.rule === 'read' ? 'guarded:read' : 'guarded:write';
        expect(await send(c, 'guarded', right)).toBe(403);
        expect(await send(c, 'guarded', own)).toBeLessThan(400);
        expect(await send(c, 'guarded')).toBe(401);
        // A dataset that does not exist answers like one without its own scopes.
        expect(await send(c, 'missing')).toBe(401);
        expect(await send(c, 'missing', 'something:else')).toBe(403);
      });
    }

    if (c.rule === 'admin') {
      test(`${name}: a dataset's own read or write scopes grant nothing here`, async () => {
        expect(await send(c, 'guarded', 'guarded:read guarded:write')).toBe(403);
        expect(await send(c, 'guarded', right)).toBeLessThan(400);
      });
    }
  }
});
