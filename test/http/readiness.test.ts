import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkerPool } from '../../src/engine/pool.ts';
import { auth } from '../../src/http/auth.ts';
import { healthRoutes } from '../../src/http/routes/health.ts';
import { Readiness } from '../../src/readiness.ts';
import { openTestCatalog } from '../harness/catalog.ts';

let pool: WorkerPool;
beforeAll(async () => {
  pool = await WorkerPool.start(1, join(tmpdir(), 'timestore-runtime'));
});
afterAll(() => pool.close());

const openScopes = auth({ scopes: { read: null, write: null, admin: null }, datasetIam: async () => null });
const ready = (readiness: Readiness) => healthRoutes(readiness, openScopes).handle(new Request('http://localhost/ready'));

describe('GET /ready', () => {
  test('503 naming the catalog when the catalog does not answer', async () => {
    const catalog = await openTestCatalog();
    const readiness = new Readiness({ catalog, pool, storageRoot: mkdtempSync(join(tmpdir(), 'ts-ready-')) });
    expect((await ready(readiness)).status).toBe(200);
    await catalog.close();
    const res = await ready(readiness);
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { code: string; message: string; details: { checks: Record<string, string> } } };
    expect(body.error.code).toBe('not_ready');
    expect(body.error.message).toStartWith('not ready: catalog: ');
    expect(body.error.details.checks.storage).toBe('ok');
    expect(body.error.details.checks.workers).toBe('ok');
    expect(body.error.details.checks.catalog).not.toBe('ok');
  });

  test('503 naming the storage root when it is not writable', async () => {
    const catalog = await openTestCatalog();
    try {
      const readiness = new Readiness({ catalog, pool, storageRoot: '/proc/timestore-not-writable' });
      const res = await ready(readiness);
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/^not ready: storage: /);
    } finally {
      await catalog.close();
    }
  });

  test('503 shutting_down once draining starts', async () => {
    const catalog = await openTestCatalog();
    try {
      const readiness = new Readiness({ catalog, pool, storageRoot: mkdtempSync(join(tmpdir(), 'ts-ready-')) });
      readiness.startDraining();
      const res = await ready(readiness);
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('shutting_down');
    } finally {
      await catalog.close();
    }
  });
});
