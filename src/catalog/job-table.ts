/**
 * The job table: a queue in PostgreSQL (replaces BullMQ/Redis).
 *
 * A job is claimed by one statement that locks claimable rows with
 * `FOR UPDATE SKIP LOCKED` and stamps a lease (`locked_by`, `locked_until`),
 * so concurrent claimers never get the same row and never wait on each other.
 * Everything a worker does afterwards (heartbeat, complete, fail, release) is
 * guarded on `locked_by = me AND state = 'running'`: a worker whose lease
 * expired and was taken over cannot overwrite the new owner's outcome.
 *
 * A failed attempt is retried while the retry is due before the job's
 * `retry_until` (a window of hours by default: storage, catalog or memory
 * trouble is waited out); a job fails for good past it, or at once for a
 * permanent error, and is then kept, with its staged batch, until an operator
 * retries or deletes it. `max_attempts` bounds only the runs that end with the
 * lease lost (`lease_expiries`): a job that kills its process every time.
 *
 * All times are the database's `now()`, never the process clock, so several
 * processes with skewed clocks agree on what is due and what has expired.
 */
import type { Fragment } from 'postgres';
import type { Db } from './db.ts';
import { afterPosition, decodeCreatedCursor, pageOf, UUID } from './keyset.ts';

/** NOTIFY channel whose payloads are {@link JobNotification}s; a wake-up hint only, polling is the floor. */
export const JOBS_CHANNEL = 'timestore_jobs';

/**
 * A session setting naming the process that sends a job's NOTIFY (connection.ts sets it): its own
 * runners, woken in-process already (jobs/local-signals.ts), tell their echo from other processes'.
 */
export const JOB_NOTIFIER_SETTING = 'timestore.job_notifier';

/** What a {@link JOBS_CHANNEL} notification says, as JSON. */
export interface JobNotification {
  queue: string;
  /** The process that sent it ({@link JOB_NOTIFIER_SETTING}); null: unnamed. */
  notifier: string | null;
  /**
   * Jobs enqueued, for a runner to weigh against a coalescing budget; a payload null when longer
   * than {@link NOTIFIED_PAYLOAD_BYTES}. Absent when jobs were released or retried.
   */
  jobs?: EnqueuedJob[];
}

/** A job just enqueued, as a notification names it and a runner weighs it against a coalescing budget. */
export type EnqueuedJob = Pick<NewJob, 'kind' | 'datasetId' | 'payload'>;

/** A job's payload goes with its notification up to this size. */
const NOTIFIED_PAYLOAD_BYTES = 4000;
/** The jobs one notification lists take at most this much of its 8,000 bytes. */
const NOTIFIED_JOBS_BYTES = 7000;

/**
 * A {@link JOBS_CHANNEL} payload. Earlier versions sent a bare queue name (no notifier), then one
 * notification per job (`job`).
 */
export function parseJobNotification(text: string): JobNotification {
  try {
    const parsed = JSON.parse(text) as { queue?: unknown; notifier?: string | null; jobs?: EnqueuedJob[] | null; job?: EnqueuedJob | null };
    if (typeof parsed?.queue === 'string') {
      const jobs = Array.isArray(parsed.jobs) ? parsed.jobs : parsed.job ? [parsed.job] : undefined;
      return { queue: parsed.queue, notifier: parsed.notifier ?? null, ...(jobs ? { jobs } : {}) };
    }
  } catch {
    // a bare queue name
  }
  return { queue: text, notifier: null };
}

const notification = (db: Db, queue: Fragment | string, jobs: Fragment = db`NULL::json`) =>
  db`json_build_object('queue', ${queue}::text, 'notifier', current_setting(${JOB_NOTIFIER_SETTING}, true), 'jobs', ${jobs})::text`;

/**
 * A session setting that, set to 'off', says no process can LISTEN on this catalog: the embedded
 * one (PGlite) delivers no notification, and queueing them cost it about a tenth of a small
 * batch's CPU (docs/performance.md). The catalog's connection sets it there (connection.ts).
 */
export const JOB_NOTIFICATIONS_SETTING = 'timestore.job_notifications';

/** True where jobs' NOTIFYs can be heard (see {@link JOB_NOTIFICATIONS_SETTING}). */
const notifying = (db: Db) => db`current_setting(${JOB_NOTIFICATIONS_SETTING}, true) IS DISTINCT FROM 'off'`;

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed';

export interface Job<P = unknown> {
  id: string;
  queue: string;
  kind: string;
  datasetId: string | null;
  jobKey: string | null;
  payload: P;
  state: JobState;
  /** Claims so far, the current one included. */
  attempts: number;
  /** The most runs that may end with the lease lost (see leaseExpiries) before the job fails unrun. */
  maxAttempts: number;
  /** Claims that took the job over from a worker whose lease had expired. */
  leaseExpiries: number;
  /** Failed attempts are retried while the retry is due by then; null until the first failure. */
  retryUntil: Date | null;
  runAt: Date;
  lockedBy: string | null;
  lockedUntil: Date | null;
  lastError: string | null;
  result: unknown;
  actor: string | null;
  traceParent: string | null;
  createdAt: Date;
  updatedAt: Date;
  finishedAt: Date | null;
}

export interface NewJob {
  /** Chosen by the caller when the job must be known before its row exists (src/ingest/logged-jobs.ts). */
  id?: string;
  queue: string;
  kind: string;
  datasetId?: string | null;
  /** At most one queued or running job per (queue, jobKey): singleton work. */
  jobKey?: string | null;
  payload: unknown;
  /** The most runs that may end with the lease lost (default 5). */
  maxAttempts?: number;
  /** Retry failed attempts for this long from now; default: the runner's window, from created_at. */
  retryWindowMs?: number | null;
  runAt?: Date | null;
  actor?: string | null;
  traceParent?: string | null;
}

/** A job as its row will read once inserted, for a job acknowledged before its row exists (src/ingest/logged-jobs.ts). */
export function jobBeforeItsRow(input: NewJob & { id: string }, now = new Date()): Job {
  return {
    id: input.id,
    queue: input.queue,
    kind: input.kind,
    datasetId: input.datasetId ?? null,
    jobKey: input.jobKey ?? null,
    payload: input.payload ?? {},
    state: 'queued',
    attempts: 0,
    maxAttempts: input.maxAttempts ?? 5,
    leaseExpiries: 0,
    retryUntil: input.retryWindowMs == null ? null : new Date(now.getTime() + input.retryWindowMs),
    runAt: input.runAt ?? now,
    lockedBy: null,
    lockedUntil: null,
    lastError: null,
    result: null,
    actor: input.actor ?? null,
    traceParent: input.traceParent ?? null,
    createdAt: now,
    updatedAt: now,
    finishedAt: null,
  };
}

const ms = (n: number) => `${Math.max(0, Math.round(n))} milliseconds`;

/**
 * Inserts a job and NOTIFYs its queue, in one statement: alone it needs no transaction, and inside
 * the caller's the row and the notification appear together at commit. When jobKey
 * names a queued or running job, that job is returned with `created: false` (a queued one due
 * later than `runAt` is brought forward to it: the same work, asked for sooner).
 */
export async function enqueueJob(db: Db, input: NewJob): Promise<{ job: Job; created: boolean }> {
  // Retried because the conflicting job can finish between the INSERT and the SELECT.
  for (let attempt = 0; attempt < 5; attempt++) {
    const created = await enqueueJobIf(db, input, db`true`);
    if (created) return { job: created, created: true };
    const [existing] = await db<Job[]>`
      WITH brought_forward AS (
        UPDATE jobs SET run_at = LEAST(run_at, COALESCE(${input.runAt ?? null}::timestamptz, now()))
        WHERE queue = ${input.queue} AND job_key = ${input.jobKey ?? null} AND state = 'queued'
        RETURNING *)
      SELECT * FROM brought_forward
      UNION ALL
      SELECT * FROM jobs WHERE queue = ${input.queue} AND job_key = ${input.jobKey ?? null} AND state = 'running'`;
    if (existing) return { job: existing, created: false };
  }
  throw new Error(`could not enqueue job with key "${input.jobKey}": it kept conflicting`);
}

/**
 * Inserts a job and NOTIFYs its queue (only when a row was inserted), in one statement, only where
 * `condition` (a fragment of `db`, such as datasets.ts `acceptsAsBefore`) holds when it runs; null
 * when it did not, or when `jobKey` names a queued or running job (see enqueueJob), and nothing was
 * inserted.
 */
export async function enqueueJobIf(db: Db, input: NewJob, condition: Fragment): Promise<Job | null> {
  const [created] = await enqueueJobsIf(db, [input], condition);
  return created ?? null;
}

/**
 * Inserts several jobs in one statement, and NOTIFYs their queues, only where `condition` holds
 * when it runs (as {@link enqueueJobIf}): one round trip and one commit for many (ingest's group
 * commit, src/ingest/job-groups.ts). Answers in the order of `inputs`: each job, or null when the
 * condition did not hold or its jobKey names a queued or running job.
 */
export async function enqueueJobsIf(
  db: Db,
  inputs: readonly NewJob[],
  condition: Fragment,
  { notify = true }: { notify?: boolean } = {},
): Promise<Array<Job | null>> {
  // The ids are chosen here so that each answer finds its input.
  const rows = jobRows(inputs);
  // INSERT … SELECT so that `condition` can be a WHERE. A notification per job, with what a
  // runner weighs it by (unless the caller sends them: see notifyJobs); a LEFT JOIN, as there
  // are none where nobody listens.
  const enqueued = db`json_build_array(json_build_object('kind', created.kind, 'datasetId', created.dataset_id,
    'payload', CASE WHEN octet_length(created.payload::text) <= ${NOTIFIED_PAYLOAD_BYTES} THEN created.payload END))`;
  const created = await db<Job[]>`
    WITH created AS (
      ${insertJobs(db, rows)}
      WHERE ${condition}
      ON CONFLICT (queue, job_key) WHERE job_key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
      RETURNING *)
    SELECT created.* FROM created LEFT JOIN LATERAL (SELECT pg_notify(${JOBS_CHANNEL}, ${notification(db, db`created.queue`, enqueued)})
      WHERE ${notify} AND ${notifying(db)}) notified ON true`;
  const byId = new Map(created.map((job) => [job.id, job]));
  return rows.map((row) => byId.get(row.id) ?? null);
}

/** New jobs as the rows `insertJobs` reads, each with its id (the caller's, or a new one). */
function jobRows(inputs: readonly NewJob[]) {
  return inputs.map((input) => ({
    id: input.id ?? crypto.randomUUID(),
    queue: input.queue,
    kind: input.kind,
    dataset_id: input.datasetId ?? null,
    job_key: input.jobKey ?? null,
    payload: input.payload ?? {},
    max_attempts: input.maxAttempts ?? 5,
    retry_window_ms: input.retryWindowMs == null ? null : Math.max(0, Math.round(input.retryWindowMs)),
    run_at: input.runAt?.toISOString() ?? null,
    actor: input.actor ?? null,
    trace_parent: input.traceParent ?? null,
  }));
}

/** `INSERT INTO jobs … SELECT … FROM` the rows, as `j`: the caller adds its WHERE and ON CONFLICT. */
function insertJobs(db: Db, rows: ReturnType<typeof jobRows>): Fragment {
  return db`INSERT INTO jobs (id, queue, kind, dataset_id, job_key, payload, max_attempts, retry_until, run_at, actor, trace_parent)
      SELECT j.id, j.queue, j.kind, j.dataset_id, j.job_key, j.payload, j.max_attempts,
             now() + j.retry_window_ms * interval '1 millisecond', COALESCE(j.run_at, now()), j.actor, j.trace_parent
      FROM jsonb_to_recordset(${db.json(rows as never)}::jsonb) AS j(id uuid, queue text, kind text, dataset_id uuid, job_key text,
        payload jsonb, max_attempts integer, retry_window_ms bigint, run_at timestamptz, actor text, trace_parent text)`;
}

/**
 * Inserts the jobs of batches acknowledged on their staging log's records (src/ingest/logged-jobs.ts)
 * and moves the log's mark to `through`, the byte after the last of those records, in one
 * statement: the jobs of every record before the mark then have rows. A job whose row exists (a
 * replay met it) is not inserted again, nor one whose dataset is gone. Answers the jobs inserted,
 * without their notification (see notifyJobs).
 */
export async function enqueueLoggedJobs(db: Db, location: string, through: number, inputs: readonly NewJob[]): Promise<Job[]> {
  return db<Job[]>`
    WITH created AS (
      ${insertJobs(db, jobRows(inputs))}
      WHERE EXISTS (SELECT FROM datasets d WHERE d.id = j.dataset_id)
      ON CONFLICT (id) DO NOTHING
      RETURNING *),
    marked AS (
      INSERT INTO staging_log_progress (location, jobs_through) VALUES (${location}, ${through})
      ON CONFLICT (location) DO UPDATE SET jobs_through = GREATEST(staging_log_progress.jobs_through, EXCLUDED.jobs_through), updated_at = now())
    SELECT * FROM created`;
}

/** The byte of a staging log before which every record's job has a row (0 when none is known). */
export async function loggedJobsThrough(db: Db, location: string): Promise<number> {
  const [row] = await db<{ through: string }[]>`SELECT jobs_through::text AS through FROM staging_log_progress WHERE location = ${location}`;
  return row ? Number(row.through) : 0;
}

/**
 * Forgets the marks not moved for `olderThanMs`: of logs deleted by a process that stopped before
 * it forgot them. (A log's records are replayed long before: at the start of any process, and by
 * the orphan sweep.)
 */
export async function purgeStagingLogProgress(db: Db, olderThanMs: number): Promise<number> {
  const rows = await db`DELETE FROM staging_log_progress WHERE updated_at < now() - ${ms(olderThanMs)}::interval RETURNING location`;
  return rows.length;
}

/** Forgets the marks of staging logs that were deleted. */
export async function forgetStagingLogs(db: Db, locations: readonly string[]): Promise<void> {
  if (locations.length > 0) await db`DELETE FROM staging_log_progress WHERE location = ANY(${db.array([...locations])}::text[])`;
}

/**
 * Tells other processes of jobs enqueued without their notifications (`notify: false` above), in
 * one statement: as few notifications as hold them all, each listing as many as fit.
 */
export async function notifyJobs(db: Db, queue: string, jobs: readonly EnqueuedJob[]): Promise<void> {
  const lists: string[][] = [[]];
  let bytes = 0;
  for (const { kind, datasetId, payload } of jobs) {
    // The payload alone is measured, as enqueueJobsIf measures it.
    const sent = Buffer.byteLength(JSON.stringify(payload) ?? '') <= NOTIFIED_PAYLOAD_BYTES ? payload : null;
    const text = JSON.stringify({ kind, datasetId, payload: sent });
    const size = Buffer.byteLength(text) + 1;
    if (bytes + size > NOTIFIED_JOBS_BYTES) {
      lists.push([]);
      bytes = 0;
    }
    lists.at(-1)!.push(text);
    bytes += size;
  }
  await db`SELECT pg_notify(${JOBS_CHANNEL}, ${notification(db, queue, db`list::json`)})
    FROM unnest(${db.array(lists.filter((list) => list.length > 0).map((list) => `[${list.join(',')}]`))}::text[]) AS list
    WHERE ${notifying(db)}`;
}

async function notifyQueue(db: Db, queue: string): Promise<void> {
  await db`SELECT pg_notify(${JOBS_CHANNEL}, ${notification(db, queue)}) WHERE ${notifying(db)}`;
}

export async function getJob(db: Db, id: string): Promise<Job | null> {
  if (!UUID.test(id)) return null;
  const [row] = await db<Job[]>`SELECT * FROM jobs WHERE id = ${id}`;
  return row ?? null;
}

export interface ClaimOptions {
  queue: string;
  workerId: string;
  leaseMs: number;
  /** Most jobs to claim (in coalescing mode: the batch size, leader included). */
  limit: number;
  /** Only these kinds (all kinds when absent). */
  kinds?: readonly string[];
  /**
   * Coalescing: claim the oldest claimable job, then more queued jobs of the
   * same dataset and kind, oldest first, up to `limit`. With `weightField`,
   * followers are added only while the sum of that numeric payload field
   * (e.g. `rowCount`) stays within `maxWeight`; the leader is always claimed.
   * Jobs without a dataset are never coalesced, nor jobs that have lost a
   * lease: if one of them kills its process again, it takes no innocent
   * batch down with it, and only its own lease_expiries grows.
   */
  coalesce?: boolean | CoalesceOptions;
}

export interface CoalesceOptions {
  weightField?: string;
  /** Most weight per claim, the leader's included (unbounded when absent). */
  maxWeight?: number;
  /**
   * A second bound, on size: the path of a numeric payload field (e.g. `['staged', 'sizeBytes']`)
   * whose sum over a claim stays within `maxSize`, the leader's included (the leader is always
   * claimed); under a budget, a dataset whose queued jobs reach `maxSize` is ready at once.
   */
  sizePath?: readonly string[];
  maxSize?: number;
  /**
   * The coalescing budget: with `maxWaitMs` > 0, the queued jobs of a dataset (and kind) wait
   * until their weight sum reaches `minWeight` or the oldest of them was created `maxWaitMs` ago
   * (twice that while a job of the same dataset and kind runs: see {@link budgetWait}), so that
   * one claim takes many. Jobs that must not wait more are claimable at once as without
   * a budget: a job whose lease expired, one being retried (attempts > 0), one without a dataset.
   */
  minWeight?: number;
  maxWaitMs?: number;
  /** A boolean payload field: a job where it is true makes its dataset's batch ready at once (a client waits for it). */
  promptField?: string;
}

/**
 * Claims jobs in one statement. Claimable: queued and due (and, under a
 * coalescing budget, of a dataset whose batch is ready), or running with an
 * expired lease (its worker died). Reclaiming counts as a new attempt and a
 * lease expiry, and records the lost lease in last_error; a job whose lease
 * expiries reach max_attempts is returned so, and the runner fails it unrun.
 */
export async function claimJobs(db: Db, o: ClaimOptions): Promise<Job[]> {
  if (o.limit <= 0) return [];
  const coalesce = o.coalesce === true ? {} : o.coalesce || null;
  const budget = coalesce && (coalesce.maxWaitMs ?? 0) > 0 ? coalesce : null;
  // Computed once per claim: the (dataset, kind) groups whose queued jobs are due as a batch.
  const ready = budget
    ? db`
      ready AS MATERIALIZED (
        SELECT dataset_id, kind FROM jobs
        WHERE ${waitingForBudget(db, o.queue, o.kinds)}
        GROUP BY dataset_id, kind
        HAVING sum(${weight(db, budget)}) >= ${budget.minWeight ?? null}::numeric
            OR sum(${size(db, budget)}) >= ${budget.maxSize ?? null}::numeric
            OR min(created_at) <= now() - ${budgetWait(db, o.queue, budget.maxWaitMs ?? 0)}
            OR bool_or(${budget.promptField ? db`payload -> ${budget.promptField} = 'true'::jsonb` : db`false`})),`
    : db``;
  const withinBudget = budget
    ? db`AND (attempts > 0 OR dataset_id IS NULL OR (dataset_id, kind) IN (SELECT dataset_id, kind FROM ready))`
    : db``;
  const claimable = db`
    queue = ${o.queue} ${kindsOf(db, o.kinds)}
    AND ((state = 'queued' AND run_at <= now() ${withinBudget}) OR (state = 'running' AND locked_until < now()))`;

  const picked = !coalesce
    ? db`
      picked AS (
        SELECT id FROM jobs WHERE ${claimable}
        ORDER BY run_at, created_at LIMIT ${o.limit}
        FOR UPDATE SKIP LOCKED)`
    : db`
      ${ready}
      leader AS MATERIALIZED (
        SELECT id, kind, dataset_id, state, run_at, created_at, lease_expiries, ${weight(db, coalesce)} AS weight, ${size(db, coalesce)} AS size
        FROM jobs WHERE ${claimable}
        ORDER BY run_at, created_at LIMIT 1
        FOR UPDATE SKIP LOCKED),
      candidates AS MATERIALIZED (
        SELECT j.id, j.run_at, j.created_at, ${weight(db, coalesce, db`j.`)} AS weight, ${size(db, coalesce, db`j.`)} AS size
        FROM jobs j JOIN leader l ON j.kind = l.kind AND j.dataset_id = l.dataset_id AND j.id <> l.id
        WHERE j.queue = ${o.queue} AND j.state = 'queued' AND j.run_at <= now()
          AND l.state = 'queued' AND l.lease_expiries = 0 AND j.lease_expiries = 0
        ORDER BY j.run_at, j.created_at LIMIT ${o.limit - 1}
        FOR UPDATE OF j SKIP LOCKED),
      followers AS (
        SELECT id FROM (
          SELECT c.id,
            l.weight + sum(c.weight) OVER (ORDER BY c.run_at, c.created_at, c.id) AS total,
            l.size + sum(c.size) OVER (ORDER BY c.run_at, c.created_at, c.id) AS total_size
          FROM candidates c CROSS JOIN leader l) f
        WHERE (total <= ${coalesce.maxWeight ?? null}::numeric OR ${coalesce.maxWeight == null})
          AND (total_size <= ${coalesce.maxSize ?? null}::numeric OR ${coalesce.maxSize == null})),
      picked AS (SELECT id FROM leader UNION ALL SELECT id FROM followers)`;

  return db<Job[]>`
    WITH ${picked}
    UPDATE jobs j SET
      state = 'running', locked_by = ${o.workerId}, locked_until = now() + ${ms(o.leaseMs)}::interval,
      attempts = j.attempts + 1, updated_at = now(),
      lease_expiries = j.lease_expiries + CASE WHEN j.state = 'running' THEN 1 ELSE 0 END,
      last_error = CASE WHEN j.state = 'running' THEN 'lease of ' || j.locked_by || ' expired' ELSE j.last_error END
    FROM picked WHERE j.id = picked.id
    RETURNING j.*`;
}

/** When the jobs a coalescing budget holds back fall due (see {@link budgetDue}). */
export interface BudgetDue {
  /**
   * Milliseconds until the first dataset's oldest held-back job has waited its {@link budgetWait},
   * by the database's clock. Zero or less: due now (another claimer holds it, or it became due since
   * the last claim).
   */
  dueInMs: number;
  /** The least weight (`weightField`) any dataset still lacks to reach `minWeight`; null: no minWeight. */
  weightShort: number | null;
  /** The least size (`sizePath`) any dataset still lacks to reach `maxSize`; null: no maxSize. */
  sizeShort: number | null;
  /** The datasets whose jobs wait. */
  datasets: string[];
}

/** When the jobs waiting for their coalescing budget (see `CoalesceOptions`) fall due; null when none waits. */
export async function budgetDue(db: Db, o: { queue: string; kinds?: readonly string[] } & CoalesceOptions): Promise<BudgetDue | null> {
  const [row] = await db<{ dueInMs: number | null; weightShort: number | null; sizeShort: number | null; datasets: string[] | null }[]>`
    SELECT extract(epoch FROM min(due) - now()) * 1000 AS due_in_ms,
           min(${o.minWeight ?? null}::numeric - weight) AS weight_short, min(${o.maxSize ?? null}::numeric - size) AS size_short,
           array_agg(dataset_id::text) AS datasets
    FROM (
      SELECT dataset_id, min(created_at) + ${budgetWait(db, o.queue, o.maxWaitMs ?? 0)} AS due, sum(${weight(db, o)}) AS weight, sum(${size(db, o)}) AS size
      FROM jobs WHERE ${waitingForBudget(db, o.queue, o.kinds)}
      GROUP BY dataset_id, kind) AS groups`;
  if (row?.dueInMs == null) return null;
  const number = (n: number | null) => (n == null ? null : Number(n));
  return { dueInMs: Number(row.dueInMs), weightShort: number(row.weightShort), sizeShort: number(row.sizeShort), datasets: row.datasets ?? [] };
}

/**
 * How long the oldest queued job of a dataset waits for its budget, in a query grouped by
 * `jobs.dataset_id, jobs.kind`: `maxWaitMs`, or twice that while a job of the same dataset and
 * kind runs with a live lease. One write of a dataset at a time then takes what queued while the
 * one before it ran, instead of a second writer writing it beside: fewer, larger files for the
 * same rows and less CPU per row (docs/performance.md, "One write of a dataset at a time"). A
 * batch whose dataset is written meanwhile waits at most one more `maxWaitMs`; the row and size
 * budgets, and a client waiting for its batch, still make the dataset ready at once.
 */
const budgetWait = (db: Db, queue: string, maxWaitMs: number) => db`
  ${ms(maxWaitMs)}::interval * CASE WHEN EXISTS (
    SELECT 1 FROM jobs running
    WHERE running.queue = ${queue} AND running.state = 'running' AND running.locked_until >= now()
      AND running.dataset_id = jobs.dataset_id AND running.kind = jobs.kind) THEN 2 ELSE 1 END`;

const kindsOf = (db: Db, kinds: readonly string[] | undefined) => (kinds ? db`AND kind IN ${db(kinds as string[])}` : db``);

/** Queued jobs that a coalescing budget may hold back: due, first attempt, of a dataset. */
const waitingForBudget = (db: Db, queue: string, kinds: readonly string[] | undefined) => db`
  queue = ${queue} ${kindsOf(db, kinds)} AND state = 'queued' AND run_at <= now() AND attempts = 0 AND dataset_id IS NOT NULL`;

/** A job's weight, size and whether its client waits for it, under a budget: what {@link weight}, {@link size} and the claim's `promptField` read in SQL. */
export function weighJob(budget: CoalesceOptions, payload: unknown): { weight: number; size: number; prompt: boolean } {
  const at = (path: readonly string[] | undefined) => {
    if (!path) return 0;
    let value: unknown = payload;
    for (const key of path) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
    return typeof value === 'number' ? value : 0;
  };
  const fields = payload !== null && typeof payload === 'object' ? (payload as Record<string, unknown>) : {};
  return {
    weight: at(budget.weightField === undefined ? undefined : [budget.weightField]),
    size: at(budget.sizePath),
    prompt: budget.promptField !== undefined && fields[budget.promptField] === true,
  };
}

/** A payload field as a number (0 when absent or not a number), so a bad payload cannot break the claim. */
function weight(db: Db, coalesce: CoalesceOptions, prefix = db``) {
  const field = coalesce.weightField;
  if (field === undefined) return db`0::numeric`;
  return db`CASE WHEN jsonb_typeof(${prefix}payload -> ${field}) = 'number' THEN (${prefix}payload ->> ${field})::numeric ELSE 0 END`;
}

/** The payload field at `sizePath` as a number (0 when absent or not a number). */
function size(db: Db, coalesce: CoalesceOptions, prefix = db``) {
  const path = coalesce.sizePath;
  if (path === undefined) return db`0::numeric`;
  return db`CASE WHEN jsonb_typeof(${prefix}payload #> ${path as string[]}::text[]) = 'number' THEN (${prefix}payload #>> ${path as string[]}::text[])::numeric ELSE 0 END`;
}

/** Extends the lease of jobs this worker holds; false when any of them is no longer ours. */
export async function heartbeatJobs(db: Db, ids: readonly string[], workerId: string, leaseMs: number): Promise<boolean> {
  if (ids.length === 0) return true;
  const rows = await db`
    UPDATE jobs SET locked_until = now() + ${ms(leaseMs)}::interval, updated_at = now()
    WHERE id = ANY(${db.array(ids as string[])}::uuid[]) AND state = 'running' AND locked_by = ${workerId}
    RETURNING id`;
  return rows.length === ids.length;
}

/**
 * Marks jobs succeeded with their results (job id → JSON value), only those
 * this worker still holds; returns the ids it completed. Run it in the
 * transaction that commits the work, so work and completion commit together.
 */
export async function completeJobs(db: Db, ids: readonly string[], workerId: string, results: Record<string, unknown> = {}): Promise<string[]> {
  if (ids.length === 0) return [];
  const rows = await db<{ id: string }[]>`
    UPDATE jobs SET state = 'succeeded', result = ${db.json(results as never)}::jsonb -> id::text,
      locked_by = NULL, locked_until = NULL, finished_at = now(), updated_at = now()
    WHERE id = ANY(${db.array(ids as string[])}::uuid[]) AND state = 'running' AND locked_by = ${workerId}
    RETURNING id`;
  return rows.map((r) => r.id);
}

/** How a failed attempt may be retried: after `delayMs`, if that is before the job's deadline. */
export interface RetryPlan {
  delayMs: number;
  /** The deadline of a job that has none yet: created_at + windowMs. */
  windowMs: number;
}

/**
 * Records a failed attempt. With a retry plan whose retry falls due by the
 * job's retry_until (set now, from created_at + windowMs, if the job has none)
 * the job is queued again at now() + delay; otherwise it is failed for good.
 * Returns the job as updated, or null when this worker no longer holds it.
 */
export async function failJob(db: Db, id: string, workerId: string, error: string, retry: RetryPlan | null): Promise<Job | null> {
  const retrying = retry !== null;
  const delay = ms(retry?.delayMs ?? 0);
  const [row] = await db<Job[]>`
    WITH attempt AS (
      SELECT id, COALESCE(retry_until, created_at + ${ms(retry?.windowMs ?? 0)}::interval) AS deadline FROM jobs
      WHERE id = ${id} AND state = 'running' AND locked_by = ${workerId}),
    outcome AS (
      SELECT id, deadline, ${retrying} AND now() + ${delay}::interval <= deadline AS retries FROM attempt)
    UPDATE jobs j SET
      retry_until = CASE WHEN ${retrying} THEN o.deadline ELSE j.retry_until END,
      state = CASE WHEN o.retries THEN 'queued' ELSE 'failed' END,
      run_at = CASE WHEN o.retries THEN now() + ${delay}::interval ELSE j.run_at END,
      finished_at = CASE WHEN o.retries THEN NULL ELSE now() END,
      last_error = ${error}, locked_by = NULL, locked_until = NULL, updated_at = now()
    FROM outcome o
    WHERE j.id = o.id AND j.state = 'running' AND j.locked_by = ${workerId}
    RETURNING j.*`;
  return row ?? null;
}

/**
 * Hands jobs back without counting the attempt (a shutdown is not the job's
 * fault): queued again, due now, and the queue is notified so another process
 * picks them up at once. Returns the ids released.
 */
export async function releaseJobs(db: Db, ids: readonly string[], workerId: string): Promise<string[]> {
  if (ids.length === 0) return [];
  const rows = await db<{ id: string; queue: string }[]>`
    UPDATE jobs SET state = 'queued', run_at = now(), attempts = greatest(attempts - 1, 0),
      locked_by = NULL, locked_until = NULL, updated_at = now()
    WHERE id = ANY(${db.array(ids as string[])}::uuid[]) AND state = 'running' AND locked_by = ${workerId}
    RETURNING id, queue`;
  for (const queue of new Set(rows.map((r) => r.queue))) await notifyQueue(db, queue);
  return rows.map((r) => r.id);
}

/**
 * Deletes succeeded jobs that finished more than `olderThanMs` ago, at most `limit` per call;
 * returns the count. Failed jobs are kept for an operator (they may hold an acknowledged batch),
 * except those of `failedOfQueues`, whose work the next round does again.
 */
export async function purgeFinishedJobs(
  db: Db,
  olderThanMs: number,
  options: { failedOfQueues?: readonly string[]; limit?: number } = {},
): Promise<number> {
  const queues = [...(options.failedOfQueues ?? [])];
  const disposable = queues.length > 0 ? db`OR (state = 'failed' AND queue = ANY(${db.array(queues)}::text[]))` : db``;
  const rows = await db`
    DELETE FROM jobs WHERE id IN (
      SELECT id FROM jobs
      WHERE (state = 'succeeded' ${disposable})
        AND finished_at < now() - ${ms(olderThanMs)}::interval
      LIMIT ${options.limit ?? 10_000})
    RETURNING id`;
  return rows.length;
}

/**
 * Queues a failed job again: due now, attempts and lease expiries reset, retried for `windowMs`
 * from now; last_error stays until the next attempt. Null when no failed job has this id. A job
 * key held by another queued or running job makes this throw (unique violation, 23505).
 */
export async function retryFailedJob(db: Db, id: string, windowMs: number): Promise<Job | null> {
  if (!UUID.test(id)) return null;
  const [row] = await db<Job[]>`
    UPDATE jobs SET state = 'queued', run_at = now(), attempts = 0, lease_expiries = 0,
      retry_until = now() + ${ms(windowMs)}::interval, finished_at = NULL, locked_by = NULL, locked_until = NULL, updated_at = now()
    WHERE id = ${id} AND state = 'failed'
    RETURNING *`;
  if (row) await notifyQueue(db, row.queue);
  return row ?? null;
}

/** Deletes a failed job; null when no failed job has this id. */
export async function deleteFailedJob(db: Db, id: string): Promise<Job | null> {
  if (!UUID.test(id)) return null;
  const [row] = await db<Job[]>`DELETE FROM jobs WHERE id = ${id} AND state = 'failed' RETURNING *`;
  return row ?? null;
}

/**
 * Where a job's batch is staged (`payload.staged.location` on `payload.storageTargetId`, as
 * ingestion writes it), or null for a job that stages nothing. The orphan sweep keeps what this
 * names for every job that has not succeeded (`referencedLocations`).
 */
export function stagedBodyOf(job: Pick<Job, 'payload'>): { storageTargetId: string; location: string } | null {
  const payload = job.payload as { staged?: { location?: unknown }; storageTargetId?: unknown } | null;
  const location = payload?.staged?.location;
  const storageTargetId = payload?.storageTargetId;
  return typeof location === 'string' && typeof storageTargetId === 'string' ? { storageTargetId, location } : null;
}

/** Whether a job's batch is a range of a staged object that other batches' jobs may name too (group commit). */
export function sharesStagedObject(job: Pick<Job, 'payload'>): boolean {
  return (job.payload as { staged?: { range?: unknown } } | null)?.staged?.range != null;
}

export interface JobListQuery {
  state?: JobState;
  datasetId?: string;
  kind?: string;
  /** Opaque cursor from a previous page's `nextCursor`. */
  cursor?: string | null;
  limit: number;
}

export interface JobPage {
  jobs: Job[];
  nextCursor: string | null;
}

/** Jobs oldest first, a page at a time (keyset.ts: stable while jobs are added or change state). */
export async function listJobs(db: Db, query: JobListQuery): Promise<JobPage> {
  const after = afterPosition(db, query.cursor ? decodeCreatedCursor('job', query.cursor) : null);
  const rows = await db<Job[]>`
    SELECT * FROM jobs
    WHERE (${query.state ?? null}::text IS NULL OR state = ${query.state ?? null})
      AND (${query.datasetId ?? null}::uuid IS NULL OR dataset_id = ${query.datasetId ?? null})
      AND (${query.kind ?? null}::text IS NULL OR kind = ${query.kind ?? null})
      AND ${after.where}
    ${after.orderBy}
    LIMIT ${query.limit + 1}`;
  const page = pageOf('job', rows, query.limit);
  return { jobs: page.rows, nextCursor: page.nextCursor };
}

export interface JobCount {
  queue: string;
  kind: string;
  state: JobState;
  count: number;
}

/**
 * Jobs per queue and kind that no runner has taken up for `graceMs`: queued and due that long,
 * or running with a lease expired that long (for metrics: runners missing or falling behind).
 */
export async function countOverdueJobs(db: Db, graceMs: number): Promise<Omit<JobCount, 'state'>[]> {
  return db<Omit<JobCount, 'state'>[]>`
    SELECT queue, kind, count(*)::int AS count FROM jobs
    WHERE (state = 'queued' AND run_at < now() - ${ms(graceMs)}::interval)
       OR (state = 'running' AND locked_until < now() - ${ms(graceMs)}::interval)
    GROUP BY queue, kind ORDER BY queue, kind`;
}

/** Jobs per queue, kind and state (for metrics). */
export async function countJobs(db: Db, queue?: string): Promise<JobCount[]> {
  return db<JobCount[]>`
    SELECT queue, kind, state, count(*)::int AS count FROM jobs
    ${queue ? db`WHERE queue = ${queue}` : db``}
    GROUP BY queue, kind, state ORDER BY queue, kind, state`;
}
