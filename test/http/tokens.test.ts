/**
 * The token matrix (TIMESTORE_AUTH=tokens), next to the header matrix of scopes.test.ts and over
 * the same route table: every route × {no token, malformed, unknown, revoked, expired, wrong
 * scope, right scope, per-dataset scope, x-iam-* headers instead of a token}, the check before
 * the body is read; then the token routes themselves, the audit actor and the time of last use.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { rmSync } from 'node:fs';
import { TokenService } from '../../src/tokens/service.ts';
import { silentLog } from '../harness/catalog.ts';
import { BATCH, declaredRoutes, type DatasetCase, listedDatasets, type MatrixFixtures, prepareMatrix, type RouteCase, routeMatrix, sendRaw, sendRoute } from '../harness/route-matrix.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
let fixtures: MatrixFixtures;
const ROUTES = routeMatrix(() => fixtures);

/** Secrets by what they hold; made in the catalog directly, as another process would. */
const secret: Record<string, string> = {};
const HOLDINGS: Record<string, string[]> = {
  admin: ['admin'],
  read: ['read'],
  write: ['write'],
  wrong: ['something:else', 'guarded:admin'],
  'read:plain': ['read:plain'],
  'write:plain': ['write:plain'],
  'read:guarded': ['read:guarded'],
  'write:guarded': ['write:guarded'],
  'guarded:read': ['guarded:read'],
  'guarded:write': ['guarded:write'],
  'dataset scopes only': ['guarded:read', 'guarded:write', 'read:guarded', 'write:guarded', 'read:plain', 'write:plain'],
  expired: ['admin', 'read', 'write'],
  revoked: ['admin', 'read', 'write'],
};
const bearer = (name: string): Record<string, string> => ({ authorization: `Bearer ${secret[name]}` });
const UNKNOWN = `ts_${'A'.repeat(43)}`;

beforeAll(async () => {
  ts = await startTestServer({ TIMESTORE_AUTH: 'tokens' });
  const tokens = new TokenService({ sql: ts.sql, log: silentLog, cacheMs: 0 });
  for (const [name, scopes] of Object.entries(HOLDINGS)) secret[name] = (await tokens.create({ name: `matrix-${name.replace(/[ :]/g, '-')}`, scopes }, 'test')).secret;
  await ts.sql`UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE name = 'matrix-expired'`;
  fixtures = await prepareMatrix(ts, bearer('write'));
  // Used once (so the server keeps its answer), then revoked through the server: refused at once all the same.
  expect((await fetch(`${ts.url}/admin/datasets`, { headers: bearer('revoked') })).status).toBe(200);
  const [revoked] = await ts.sql<{ id: string }[]>`SELECT id FROM api_tokens WHERE name = 'matrix-revoked'`;
  expect((await fetch(`${ts.url}/admin/tokens/${revoked!.id}`, { method: 'DELETE', headers: bearer('admin') })).status).toBe(200);
});
afterAll(async () => {
  await ts.stop();
  rmSync(fixtures.scratch, { recursive: true, force: true });
});

const send = (c: RouteCase, dataset: DatasetCase, headers: Record<string, string> = {}) => sendRoute(ts.url, c, dataset, headers);

describe('token matrix', () => {
  test('the token matrix covers every route the OpenAPI document declares, each with its rule', async () => {
    const declared = await declaredRoutes(ts.url);
    for (const [key, rule] of Object.entries(declared)) expect(rule, `${key} declares x-timestore-scope`).toBe(ROUTES[key]?.rule);
    expect(Object.keys(declared).sort()).toEqual(Object.keys(ROUTES).sort());
  });

  for (const [name, c] of Object.entries(ROUTES)) {
    if (c.lists) {
      test(`${name} (lists datasets): a valid token is needed; each token lists exactly the datasets it may read`, async () => {
        expect(await send(c, 'plain')).toBe(401);
        for (const refused of ['revoked', 'expired']) expect(await send(c, 'plain', bearer(refused))).toBe(401);
        expect(await send(c, 'plain', { authorization: `Bearer ${UNKNOWN}` })).toBe(401);
        expect(await send(c, 'plain', { 'x-iam-scopes': 'read guarded:read' })).toBe(401);
        const listed = (holder: string) => listedDatasets(ts.url, bearer(holder));
        expect(await listed('wrong')).toEqual([]);
        expect(await listed('write')).toEqual([]);
        expect(await listed('admin')).toEqual([]);
        expect(await listed('read')).toEqual(['plain']);
        expect(await listed('read:plain')).toEqual(['plain']);
        expect(await listed('guarded:read')).toEqual(['guarded']);
        expect(await listed('read:guarded')).toEqual(['guarded']);
        expect(await listed('dataset scopes only')).toEqual(['plain', 'guarded']);
      });
      continue;
    }
    const right = c.rule === 'open' ? 'admin' : c.rule;
    test(`${name} (${c.rule}): no token, malformed, unknown, revoked, expired, wrong scope, right scope`, async () => {
      if (c.rule === 'open') {
        expect(await send(c, 'plain')).toBe(200);
        expect(await send(c, 'plain', { authorization: 'Bearer nonsense' })).toBe(200);
        return;
      }
      const res = await fetch(`${ts.url}${c.request('plain').path}`, { method: c.method, headers: c.body ? { 'content-type': 'application/json' } : {}, body: c.body ? '{}' : undefined });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="timestore"');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
      for (const malformed of ['Bearer nonsense', `Basic ${btoa('admin:admin')}`, `Bearer ${secret.admin!.slice(0, -1)}`, secret.admin!]) {
        expect(await send(c, 'plain', { authorization: malformed }), malformed).toBe(401);
      }
      expect(await send(c, 'plain', { authorization: `Bearer ${UNKNOWN}` })).toBe(401);
      expect(await send(c, 'plain', bearer('revoked'))).toBe(401);
      expect(await send(c, 'plain', bearer('expired'))).toBe(401);
      expect(await send(c, 'plain', bearer('wrong'))).toBe(403);
      expect(await send(c, 'plain', bearer(right))).toBeLessThan(400);
      // The scheme's name is not case-sensitive.
      expect(await send(c, 'plain', { authorization: `bearer ${secret[right]}` })).toBeLessThan(400);
    });

    if (c.rule !== 'open') {
      test(`${name}: x-iam-scopes and x-iam-user from the client are ignored`, async () => {
        const scopes = 'admin read write read:plain write:plain';
        expect(await send(c, 'plain', { 'x-iam-scopes': scopes, 'x-iam-user': 'mallory' })).toBe(401);
        expect(await send(c, 'plain', { ...bearer('wrong'), 'x-iam-scopes': scopes })).toBe(403);
      });
    }

    if (c.rule === 'read' || c.rule === 'write') {
      test(`${name}: per-dataset scopes; a dataset's own scopes override the server-wide ones; a missing dataset reveals nothing`, async () => {
        const other = c.rule === 'read' ? 'write' : 'read';
        expect(await send(c, 'plain', bearer(`${c.rule}:plain`))).toBeLessThan(400);
        expect(await send(c, 'plain', bearer(`${other}:plain`))).toBe(403);
        expect(await send(c, 'guarded', bearer(`${c.rule}:plain`))).toBe(403);
        expect(await send(c, 'guarded', bearer(`${c.rule}:guarded`))).toBeLessThan(400);
        expect(await send(c, 'guarded', bearer(`guarded:${c.rule}`))).toBeLessThan(400);
        expect(await send(c, 'guarded', bearer(c.rule))).toBe(403);
        expect(await send(c, 'missing')).toBe(401);
        expect(await send(c, 'missing', bearer('wrong'))).toBe(403);
        expect(await send(c, 'missing', bearer(`${c.rule}:plain`))).toBe(403);
      });
    }

    if (c.rule === 'admin') {
      test(`${name}: scopes of datasets grant nothing here`, async () => {
        expect(await send(c, 'guarded', bearer('dataset scopes only'))).toBe(403);
        expect(await send(c, 'guarded', bearer('read'))).toBe(403);
        expect(await send(c, 'guarded', bearer('admin'))).toBeLessThan(400);
      });
    }

    if (c.rule !== 'open' && c.method !== 'GET') {
      test(`${name}: the token is checked before the body is read`, async () => {
        expect(await sendRaw(ts.url, c, '{"not json')).toEqual({ status: 401, code: 'unauthorized' });
        expect(await sendRaw(ts.url, c, '{"not json', bearer('expired'))).toEqual({ status: 401, code: 'unauthorized' });
        // A route that learns from its body which datasets it reads refuses wrong scopes after reading it.
        const wrong = await sendRaw(ts.url, c, '{"not json', bearer('wrong'));
        if (c.namesInBody) expect([400, 415]).toContain(wrong.status); // refused for its body: no dataset named yet
        else expect(wrong).toEqual({ status: 403, code: 'forbidden' });
        expect((await sendRaw(ts.url, c, `{"a":"${'x'.repeat(8 * 1024 * 1024)}`)).status).toBe(401);
        if (c.body) expect((await sendRaw(ts.url, c, '{"not json', bearer(right))).status).toBe(400);
      });
    }
  }
});

describe('/admin/tokens', () => {
  const admin = () => ({ ...bearer('admin'), 'content-type': 'application/json' });

  test('POST answers the secret once; GET and the list never show it; the new token works at once', async () => {
    const created = await postJson(`${ts.url}/admin/tokens`, { name: 'reader-1', scopes: ['read', 'read'], expiresInSeconds: 3600 }, bearer('admin'));
    expect(created.status).toBe(201);
    const body = created.body as Record<string, any>;
    expect(body.token).toMatch(/^ts_[A-Za-z0-9_-]{43}$/);
    expect(created.headers.get('location')).toBe(`/admin/tokens/${body.id}`);
    expect(body).toMatchObject({ name: 'reader-1', scopes: ['read'], state: 'active', createdBy: 'matrix-admin', lastUsedAt: null, revokedAt: null });
    expect(body.prefix).toBe(body.token.slice(0, 7));
    const expiresIn = Date.parse(body.expiresAt) - Date.parse(body.createdAt);
    expect(expiresIn).toBeGreaterThan(3_500_000);
    expect(expiresIn).toBeLessThan(3_700_000);

    const one = await (await fetch(`${ts.url}/admin/tokens/${body.id}`, { headers: admin() })).text();
    const list = await (await fetch(`${ts.url}/admin/tokens`, { headers: admin() })).text();
    for (const text of [one, list]) {
      expect(text).toContain(body.id);
      expect(text).not.toContain(body.token);
      expect(text).not.toContain('"token"');
    }
    const [stored] = await ts.sql<Record<string, unknown>[]>`SELECT * FROM api_tokens WHERE id = ${body.id}`;
    expect(JSON.stringify(stored)).not.toContain(body.token.slice(7));

    const query = ROUTES['POST /datasets/:datasetSlug/query'] as RouteCase;
    expect(await send(query, 'plain', { authorization: `Bearer ${body.token}` })).toBe(200);
  });

  test('refusals: a name in use (409), bad names and scopes, an expiry in the past or given twice (400), an unknown token (404)', async () => {
    const post = (body: unknown) => postJson(`${ts.url}/admin/tokens`, body, bearer('admin'));
    await post({ name: 'dup', scopes: ['read'] });
    expect((await post({ name: 'dup', scopes: ['write'] })).body.error.code).toBe('token_name_taken');
    for (const body of [
      { name: 'has space', scopes: ['read'] },
      { name: 'ok', scopes: [] },
      { name: 'ok', scopes: ['read write'] },
      { name: 'ok', scopes: ['a,b'] },
      { name: 'ok', scopes: ['read'], expiresAt: '2001-01-01T00:00:00Z' },
      { name: 'ok', scopes: ['read'], expiresAt: '2999-01-01T00:00:00Z', expiresInSeconds: 60 },
      { name: 'ok', scopes: ['read'], secret: 'mine' },
    ]) {
      const answer = await post(body);
      expect(answer.status, JSON.stringify(body)).toBe(400);
    }
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      expect((await fetch(`${ts.url}/admin/tokens/${id}`, { headers: admin() })).status).toBe(404);
      expect((await fetch(`${ts.url}/admin/tokens/${id}`, { method: 'DELETE', headers: admin() })).status).toBe(404);
    }
  });

  test('DELETE revokes: refused at once, listed only with ?revoked=true, the name free again; a second DELETE changes nothing', async () => {
    const { body } = await postJson(`${ts.url}/admin/tokens`, { name: 'short-lived', scopes: ['admin'] }, bearer('admin'));
    const own = { authorization: `Bearer ${body.token}` };
    expect((await fetch(`${ts.url}/admin/tokens`, { headers: own })).status).toBe(200);
    const revoked = (await (await fetch(`${ts.url}/admin/tokens/${body.id}`, { method: 'DELETE', headers: admin() })).json()) as Record<string, any>;
    expect(revoked).toMatchObject({ id: body.id, state: 'revoked', revokedBy: 'matrix-admin' });
    expect((await fetch(`${ts.url}/admin/tokens`, { headers: own })).status).toBe(401);

    const names = async (query: string) =>
      ((await (await fetch(`${ts.url}/admin/tokens${query}`, { headers: admin() })).json()) as { tokens: { name: string }[] }).tokens.map((t) => t.name);
    expect(await names('')).not.toContain('short-lived');
    expect(await names('?revoked=true')).toContain('short-lived');

    const again = (await (await fetch(`${ts.url}/admin/tokens/${body.id}`, { method: 'DELETE', headers: admin() })).json()) as Record<string, any>;
    expect(again.revokedAt).toBe(revoked.revokedAt);
    expect((await postJson(`${ts.url}/admin/tokens`, { name: 'short-lived', scopes: ['read'] }, bearer('admin'))).status).toBe(201);
  });

  test("the audit actor is the token's name, whatever x-iam-user says; token changes are audited", async () => {
    const headers = { ...bearer('admin'), 'x-iam-user': 'mallory', 'x-user-id': 'mallory' };
    const created = await postJson(`${ts.url}/admin/datasets`, { slug: 'audited' }, headers);
    expect(created.status).toBe(201);
    const patched = await fetch(`${ts.url}/admin/datasets/audited`, { method: 'PATCH', headers: { ...headers, 'content-type': 'application/json' }, body: '{"description":"x"}' });
    expect(patched.status).toBe(200);
    const audit = (await (await fetch(`${ts.url}/admin/datasets/audited/audit`, { headers: bearer('admin') })).json()) as { events: { action: string; actor: string }[] };
    expect(audit.events.map((e) => [e.action, e.actor])).toEqual([
      ['dataset.updated', 'matrix-admin'],
      ['dataset.created', 'matrix-admin'],
    ]);

    const ingested = await postJson(`${ts.url}/datasets/audited-ingest/ingest?wait=true`, BATCH, { ...bearer('write'), 'x-iam-user': 'mallory' });
    expect(ingested.status).toBe(201);
    const [job] = await ts.sql<{ actor: string }[]>`SELECT actor FROM jobs WHERE id = ${ingested.body.id}`;
    expect(job?.actor).toBe('matrix-write');

    const tokenEvents = await ts.sql<{ action: string; actor: string }[]>`
      SELECT action, actor FROM audit_events WHERE action LIKE 'token.%' AND details ->> 'name' = 'short-lived' ORDER BY id`;
    expect(tokenEvents.map((e) => [e.action, e.actor])).toEqual([
      ['token.created', 'matrix-admin'],
      ['token.revoked', 'matrix-admin'],
      ['token.created', 'matrix-admin'],
    ]);
  });

  test('the time of last use is recorded', async () => {
    const { body } = await postJson(`${ts.url}/admin/tokens`, { name: 'used-once', scopes: ['read'] }, bearer('admin'));
    const view = async () => (await (await fetch(`${ts.url}/admin/tokens/${body.id}`, { headers: bearer('admin') })).json()) as { lastUsedAt: string | null };
    expect((await view()).lastUsedAt).toBeNull();
    expect(await send(ROUTES['POST /datasets/:datasetSlug/query'] as RouteCase, 'plain', { authorization: `Bearer ${body.token}` })).toBe(200);
    const used = (await view()).lastUsedAt;
    expect(used).not.toBeNull();
    expect(Date.parse(used as string)).toBeGreaterThanOrEqual(Date.parse(body.createdAt));
  });

  test('the OpenAPI document offers a bearer scheme, and each operation that is not open asks for it', async () => {
    const doc = (await (await fetch(`${ts.url}/openapi.json`)).json()) as any;
    expect(doc.components.securitySchemes).toEqual({ bearerToken: expect.objectContaining({ type: 'http', scheme: 'bearer' }) });
    for (const [path, operations] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, operation] of Object.entries(operations)) {
        const expected = operation['x-timestore-scope'] === 'open' ? [] : [{ bearerToken: [] }];
        expect(operation.security, `${method} ${path}`).toEqual(expected);
      }
    }
  });
});
