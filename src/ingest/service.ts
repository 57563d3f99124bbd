/**
 * The ingestion service the HTTP routes call: reads the request body within
 * the size limit in one of the accepted formats (chosen by Content-Type, see
 * formats/), accepts the batch (accept.ts), and when asked waits until the job
 * that writes it has finished.
 */
import type { Sql } from 'postgres';
import type { CatalogCache } from '../catalog/lookup-cache.ts';
import { getJob, type Job } from '../catalog/job-table.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { StorageDrivers } from '../storage/index.ts';
import { type AcceptRequest, acceptBatch, type IngestJobPayload } from './accept.ts';
import { refuse } from '../model/constraints.ts';
import type { BodyFormat } from '../model/constraints.ts';
import { bodyFormatOf } from './formats/index.ts';

export interface IngestServiceOptions {
  sql: Sql;
  drivers: StorageDrivers;
  queue: string;
  defaultTargetName: string;
  idempotencyTtlSeconds: number;
  maxBodyBytes: number;
  /** TIMESTORE_INGEST_MODE=inline: every request waits for its batch to be published. */
  inline: boolean;
  wake(): void;
  /** Schema versions and storage targets, kept across batches. */
  catalogCache: CatalogCache;
  /** The job once finished, or as it is when the time is up; null when there is no such job. */
  waitForJob(jobId: string, timeoutMs: number): Promise<Job | null>;
  /** Accepted batches, rows and bytes per dataset. */
  metrics?: Metrics;
}

export interface IngestRequest extends AcceptRequest {
  /** How long to wait for the batch to be published (0: answer once it is queued). */
  waitMs: number;
}

/** A request body as read: its format and its bytes exactly as received. */
export interface ReceivedBody {
  format: BodyFormat;
  bytes: Uint8Array;
}

function tooLarge(limit: number) {
  return refuse('body_size', limit);
}

export class IngestService {
  constructor(private readonly options: IngestServiceOptions) {}

  get inline(): boolean {
    return this.options.inline;
  }

  /**
   * Reads a request body in an accepted format (415 listing them otherwise), refusing one over
   * the size limit before reading it all when its length is declared.
   */
  async readBody(request: Request): Promise<ReceivedBody> {
    const limit = this.options.maxBodyBytes;
    const declared = Number(request.headers.get('content-length') ?? Number.NaN);
    if (declared > limit) throw tooLarge(limit);
    const format = bodyFormatOf(request.headers.get('content-type'));
    const bytes = new Uint8Array(await request.arrayBuffer());
    if (bytes.byteLength > limit) throw tooLarge(limit);
    return { format, bytes };
  }

  async ingest(request: IngestRequest): Promise<{ job: Job; replayed: boolean }> {
    const accepted = await acceptBatch(this.options, { ...request, awaited: request.waitMs > 0 });
    const payload = accepted.job.payload as Partial<IngestJobPayload>;
    this.options.metrics?.ingestAccepted(payload.datasetSlug ?? request.datasetSlug, {
      rows: payload.rowCount ?? 0,
      bytes: request.rawBody.byteLength,
      replayed: accepted.replayed,
    });
    if (request.waitMs <= 0 || accepted.job.state === 'succeeded' || accepted.job.state === 'failed') return accepted;
    const job = await this.options.waitForJob(accepted.job.id, request.waitMs);
    return { job: job ?? accepted.job, replayed: accepted.replayed };
  }

  job(id: string): Promise<Job | null> {
    return getJob(this.options.sql, id);
  }
}
