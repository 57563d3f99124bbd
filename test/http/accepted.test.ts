/**
 * 202 answers are uniform: ingest and lifecycle jobs alike carry a `Location` header and a
 * `statusUrl`; a request that waits longer than the server's idle timeout answers 202 when its
 * wait runs out instead of losing its connection; `POST …/lifecycle` on a server whose lifecycle
 * is off either finds a process that runs it or answers 503 `lifecycle_not_running`.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { findDataset } from '../../src/catalog/datasets.ts';
import { MAX_WAIT_MS, requestedWaitMs } from '../../src/http/accepted.ts';
import { silentLog } from '../harness/catalog.ts';
import { startLifecycleProcess } from '../../src/server.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'seq', type: 'integer' },
];

const batch = (seq: number) => ({
  schema: { fields: FIELDS },
  partition: { key: {} },
  rows: [{ timestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(), seq }],
});

describe('requestedWaitMs', () => {
  test('Prefer: wait=N (capped) wins, then ?wait=true, then the route default', () => {
    expect(requestedWaitMs('wait=5', undefined)).toBe(5_000);
    expect(requestedWaitMs('respond-async, wait=7', 'true')).toBe(7_000);
    expect(requestedWaitMs('wait=600', undefined)).toBe(MAX_WAIT_MS);
    expect(requestedWaitMs(undefined, 'true')).toBe(MAX_WAIT_MS);
    expect(requestedWaitMs(undefined, '1')).toBe(MAX_WAIT_MS);
    expect(requestedWaitMs(undefined, 'false')).toBe(0);
    expect(requestedWaitMs(undefined, undefined)).toBe(0);
    expect(requestedWaitMs(undefined, undefined, true)).toBe(MAX_WAIT_MS);
  });
});

describe('waiting longer than the idle timeout', () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({ TIMESTORE_HTTP_IDLE_TIMEOUT_SECONDS: '1', TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400' });
  }, 60_000);
  afterAll(() => ts?.stop());

  test('ingest and lifecycle waits answer 202 with Location and statusUrl when the wait runs out', async () => {
    const sql = ts.sql;
    for (const seq of [1, 2]) expect((await postJson(`${ts.url}/datasets/waited/ingest?wait=true`, batch(seq))).status).toBe(201);
    const dataset = (await findDataset(sql, 'waited'))!;

    // Publishes wait for this lock, so neither job can finish while it is held.
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = sql.begin(async (tx) => {
      await tx`SELECT id FROM datasets WHERE id = ${dataset.id} FOR NO KEY UPDATE`;
      locked();
      await released;
    });
    await isLocked;

    // Eight seconds of silence on connections the server otherwise closes after one. (Bun drops
    // a silent request without a body, like `curl -X POST …/lifecycle?wait=true`, at its idle
    // timeout; this one was seen answering nothing after about 29 s with the 30 s default.)
    const wait = { prefer: 'wait=8' };
    const [ingested, lifecycle] = await Promise.all([
      postJson(`${ts.url}/datasets/waited/ingest`, batch(3), wait),
      fetch(`${ts.url}/admin/datasets/waited/lifecycle`, { method: 'POST', headers: wait }).then(async (res) => ({
        status: res.status,
        headers: res.headers,
        body: (await res.json()) as Record<string, any>,
      })),
    ]);
    release();
    await holder;

    expect(ingested.status).toBe(202);
    expect(ingested.body.statusUrl).toBe(`/ingestion/jobs/${ingested.body.jobId}`);
    expect(ingested.headers.get('location')).toBe(ingested.body.statusUrl);
    expect(lifecycle.status).toBe(202);
    expect(lifecycle.body).toMatchObject({ kind: 'lifecycle', jobId: lifecycle.body.id, statusUrl: `/admin/jobs/${lifecycle.body.id}` });
    expect(['queued', 'running']).toContain(lifecycle.body.state);
    expect(lifecycle.headers.get('location')).toBe(lifecycle.body.statusUrl);

    // Both Locations lead to the job, which finishes once the lock is gone.
    for (const url of [ingested.body.statusUrl, lifecycle.body.statusUrl]) {
      let state = '';
      for (let i = 0; i < 300 && state !== 'succeeded'; i++) {
        const res = await fetch(`${ts.url}${url}`);
        expect(res.status).toBe(200);
        state = ((await res.json()) as { state: string }).state;
        if (state !== 'succeeded') await Bun.sleep(100);
      }
      expect(state).toBe('succeeded');
    }
  }, 60_000);

  test('the OpenAPI document declares the Location header of every 202', async () => {
    const doc = (await (await fetch(`${ts.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown> }> }>>;
    };
    const accepted = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops).filter(([, op]) => op.responses?.['202']).map(([method, op]) => ({ path, method, headers: op.responses['202']!.headers })),
    );
    expect(accepted.map((a) => `${a.method} ${a.path}`).sort()).toEqual(['post /admin/datasets/{datasetId}/lifecycle', 'post /datasets/{datasetSlug}/ingest']);
    for (const a of accepted) expect(Object.keys(a.headers ?? {})).toEqual(['Location']);
  });
});

describe('POST …/lifecycle on a server whose lifecycle is off', () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer({ TIMESTORE_LIFECYCLE_ENABLED: 'false', TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400' });
  }, 60_000);
  afterAll(() => ts?.stop());

  test('answers 503 lifecycle_not_running while no process runs lifecycle jobs, and runs the job once one does', async () => {
    const sql = ts.sql;
    expect((await postJson(`${ts.url}/datasets/unattended/ingest?wait=true`, batch(1))).status).toBe(201);

    const refused = await postJson(`${ts.url}/admin/datasets/unattended/lifecycle?wait=true`, {});
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('lifecycle_not_running');
    expect(refused.body.error.message).toContain('timestore lifecycle');
    expect(await sql`SELECT id FROM jobs WHERE kind = 'lifecycle'`).toHaveLength(0);

    // A `timestore lifecycle` process on the same catalog: it schedules a round at start.
    const lifecycle = await startLifecycleProcess({ ...ts.config, lifecycle: { ...ts.config.lifecycle, enabled: true } }, silentLog, { once: false });
    try {
      for (let i = 0; i < 300; i++) {
        if ((await sql`SELECT 1 FROM lifecycle_schedule WHERE last_run_at IS NOT NULL`).length > 0) break;
        await Bun.sleep(50);
      }
      const ran = await postJson(`${ts.url}/admin/datasets/unattended/lifecycle?wait=true`, {});
      expect(ran.status).toBe(200);
      expect(ran.body).toMatchObject({ kind: 'lifecycle', state: 'succeeded' });
    } finally {
      await lifecycle.shutdown('test finished');
    }
  }, 60_000);
});
