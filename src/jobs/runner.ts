/**
 * The job runner: one per process. It claims jobs from the catalog's job
 * table for the kinds it has handlers for, runs up to `concurrency` handler
 * calls at once, keeps their leases alive, and records the outcome.
 *
 * The contract with a handler:
 * - It gets a batch (one job, or several of one dataset and kind when it
 *   declares `coalesce`) and a context: `signal` aborts when the lease is lost
 *   or the runner gives up on stopping; `heartbeat()` extends the lease now.
 * - `ctx.complete(tx, results)` marks the batch succeeded inside the handler's
 *   own transaction, so its work (a manifest publish) and the completion
 *   commit together. It throws LeaseLostError when another worker has taken a
 *   job over; letting that propagate rolls the work back, so work is
 *   published once even when two workers ran it. With `jobIds` it completes
 *   only those jobs of the batch: a handler may publish a batch in parts.
 * - Returning normally means the work is committed: jobs not yet completed are
 *   completed by the runner. The return value and `complete`'s `results` map
 *   job id → result (stored as JSON); an Error value fails that job alone.
 *   Throwing fails every job of the batch. Failures retry with capped,
 *   jittered exponential backoff (backoff.ts) for as long as the retry falls
 *   due within the job's retry window (hours: an outage of storage, catalog
 *   or memory is waited out), unless the error is a PermanentJobError. A job
 *   that fails for good stays in the table, its staged batch kept, until an
 *   operator retries or deletes it (logged at error level).
 * - A job whose lease expired (its process died) is claimed again; after
 *   max_attempts such runs it is failed unrun, so a batch that kills its
 *   process cannot do so forever. Only lost leases count: retried errors do not.
 *
 * Wake-ups: NOTIFY on a real PostgreSQL (from other processes: this one's own
 * enqueues wake it in-process, see local-signals.ts), a jittered poll as the
 * floor, a finished batch (its slot is free and more jobs may wait), and the
 * moment the oldest job held back by a coalescing budget falls due. While jobs
 * are held back, a job enqueued (here or, by its NOTIFY, elsewhere) wakes the
 * runner only if it may make them claimable sooner (see {@link Held}): each
 * claim scans the queued jobs, and many small batches a second would otherwise
 * each cost one in every process.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Catalog } from '../catalog/connection.ts';
import type { Db } from '../catalog/db.ts';
import {
  budgetDue, type CoalesceOptions, type EnqueuedJob, JOBS_CHANNEL, type Job, type NewJob, claimJobs, completeJobs, enqueueJob, failJob, getJob, heartbeatJobs,
  parseJobNotification, releaseJobs, weighJob,
} from '../catalog/job-table.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../observability/metrics.ts';
import {
  type Context, contextFromTraceparent, contextWith, failSpan, type Link, NOOP_TRACER, type Span, SpanKind, type Tracer, traceFields,
} from '../observability/tracing.ts';
import { retryDelayMs } from './backoff.ts';
import { announceFinished, nextFinish, onLocalWake, wakeLocalRunners } from './local-signals.ts';

export type JobResults = Record<string, unknown>;

export interface JobContext {
  signal: AbortSignal;
  /** Extends the lease now; false when a job of the batch is no longer ours. */
  heartbeat(): Promise<boolean>;
  /** Completes the batch's jobs (or only `jobIds` of them), except those `results` maps to an Error, in `tx`. */
  complete(tx: Db, results?: JobResults, jobIds?: readonly string[]): Promise<void>;
  /**
   * The batch's trace: `context` holds the first job's span (a child of the request that created
   * the job), the parent for the spans of the batch's work; `links` point at the other jobs' spans.
   */
  trace: { context: Context; links: Link[] };
}

export type JobHandler<P = unknown> = (jobs: Job<P>[], ctx: JobContext) => Promise<JobResults | void>;

export interface HandlerOptions {
  queue: string;
  /**
   * Claim up to maxJobs jobs of one dataset and kind per call; optionally bounded by a payload
   * field's sum (maxWeight). With maxWaitMs > 0, a coalescing budget: a dataset's queued jobs are
   * claimed once their weight reaches minWeight or the oldest has waited maxWaitMs (see
   * CoalesceOptions in catalog/job-table.ts); retried and reclaimed jobs do not wait.
   */
  coalesce?: { maxJobs: number } & CoalesceOptions;
}

export interface JobRunnerOptions {
  catalog: Pick<Catalog, 'sql' | 'mode' | 'notifier'>;
  log: Logger;
  /** Handler calls at once (TIMESTORE_INGEST_CONCURRENCY). */
  concurrency: number;
  leaseMs?: number;
  pollIntervalMs?: number;
  /** The first retry's delay (default 1 s). */
  retryBaseMs?: number;
  /** The longest delay between retries (TIMESTORE_JOB_RETRY_MAX_DELAY_SECONDS). */
  retryMaxMs?: number;
  /** Failed attempts retry until created_at + this, unless the job has a deadline of its own (TIMESTORE_JOB_RETRY_WINDOW_HOURS). */
  retryWindowMs?: number;
  /** LISTEN for NOTIFY wake-ups; default on for an external PostgreSQL (the embedded one delivers none). */
  notifications?: boolean;
  workerId?: string;
  /** A span per job, the child of the job's `trace_parent` (default: none recorded). */
  tracer?: Tracer;
  /** Job latency and failed attempts. */
  metrics?: Metrics;
}

/** The lease of a job was taken over by another worker (or released). */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
}

/** Fails the job at once, without retries. */
export class PermanentJobError extends Error {
  override name = 'PermanentJobError';
}

interface Registered extends HandlerOptions {
  kind: string;
  handler: JobHandler;
}

interface Batch {
  jobs: Job[];
  abort: AbortController;
  stopHeartbeat(): void;
  /** Released on stop: the runner must not touch these jobs (or the catalog) again. */
  released: boolean;
  done?: Promise<void>;
}

/**
 * What a coalescing handler's budget held back at its last measure (`budgetDue`), and what was
 * enqueued for it since (in this process, or by others as their NOTIFYs say). A job enqueued may
 * make held-back jobs claimable before the due time known only if its client waits for it
 * (`promptField`), if the weight or size enqueued since reaches what the dataset closest to its
 * budget lacks (counted as if all went to that one: never later than the catalog would find it),
 * or if it is the first of a dataset that might fall due sooner than the due time known.
 */
interface Held {
  /** The least weight and size a waiting dataset lacks; Infinity until measured, or without that budget. */
  weightShort: number;
  sizeShort: number;
  /** Weight and size enqueued since the measure began. */
  weight: number;
  size: number;
  /** The datasets with jobs waiting at the measure; null while it runs. */
  datasets: Set<string> | null;
  /** While the measure runs: the datasets of jobs enqueued, and when their first was (the measure may miss them). */
  enqueuedWhileMeasured: Map<string, number>;
}

const jitter = (ms: number) => ms * (0.75 + Math.random() * 0.5);
/**
 * How soon to look again when jobs are past their budget's wait yet were not claimable (another
 * claimer holds them); also the least time between two claims that find nothing ready.
 */
const BUDGET_RECHECK_MS = 25;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class JobRunner {
  readonly workerId: string;
  private readonly sql: Catalog['sql'];
  private readonly log: Logger;
  private readonly o: Required<Omit<JobRunnerOptions, 'catalog' | 'log' | 'workerId' | 'metrics'>>;
  private readonly metrics: Metrics | undefined;
  private handlers: Registered[] = [];
  private readonly batches = new Set<Batch>();
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private wakePending = false;
  private wakeUp: (() => void) | null = null;
  /** When (process clock) the oldest job held back by a coalescing budget falls due; null: none known. */
  private budgetDueAt: number | null = null;
  /** Per coalescing handler, what its budget holds back (see {@link Held}). */
  private readonly held = new Map<Registered, Held>();
  /** This process's name in the jobs' NOTIFYs (null: the catalog sends none). */
  private readonly notifier: string | null;
  private loopDone: Promise<void> = Promise.resolve();
  private cleanups: Array<() => unknown> = [];

  constructor(options: JobRunnerOptions) {
    this.sql = options.catalog.sql;
    this.log = options.log;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.o = {
      concurrency: options.concurrency,
      leaseMs: options.leaseMs ?? 30_000,
      pollIntervalMs: options.pollIntervalMs ?? 1_000,
      retryBaseMs: options.retryBaseMs ?? 1_000,
      retryMaxMs: options.retryMaxMs ?? 300_000,
      retryWindowMs: options.retryWindowMs ?? 24 * 3_600_000,
      notifications: options.notifications ?? options.catalog.mode === 'external',
      tracer: options.tracer ?? NOOP_TRACER,
    };
    this.metrics = options.metrics;
    this.notifier = options.catalog.notifier;
  }

  register<P>(kind: string, handler: JobHandler<P>, options: HandlerOptions): this {
    if (options.coalesce?.minWeight !== undefined && options.coalesce.weightField === undefined) {
      throw new Error(`handler ${kind}: coalesce.minWeight needs a weightField to weigh jobs by`);
    }
    this.handlers.push({ ...options, kind, handler: handler as JobHandler });
    return this;
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('a job runner starts once');
    this.state = 'running';
    const serves = (queue: string) => this.handlers.some((h) => h.queue === queue);
    this.cleanups.push(onLocalWake((queue, enqueued) => serves(queue) && this.wake(enqueued && { queue, jobs: enqueued })));
    if (this.o.notifications) {
      try {
        // This process's own enqueues woke it in-process already. Another's jobs are weighed as
        // local ones, unless a payload was too long to send.
        const heard = (text: string) => {
          const { queue, notifier, jobs } = parseJobNotification(text);
          if (!serves(queue) || (notifier !== null && notifier === this.notifier)) return;
          this.wake(jobs?.every((job) => job.payload !== null) ? { queue, jobs } : undefined);
        };
        const { unlisten } = await this.sql.listen(JOBS_CHANNEL, heard);
        this.cleanups.push(unlisten);
      } catch (err) {
        this.log.warn({ err }, 'jobs: LISTEN failed; relying on polling');
      }
    }
    this.loopDone = this.loop();
  }

  /**
   * Makes the runner look for work now (rather than at its next poll); for `enqueued`, jobs just
   * enqueued, only if they may be claimable before the due time known (see {@link Held}).
   */
  wake(enqueued?: { queue: string; jobs: readonly EnqueuedJob[] }): void {
    if (enqueued && this.budgetDueAt !== null && !this.claimableSooner(enqueued.queue, enqueued.jobs)) return;
    this.wakePending = true;
    this.wakeUp?.();
  }

  private claimableSooner(queue: string, jobs: readonly EnqueuedJob[]): boolean {
    let sooner = false;
    for (const job of jobs) {
      const h = this.handlers.find((x) => x.queue === queue && x.kind === job.kind);
      if (!h) continue; // not this runner's
      const held = this.held.get(h); // a handler with a wait budget's, once measured
      if (!held || !h.coalesce || !job.datasetId) {
        sooner = true;
        continue;
      }
      const { weight, size, prompt } = weighJob(h.coalesce, job.payload);
      held.weight += weight;
      held.size += size;
      sooner ||= prompt || held.weight >= held.weightShort || held.size >= held.sizeShort;
      if (held.datasets === null) {
        if (!held.enqueuedWhileMeasured.has(job.datasetId)) held.enqueuedWhileMeasured.set(job.datasetId, Date.now());
      } else if (!held.datasets.has(job.datasetId)) {
        sooner ||= Date.now() + (h.coalesce.maxWaitMs ?? 0) < (this.budgetDueAt ?? 0);
      }
    }
    return sooner;
  }

  /** Enqueues in its own statement, then wakes this process's runners at once. */
  async enqueue(input: NewJob): Promise<{ job: Job; created: boolean }> {
    const enqueued = await enqueueJob(this.sql, input);
    if (enqueued.created) wakeLocalRunners(input.queue);
    return enqueued;
  }

  /**
   * The job once it has succeeded or failed; at the timeout, the job as it is
   * then (still queued or running: the caller decides). Null if there is none.
   * Hears at once about jobs this process finishes; polls for the others.
   */
  async waitForJob(jobId: string, timeoutMs: number): Promise<Job | null> {
    const deadline = Date.now() + timeoutMs;
    for (let poll = 50; ; poll = Math.min(poll * 2, this.o.pollIntervalMs)) {
      const finish = nextFinish(jobId, Math.min(poll, deadline - Date.now())); // listen before reading
      const job = await getJob(this.sql, jobId);
      if (!job || job.state === 'succeeded' || job.state === 'failed' || Date.now() >= deadline) {
        finish.cancel();
        return job;
      }
      await finish.promise;
    }
  }

  /**
   * Stops claiming, lets running handlers finish for up to `timeoutMs`, then
   * aborts the rest and releases their jobs: queued again without counting the
   * attempt, for another process (or the next start) to run.
   */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    this.wakeUp?.();
    for (const cleanup of this.cleanups) await Promise.resolve(cleanup()).catch(() => {});
    await this.loopDone;
    const all = Promise.all([...this.batches].map((b) => b.done));
    const finished = await Promise.race([all.then(() => true), sleep(timeoutMs).then(() => false)]);
    if (!finished) {
      const left = [...this.batches];
      for (const b of left) {
        b.released = true;
        b.stopHeartbeat();
        b.abort.abort(new Error('job runner stopping'));
      }
      const released = await releaseJobs(this.sql, left.flatMap((b) => b.jobs.map((j) => j.id)), this.workerId);
      this.log.warn({ released: released.length }, 'jobs: stop timed out; released running jobs');
    }
    this.state = 'stopped';
  }

  private async loop(): Promise<void> {
    let lastEmptyClaimAt = 0;
    while (this.state === 'running') {
      // While batches wait for their budget, a claim that finds nothing ready is repeated at most
      // every BUDGET_RECHECK_MS: wake-ups that cannot be weighed (an older process's notification,
      // a payload too long to send) would otherwise each cost a scan of the queue.
      const recheckIn = lastEmptyClaimAt + BUDGET_RECHECK_MS - Date.now();
      if (this.budgetDueAt !== null && recheckIn > 0) await sleep(recheckIn);
      this.wakePending = false;
      let budgetDueAt: number | null = null;
      try {
        budgetDueAt = await this.claimAndStart();
        if (budgetDueAt !== null) lastEmptyClaimAt = Date.now();
      } catch (err) {
        this.log.error({ err }, 'jobs: claim failed');
        this.wakePending = false; // wait for the poll rather than spin on a broken catalog
      }
      if (this.state !== 'running' || this.wakePending) continue;
      const sleepMs = Math.min(jitter(this.o.pollIntervalMs), budgetDueAt === null ? Infinity : budgetDueAt - Date.now());
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => this.wakeUp?.(), Math.max(0, sleepMs));
        this.wakeUp = () => {
          clearTimeout(timer);
          this.wakeUp = null;
          resolve();
        };
      });
    }
  }

  /**
   * Claims until every slot is busy or no handler finds work. Returns when (process clock) to
   * look again for jobs that a coalescing budget holds back, or null when no claim came back
   * empty with such jobs waiting.
   */
  private async claimAndStart(): Promise<number | null> {
    for (;;) {
      let claimed = false;
      for (const h of [...this.handlers]) {
        const free = this.o.concurrency - this.batches.size;
        if (free <= 0 || this.state !== 'running') return null;
        const { maxJobs, ...coalesce } = h.coalesce ?? { maxJobs: 0 };
        const jobs = await claimJobs(this.sql, {
          queue: h.queue,
          kinds: [h.kind],
          workerId: this.workerId,
          leaseMs: this.o.leaseMs,
          limit: h.coalesce ? maxJobs : free,
          coalesce: h.coalesce ? coalesce : false,
        });
        if (jobs.length === 0) continue;
        claimed = true;
        // The handler that just got work goes last, so one busy kind cannot starve the others.
        this.handlers = [...this.handlers.filter((x) => x !== h), h];
        for (const batch of h.coalesce ? [jobs] : jobs.map((j) => [j])) this.startBatch(h, batch);
      }
      if (!claimed) return this.nextBudgetDue();
    }
  }

  /**
   * When the oldest job held back by a budget falls due, measured again at every claim that found
   * nothing (those are rare: see {@link Held}); with what each budget holds back.
   */
  private async nextBudgetDue(): Promise<number | null> {
    let dueAt: number | null = null;
    for (const h of this.handlers) {
      const budget = h.coalesce;
      const maxWaitMs = budget?.maxWaitMs ?? 0;
      if (!budget || maxWaitMs <= 0) continue;
      // Counts what is enqueued from now on: the measure may or may not see it.
      const held: Held = { weightShort: Infinity, sizeShort: Infinity, weight: 0, size: 0, datasets: null, enqueuedWhileMeasured: new Map() };
      this.held.set(h, held);
      const due = await budgetDue(this.sql, { queue: h.queue, kinds: [h.kind], ...budget });
      held.weightShort = due ? (due.weightShort ?? Infinity) : (budget.minWeight ?? Infinity);
      held.sizeShort = due ? (due.sizeShort ?? Infinity) : (budget.maxSize ?? Infinity);
      held.datasets = new Set(due?.datasets);
      const dues: number[] = [];
      // +1 ms: a timer may fire a little early, and a claim before the due moment finds nothing.
      if (due) dues.push(Date.now() + (due.dueInMs > 0 ? Math.ceil(due.dueInMs) + 1 : BUDGET_RECHECK_MS));
      for (const [datasetId, since] of held.enqueuedWhileMeasured) if (!held.datasets.has(datasetId)) dues.push(since + maxWaitMs + 1);
      if (held.weight >= held.weightShort || held.size >= held.sizeShort) dues.push(Date.now());
      if (dues.length > 0) dueAt = Math.min(dueAt ?? Infinity, ...dues);
    }
    this.budgetDueAt = dueAt;
    return dueAt;
  }

  private startBatch(h: Registered, jobs: Job[]): void {
    const batch: Batch = { jobs, abort: new AbortController(), stopHeartbeat: () => {}, released: false };
    this.batches.add(batch);
    batch.done = this.runBatch(h, batch)
      .catch((err) => this.log.error({ err, jobs: jobs.map((j) => j.id) }, 'jobs: recording an outcome failed'))
      .finally(() => {
        this.batches.delete(batch);
        // A slot is free, and a dataset whose write this was no longer waits for it (job-table.ts
        // `budgetWait`): its batches may be due sooner than last computed.
        this.budgetDueAt = null;
        this.wake();
      });
  }

  private async runBatch(h: Registered, batch: Batch): Promise<void> {
    // Reclaimed from dead workers more often than allowed: fail them unrun (a job that kills its process).
    const exhausted = batch.jobs.filter((j) => j.leaseExpiries >= j.maxAttempts);
    for (const job of exhausted) {
      const span = this.jobSpan(job, [], 1);
      const error = `${job.lastError ?? 'lease expired'}; its lease was lost ${job.leaseExpiries} times (a run that kills its process?), no runs left`;
      await this.fail(job, new PermanentJobError(error), span);
      span.end();
      announceFinished(job.id);
    }
    const jobs = batch.jobs.filter((j) => j.leaseExpiries < j.maxAttempts);
    if (jobs.length === 0) return;
    const ids = jobs.map((j) => j.id);

    // One span per job, in the trace of the request that created it; the first is the batch's parent.
    const leaderSpan = this.jobSpan(jobs[0]!, [], jobs.length);
    const spans = new Map<string, Span>([[jobs[0]!.id, leaderSpan]]);
    for (const job of jobs.slice(1)) spans.set(job.id, this.jobSpan(job, [{ context: leaderSpan.spanContext() }], jobs.length));
    const trace = {
      context: contextWith(leaderSpan),
      links: jobs.slice(1).map((j) => ({ context: spans.get(j.id)!.spanContext() })),
    };

    // Jobs passed to complete() are the handler's transaction's; the heartbeat leaves them out, so
    // it neither waits for that transaction nor takes their completion for a lost lease.
    const completing = new Set<string>();
    let leaseEnd = Date.now() + this.o.leaseMs;
    let beating: Promise<boolean> | null = null;
    const heartbeat = () =>
      (beating ??= (async () => {
        const sentAt = Date.now();
        const held = () => ids.filter((id) => !completing.has(id));
        try {
          const beat = held();
          let owned = await heartbeatJobs(this.sql, beat, this.workerId, this.o.leaseMs);
          // A job completed while this heartbeat waited for its row is finished, not lost.
          if (!owned && beat.some((id) => completing.has(id))) owned = await heartbeatJobs(this.sql, held(), this.workerId, this.o.leaseMs);
          if (owned) leaseEnd = sentAt + this.o.leaseMs;
          else batch.abort.abort(new LeaseLostError('the lease was taken over'));
          return owned;
        } catch (err) {
          this.log.warn({ err }, 'jobs: heartbeat failed');
          // Unable to renew in time, so another worker may be running the job: stop.
          if (Date.now() > leaseEnd && held().length > 0) batch.abort.abort(new LeaseLostError('the lease could not be renewed'));
          return false;
        } finally {
          beating = null;
        }
      })());
    const timer = setInterval(heartbeat, this.o.leaseMs / 3);
    batch.stopHeartbeat = () => clearInterval(timer);

    const succeeding = (results: JobResults) => ids.filter((id) => !(results[id] instanceof Error));
    const ctx: JobContext = {
      signal: batch.abort.signal,
      trace,
      heartbeat,
      complete: async (tx, results = {}, jobIds) => {
        const want = succeeding(results).filter((id) => !jobIds || jobIds.includes(id));
        for (const id of want) completing.add(id);
        const done = await completeJobs(tx, want, this.workerId, results);
        if (done.length !== want.length) throw new LeaseLostError('a job of the batch is no longer held by this worker');
      },
    };

    let results: JobResults = {};
    let failure: { error: unknown } | null = null;
    try {
      results = (await h.handler(jobs, ctx)) ?? {};
    } catch (error) {
      failure = { error };
    } finally {
      batch.stopHeartbeat();
    }
    if (batch.released) {
      for (const span of spans.values()) span.setAttribute('timestore.job.outcome', 'released').end();
      return;
    }

    // Guarded on our lease: jobs completed in the handler's transaction, or taken over, are left alone.
    try {
      for (const job of jobs) {
        const error = failure ? failure.error : results[job.id];
        if (failure || error instanceof Error) await this.fail(job, error, spans.get(job.id)!);
      }
      if (!failure) {
        await completeJobs(this.sql, succeeding(results), this.workerId, results);
        for (const id of succeeding(results)) {
          const job = jobs.find((j) => j.id === id)!;
          spans.get(id)!.setAttribute('timestore.job.outcome', 'succeeded');
          this.metrics?.jobFinished(job.kind, 'succeeded', (Date.now() - job.createdAt.getTime()) / 1000);
        }
      }
    } finally {
      for (const span of spans.values()) span.end();
    }
    // Waiters re-read the row, so announcing a job that was retried rather than finished is harmless.
    for (const id of ids) announceFinished(id);
  }

  /** The span of one job's attempt: a consumer span whose parent is the request that created the job. */
  private jobSpan(job: Job, links: Link[], batchSize: number): Span {
    return this.o.tracer.startSpan(
      `job ${job.kind}`,
      {
        kind: SpanKind.CONSUMER,
        links,
        attributes: {
          'timestore.job.id': job.id,
          'timestore.job.kind': job.kind,
          'timestore.job.queue': job.queue,
          'timestore.job.attempt': job.attempts,
          'timestore.job.batch_size': batchSize,
          ...(job.datasetId ? { 'timestore.dataset.id': job.datasetId } : {}),
        },
      },
      contextFromTraceparent(job.traceParent),
    );
  }

  private async fail(job: Job, error: unknown, span: Span): Promise<void> {
    const permanent = error instanceof PermanentJobError;
    const message = (error instanceof Error ? error.message : String(error)).slice(0, 4000);
    const retry = permanent
      ? null
      : { delayMs: retryDelayMs(job.attempts, { baseMs: this.o.retryBaseMs, maxMs: this.o.retryMaxMs }), windowMs: this.o.retryWindowMs };
    const row = await failJob(this.sql, job.id, this.workerId, message, retry);
    if (!row) return; // no longer ours
    failSpan(span, error);
    span.setAttribute('timestore.job.outcome', row.state === 'failed' ? 'failed' : 'retry');
    this.metrics?.jobAttemptFailed(job.kind);
    const fields = { jobId: job.id, kind: job.kind, datasetId: job.datasetId, attempts: row.attempts, error: message, ...traceFields(span) };
    if (row.state === 'failed') {
      this.metrics?.jobFinished(job.kind, 'failed', (Date.now() - job.createdAt.getTime()) / 1000);
      const why = permanent ? 'a permanent error' : `retried until ${row.retryUntil?.toISOString()}`;
      this.log.error({ ...fields, state: row.state, retryUntil: row.retryUntil }, `jobs: job failed for good (${why}); kept for an operator: POST /admin/jobs/${job.id}/retry or DELETE /admin/jobs/${job.id}`);
    } else {
      this.log.warn({ ...fields, state: row.state, nextAttemptAt: row.runAt, retryUntil: row.retryUntil }, 'jobs: attempt failed; retrying');
    }
  }
}
