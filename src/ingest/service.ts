/**
 * The ingestion service the HTTP routes call: reads the request body within
 * the size limit, accepts the batch (accept.ts), and when asked waits until
 * the job that writes it has finished.
 */
import type { Sql } from 'postgres';
import { getJob, type Job } from '../catalog/jobs.ts';
import { AppError, errors } from '../errors.ts';
import type { StorageDrivers } from '../storage/index.ts';
import { type AcceptRequest, acceptBatch } from './accept.ts';

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
  /** The job once finished, or as it is when the time is up; null when there is no such job. */
  waitForJob(jobId: string, timeoutMs: number): Promise<Job | null>;
}

export interface IngestRequest extends AcceptRequest {
  /** How long to wait for the batch to be published (0: answer once it is queued). */
  waitMs: number;
}

export class IngestService {
  private readonly rawBodies = new WeakMap<Request, Uint8Array>();

  constructor(private readonly options: IngestServiceOptions) {}

  get inline(): boolean {
    return this.options.inline;
  }

  /** Reads and parses a JSON request body, refusing one over the size limit before reading it all. */
  async parseBody(request: Request): Promise<unknown> {
    const limit = this.options.maxBodyBytes;
    const declared = Number(request.headers.get('content-length') ?? Number.NaN);
    if (declared > limit) throw errors.payloadTooLarge(limit);
    const type = (request.headers.get('content-type') ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json') {
      throw new AppError(415, 'unsupported_media_type', `send the batch as application/json (got "${type || 'no content type'}")`);
    }
    const bytes = new Uint8Array(await request.arrayBuffer());
    if (bytes.byteLength > limit) throw errors.payloadTooLarge(limit);
    this.rawBodies.set(request, bytes);
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (err) {
      throw errors.badRequest('invalid_json', `the request body is not valid JSON: ${(err as Error).message}`);
    }
  }

  /** The bytes parseBody read for this request. */
  rawBody(request: Request): Uint8Array {
    const bytes = this.rawBodies.get(request);
    if (!bytes) throw new Error('rawBody() before parseBody()');
    return bytes;
  }

  async ingest(request: IngestRequest): Promise<{ job: Job; replayed: boolean }> {
    const accepted = await acceptBatch(this.options, request);
    if (request.waitMs <= 0 || accepted.job.state === 'succeeded' || accepted.job.state === 'failed') return accepted;
    const job = await this.options.waitForJob(accepted.job.id, request.waitMs);
    return { job: job ?? accepted.job, replayed: accepted.replayed };
  }

  job(id: string): Promise<Job | null> {
    return getJob(this.options.sql, id);
  }
}
