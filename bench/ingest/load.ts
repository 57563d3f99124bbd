/**
 * The load: N concurrent HTTP clients send pre-built request bodies to one dataset, either as
 * fast as the server answers (closed loop) or paced at a target rate (open loop: batch i is due
 * at start + rows-before-i / rate; a client that falls behind sends at once). A poller reads the
 * catalog's job table to see when each acknowledged batch became queryable (its job succeeded,
 * which commits in the same transaction as the manifest publish).
 */
import type { Sql } from 'postgres';
import { round } from './server.ts';

export interface LoadOptions {
  url: string;
  dataset: string;
  /** The bodies' type: JSON documents or NDJSON. */
  contentType: 'application/json' | 'application/x-ndjson';
  bodies: Uint8Array[];
  batchRows: number[];
  clients: number;
  /** Rows per second to pace at; undefined: as fast as possible. */
  rate?: number;
  sql: Sql;
  schema: string;
  pollMs: number;
  log: (message: string) => void;
}

export interface BatchRecord {
  index: number;
  rows: number;
  sentAt: number;
  ackAt: number;
  status: number;
  jobId?: string;
  /** When the poller first saw the job succeeded (performance.now() clock). */
  seenDoneAt?: number;
  /** The job's finished_at (the publish transaction's start, from PostgreSQL's clock), as epoch ms. */
  finishedAtEpoch?: number;
  state?: string;
}

export interface LoadResult {
  records: BatchRecord[];
  rows: number;
  /** first request sent → last 202 */
  ackSeconds: number;
  /** first request sent → last job seen succeeded */
  endToEndSeconds: number;
  ackRowsPerSecond: number;
  endToEndRowsPerSecond: number;
  /** acknowledgement → queryable (poller saw the job succeeded), ms */
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** acknowledgement → finished_at in the catalog (lower bound: the publish transaction's start), ms */
  finishedAtLatencyMs: { p50: number; p99: number; max: number };
  /** POST round trip (send → 202), ms */
  ackRoundTripMs: { p50: number; p99: number; max: number };
  failedJobs: number;
  errors: string[];
  /** Ingest jobs per publish, from the job results' coalescedJobs. */
  coalescedJobs: { mean: number; max: number; publishes: number };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/**
 * Resolves once a count query of dataset `slug` (TSBS data of 2016-01-01 and -02) sees `rows` rows, polled every 25 ms.
 * It counts a column every TSBS row has, since servers before issue 12's work (`599570a`) require one.
 */
export async function untilQueryable(serverUrl: string, slug: string, rows: number): Promise<void> {
  const count = {
    timeRange: { start: '2016-01-01T00:00:00Z', end: '2016-01-03T00:00:00Z' },
    downsample: { intervalUnit: 'day', intervalSize: 10, aggregations: [{ fn: 'count', column: 'usage_user', alias: 'n' }] },
  };
  for (;;) {
    const res = await fetch(`${serverUrl}/datasets/${slug}/query`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(count) });
    const answer = (await res.json()) as { rows: { n: number }[] };
    if (Number(answer.rows[0]?.n ?? 0) >= rows) return;
    await Bun.sleep(25);
  }
}

/**
 * `clients` closed-loop clients share requests 0 … count − 1, each sending its next as soon as its
 * last was answered; `send(index)` makes request `index` and throws on a refusal. Answers how many
 * milliseconds each request took, in the order they ended.
 */
export async function closedLoop(clients: number, count: number, send: (index: number) => Promise<void>): Promise<number[]> {
  let next = 0;
  const took: number[] = [];
  const client = async () => {
    while (next < count) {
      const index = next++;
      const sent = performance.now();
      await send(index);
      took.push(performance.now() - sent);
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  return took;
}

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const records: BatchRecord[] = [];
  const errors: string[] = [];
  const pending = new Map<string, BatchRecord[]>();
  const cumulative: number[] = [];
  let sum = 0;
  for (const n of o.batchRows) {
    cumulative.push(sum);
    sum += n;
  }
  // performance.now() ↔ epoch, to compare finished_at (PostgreSQL clock, same machine).
  const epochOffset = Date.now() - performance.now();

  let next = 0;
  let sending = true;
  const start = performance.now();
  const client = async () => {
    for (;;) {
      const index = next++;
      if (index >= o.bodies.length) return;
      if (o.rate) {
        const due = start + (cumulative[index]! / o.rate) * 1000;
        const wait = due - performance.now();
        if (wait > 1) await Bun.sleep(wait);
      }
      const record: BatchRecord = { index, rows: o.batchRows[index]!, sentAt: performance.now(), ackAt: 0, status: 0 };
      records.push(record);
      try {
        const res = await fetch(`${o.url}/datasets/${o.dataset}/ingest`, {
          method: 'POST',
          headers: { 'content-type': o.contentType },
          body: o.bodies[index]!,
        });
        const text = await res.text();
        record.ackAt = performance.now();
        record.status = res.status;
        if (res.status === 202 || res.status === 201) {
          const answer = JSON.parse(text) as { jobId?: string; id?: string };
          record.jobId = answer.jobId ?? answer.id;
          // Batches may share a job (patches/one-job-row-per-group.patch): each is seen done with it.
          if (record.jobId) {
            const sharing = pending.get(record.jobId);
            if (sharing) sharing.push(record);
            else pending.set(record.jobId, [record]);
          }
        } else if (errors.length < 10) {
          errors.push(`batch ${index}: ${res.status} ${text.slice(0, 300)}`);
        }
      } catch (err) {
        record.ackAt = performance.now();
        if (errors.length < 10) errors.push(`batch ${index}: ${(err as Error).message}`);
      }
    }
  };

  const coalesced: number[] = [];
  const poll = async () => {
    while (sending || pending.size > 0) {
      if (pending.size > 0) {
        const ids = [...pending.keys()];
        const rows = await o.sql.unsafe<{ id: string; state: string; finished: number; coalesced: number | null }[]>(
          `SELECT id::text AS id, state, extract(epoch FROM finished_at) * 1000 AS finished, (result ->> 'coalescedJobs')::int AS coalesced
           FROM ${o.schema}.jobs WHERE id = ANY($1::uuid[]) AND state IN ('succeeded', 'failed')`,
          [ids],
        );
        const seen = performance.now();
        for (const row of rows) {
          const group = pending.get(row.id);
          if (!group) continue;
          pending.delete(row.id);
          for (const record of group) {
            record.seenDoneAt = seen;
            record.state = row.state;
            record.finishedAtEpoch = Number(row.finished);
          }
          if (row.coalesced) coalesced.push(row.coalesced);
        }
      }
      await Bun.sleep(o.pollMs);
    }
  };

  const progress = setInterval(() => {
    const acked = records.filter((r) => r.ackAt > 0).length;
    o.log(`  … ${acked}/${o.bodies.length} acknowledged, ${pending.size} awaiting publish`);
  }, 10_000);
  const poller = poll();
  await Promise.all(Array.from({ length: o.clients }, client));
  sending = false;
  await poller;
  clearInterval(progress);

  const ok = records.filter((r) => r.jobId);
  const rows = ok.reduce((n, r) => n + r.rows, 0);
  const firstSent = Math.min(...records.map((r) => r.sentAt));
  const lastAck = Math.max(...records.map((r) => r.ackAt));
  const lastDone = Math.max(...ok.map((r) => r.seenDoneAt ?? 0));
  const latencies = ok.filter((r) => r.state === 'succeeded').map((r) => r.seenDoneAt! - r.ackAt);
  const finishedLatencies = ok.filter((r) => r.state === 'succeeded').map((r) => r.finishedAtEpoch! - (r.ackAt + epochOffset));
  const roundTrips = records.map((r) => r.ackAt - r.sentAt);
  // Each publish reports its coalescedJobs on every job it completed: publishes ≈ Σ 1/coalesced.
  const publishes = coalesced.reduce((n, c) => n + 1 / c, 0);
  return {
    records,
    rows,
    ackSeconds: round((lastAck - firstSent) / 1000, 3),
    endToEndSeconds: round((lastDone - firstSent) / 1000, 3),
    ackRowsPerSecond: Math.round(rows / ((lastAck - firstSent) / 1000)),
    endToEndRowsPerSecond: Math.round(rows / ((lastDone - firstSent) / 1000)),
    latencyMs: {
      p50: Math.round(percentile(latencies, 50)),
      p90: Math.round(percentile(latencies, 90)),
      p99: Math.round(percentile(latencies, 99)),
      max: Math.round(Math.max(...latencies)),
      mean: Math.round(latencies.reduce((a, b) => a + b, 0) / latencies.length),
    },
    finishedAtLatencyMs: {
      p50: Math.round(percentile(finishedLatencies, 50)),
      p99: Math.round(percentile(finishedLatencies, 99)),
      max: Math.round(Math.max(...finishedLatencies)),
    },
    ackRoundTripMs: {
      p50: Math.round(percentile(roundTrips, 50)),
      p99: Math.round(percentile(roundTrips, 99)),
      max: Math.round(Math.max(...roundTrips)),
    },
    failedJobs: ok.filter((r) => r.state === 'failed').length,
    errors,
    coalescedJobs: {
      mean: round(coalesced.length / Math.max(1, publishes), 1),
      max: Math.max(0, ...coalesced),
      publishes: Math.round(publishes),
    },
  };
}
