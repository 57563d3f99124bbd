/**
 * Workload isolation and admission control, end to end: streamed answers whose readers stop
 * reading hold the stream lane's threads, yet a batch is still written and published, a JSON
 * query still answers and /ready still says 200; once the stream lane's threads are busy and its
 * queue is full, one more stream is refused at once with 503 `queue_full` and `Retry-After`, in
 * the one error shape; and a queued stream runs as soon as a slow reader goes away.
 *
 * The slow readers speak HTTP over a raw socket and pause it after the first bytes: the kernel's
 * buffers fill, the server's writes wait, and the stream's worker waits for its batches to be
 * taken. Nothing here measures time: each step waits for an event or an answer.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { connect, type Socket } from 'node:net';
import { postIngest, postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
const SLUG = 'admission';
const BASE = Date.UTC(2026, 0, 1);
const RANGE = { start: new Date(BASE).toISOString(), end: new Date(BASE + 30 * 86_400_000).toISOString() };
/** Enough CSV (about 20 MB) that neither the sockets' buffers nor the stream's read-ahead hold all of it. */
const ROWS = 400_000;
const BATCH = 100_000;

beforeAll(async () => {
  ts = await startTestServer({
    TIMESTORE_WORKER_THREADS: '1',
    TIMESTORE_QUERY_MAX_ROWS: '1000000',
    TIMESTORE_QUERY_STREAM_THREADS: '2',
    TIMESTORE_QUERY_STREAM_QUEUE_MAX: '1',
    TIMESTORE_INGEST_CONCURRENCY: '1',
    TIMESTORE_INGEST_COALESCE_WAIT_MS: '0',
    TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400',
    TIMESTORE_COMPACTION_DELAY_SECONDS: '0',
  });
  for (let first = 0; first < ROWS; first += BATCH) {
    const res = await postJson(`${ts.url}/datasets/${SLUG}/ingest?wait=true`, {
      schema: {
        fields: [
          { name: 'timestamp', type: 'timestamp' },
          { name: 'host', type: 'string' },
          { name: 'value', type: 'double' },
        ],
      },
      partition: { key: {} },
      rows: Array.from({ length: BATCH }, (_, i) => ({
        timestamp: new Date(BASE + (first + i) * 1000).toISOString(),
        host: `host-${(first + i) % 50}`,
        value: ((first + i) % 997) / 7,
      })),
    });
    expect(res.status).toBe(201);
  }
}, 300_000);

afterAll(async () => {
  await ts?.stop();
});

const STREAM_BODY = JSON.stringify({ timeRange: RANGE, limit: 1_000_000 });

/** A client that asks for a CSV answer, takes its first bytes and then stops reading. */
class SlowReader {
  readonly socket: Socket;
  /** The status line and headers, once the first bytes arrived. */
  readonly head: Promise<string>;

  constructor(url: string) {
    const { hostname, port } = new URL(url);
    this.socket = connect({ host: hostname, port: Number(port) });
    this.socket.write(
      `POST /datasets/${SLUG}/query HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\nAccept: text/csv\r\n` +
        `Content-Length: ${Buffer.byteLength(STREAM_BODY)}\r\n\r\n${STREAM_BODY}`,
    );
    this.head = new Promise((resolve, reject) => {
      this.socket.once('error', reject);
      this.socket.once('data', (chunk: Buffer) => {
        this.socket.pause();
        resolve(chunk.toString('latin1').split('\r\n\r\n')[0]!);
      });
    });
  }

  /** Goes away without reading the rest (the server cancels the query). */
  leave(): void {
    this.socket.destroy();
  }
}

/** Polls `condition` until it holds (the test's own time limit bounds the wait). */
async function until(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await Bun.sleep(20);
}

const streamed = (accept = 'text/csv') =>
  fetch(`${ts.url}/datasets/${SLUG}/query`, { method: 'POST', headers: { 'content-type': 'application/json', accept }, body: STREAM_BODY });

test('two slow streaming readers stop neither ingest, nor JSON queries, nor /ready; a third stream waits, a fourth is refused with Retry-After', async () => {
  const first = new SlowReader(ts.url);
  const second = new SlowReader(ts.url);
  expect(await first.head).toStartWith('HTTP/1.1 200');
  expect(await second.head).toStartWith('HTTP/1.1 200');

  // The third waits in the stream lane's queue (one place) for a thread. The fourth is sent only
  // once the third is seen queued: two requests sent back to back may reach the server either way.
  const third = streamed();
  await until(async () => /^timestore_worker_pool_queue_size\{workload="stream"\} 1$/m.test(await (await fetch(`${ts.url}/metrics`)).text()));

  // Both stream threads are held and the queue is full: the fourth is refused before anything runs.
  const refused = await streamed('application/x-ndjson');
  expect(refused.status).toBe(503);
  expect(refused.headers.get('retry-after')).toBe('5');
  expect(refused.headers.get('content-type')).toStartWith('application/json');
  const body = (await refused.json()) as { error: { code: string; message: string; details: Record<string, unknown> } };
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error.code).toBe('queue_full');
  expect(body.error.message).toContain('stream');
  expect(body.error.details).toEqual({ workload: 'stream', threads: 2, maxQueue: 1, retryAfterSeconds: 5 });

  // Meanwhile an ingest batch is written and published, a JSON query answers, and /ready is 200.
  const lateRow = JSON.stringify({ timestamp: new Date(BASE + ROWS * 1000).toISOString(), host: 'late', value: 1 });
  const ingest = await postIngest(ts.url, SLUG, 'application/x-ndjson', `${lateRow}\n`, 'wait=true');
  expect(ingest.status).toBe(201);
  const late = await postJson(`${ts.url}/datasets/${SLUG}/query`, { timeRange: RANGE, filters: { columns: { host: { eq: 'late' } } } });
  expect(late.status).toBe(200);
  expect(late.body.rows).toHaveLength(1);
  const ready = await fetch(`${ts.url}/ready`);
  expect(ready.status).toBe(200);
  expect(((await ready.json()) as { checks: Record<string, string> }).checks.workers).toBe('ok');

  const metrics = await (await fetch(`${ts.url}/metrics`)).text();
  expect(metrics).toMatch(/^timestore_worker_pool_refused_total\{workload="stream"\} 1$/m);

  // A slow reader goes away: its thread is freed and the waiting stream runs to its end.
  first.leave();
  const answer = await third;
  expect(answer.status).toBe(200);
  const lines = (await answer.text()).trimEnd().split('\r\n');
  expect(lines[0]).toBe('timestamp,host,value');
  // The header and every row of the manifest version it started on (the late row came after).
  expect(lines).toHaveLength(ROWS + 1);

  // The other goes away too: both threads are free again, so two more streams both run (were a
  // thread still held, the second would wait in the queue until the worker gave up on its reader,
  // beyond this test's time limit).
  second.leave();
  const again = await Promise.all([streamed(), streamed('application/x-ndjson')]);
  expect(again.map((r) => r.status)).toEqual([200, 200]);
  const [csv, ndjson] = await Promise.all(again.map((r) => r.text()));
  expect(csv!.trimEnd().split('\r\n')).toHaveLength(ROWS + 2);
  expect(ndjson!.trimEnd().split('\n')).toHaveLength(ROWS + 1);
}, 90_000);
