/**
 * `timestore token …` as an operator runs it (from source, or the executable the suites run
 * against): against the PostgreSQL a token-mode server uses, and on a fresh embedded deployment
 * before its first start. The printed secret is then used over HTTP.
 */
import { describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, spawnServer } from '../harness/server-process.ts';
import { startTestServer, TEST_BINARY } from '../harness/server.ts';

function timestore(args: string[], env: Record<string, string>) {
  const command = TEST_BINARY ? [TEST_BINARY, ...args] : [process.execPath, join(REPO_ROOT, 'src/main.ts'), ...args];
  const result = Bun.spawnSync(command, {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  });
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

describe('timestore token', () => {
  test('create prints only the secret on stdout; the server takes it; list shows no secret; revoke ends it', async () => {
    const ts = await startTestServer({ TIMESTORE_AUTH: 'tokens', TIMESTORE_AUTH_TOKEN_CACHE_SECONDS: '0' });
    const env = { TIMESTORE_DATABASE_URL: ts.config.databaseUrl as string, TIMESTORE_STORAGE_ROOT: mkdtempSync(join(tmpdir(), 'ts-token-cli-')) };
    try {
      const created = timestore(['token', 'create', '--name', 'first-admin', '--scopes', 'admin, read', '--expires-in', '30d'], env);
      expect(created.code).toBe(0);
      const secret = created.stdout.trim();
      expect(secret).toMatch(/^ts_[A-Za-z0-9_-]{43}$/);
      expect(created.stdout).toBe(`${secret}\n`);
      expect(created.stderr).toContain('created token first-admin');
      expect(created.stderr).toContain('shown this once');

      const res = await fetch(`${ts.url}/admin/tokens`, { headers: { authorization: `Bearer ${secret}` } });
      expect(res.status).toBe(200);
      const [token] = ((await res.json()) as { tokens: Record<string, any>[] }).tokens;
      expect(token).toMatchObject({ name: 'first-admin', scopes: ['admin', 'read'], state: 'active', prefix: secret.slice(0, 7) });
      expect(token!.createdBy).toStartWith('cli:');
      const lifetime = Date.parse(token!.expiresAt) - Date.parse(token!.createdAt);
      expect(Math.round(lifetime / 86_400_000)).toBe(30);

      const listed = timestore(['token', 'list'], env);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toContain(`${token!.id}  first-admin  active  scopes=admin,read`);
      expect(listed.stdout).not.toContain(secret.slice(7));

      expect(timestore(['token', 'create', '--name', 'first-admin', '--scopes', 'read'], env)).toMatchObject({ code: 1, stderr: expect.stringContaining('is in use') });

      const revoked = timestore(['token', 'revoke', token!.id], env);
      expect(revoked.code).toBe(0);
      expect(revoked.stdout).toContain('revoked');
      expect((await fetch(`${ts.url}/admin/tokens`, { headers: { authorization: `Bearer ${secret}` } })).status).toBe(401);
      expect(timestore(['token', 'list'], env).stdout).toBe('');
      expect(timestore(['token', 'list', '--revoked'], env).stdout).toContain('first-admin  revoked');
    } finally {
      await ts.stop();
      rmSync(env.TIMESTORE_STORAGE_ROOT, { recursive: true, force: true });
    }
  }, 120_000);

  test('a fresh embedded deployment: the first token is created before the first start, and works once it serves', async () => {
    const storageRoot = mkdtempSync(join(tmpdir(), 'ts-token-embedded-'));
    try {
      const created = timestore(['token', 'create', '--name', 'bootstrap', '--scopes', 'admin'], { TIMESTORE_STORAGE_ROOT: storageRoot });
      expect(created.code).toBe(0);
      const secret = created.stdout.trim();
      const server = await spawnServer({
        ...(TEST_BINARY ? { command: [TEST_BINARY] } : {}),
        storageRoot,
        env: { TIMESTORE_AUTH: 'tokens' },
        readyTimeoutMs: 90_000,
      });
      try {
        expect((await fetch(`${server.url}/admin/tokens`)).status).toBe(401);
        expect((await fetch(`${server.url}/admin/tokens`, { headers: { authorization: `Bearer ${secret}` } })).status).toBe(200);
        // While the server holds the embedded catalog, the command says so (and the API creates tokens instead).
        const busy = timestore(['token', 'create', '--name', 'second', '--scopes', 'read'], { TIMESTORE_STORAGE_ROOT: storageRoot });
        expect(busy.code).toBe(1);
        expect(busy.stderr).toContain('is in use by another timestore process');
      } finally {
        expect(await server.stop()).toBe(0);
      }
    } finally {
      rmSync(storageRoot, { recursive: true, force: true });
    }
  }, 180_000);

  test('mistakes on the command line exit 2 with the usage', () => {
    for (const args of [['token'], ['token', 'mint'], ['token', 'create', '--scopes', 'read'], ['token', 'create', '--name', 'x'], ['token', 'create', '--name', 'x', '--scopes', 'read', '--expires-in', 'soon'], ['token', 'revoke']]) {
      const result = timestore(args, { TIMESTORE_STORAGE_ROOT: '/nonexistent' });
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toContain('timestore token create --name');
    }
    expect(timestore(['token', '--help'], {})).toMatchObject({ code: 0, stdout: expect.stringContaining('timestore token list') });
  });
});
