/**
 * Group commit of batches' jobs. Each accepted batch is a job INSERT: a round trip and a commit
 * of the catalog, which with many small batches at once cost the catalog more than their rows do
 * (docs/performance.md, "Small batches"). So a job whose dataset already has an insert of jobs in
 * flight waits for it, with the others that arrive meanwhile, and they are then inserted together
 * in one statement (job-table.ts `enqueueJobsIf`), which holds only while the dataset's row still
 * accepts them as the row they were checked on did. A job that finds no insert in flight is
 * inserted at once.
 *
 * Other processes hear of these jobs at most {@link NOTICE_INTERVAL_MS} later, in one statement
 * for the jobs inserted meanwhile (job-table.ts `notifyJobs`), rather than from each INSERT: a
 * commit that notifies costs the catalog more CPU than the row it inserts, waits its turn for the
 * notification queue's lock, and wakes every listening process (docs/performance.md,
 * "Notifications gathered"). This process's runners are woken in-process at once (the caller's
 * `wake`).
 */
import type { Db } from '../catalog/db.ts';
import { acceptsAsBefore, stillAcceptsAsBefore } from '../catalog/datasets.ts';
import { type EnqueuedJob, enqueueJobsIf, type Job, type NewJob, notifyJobs } from '../catalog/job-table.ts';
import type { Logger } from '../log.ts';
import type { Dataset } from '../model/records.ts';

/**
 * Inserts of one dataset's jobs in flight before jobs wait: one, so that jobs arriving during an
 * insert (about a millisecond) share the next one.
 */
export const MAX_IN_FLIGHT = 1;
/** Most jobs one insert takes; more wait for the next. */
export const MAX_GROUP_JOBS = 256;
/** The longest other processes wait to hear of a job inserted here. */
export const NOTICE_INTERVAL_MS = 50;

interface Member {
  job: NewJob;
  resolve(job: Job | null): void;
  reject(err: unknown): void;
}

interface Line {
  inFlight: number;
  waiting: Member[];
}

/** The read of a dataset's row in flight (settled either way), and the one that follows it. */
interface Confirming {
  inFlight: Promise<void> | null;
  next: Promise<boolean> | null;
}

export class JobGroups {
  /** Per dataset row as checked (the object the check passed on), its inserts in flight and the jobs waiting. */
  private readonly lines = new Map<Dataset, Line>();
  /** Per dataset row as checked, the read of the catalog's row in flight, and the one that follows it (see {@link confirm}). */
  private readonly confirming = new Map<Dataset, Confirming>();
  /** Per queue, the jobs inserted that other processes have not heard of yet. */
  private readonly unnoticed = new Map<string, EnqueuedJob[]>();

  /**
   * `notify`: whether other processes can listen (an external catalog; the embedded one delivers
   * no notification); `noticeIntervalMs`: {@link NOTICE_INTERVAL_MS} unless given.
   */
  constructor(
    private readonly sql: Db,
    private readonly options: { notify?: boolean; noticeIntervalMs?: number; log?: Logger } = {},
  ) {}

  /** Inserts `job` where `checkedOn` still accepts it as it did: the job, or null when the row changed. */
  enqueue(job: NewJob, checkedOn: Dataset): Promise<Job | null> {
    let line = this.lines.get(checkedOn);
    if (!line) this.lines.set(checkedOn, (line = { inFlight: 0, waiting: [] }));
    return new Promise<Job | null>((resolve, reject) => {
      line.waiting.push({ job, resolve, reject });
      if (line.inFlight < MAX_IN_FLIGHT) this.next(checkedOn, line);
    });
  }

  private next(checkedOn: Dataset, line: Line): void {
    if (line.waiting.length === 0) {
      if (line.inFlight === 0) this.lines.delete(checkedOn);
      return;
    }
    const members = line.waiting.splice(0, MAX_GROUP_JOBS);
    line.inFlight++;
    enqueueJobsIf(
      this.sql,
      members.map((m) => m.job),
      acceptsAsBefore(this.sql, checkedOn),
      { notify: false },
    )
      .then(
        (jobs) => {
          members.forEach((m, i) => m.resolve(jobs[i] ?? null));
          if (this.options.notify) this.notice(jobs);
        },
        (err) => members.forEach((m) => m.reject(err)),
      )
      .finally(() => {
        line.inFlight--;
        this.next(checkedOn, line);
      });
  }

  /**
   * Whether the catalog's row of `checkedOn`'s dataset still accepts batches as `checkedOn` did,
   * read after this call: the requests of a dataset that ask while one read is in flight share the
   * next.
   */
  confirm(checkedOn: Dataset): Promise<boolean> {
    let entry = this.confirming.get(checkedOn);
    if (!entry) this.confirming.set(checkedOn, (entry = { inFlight: null, next: null }));
    const run = (): Promise<boolean> => {
      const answer = stillAcceptsAsBefore(this.sql, checkedOn);
      entry!.inFlight = answer.then(
        () => this.confirmed(checkedOn, entry!),
        () => this.confirmed(checkedOn, entry!),
      );
      return answer;
    };
    if (!entry.inFlight) return run();
    entry.next ??= entry.inFlight.then(() => {
      entry.next = null;
      return run();
    });
    return entry.next;
  }

  private confirmed(checkedOn: Dataset, entry: Confirming): void {
    entry.inFlight = null;
    if (!entry.next) this.confirming.delete(checkedOn);
  }

  /** Tells other processes of `jobs` with the others inserted within the notice interval. */
  notice(jobs: ReadonlyArray<Job | null>): void {
    for (const job of jobs) {
      if (!job) continue;
      let unnoticed = this.unnoticed.get(job.queue);
      if (!unnoticed) {
        this.unnoticed.set(job.queue, (unnoticed = []));
        const queue = job.queue;
        setTimeout(() => {
          const noticed = this.unnoticed.get(queue)!;
          this.unnoticed.delete(queue);
          // A hint only: a process that misses it finds the jobs at its next poll.
          notifyJobs(this.sql, queue, noticed).catch((err) => this.options.log?.warn({ err, queue }, 'jobs: could not notify other processes'));
        }, this.options.noticeIntervalMs ?? NOTICE_INTERVAL_MS).unref?.();
      }
      unnoticed.push({ kind: job.kind, datasetId: job.datasetId, payload: job.payload });
    }
  }
}
