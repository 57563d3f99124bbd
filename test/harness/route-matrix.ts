/**
 * Every route of the API with its scope rule and a request that succeeds with the right scope, for
 * the access matrices of test/http/scopes.test.ts (`x-iam-scopes` headers) and test/http/tokens.test.ts (API tokens).
 * A matrix fails when a route is added without a row here (the OpenAPI document is compared).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findDataset, updateDataset } from '../../src/catalog/datasets.ts';
import { enqueueJob } from '../../src/catalog/job-table.ts';
import { TokenService } from '../../src/tokens/service.ts';
import { silentLog } from './catalog.ts';
import { REMOTE_WRITE_HEADERS, remoteWriteBody } from './remote-write.ts';
import { postJson, type TestServer } from './server.ts';

export type Rule = 'open' | 'read' | 'write' | 'admin';
/** A dataset without its own scopes, one with them (`guarded:read`, `guarded:write`), one that does not exist. */
export type DatasetCase = 'plain' | 'guarded' | 'missing';

export interface RouteRequest {
  method: string;
  path: string;
  /** Sent as JSON, or as it is when bytes or a string (with its `headers`). */
  body?: unknown;
  headers?: Record<string, string>;
}

/** One point of line protocol for the dataset `d` (its measurement), as the `plain` and `guarded` batches hold. */
const lineOf = (path: string) => (d: DatasetCase): RouteRequest => ({ method: 'POST', path, body: `${d} v=1 1767225600000000000\n`, headers: { 'content-type': 'text/plain' } });

export interface RouteCase {
  rule: Rule;
  method: string;
  /** The route takes a request body (its request sends one). */
  body: boolean;
  /**
   * The datasets it reads are named in its body (POST /sql): a caller without credentials is refused
   * before the body is read, one with credentials that might allow some dataset only after.
   */
  namesInBody: boolean;
  /** It lists the datasets the caller may read (GET /datasets): the `read` rule for each, none refused. */
  lists: boolean;
  request(dataset: DatasetCase): RouteRequest;
}

export const BATCH = {
  schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'v', type: 'double' }] },
  partition: { key: {} },
  rows: [{ timestamp: '2026-01-01T00:00:00Z', v: 1 }],
};

const NO_SUCH_JOB = '00000000-0000-4000-8000-000000000000';

/** What the requests of the matrix act on: prepared once per server. */
export interface MatrixFixtures {
  jobOf: Record<'plain' | 'guarded', string>;
  /** Each request that retries or deletes a failed job, or revokes a token, takes its own: one done is done. */
  take(what: 'retry' | 'delete' | 'revoke'): string;
  /** A token that the token routes read. */
  tokenId: string;
  scratch: string;
}

/**
 * Ingests one batch into `plain` and `guarded` (with `writeHeaders`), gives `guarded` its own
 * scopes, and makes failed jobs and tokens for the routes that use them up.
 */
export async function prepareMatrix(ts: TestServer, writeHeaders: Record<string, string>, perAction = 24): Promise<MatrixFixtures> {
  const jobOf = {
    plain: (await postJson(`${ts.url}/datasets/plain/ingest?wait=true`, BATCH, writeHeaders)).body.id as string,
    guarded: (await postJson(`${ts.url}/datasets/guarded/ingest?wait=true`, BATCH, writeHeaders)).body.id as string,
  };
  const guarded = await findDataset(ts.sql, 'guarded');
  await updateDataset(ts.sql, guarded!.id, { metadata: { iam: { readScopes: ['guarded:read'], writeScopes: ['guarded:write'] } } });
  const spare: Record<'retry' | 'delete' | 'revoke', string[]> = { retry: [], delete: [], revoke: [] };
  for (const action of ['retry', 'delete'] as const) {
    for (let i = 0; i < perAction; i++) {
      const { job } = await enqueueJob(ts.sql, { queue: 'matrix-idle', kind: 'k', payload: {} }); // nobody runs it
      await ts.sql`UPDATE jobs SET state = 'failed', finished_at = now() WHERE id = ${job.id}`;
      spare[action].push(job.id);
    }
  }
  const tokens = new TokenService({ sql: ts.sql, log: silentLog, cacheMs: 0 });
  for (let i = 0; i < perAction; i++) spare.revoke.push((await tokens.create({ name: `matrix-revoke-${i}`, scopes: ['read'] }, 'matrix')).token.id);
  const { token } = await tokens.create({ name: 'matrix-read-me', scopes: ['read'] }, 'matrix');
  return {
    jobOf,
    take: (what) => spare[what].pop() ?? 'none-left',
    tokenId: token.id,
    scratch: mkdtempSync(join(tmpdir(), 'timestore-matrix-')),
  };
}

/** The table; `fixtures` is read only when a request is made. */
export function routeMatrix(fixtures: () => MatrixFixtures): Record<string, RouteCase> {
  let made = 0;
  const f = {
    jobOf: (d: 'plain' | 'guarded') => fixtures().jobOf[d],
    take: (what: 'retry' | 'delete' | 'revoke') => fixtures().take(what),
    tokenId: () => fixtures().tokenId,
    scratch: () => fixtures().scratch,
  };
  const rows: Record<string, Pick<RouteCase, 'rule' | 'request'> & { body?: true; namesInBody?: true; lists?: true }> = {
    'GET /health': { rule: 'open', request: () => ({ method: 'GET', path: '/health' }) },
    'GET /ready': { rule: 'open', request: () => ({ method: 'GET', path: '/ready' }) },
    'GET /metrics': { rule: 'open', request: () => ({ method: 'GET', path: '/metrics' }) },
    'POST /datasets/:datasetSlug/ingest': {
      rule: 'write', body: true,
      request: (d) => ({ method: 'POST', path: `/datasets/${d}/ingest`, body: BATCH }),
    },
    'POST /datasets/:datasetSlug/query': {
      rule: 'read', body: true,
      request: (d) => ({
        method: 'POST',
        path: `/datasets/${d}/query`,
        body: { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' } },
      }),
    },
    'GET /datasets/:datasetSlug/query': {
      rule: 'read',
      request: (d) => ({ method: 'GET', path: `/datasets/${d}/query?from=1767225600000&to=1767312000000&interval=3600000&agg=avg:v&fill=null` }),
    },
    'GET /datasets': { rule: 'read', lists: true, request: () => ({ method: 'GET', path: '/datasets' }) },
    'GET /datasets/:datasetSlug': { rule: 'read', request: (d) => ({ method: 'GET', path: `/datasets/${d}` }) },
    'POST /datasets/:datasetSlug/latest': {
      rule: 'read', body: true,
      request: (d) => ({ method: 'POST', path: `/datasets/${d}/latest`, body: {} }),
    },
    'POST /sql': {
      rule: 'read', body: true, namesInBody: true,
      request: (d) => ({ method: 'POST', path: '/sql', body: { sql: `SELECT count(*) AS n FROM "${d}"` } }),
    },
    'GET /sql': { rule: 'read', request: (d) => ({ method: 'GET', path: `/sql?q=${encodeURIComponent(`SELECT count(*) AS n FROM dataset('${d}')`)}` }) },
    'GET /admin/datasets': { rule: 'admin', request: () => ({ method: 'GET', path: '/admin/datasets' }) },
    'POST /admin/datasets': { rule: 'admin', body: true, request: () => ({ method: 'POST', path: '/admin/datasets', body: { slug: `made-${++made}` } }) },
    'GET /admin/datasets/:datasetId': { rule: 'admin', request: (d) => ({ method: 'GET', path: `/admin/datasets/${d}` }) },
    'PATCH /admin/datasets/:datasetId': {
      rule: 'admin', body: true,
      request: (d) => ({ method: 'PATCH', path: `/admin/datasets/${d}`, body: { description: 'checked by the scope matrix' } }),
    },
    'GET /admin/datasets/:datasetId/manifest': { rule: 'admin', request: (d) => ({ method: 'GET', path: `/admin/datasets/${d}/manifest` }) },
    'GET /admin/datasets/:datasetId/retention': { rule: 'admin', request: (d) => ({ method: 'GET', path: `/admin/datasets/${d}/retention` }) },
    'PUT /admin/datasets/:datasetId/retention': {
      rule: 'admin', body: true,
      request: (d) => ({ method: 'PUT', path: `/admin/datasets/${d}/retention`, body: { rules: {} } }),
    },
    'PUT /admin/datasets/:datasetId/storage-target': {
      rule: 'admin', body: true,
      request: (d) => ({ method: 'PUT', path: `/admin/datasets/${d}/storage-target`, body: { storageTargetId: 'local' } }),
    },
    'GET /admin/datasets/:datasetId/audit': { rule: 'admin', request: (d) => ({ method: 'GET', path: `/admin/datasets/${d}/audit` }) },
    'POST /admin/datasets/:datasetId/lifecycle': { rule: 'admin', request: (d) => ({ method: 'POST', path: `/admin/datasets/${d}/lifecycle` }) },
    'GET /admin/jobs': { rule: 'admin', request: () => ({ method: 'GET', path: '/admin/jobs?state=failed' }) },
    'GET /admin/jobs/:jobId': { rule: 'admin', request: () => ({ method: 'GET', path: `/admin/jobs/${f.jobOf('plain')}` }) },
    'POST /admin/jobs/:jobId/retry': { rule: 'admin', request: () => ({ method: 'POST', path: `/admin/jobs/${f.take('retry')}/retry` }) },
    'DELETE /admin/jobs/:jobId': { rule: 'admin', request: () => ({ method: 'DELETE', path: `/admin/jobs/${f.take('delete')}` }) },
    'GET /admin/storage-targets': { rule: 'admin', request: () => ({ method: 'GET', path: '/admin/storage-targets' }) },
    'POST /admin/storage-targets': {
      rule: 'admin', body: true,
      request: () => ({ method: 'POST', path: '/admin/storage-targets', body: { name: `made-${++made}`, kind: 'local', config: { root: `${f.scratch()}/t${made}` } } }),
    },
    'GET /admin/tokens': { rule: 'admin', request: () => ({ method: 'GET', path: '/admin/tokens' }) },
    'POST /admin/tokens': { rule: 'admin', body: true, request: () => ({ method: 'POST', path: '/admin/tokens', body: { name: `made-${++made}`, scopes: ['read'] } }) },
    'GET /admin/tokens/:tokenId': { rule: 'admin', request: () => ({ method: 'GET', path: `/admin/tokens/${f.tokenId()}` }) },
    'DELETE /admin/tokens/:tokenId': { rule: 'admin', request: () => ({ method: 'DELETE', path: `/admin/tokens/${f.take('revoke')}` }) },
    'POST /api/v1/write': {
      rule: 'write', body: true, namesInBody: true,
      request: (d) => ({
        method: 'POST',
        path: '/api/v1/write',
        headers: REMOTE_WRITE_HEADERS,
        body: remoteWriteBody([{ labels: [['__name__', d]], samples: [{ value: 1, timestamp: Date.parse('2026-01-01T00:00:00Z') }] }]),
      }),
    },
    'POST /write': { rule: 'write', body: true, namesInBody: true, request: lineOf('/write?db=matrix') },
    'POST /api/v2/write': { rule: 'write', body: true, namesInBody: true, request: lineOf('/api/v2/write?bucket=matrix') },
    'POST /api/v3/write_lp': { rule: 'write', body: true, namesInBody: true, request: lineOf('/api/v3/write_lp?db=matrix') },
    'GET /ingestion/jobs/:jobId': {
      rule: 'write',
      request: (d) => ({ method: 'GET', path: `/ingestion/jobs/${d === 'missing' ? NO_SUCH_JOB : f.jobOf(d)}` }),
    },
  };
  return Object.fromEntries(
    Object.entries(rows).map(([key, row]) => [key, { ...row, method: key.split(' ')[0] as string, body: row.body === true, namesInBody: row.namesInBody === true, lists: row.lists === true }]),
  );
}

/** The slugs GET /datasets lists for a caller with `headers`, among the matrix's datasets `plain` and `guarded`. */
export async function listedDatasets(url: string, headers: Record<string, string>): Promise<string[]> {
  const res = await fetch(`${url}/datasets`, { headers });
  if (res.status !== 200) throw new Error(`GET /datasets answered ${res.status}`);
  const { datasets } = (await res.json()) as { datasets: { slug: string }[] };
  return datasets.map((d) => d.slug).filter((slug) => slug === 'plain' || slug === 'guarded');
}

/** Sends a route's request with `headers` (JSON content type unless given), and answers its status. */
export async function sendRoute(url: string, c: RouteCase, dataset: DatasetCase, headers: Record<string, string> = {}): Promise<number> {
  const { method, path, body, headers: own } = c.request(dataset);
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...own, ...headers },
    body: body instanceof Uint8Array || typeof body === 'string' ? body : body ? JSON.stringify(body) : undefined,
  });
  await res.arrayBuffer();
  return res.status;
}

/** Sends a route's method and path with `body` as it is (e.g. JSON that does not parse), and answers status and error code. */
export async function sendRaw(url: string, c: RouteCase, body: string | Uint8Array, headers: Record<string, string> = {}): Promise<{ status: number; code?: string }> {
  const { method, path, headers: own } = c.request('plain');
  const res = await fetch(`${url}${path}`, { method, headers: { 'content-type': 'application/json', ...own, ...headers }, body });
  const text = await res.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
  } catch {
    code = undefined;
  }
  return { status: res.status, code };
}

/** The routes the OpenAPI document declares, as `METHOD /path/:param`, with their `x-timestore-scope`. */
export async function declaredRoutes(url: string): Promise<Record<string, unknown>> {
  const doc = (await (await fetch(`${url}/openapi.json`)).json()) as { paths: Record<string, Record<string, Record<string, unknown>>> };
  const declared: Record<string, unknown> = {};
  for (const [path, operations] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      declared[`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`] = operation['x-timestore-scope'];
    }
  }
  return declared;
}
