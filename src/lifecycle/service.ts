/**
 * The lifecycle: retention, compaction and garbage collection, run as jobs of the job table.
 *
 * - Job kinds (queue `timestore_lifecycle`): `lifecycle` for one dataset (retention, then
 *   compaction, then deleting the files its earlier versions removed once their grace period is
 *   over), and `maintenance` for the whole catalog (the orphan sweep of every storage target, and
 *   purging finished jobs and expired idempotency keys). A job key per dataset keeps at most one
 *   queued or running job of each; a job's result says what it did.
 * - The scheduler starts a round every interval: `claimScheduledRound` lets exactly one of the
 *   processes sharing the catalog win each interval, and that one enqueues the round's jobs; any
 *   process's lifecycle runner then runs them, one at a time, never two runners the same job.
 * - It runs inside `serve` unless TIMESTORE_LIFECYCLE_ENABLED=false, and alone as
 *   `timestore lifecycle`.
 * - A failed attempt is retried only within one interval, not the hours an ingest job gets: the
 *   next round does the same work again from the catalog as it is then, and a lifecycle job holds
 *   no acknowledged data. So failed lifecycle jobs are also purged with the succeeded ones.
 */
import { effectiveRetention, type RetentionDefaults } from '../model/retention.ts';
import { getDataset } from '../catalog/datasets.ts';
import { enqueueJob, type Job, type NewJob } from '../catalog/job-table.ts';
import { claimScheduledRound, lifecycleActiveSince, listLifecycleDatasetIds } from '../catalog/lifecycle.ts';
import { getRetentionPolicy } from '../catalog/retention-policies.ts';
import { listStorageTargets } from '../catalog/storage-targets.ts';
import type { Config } from '../config.ts';
import { errors } from '../model/errors.ts';
import { wakeLocalRunners } from '../jobs/local-signals.ts';
import type { JobContext, JobRunner } from '../jobs/runner.ts';
import type { Metrics } from '../observability/metrics.ts';
import { type CollectorDeps, deleteRemovedFiles, purgeBookkeeping, type Swept, sweepOrphans } from './collector.ts';
import { type CompactionDeps, compactDataset } from './compaction.ts';
import { applyRetention } from './expiry.ts';

export const LIFECYCLE_QUEUE = 'timestore_lifecycle';
export const DATASET_JOB_KIND = 'lifecycle';
export const MAINTENANCE_JOB_KIND = 'maintenance';
const SCHEDULE = 'lifecycle';

/** What compaction needs (its catalog, storage, pool, scratch directory and log), and the schedule's own. */
export interface LifecycleOptions extends CompactionDeps, Pick<CollectorDeps, 'replayStagingLog'> {
  settings: Config['lifecycle'];
  retentionDefaults: RetentionDefaults;
  metrics?: Metrics;
  /** The clock retention measures ages against (tests move it). */
  now?: () => Date;
}

export class Lifecycle {
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** This process has a lifecycle runner (register() was called). */
  private runsHere = false;
  private ticking: Promise<void> = Promise.resolve();
  private readonly now: () => Date;
  /** Per dataset, until when the lifecycle job compactSoon last asked for covers further writes. */
  private readonly compactionAsked = new Map<string, number>();
  /** Per dataset, the timer of an ask repeated because the job it found was already running. */
  private readonly followUps = new Map<string, ReturnType<typeof setTimeout>>();
  private stopped = false;

  constructor(private readonly o: LifecycleOptions) {
    this.now = o.now ?? (() => new Date());
  }

  /** Registers the job handlers on a runner (its queue: LIFECYCLE_QUEUE). */
  register(runner: JobRunner): JobRunner {
    this.runsHere = true;
    return runner
      .register<{ datasetId: string }>(DATASET_JOB_KIND, (jobs, ctx) => this.runDataset(jobs[0]!, ctx), { queue: LIFECYCLE_QUEUE })
      .register(MAINTENANCE_JOB_KIND, (jobs, ctx) => this.runMaintenance(jobs[0]!, ctx), { queue: LIFECYCLE_QUEUE });
  }

  /**
   * The lifecycle job of one dataset, on request (POST …/lifecycle): queued as by {@link runNow}
   * when some process runs lifecycle jobs, this one or another that has done lifecycle work within
   * the last two intervals; otherwise 503 `lifecycle_not_running`, and nothing is queued (a job
   * nobody runs would wait forever).
   */
  async requestRun(datasetId: string, actor: string | null): Promise<Job> {
    if (!this.runsHere) {
      const windowMs = 2 * this.o.settings.intervalMs + 60_000;
      if (!(await lifecycleActiveSince(this.o.sql, LIFECYCLE_QUEUE, new Date(Date.now() - windowMs)))) {
        throw errors.lifecycle_not_running(Math.round(windowMs / 1000));
      }
    }
    return this.runNow(datasetId, actor);
  }

  /**
   * Enqueues (or finds the queued or running) lifecycle job of one dataset. Any process's lifecycle
   * runner takes it: this one's, or a `timestore lifecycle` process's.
   */
  runNow(datasetId: string, actor: string | null): Promise<Job> {
    return this.enqueueDataset(datasetId, actor, null);
  }

  /**
   * After a write published to a dataset: its lifecycle job (retention, compaction, collection),
   * TIMESTORE_COMPACTION_DELAY_SECONDS from now, so that a window compacts soon after its writes
   * rather than at the next round; the writes until then find that job queued and share it. Only
   * where this process runs lifecycle jobs (a job nobody runs would wait forever). A failure is
   * logged: the next round does the same work.
   */
  compactSoon(datasetId: string): void {
    const delayMs = this.o.settings.compactionDelayMs;
    if (!this.runsHere || delayMs === 0) return;
    // A write within the delay of this process's last request for the dataset would find that job
    // queued: no catalog statements on the write path for it.
    const now = Date.now();
    if (now < (this.compactionAsked.get(datasetId) ?? 0)) return;
    this.compactionAsked.set(datasetId, now + delayMs);
    this.askCompaction(datasetId, new Date(now + delayMs));
  }

  private askCompaction(datasetId: string, runAt: Date): void {
    const delayMs = this.o.settings.compactionDelayMs;
    this.enqueueDataset(datasetId, null, runAt).then(
      (job) => {
        if (job.state !== 'running' || this.stopped) return;
        // The job found has already read the dataset, perhaps before this write: ask again once
        // the delay is over (it has usually finished by then); writes until then share that ask.
        this.compactionAsked.set(datasetId, Number.POSITIVE_INFINITY);
        this.followUps.set(
          datasetId,
          setTimeout(() => {
            this.followUps.delete(datasetId);
            const at = Date.now() + delayMs; // as a write's own ask: due when its window closes
            this.compactionAsked.set(datasetId, at);
            this.askCompaction(datasetId, new Date(at));
          }, delayMs),
        );
      },
      (err) => {
        this.compactionAsked.delete(datasetId);
        this.o.log.warn({ err, datasetId }, 'lifecycle: compaction after a write not scheduled; the next round does it');
      },
    );
  }

  /** Enqueues a whole round: every dataset that is not archived, and the maintenance job. */
  async enqueueRound(): Promise<Job[]> {
    const jobs: Job[] = [];
    for (const datasetId of await listLifecycleDatasetIds(this.o.sql)) jobs.push(await this.runNow(datasetId, null));
    jobs.push(await this.enqueue({ kind: MAINTENANCE_JOB_KIND, jobKey: MAINTENANCE_JOB_KIND, payload: {} }));
    return jobs;
  }

  /** A dataset's lifecycle job, at `runAt` (null: now); a queued one of a later time is brought forward. */
  private enqueueDataset(datasetId: string, actor: string | null, runAt: Date | null): Promise<Job> {
    return this.enqueue({ kind: DATASET_JOB_KIND, datasetId, jobKey: `${DATASET_JOB_KIND}:${datasetId}`, payload: { datasetId }, actor, runAt });
  }

  /** Enqueues a lifecycle job (or finds the queued or running one of its key) and wakes this process's runner. */
  private async enqueue(job: Omit<NewJob, 'queue' | 'maxAttempts' | 'retryWindowMs'>): Promise<Job> {
    const { job: enqueued, created } = await enqueueJob(this.o.sql, {
      ...job,
      queue: LIFECYCLE_QUEUE,
      maxAttempts: 3,
      retryWindowMs: this.o.settings.intervalMs,
    });
    if (created) wakeLocalRunners(LIFECYCLE_QUEUE);
    return enqueued;
  }

  /** Checks the shared schedule now and then; the process that wins an interval enqueues its round. */
  startScheduler(workerId: string): void {
    const check = Math.min(this.o.settings.intervalMs, 15_000);
    const tick = async () => {
      try {
        if (await claimScheduledRound(this.o.sql, SCHEDULE, this.o.settings.intervalMs, workerId)) {
          const jobs = await this.enqueueRound();
          this.o.log.info({ jobs: jobs.length }, 'lifecycle: round scheduled');
        }
      } catch (err) {
        this.o.log.warn({ err }, 'lifecycle: scheduling failed; trying again at the next check');
      }
    };
    const loop = () => {
      this.ticking = tick().finally(() => {
        if (this.timer !== null) this.timer = setTimeout(loop, check * (0.8 + Math.random() * 0.4));
      });
    };
    this.timer = setTimeout(loop, 0);
  }

  async stopScheduler(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.stopped = true;
    for (const followUp of this.followUps.values()) clearTimeout(followUp);
    this.followUps.clear();
    await this.ticking;
  }

  private async runDataset(job: Job<{ datasetId: string }>, ctx: JobContext): Promise<Record<string, unknown>> {
    const dataset = await getDataset(this.o.sql, job.payload.datasetId);
    if (dataset.status === 'archived') return { [job.id]: { dataset: dataset.slug, skipped: 'archived datasets are left as they are' } };
    const stored = await getRetentionPolicy(this.o.sql, dataset.id);
    const policy = effectiveRetention(stored?.policy ?? null, this.o.retentionDefaults);
    const started = Date.now();

    const retention = await this.measured('retention', () => applyRetention(this.o.sql, dataset, policy, this.now()), (r) =>
      this.o.metrics?.retention('succeeded', { partitionsRemoved: r.partitionsRemoved, bytesRemoved: r.bytesRemoved }),
    );
    ctx.signal.throwIfAborted();
    const compaction = await this.measured(
      'compaction',
      () => compactDataset(this.o, dataset, this.o.settings.compaction, ctx.signal),
      (c) => this.o.metrics?.compaction('succeeded', c),
    );
    // Files a running query or stream reads are kept whatever the grace: the collector skips pinned versions.
    const removedBefore = new Date(this.now().getTime() - policy.deleteGraceMinutes.value * 60_000);
    const filesDeleted = await this.measured('garbageCollection', () => deleteRemovedFiles(this.o, dataset, removedBefore, ctx.signal), (d) =>
      this.o.metrics?.garbageCollection('succeeded', { filesDeleted: d.files, bytesDeleted: d.bytes }),
    );
    const result = { dataset: dataset.slug, retention, compaction, filesDeleted, durationMs: Date.now() - started };
    this.o.log.info(result, 'lifecycle: dataset done');
    return { [job.id]: result };
  }

  private async runMaintenance(job: Job, ctx: JobContext): Promise<Record<string, unknown>> {
    const olderThan = new Date(Date.now() - this.o.settings.orphanMinAgeMs);
    const orphans: Record<string, Swept | { error: string }> = {};
    for (const target of await listStorageTargets(this.o.sql)) {
      try {
        orphans[target.name] = await this.measured('garbageCollection', () => sweepOrphans(this.o, target, olderThan, ctx.signal), (d) =>
          this.o.metrics?.garbageCollection('succeeded', { filesDeleted: d.files, bytesDeleted: d.bytes, objectsLeftAlone: d.skipped, targetsNotOwned: d.notOwned ? 1 : 0 }),
        );
      } catch (err) {
        ctx.signal.throwIfAborted();
        // One unreachable target does not stop the others; the next round tries again.
        this.o.log.warn({ err, target: target.name }, 'gc: orphan sweep failed');
        orphans[target.name] = { error: (err as Error).message };
      }
    }
    const purged = await purgeBookkeeping(this.o.sql, this.o.settings.jobRetentionMs, [LIFECYCLE_QUEUE]);
    this.o.log.info({ orphans, purged }, 'lifecycle: maintenance done');
    return { [job.id]: { orphans, purged } };
  }

  /** Runs a task, reporting a failure to the metrics before it propagates. */
  private async measured<T>(task: 'retention' | 'compaction' | 'garbageCollection', run: () => Promise<T>, succeeded: (result: T) => void): Promise<T> {
    try {
      const result = await run();
      succeeded(result);
      return result;
    } catch (err) {
      this.o.metrics?.[task]('failed');
      throw err;
    }
  }
}
