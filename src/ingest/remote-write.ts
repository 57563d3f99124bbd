/**
 * Accepting a Prometheus remote write request: one batch per metric (formats/remote-write.ts),
 * each accepted like any batch (accept.ts: checked against its dataset, staged, queued).
 *
 * The whole request is decoded and checked before any batch is accepted, so a malformed request
 * stores nothing (400). Then every metric's dataset is checked for the caller's write scopes, and
 * the batches are accepted a few at a time. Prometheus retries a request on 5xx and drops it on
 * 4xx, and the answer is made for that:
 * - every batch accepted: done (204);
 * - a batch refused by its dataset (a field type conflict with an existing dataset of that name,
 *   an archived dataset): the other metrics are still stored, and the first refusal is the answer
 *   (its 4xx, naming every refused metric), as Prometheus's own receiver keeps what it could append;
 * - a failure of storage or catalog: the answer is its 5xx, and Prometheus sends the same body
 *   again. Each batch carries an idempotency key made from the body, so the metrics already
 *   queued by the first attempt are replayed, not written twice.
 */
import type { Job } from '../catalog/job-table.ts';
import { INGEST_REFUSAL_CODES } from '../model/constraints.ts';
import { AppError } from '../model/errors.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type AcceptDeps, acceptBatch } from './accept.ts';
import { decodeRemoteWrite, type MetricBatch } from './formats/remote-write.ts';

/** Batches of one request accepted at the same time (each is a staging write and a catalog transaction). */
const CONCURRENCY = 4;

export interface RemoteWriteRequest {
  /** The body as received: snappy-compressed protobuf. */
  body: Uint8Array;
  datasetPrefix: string;
  actor: string | null;
  traceParent: string | null;
  /** Throws (401/403) when the caller may not write to this dataset. */
  authorizeDataset(slug: string): Promise<void>;
}

export interface RemoteWriteOutcome {
  /** One per metric: the job writing it (an earlier request's, when replayed). */
  jobs: Job[];
  series: number;
  samples: number;
  staleMarkers: number;
}

export async function acceptRemoteWrite(
  deps: AcceptDeps & { maxBodyBytes: number; metrics?: Metrics },
  request: RemoteWriteRequest,
): Promise<RemoteWriteOutcome> {
  const decoded = decodeRemoteWrite(request.body, { datasetPrefix: request.datasetPrefix, maxUncompressedBytes: deps.maxBodyBytes });
  for (const metric of decoded.metrics) await request.authorizeDataset(metric.slug);

  const jobs: Job[] = [];
  const refused: { metric: MetricBatch; error: AppError }[] = [];
  let failure: unknown = null;
  const pending = [...decoded.metrics];
  const acceptNext = async (): Promise<void> => {
    for (let metric = pending.shift(); metric && failure === null; metric = pending.shift()) {
      try {
        const accepted = await acceptBatch(deps, {
          datasetSlug: metric.slug,
          batch: metric.batch,
          idempotencyKey: metric.idempotencyKey,
          actor: request.actor,
          traceParent: request.traceParent,
        });
        jobs.push(accepted.job);
        deps.metrics?.ingestAccepted(metric.slug, {
          rows: metric.rows,
          bytes: Math.round((request.body.byteLength * metric.rows) / Math.max(decoded.samples, 1)),
          replayed: accepted.replayed,
        });
      } catch (err) {
        // The job of an earlier attempt of this very request is gone (written, then purged): stored.
        if (err instanceof AppError && err.code === 'idempotency_key_expired') continue;
        if (err instanceof AppError && INGEST_REFUSAL_CODES.has(err.code)) refused.push({ metric, error: err });
        else failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, pending.length) }, acceptNext));
  if (failure !== null) throw failure;
  if (refused.length > 0) throw withRefusals(refused, jobs.length);
  return { jobs, series: decoded.series, samples: decoded.samples, staleMarkers: decoded.staleMarkers };
}

/** The first refusal, its message and details extended with its metric and every other refused one. */
function withRefusals(refused: { metric: MetricBatch; error: AppError }[], stored: number): AppError {
  const { metric, error } = refused[0]!;
  const others = refused.length > 1 ? `; ${refused.length - 1} other metrics were refused too` : '';
  error.message = `metric "${metric.metric}" (dataset "${metric.slug}"): ${error.message}${others}; ${stored} metrics of the request were stored`;
  if (typeof error.details === 'object' && error.details !== null) {
    Object.assign(error.details, { metric: metric.metric, dataset: metric.slug, refusedMetrics: refused.map((r) => r.metric.metric), storedMetrics: stored });
  }
  return error;
}
