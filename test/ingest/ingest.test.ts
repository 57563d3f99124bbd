/** POST /datasets/:slug/ingest end to end: HTTP → job table → DuckDB-written Parquet → published manifest. */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { findDataset, updateDataset } from '../../src/catalog/datasets.ts';
import { listSchemaVersions } from '../../src/catalog/schema-versions.ts';
import { readBack as readBackRows } from '../harness/read-back.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
beforeAll(async () => {
  ts = await startTestServer();
});
afterAll(() => ts.stop());

const fields = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'temperature_c', type: 'double' },
  { name: 'status', type: 'string' },
  { name: 'reading_id', type: 'integer' },
  { name: 'ok', type: 'boolean' },
];

function batch(rows: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  return { schema: { fields }, partition: { key: { instrument: 'A' } }, rows, ...extra };
}

function rowsAt(start: number, count: number, over: Record<string, unknown> = {}) {
  return Array.from({ length: count }, (_, i) => ({
    timestamp: new Date(Date.UTC(2026, 0, 1) + (start + i) * 60_000).toISOString(),
    temperature_c: 20 + (start + i) / 10,
    status: i % 2 ? 'ok' : 'héllo "quoted" ✓',
    reading_id: start + i,
    ok: i % 3 === 0,
    ...over,
  }));
}

const ingest = (slug: string, body: unknown, headers: Record<string, string> = {}, query = '') =>
  postJson(`${ts.url}/datasets/${slug}/ingest${query}`, body, headers);

async function waitForState(jobId: string, timeoutMs = 15_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${ts.url}/ingestion/jobs/${jobId}`);
    const job = (await res.json()) as { state: string };
    if (job.state === 'succeeded' || job.state === 'failed' || Date.now() > deadline) return job;
    await Bun.sleep(20);
  }
}

const readBack = (slug: string, order = 'timestamp') => readBackRows(ts, slug, { order });

const stagingFiles = () => {
  try {
    return readdirSync(join(ts.config.storageRoot, 'partitions/staging'), { recursive: true }).map(String).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
};

/**
 * The staged files left once staging logs (batches sent at once share one) have had their time to
 * go: a log is closed a second after it opens and deleted once its batches are written. Any other
 * staged file is answered at once: a body of its own goes as soon as its batch is written or refused.
 */
async function stagingFilesLeft(): Promise<string[]> {
  for (let i = 0; i < 50 && stagingFiles().length > 0 && stagingFiles().every((f) => basename(f).startsWith('log-')); i++) await Bun.sleep(100);
  return stagingFiles();
}
// Ingest jobs only: a publish also queues its dataset's lifecycle job (TIMESTORE_COMPACTION_DELAY_SECONDS).
const jobCount = async () => Number((await ts.sql`SELECT count(*)::int AS n FROM jobs WHERE kind = 'ingest'`)[0]?.n);

describe('first ingest', () => {
  test('202 with a job; the job publishes dataset, schema v1, manifest v1 and a Parquet file that reads back row for row', async () => {
    const rows = rowsAt(0, 50);
    const accepted = await ingest('first', batch(rows, { datasetName: 'First dataset' }));
    expect(accepted.status).toBe(202);
    expect(accepted.body).toMatchObject({ state: 'queued', statusUrl: `/ingestion/jobs/${accepted.body.jobId}`, replayed: false });
    expect(accepted.headers.get('location')).toBe(`/ingestion/jobs/${accepted.body.jobId}`);

    const job = await waitForState(accepted.body.jobId);
    expect(job).toMatchObject({ state: 'succeeded', attempts: 1, lastError: null });
    expect(job.result).toMatchObject({ manifestVersion: 1, schemaVersion: 1, rowCount: 50, dataset: { slug: 'first' } });
    expect(job.result.partitions).toHaveLength(1);
    expect(job.result.partitions[0]).toMatchObject({ rowCount: 50, partitionKey: { instrument: 'A' } });
    expect(job.result.partitions[0].location).toStartWith('file://');

    const dataset = await findDataset(ts.sql, 'first');
    expect(dataset).toMatchObject({ name: 'First dataset', schemaVersion: 1, manifestVersion: 1, timestampColumn: 'timestamp', status: 'active' });
    const [v1] = await listSchemaVersions(ts.sql, dataset!.id);
    expect(v1?.fields.map((f) => [f.name, f.type])).toEqual(fields.map((f) => [f.name, f.type]));

    const back = await readBack('first');
    expect(back).toEqual(rows);
    expect(await stagingFilesLeft()).toEqual([]); // staged bodies are removed once published
  });

  test('?wait=true and Prefer: wait=N answer 201 once the rows are queryable', async () => {
    const waited = await ingest('waited', batch(rowsAt(0, 3)), {}, '?wait=true');
    expect(waited.status).toBe(201);
    expect(waited.body).toMatchObject({ state: 'succeeded', result: { manifestVersion: 1, rowCount: 3 } });
    const preferred = await ingest('waited', batch(rowsAt(3, 2)), { prefer: 'wait=10' });
    expect(preferred.status).toBe(201);
    expect(preferred.body.result.manifestVersion).toBe(2);
    expect(await readBack('waited')).toHaveLength(5);
  });

  test('GET /ingestion/jobs/:id is 404 for an unknown job', async () => {
    for (const id of ['00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      const res = await fetch(`${ts.url}/ingestion/jobs/${id}`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as any).error.code).toBe('not_found');
    }
  });
});

describe('schema evolution', () => {
  test('new nullable fields make schema v2; older rows read back with nulls; a type change is a 409 that stores nothing', async () => {
    await ingest('evolving', batch(rowsAt(0, 2)), {}, '?wait=true');
    const wider = { schema: { fields: [...fields, { name: 'humidity', type: 'double' }] }, partition: { key: { instrument: 'A' } }, rows: rowsAt(2, 1, { humidity: 0.5 }) };
    const evolved = await ingest('evolving', wider, {}, '?wait=true');
    expect(evolved.status).toBe(201);
    expect(evolved.body.result.schemaVersion).toBe(2);
    const back = await readBack('evolving');
    expect(back.map((r) => r.humidity)).toEqual([null, null, 0.5]);

    const jobsBefore = await jobCount();
    const conflicting = { schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'reading_id', type: 'string' }] }, partition: { key: {} }, rows: [{ timestamp: '2026-01-01T00:00:00Z', reading_id: 'x' }] };
    const refused = await ingest('evolving', conflicting);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('field_type_conflict');
    expect(refused.body.error.message).toContain('field "reading_id" is integer in schema version 2 but the batch declares it string');
    expect(await jobCount()).toBe(jobsBefore);
    expect((await findDataset(ts.sql, 'evolving'))?.schemaVersion).toBe(2);
  });
});

describe('validation stores nothing', () => {
  const [r0, r1, r2] = rowsAt(0, 3) as Record<string, unknown>[];
  const good: [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>] = [r0!, r1!, r2!];
  test.each([
    ['empty_batch', batch([]), undefined, undefined],
    ['missing_timestamp', batch([good[0], { ...good[1], timestamp: undefined }]), 1, 'timestamp'],
    ['invalid_timestamp', batch([good[0], good[1], { ...good[2], timestamp: '2026-02-30T00:00:00Z' }]), 2, 'timestamp'],
    ['invalid_type', batch([{ ...good[0], temperature_c: 'warm' }]), 0, 'temperature_c'],
    ['invalid_type', batch([{ ...good[0], reading_id: 1.5 }]), 0, 'reading_id'],
    ['unknown_field', batch([{ ...good[0], colour: 'red' }]), 0, 'colour'],
    ['integer_out_of_range', batch([{ ...good[0], reading_id: 2 ** 60 }]), 0, 'reading_id'],
    ['timestamp_out_of_range', batch(good, { partition: { key: { instrument: 'A' }, timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-01T00:01:00Z' } } }), 1, 'timestamp'],
    ['invalid_field_name', { ...batch(good), schema: { fields: [...fields, { name: 'drop table', type: 'string' }] } }, undefined, 'drop table'],
    ['missing_timestamp_field', { ...batch(good), schema: { fields: [{ name: 'v', type: 'double' }] } }, undefined, undefined],
    ['invalid_partition_key', batch(good, { partition: { key: { 'bad key': 'A' } } }), undefined, 'bad key'],
    ['validation_failed', { ...batch(good), schema: { fields: [{ name: 'timestamp', type: 'datetime' }] } }, undefined, undefined],
    ['validation_failed', { rows: good }, undefined, undefined],
  ])('%s → 400 naming the first bad row and field, and nothing is stored', async (code, body, index, field) => {
    const jobsBefore = await jobCount();
    const res = await ingest('refused', body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe(code);
    expect(res.body.error.message.length).toBeGreaterThan(10);
    if (index !== undefined) expect(res.body.error.details.index).toBe(index);
    if (field !== undefined) expect(res.body.error.details.field).toBe(field);
    expect(await jobCount()).toBe(jobsBefore);
    expect(await findDataset(ts.sql, 'refused')).toBeNull();
    expect(await stagingFilesLeft()).toEqual([]);
  });

  test('a body that is not JSON is a 400, another content type a 415', async () => {
    const broken = await ingest('refused', '{"rows": [');
    expect(broken.status).toBe(400);
    expect(broken.body.error.code).toBe('invalid_json');
    const res = await fetch(`${ts.url}/datasets/refused/ingest`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
    expect(res.status).toBe(415);
    expect(((await res.json()) as any).error.code).toBe('unsupported_media_type');
  });
});

describe('idempotency', () => {
  test('same key and body: the first job, written once; same key, other body: 409; the header wins over the body field', async () => {
    const body = batch(rowsAt(0, 4));
    const first = await ingest('idem', body, { 'Idempotency-Key': 'batch-1' }, '?wait=true');
    expect(first.status).toBe(201);
    const again = await ingest('idem', body, { 'idempotency-key': 'batch-1' });
    expect(again.status).toBe(201);
    expect(again.body).toMatchObject({ id: first.body.id, replayed: true });
    expect(await readBack('idem')).toHaveLength(4);

    const other = await ingest('idem', batch(rowsAt(10, 4)), { 'Idempotency-Key': 'batch-1' });
    expect(other.status).toBe(409);
    expect(other.body.error.code).toBe('idempotency_key_reused');

    const viaBody = await ingest('idem', { ...batch(rowsAt(20, 1)), idempotencyKey: 'in-body' }, {}, '?wait=true');
    const viaBodyAgain = await ingest('idem', { ...batch(rowsAt(20, 1)), idempotencyKey: 'in-body' });
    expect(viaBodyAgain.body.id ?? viaBodyAgain.body.jobId).toBe(viaBody.body.id);
  });

  test('concurrent duplicates become one job', async () => {
    const body = batch(rowsAt(0, 5));
    const answers = await Promise.all(Array.from({ length: 6 }, () => ingest('idem-race', body, { 'Idempotency-Key': 'k' })));
    const ids = new Set(answers.map((a) => a.body.jobId ?? a.body.id));
    expect(ids.size).toBe(1);
    expect(answers.filter((a) => a.body.replayed === false)).toHaveLength(1);
    await waitForState([...ids][0] as string);
    expect(await readBack('idem-race')).toHaveLength(5);
    expect(await stagingFilesLeft()).toEqual([]);
  });
});

describe('concurrency', () => {
  test('8 concurrent clients on one dataset: every row present exactly once, manifest versions consecutive', async () => {
    const clients = 8;
    const batchesPerClient = 6;
    const rowsPerBatch = 25;
    const jobIds: string[] = [];
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let b = 0; b < batchesPerClient; b++) {
          const rows = rowsAt((c * batchesPerClient + b) * rowsPerBatch, rowsPerBatch, { status: `client-${c}` });
          const res = await ingest('busy', { ...batch(rows), partition: { key: { client: String(c % 3) } } });
          expect(res.status).toBe(202);
          jobIds.push(res.body.jobId);
        }
      }),
    );
    for (const id of jobIds) expect((await waitForState(id)).state).toBe('succeeded');
    const back = await readBack('busy', 'reading_id');
    const total = clients * batchesPerClient * rowsPerBatch;
    expect(back).toHaveLength(total);
    expect(back.map((r) => r.reading_id)).toEqual(Array.from({ length: total }, (_, i) => i));

    const dataset = await findDataset(ts.sql, 'busy');
    const versions = await ts.sql<{ version: number }[]>`
      SELECT version FROM manifest_versions WHERE dataset_id = ${dataset!.id} ORDER BY version`;
    expect(versions.map((v) => v.version)).toEqual(Array.from({ length: dataset!.manifestVersion }, (_, i) => i + 1));
  });
});

describe('dataset status', () => {
  test('an inactive or archived dataset refuses new rows with 409 and stores nothing', async () => {
    await ingest('paused', batch(rowsAt(0, 1)), {}, '?wait=true');
    const dataset = await findDataset(ts.sql, 'paused');
    for (const status of ['inactive', 'archived'] as const) {
      await updateDataset(ts.sql, dataset!.id, { status });
      const jobsBefore = await jobCount();
      const res = await ingest('paused', batch(rowsAt(1, 1)));
      expect(res.status).toBe(409);
      expect(res.body.error).toMatchObject({ code: `dataset_${status}`, message: `dataset "paused" is ${status} and accepts no new rows` });
      expect(await jobCount()).toBe(jobsBefore);
    }
    expect(await stagingFilesLeft()).toEqual([]);
  });
});

describe('limits and modes', () => {
  test('inline mode answers 201 without being asked; an oversized body is a 413', async () => {
    const inline = await startTestServer({ TIMESTORE_INGEST_MODE: 'inline', TIMESTORE_INGEST_MAX_BODY_BYTES: '4096' });
    try {
      const res = await postJson(`${inline.url}/datasets/inline/ingest`, batch(rowsAt(0, 2)));
      expect(res.body).toMatchObject({ state: 'succeeded' });
      expect(res.status).toBe(201);
      expect(res.body.result.rowCount).toBe(2);
      const big = await postJson(`${inline.url}/datasets/inline/ingest`, batch(rowsAt(0, 100)));
      expect(big.status).toBe(413);
      expect(big.body.error).toMatchObject({ code: 'payload_too_large', details: { limitBytes: 4096 } });
    } finally {
      await inline.stop();
    }
  });
});
