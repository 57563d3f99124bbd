/**
 * The scope matrix in header mode: every route × {no header, wrong scope, right scope, dataset
 * override, per-dataset scope}, and the check made before the body is read. It fails when a route
 * is added without a scope rule or without a row in test/harness/route-matrix.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { rmSync } from 'node:fs';
import { declaredRoutes, listedDatasets, type MatrixFixtures, prepareMatrix, type RouteCase, routeMatrix, sendRaw, sendRoute } from '../harness/route-matrix.ts';
import { startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
let fixtures: MatrixFixtures;
const scopes = { read: 'ts:read', write: 'ts:write', admin: 'ts:admin' };
const ROUTES = routeMatrix(() => fixtures);

beforeAll(async () => {
  ts = await startTestServer({
    TIMESTORE_REQUIRE_SCOPE: scopes.read,
    TIMESTORE_REQUIRE_WRITE_SCOPE: scopes.write,
    TIMESTORE_ADMIN_SCOPE: scopes.admin,
  });
  fixtures = await prepareMatrix(ts, { 'x-iam-scopes': scopes.write });
});
afterAll(async () => {
  await ts.stop();
  rmSync(fixtures.scratch, { recursive: true, force: true });
});

const send = (c: RouteCase, dataset: 'plain' | 'guarded' | 'missing', scopeHeader?: string) =>
  sendRoute(ts.url, c, dataset, scopeHeader === undefined ? {} : { 'x-iam-scopes': scopeHeader });

describe('scope matrix', () => {
  test('every route declares a scope rule in the OpenAPI document and has a row in this matrix', async () => {
    const declared = await declaredRoutes(ts.url);
    for (const [key, rule] of Object.entries(declared)) expect(rule, `${key} declares x-timestore-scope`).toBe(ROUTES[key]?.rule);
    expect(Object.keys(declared).sort()).toEqual(Object.keys(ROUTES).sort());
  });

  for (const [name, c] of Object.entries(ROUTES)) {
    if (c.lists) {
      test(`${name} (lists datasets): no header is 401; any scopes list exactly the datasets they may read`, async () => {
        expect(await send(c, 'plain')).toBe(401);
        const listed = (held: string) => listedDatasets(ts.url, { 'x-iam-scopes': held });
        expect(await listed('something:else')).toEqual([]);
        expect(await listed(`${scopes.write} ${scopes.admin} write:plain write:guarded guarded:write`)).toEqual([]);
        expect(await listed(scopes.read)).toEqual(['plain']);
        expect(await listed('read:plain')).toEqual(['plain']);
        expect(await listed('guarded:read')).toEqual(['guarded']);
        expect(await listed('read:guarded')).toEqual(['guarded']);
        expect(await listed(`${scopes.read}, guarded:read`)).toEqual(['plain', 'guarded']);
      });
      continue;
    }
    const right = c.rule === 'open' ? undefined : scopes[c.rule];
    test(`${name} (${c.rule}): no header, wrong scope, right scope`, async () => {
      if (c.rule === 'open') {
        expect(await send(c, 'plain')).toBe(200);
        expect(await send(c, 'plain', 'something:else')).toBe(200);
        return;
      }
      expect(await send(c, 'plain')).toBe(401);
      expect(await send(c, 'plain', 'something:else')).toBe(403);
      if (c.body) {
        // Scopes are checked before the body is validated: no 400 tells an outsider anything.
        expect((await sendRaw(ts.url, c, '{}')).status).toBe(401);
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

      test(`${name}: ${c.rule}:<slug> grants this dataset only`, async () => {
        expect(await send(c, 'plain', `${c.rule}:plain`)).toBeLessThan(400);
        expect(await send(c, 'guarded', `${c.rule}:plain`)).toBe(403);
        expect(await send(c, 'guarded', `${c.rule}:guarded`)).toBeLessThan(400);
        const other = c.rule === 'read' ? 'write' : 'read';
        expect(await send(c, 'plain', `${other}:plain`)).toBe(403);
      });
    }

    if (c.rule === 'admin') {
      test(`${name}: a dataset's own read or write scopes grant nothing here`, async () => {
        expect(await send(c, 'guarded', 'guarded:read guarded:write read:guarded write:guarded')).toBe(403);
        expect(await send(c, 'guarded', right)).toBeLessThan(400);
      });
    }

    if (c.rule !== 'open' && c.method !== 'GET') {
      test(`${name}: the scope is checked before the body is read`, async () => {
        // JSON that does not parse: a parser that ran first would answer 400 invalid_body.
        expect(await sendRaw(ts.url, c, '{"not json')).toEqual({ status: 401, code: 'unauthorized' });
        const wrong = await sendRaw(ts.url, c, '{"not json', { 'x-iam-scopes': 'something:else' });
        // A route that learns from its body which datasets it reads refuses wrong scopes after reading it.
        if (c.namesInBody) expect([400, 415]).toContain(wrong.status); // refused for its body: no dataset named yet
        else expect(wrong).toEqual({ status: 403, code: 'forbidden' });
        // 8 MiB of it, within the body limit, is refused the same way.
        expect((await sendRaw(ts.url, c, `{"a":"${'x'.repeat(8 * 1024 * 1024)}`)).status).toBe(401);
        if (c.body) {
          // With the scope, the same body reaches the parser: the answers above were not parse errors.
          expect((await sendRaw(ts.url, c, '{"not json', { 'x-iam-scopes': right as string })).status).toBe(400);
        }
      });
    }
  }
});
