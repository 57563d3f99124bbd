/**
 * Reader pins: a stream that started on manifest version v keeps the files of v however long it
 * lives. Compaction replaces them and garbage collection runs with no grace period while the
 * stream is paused; the stream still returns every row, and the files are collected only once it
 * has ended.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { findDataset } from '../../src/catalog/datasets.ts';
import { listActivePartitions } from '../../src/catalog/manifests.ts';
import { listReaderPins } from '../../src/catalog/reader-pins.ts';
import type { Partition } from '../../src/model/records.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const BATCHES = 12;
const ROWS_PER_BATCH = 5_000;
const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'seq', type: 'integer' },
  { name: 'note', type: 'string' },
];
// Rows of about 350 bytes as NDJSON: the answer (about 20 MB) is far larger than what the sockets
// between server and client buffer, so a client that stops reading stops the stream mid-way.
const NOTE = 'x'.repeat(300);

let ts: TestServer;
const sql = () => ts.sql;

beforeAll(async () => {
  // Two worker threads: the paused stream holds one, compaction needs the other.
  ts = await startTestServer({ TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400', TIMESTORE_WORKER_THREADS: '2' });
}, 60_000);
afterAll(() => ts?.stop());

async function runLifecycle(slug: string): Promise<{ compaction: { partitionsMerged: number }; filesDeleted: { files: number } }> {
  const res = await postJson(`${ts.url}/admin/datasets/${slug}/lifecycle?wait=true`, {});
  expect(res.status).toBe(200);
  expect(res.body.state).toBe('succeeded');
  return res.body.result;
}

async function active(slug: string): Promise<Partition[]> {
  const dataset = (await findDataset(sql(), slug))!;
  return listActivePartitions(sql(), { datasetId: dataset.id, version: dataset.manifestVersion });
}

/** Starts an NDJSON stream of every row; returns its reader once the first bytes have arrived. */
async function startStream(slug: string) {
  const res = await fetch(`${ts.url}/datasets/${slug}/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/x-ndjson' },
    body: JSON.stringify({ timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' }, columns: ['seq', 'note'], limit: BATCHES * ROWS_PER_BATCH }),
  });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  expect(first.done).toBe(false);
  return {
    /** Reads the rest; returns the seq of every row, in order of arrival. */
    async finish(): Promise<number[]> {
      const decoder = new TextDecoder();
      let text = decoder.decode(first.value, { stream: true });
      for (;;) {
        const next = await reader.read();
        if (next.done) break;
        text += decoder.decode(next.value, { stream: true });
      }
      text += decoder.decode();
      return text.split('\n').filter((line) => line !== '').map((line) => (JSON.parse(line) as { seq: number }).seq);
    },
  };
}

async function fileExists(p: Partition): Promise<boolean> {
  return Bun.file(new URL(p.location).pathname).exists();
}

test('a paused stream keeps the files of its version through compaction and GC with no grace; they go once it ends', async () => {
  for (let b = 0; b < BATCHES; b++) {
    const rows = Array.from({ length: ROWS_PER_BATCH }, (_, i) => {
      const seq = b * ROWS_PER_BATCH + i;
      return { timestamp: new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(), seq, note: NOTE };
    });
    const res = await postJson(`${ts.url}/datasets/pinned/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: {} }, rows });
    expect(res.status).toBe(201);
  }
  const retention = await fetch(`${ts.url}/admin/datasets/pinned/retention`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ rules: {}, deleteGraceMinutes: 0 }),
  });
  expect(retention.status).toBe(200);
  const dataset = (await findDataset(sql(), 'pinned'))!;
  const inputs = await active('pinned');
  expect(inputs).toHaveLength(BATCHES);

  const stream = await startStream('pinned');
  expect((await listReaderPins(sql(), dataset.id)).map((p) => p.manifestVersion)).toEqual([dataset.manifestVersion]);

  const compacted = await runLifecycle('pinned');
  expect(compacted.compaction.partitionsMerged).toBe(BATCHES);
  expect(compacted.filesDeleted.files).toBe(0);
  // Long past any grace period or query timeout: still kept, the stream reads them.
  await sql()`UPDATE manifest_versions SET created_at = created_at - interval '1 day' WHERE dataset_id = ${dataset.id}`;
  expect((await runLifecycle('pinned')).filesDeleted.files).toBe(0);
  for (const p of inputs) expect(await fileExists(p)).toBe(true);

  const seqs = await stream.finish();
  expect(seqs).toHaveLength(BATCHES * ROWS_PER_BATCH);
  expect(seqs).toEqual(Array.from({ length: BATCHES * ROWS_PER_BATCH }, (_, i) => i));

  // Once the stream has ended its pin goes, and the next collection deletes the inputs' files.
  const deadline = Date.now() + 30_000;
  while ((await listReaderPins(sql(), dataset.id)).length > 0) {
    if (Date.now() > deadline) throw new Error('the pin outlived its stream');
    await Bun.sleep(200);
  }
  expect((await runLifecycle('pinned')).filesDeleted.files).toBe(BATCHES);
  for (const p of inputs) expect(await fileExists(p)).toBe(false);
  const [merged] = await active('pinned');
  expect(await fileExists(merged!)).toBe(true);
}, 120_000);
