/**
 * What the fault tests share: a client that keeps sending numbered batches with idempotency keys
 * until each is acknowledged (as a careful producer would through an outage), and the
 * accounting afterwards: every acknowledged row must be queryable exactly once.
 */
import type { Sql } from 'postgres';
import { findDataset } from '../../src/catalog/datasets.ts';
import { postJson } from './server.ts';

export const BASE_TIME = Date.parse('2026-01-01T00:00:00Z');

/** Batch `i` of a load: `rows` rows with sequence numbers i*rows … i*rows+rows-1, 100 ms apart. */
export function loadBatch(i: number, rows: number): unknown {
  return {
    schema: {
      fields: [
        { name: 'timestamp', type: 'timestamp' },
        { name: 'seq', type: 'integer' },
        { name: 'v', type: 'double' },
      ],
    },
    partition: { key: { part: `p${i % 4}` } },
    rows: Array.from({ length: rows }, (_, j) => {
      const seq = i * rows + j;
      return { timestamp: new Date(BASE_TIME + seq * 100).toISOString(), seq, v: seq / 2 };
    }),
  };
}

export interface LoadReport {
  /** Batches answered 201/202. */
  acknowledged: number;
  /** Requests sent, retries included. */
  requests: number;
  /** Answers that were not an acknowledgement, by `status code` (e.g. `503 catalog_unavailable`), and refused connections. */
  refusals: Map<string, number>;
}

export interface LoadOptions {
  url: string;
  slug: string;
  batches: number;
  rowsPerBatch: number;
  /** Concurrent clients; batch i goes to client i % clients. */
  clients: number;
  /** Give up on one batch after this long (the test fails then). */
  batchDeadlineMs?: number;
  /** Called after each acknowledgement, with the number so far. */
  onAcknowledged?: (count: number) => void | Promise<void>;
}

/** Sends every batch until it is acknowledged; a network error or 5xx is retried with the same key. */
export async function runLoad(o: LoadOptions): Promise<LoadReport> {
  const report: LoadReport = { acknowledged: 0, requests: 0, refusals: new Map() };
  const refuse = (what: string) => report.refusals.set(what, (report.refusals.get(what) ?? 0) + 1);
  const send = async (i: number) => {
    const deadline = Date.now() + (o.batchDeadlineMs ?? 180_000);
    for (;;) {
      if (Date.now() > deadline) throw new Error(`batch ${i} was not acknowledged in time; refusals: ${JSON.stringify([...report.refusals])}`);
      report.requests += 1;
      try {
        const res = await postJson(`${o.url}/datasets/${o.slug}/ingest`, loadBatch(i, o.rowsPerBatch), {
          'idempotency-key': `batch-${i}`,
        });
        if (res.status === 201 || res.status === 202) {
          report.acknowledged += 1;
          await o.onAcknowledged?.(report.acknowledged);
          return;
        }
        refuse(`${res.status} ${res.body?.error?.code ?? ''}`.trim());
        if (res.status < 500) throw new Error(`batch ${i} refused with ${res.status}: ${JSON.stringify(res.body)}`);
      } catch (err) {
        if ((err as Error).message.startsWith(`batch ${i} refused`)) throw err;
        refuse('no answer'); // refused, reset or dropped connection
      }
      await Bun.sleep(100);
    }
  };
  await Promise.all(
    Array.from({ length: o.clients }, async (_, c) => {
      for (let i = c; i < o.batches; i += o.clients) await send(i);
    }),
  );
  return report;
}

/** Waits until no ingest job of the dataset is queued or running; returns the jobs per state. */
export async function settle(sql: Sql, slug: string, timeoutMs = 180_000): Promise<Record<string, number>> {
  const dataset = await findDataset(sql, slug);
  if (!dataset) throw new Error(`dataset ${slug} does not exist`);
  return untilSettled(slug, timeoutMs, async () => {
    const rows = await sql<{ state: string; n: number }[]>`
      SELECT state, count(*)::int AS n FROM jobs WHERE dataset_id = ${dataset.id} AND kind = 'ingest' GROUP BY state`;
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  });
}

/**
 * As {@link settle}, through the server's own job listing (`GET /admin/jobs`): for the embedded
 * catalog, which no other process may open.
 */
export async function settleOverHttp(url: string, slug: string, timeoutMs = 180_000): Promise<Record<string, number>> {
  const count = async (state: string): Promise<number> => {
    let n = 0;
    let cursor: string | null = null;
    do {
      const page = new URL(`${url}/admin/jobs`);
      page.search = new URLSearchParams({ dataset: slug, kind: 'ingest', state, limit: '500', ...(cursor ? { cursor } : {}) }).toString();
      const res = await fetch(page);
      if (res.status !== 200) throw new Error(`GET ${page} answered ${res.status}: ${await res.text()}`);
      const body = (await res.json()) as { jobs: unknown[]; nextCursor: string | null };
      n += body.jobs.length;
      cursor = body.nextCursor;
    } while (cursor);
    return n;
  };
  return untilSettled(slug, timeoutMs, async () => {
    const states = ['queued', 'running', 'succeeded', 'failed'];
    const counts = await Promise.all(states.map(count));
    return Object.fromEntries(states.flatMap((state, i) => (counts[i] ? [[state, counts[i]]] : [])));
  });
}

async function untilSettled(slug: string, timeoutMs: number, states: () => Promise<Record<string, number>>): Promise<Record<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await states();
    if (!now.queued && !now.running) return now;
    if (Date.now() > deadline) throw new Error(`jobs of ${slug} did not settle: ${JSON.stringify(now)}`);
    await Bun.sleep(250);
  }
}

/** Rows and distinct sequence numbers the server answers for the whole load. */
export async function countRows(url: string, slug: string): Promise<{ rows: number; distinct: number }> {
  const res = await postJson(`${url}/datasets/${slug}/query`, {
    timeRange: { start: new Date(BASE_TIME).toISOString(), end: new Date(BASE_TIME + 86_400_000).toISOString() },
    downsample: {
      intervalUnit: 'day',
      aggregations: [
        { fn: 'count', column: 'seq', alias: 'rows' },
        { fn: 'count_distinct', column: 'seq', alias: 'distinct' },
      ],
    },
  });
  if (res.status !== 200) throw new Error(`count query answered ${res.status}: ${JSON.stringify(res.body)}`);
  const row = res.body.rows[0] ?? { rows: 0, distinct: 0 };
  return { rows: Number(row.rows), distinct: Number(row.distinct) };
}

/** Retries a request until the server answers (it may be restarting). */
export async function whenAnswering<T>(run: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await run();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await Bun.sleep(200);
    }
  }
}
