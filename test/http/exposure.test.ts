/**
 * A server reachable beyond loopback with nothing checked says so, at start and in /ready; and
 * TIMESTORE_AUTH=none opens every route.
 */
import { describe, expect, test } from 'bun:test';
import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { openExposure } from '../../src/server.ts';
import { againstBinary, postJson, startTestServer, type TestServer } from '../harness/server.ts';

describe('openExposure', () => {
  const exposure = (env: Record<string, string>) => openExposure(loadConfig(env));

  test('loopback is never a warning', () => {
    for (const host of ['127.0.0.1', '127.0.1.1', 'localhost', '::1']) {
      expect(exposure({ TIMESTORE_HOST: host })).toBeNull();
      expect(exposure({ TIMESTORE_HOST: host, TIMESTORE_AUTH: 'none' })).toBeNull();
    }
  });

  test('beyond loopback: nothing checked is loud, trusted headers a caution, tokens fine', () => {
    for (const host of ['0.0.0.0', '::', '10.0.0.5']) {
      expect(exposure({ TIMESTORE_HOST: host })).toStartWith('NO AUTHENTICATION');
      expect(exposure({ TIMESTORE_HOST: host, TIMESTORE_AUTH: 'none', TIMESTORE_REQUIRE_SCOPE: 'r' })).toStartWith('NO AUTHENTICATION');
      expect(exposure({ TIMESTORE_HOST: host, TIMESTORE_REQUIRE_WRITE_SCOPE: 'w' })).toContain('trusting x-iam-scopes as sent');
      expect(exposure({ TIMESTORE_HOST: host, TIMESTORE_AUTH: 'tokens' })).toBeNull();
    }
  });
});

/** Starts a server and collects its log lines (in process, or from the separate process's output). */
async function serverWithLog(env: Record<string, string>): Promise<{ ts: TestServer; lines(): Record<string, any>[] }> {
  const captured: Record<string, any>[] = [];
  const log = createLogger('info', new Writable({ write: (chunk, _enc, done) => (captured.push(JSON.parse(String(chunk))), done()) }));
  const ts = await startTestServer(env, { log });
  const lines = () => (againstBinary ? ts.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)) : captured);
  return { ts, lines };
}

describe('a server beyond loopback', () => {
  test('with nothing checked: a warning at start and in /ready', async () => {
    const { ts, lines } = await serverWithLog({ TIMESTORE_HOST: '0.0.0.0' });
    try {
      const warning = lines().find((l) => l.level === 'warn' && String(l.msg).startsWith('NO AUTHENTICATION'));
      expect(warning).toMatchObject({ host: '0.0.0.0', auth: 'headers' });
      const ready = (await (await fetch(`${ts.url}/ready`)).json()) as { status: string; warnings: string[] };
      expect(ready.status).toBe('ready');
      expect(ready.warnings).toEqual([warning!.msg]);
    } finally {
      await ts.stop();
    }
  });

  test('with tokens: no warning, /ready as usual', async () => {
    const { ts, lines } = await serverWithLog({ TIMESTORE_HOST: '0.0.0.0', TIMESTORE_AUTH: 'tokens' });
    try {
      expect(lines().filter((l) => l.level === 'warn')).toEqual([]);
      expect(await (await fetch(`${ts.url}/ready`)).json()).toEqual({ status: 'ready', checks: { catalog: 'ok', storage: 'ok', workers: 'ok' } });
    } finally {
      await ts.stop();
    }
  });
});

test('TIMESTORE_AUTH=none: every route open whatever scopes are configured, no actor recorded', async () => {
  const ts = await startTestServer({ TIMESTORE_AUTH: 'none', TIMESTORE_REQUIRE_SCOPE: 'r', TIMESTORE_ADMIN_SCOPE: 'a' });
  try {
    const created = await postJson(`${ts.url}/admin/datasets`, { slug: 'open' }, { 'x-iam-user': 'alice' });
    expect(created.status).toBe(201);
    const audit = (await (await fetch(`${ts.url}/admin/datasets/open/audit`)).json()) as { events: { actor: string | null }[] };
    expect(audit.events.map((e) => e.actor)).toEqual([null]);
    const doc = (await (await fetch(`${ts.url}/openapi.json`)).json()) as any;
    expect(doc.components.securitySchemes ?? {}).toEqual({});
  } finally {
    await ts.stop();
  }
});
