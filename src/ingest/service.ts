/**
 * The ingestion service the HTTP routes call: takes the request body as
 * received within the size limit in one of the accepted formats (chosen by
 * Content-Type), decodes it (formats/decodeBody, the same way for every
 * format), accepts the batch (accept.ts), and when asked waits until the job
 * that writes it has finished.
 */
import type { Sql } from 'postgres';
import type { CatalogCache } from '../catalog/lookup-cache.ts';
import type { StagingGroups } from './staging-groups.ts';
import type { JobGroups } from './job-groups.ts';
import { getJob, type Job } from '../catalog/job-table.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { StorageDrivers } from '../storage/index.ts';
import { acceptBatch, type IngestJobPayload } from './accept.ts';
import { type BodyFormat, refuse } from '../model/constraints.ts';
import type { Dataset } from '../model/records.ts';
import { bodyFormatOf, decodeBody } from './formats/index.ts';
import { acceptRemoteWrite, type RemoteWriteOutcome, type RemoteWriteRequest } from './remote-write.ts';
import { acceptLineProtocol, decodeContent, type InfluxApi, precisionOf } from './line-protocol.ts';

export interface IngestServiceOptions {
  sql: Sql;
  drivers: StorageDrivers;
  queue: string;
  defaultTargetName: string;
  idempotencyTtlSeconds: number;
  maxBodyBytes: number;
  /** TIMESTORE_INGEST_MAX_BATCH_ROWS. */
  maxBatchRows?: number;
  /** TIMESTORE_INGEST_MAX_FIELDS. */
  maxFields?: number;
  /** TIMESTORE_INGEST_MODE=inline: every request waits for its batch to be published. */
  inline: boolean;
  /** Wakes this process's job runner for the jobs just enqueued. */
  wake(enqueued: readonly Job[]): void;
  /** Schema versions and storage targets, kept across batches. */
  catalogCache: CatalogCache;
  /** Group commit of small bodies (one per process). */
  staging?: StagingGroups;
  /** Group commit of jobs (one per process). */
  jobs?: JobGroups;
  /** The job once finished, or as it is when the time is up; null when there is no such job. */
  waitForJob(jobId: string, timeoutMs: number): Promise<Job | null>;
  /** Accepted batches, rows and bytes per dataset. */
  metrics?: Metrics;
}

export interface IngestRequest {
  datasetSlug: string;
  /** The dataset's row if the request's scope check already read it. */
  dataset?: Dataset;
  /** The body's format, from {@link IngestService.bodyFormat}. */
  format: BodyFormat;
  /** The request body exactly as received: JSON, NDJSON and CSV bodies are staged as they are. */
  body: Uint8Array;
  /** The query string: NDJSON, CSV and Arrow batches take their partition key and other parameters from it. */
  query: URLSearchParams;
  /** The Idempotency-Key header (a JSON body may carry the key too; the header wins). */
  idempotencyKey: string | null;
  actor: string | null;
  traceParent: string | null;
  /** How long to wait for the batch to be published (0: answer once it is queued). */
  waitMs: number;
  /** The caller holds the admin scope: the batch may name another storage target than its dataset's. */
  mayChooseTarget?: boolean;
}

/** A body of InfluxDB line protocol, through one of the InfluxDB write APIs. */
export interface LineProtocolIngest {
  api: InfluxApi;
  /** The request body as received (gzipped when `contentEncoding` says so). */
  body: Uint8Array;
  contentEncoding: string | null;
  /** The `precision` query parameter, in the API's own names. */
  precision: string | undefined;
  actor: string | null;
  traceParent: string | null;
  /** How long to wait for the batches to be published (0: answer once they are queued). */
  waitMs: number;
  /** `Idempotency-Key` header: a retried request is answered with the first one's jobs. */
  idempotencyKey: string | null;
  /** Refuses unless the caller may write each of these datasets. */
  authorize(slugs: string[]): Promise<void>;
}

function tooLarge(limit: number) {
  return refuse('body_size', limit);
}

export class IngestService {
  /** Jobs of batches acknowledged on their staging log's records whose rows do not exist yet, by id (accept.ts). */
  private readonly beforeRows = new Map<string, Job>();

  constructor(private readonly options: IngestServiceOptions) {}

  get inline(): boolean {
    return this.options.inline;
  }

  get maxBodyBytes(): number {
    return this.options.maxBodyBytes;
  }

  /**
   * The format of a body from the request's Content-Type (415 listing the accepted ones otherwise),
   * asked before the body is read: a body whose declared length is over the limit is refused unread.
   */
  bodyFormat(contentType: string | undefined, contentLength: string | undefined): BodyFormat {
    const limit = this.options.maxBodyBytes;
    if (Number(contentLength ?? Number.NaN) > limit) throw tooLarge(limit);
    return bodyFormatOf(contentType ?? null);
  }

  async ingest(request: IngestRequest): Promise<{ job: Job; replayed: boolean }> {
    const limit = this.options.maxBodyBytes;
    if (request.body.byteLength > limit) throw tooLarge(limit);
    const batch = decodeBody(request.format, request.body, request.query, this.options.maxBatchRows);
    const accepted = await acceptBatch(this.options, {
      datasetSlug: request.datasetSlug,
      dataset: request.dataset,
      batch,
      idempotencyKey: request.idempotencyKey ?? batch.idempotencyKey ?? null,
      actor: request.actor,
      traceParent: request.traceParent,
      awaited: request.waitMs > 0,
      mayChooseTarget: request.mayChooseTarget,
    });
    if (accepted.jobRow) {
      const { id } = accepted.job;
      this.beforeRows.set(id, accepted.job);
      void accepted.jobRow.then(() => this.beforeRows.delete(id));
    }
    const payload = accepted.job.payload as Partial<IngestJobPayload>;
    this.options.metrics?.ingestAccepted(payload.datasetSlug ?? request.datasetSlug, {
      rows: payload.rowCount ?? 0,
      bytes: request.body.byteLength,
      replayed: accepted.replayed,
    });
    if (request.waitMs <= 0 || accepted.job.state === 'succeeded' || accepted.job.state === 'failed') return accepted;
    const job = await this.options.waitForJob(accepted.job.id, request.waitMs);
    return { job: job ?? accepted.job, replayed: accepted.replayed };
  }

  /** A Prometheus remote write request (POST /api/v1/write): one batch per metric, see remote-write.ts. */
  remoteWrite(request: RemoteWriteRequest): Promise<RemoteWriteOutcome> {
    if (request.body.byteLength > this.options.maxBodyBytes) throw tooLarge(this.options.maxBodyBytes);
    return acceptRemoteWrite(this.options, request);
  }

  /** Line protocol (line-protocol.ts): every measurement checked, staged and queued together, one job each. */
  async ingestLineProtocol(request: LineProtocolIngest): Promise<{ jobs: Job[]; replayed: boolean }> {
    const limit = this.options.maxBodyBytes;
    if (request.body.byteLength > limit) throw tooLarge(limit);
    const precision = precisionOf(request.api, request.precision);
    const body = await decodeContent(request.body, request.contentEncoding, limit);
    const { jobs, replayed } = await acceptLineProtocol(this.options, {
      body,
      precision,
      actor: request.actor,
      traceParent: request.traceParent,
      awaited: request.waitMs > 0,
      idempotencyKey: request.idempotencyKey,
      authorize: request.authorize,
    });
    for (const job of jobs) {
      const payload = job.payload as Partial<IngestJobPayload>;
      this.options.metrics?.ingestAccepted(payload.datasetSlug ?? '', { rows: payload.rowCount ?? 0, bytes: payload.staged?.sizeBytes ?? 0, replayed });
    }
    if (request.waitMs <= 0) return { jobs, replayed };
    return { jobs: await Promise.all(jobs.map(async (job) => (await this.options.waitForJob(job.id, request.waitMs)) ?? job)), replayed };
  }

  /** A job by id: from the catalog, or one acknowledged here whose row is about to be inserted (as queued). */
  async job(id: string): Promise<Job | null> {
    return this.jobBeforeItsRow(id) ?? getJob(this.options.sql, id);
  }

  /** A job acknowledged on its staging log's record whose row does not exist yet, or null. */
  jobBeforeItsRow(id: string): Job | null {
    return this.beforeRows.get(id) ?? null;
  }
}
