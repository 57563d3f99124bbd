/**
 * Group commit of batches' jobs. Each accepted batch is a job INSERT: a round trip and a commit
 * of the catalog, which with many small batches at once cost the catalog more than their rows do
 * (docs/performance.md, "Small batches"). So a job whose dataset already has an insert of jobs in
 * flight waits for it, with the others that arrive meanwhile, and they are then inserted together
 * in one statement (job-table.ts `enqueueJobsIf`), which holds only while the dataset's row still
 * accepts them as the row they were checked on did. A job that finds no insert in flight is
 * inserted at once.
 */
import type { Db } from '../catalog/db.ts';
import { acceptsAsBefore } from '../catalog/datasets.ts';
import { enqueueJobsIf, type Job, type NewJob } from '../catalog/job-table.ts';
import type { Dataset } from '../model/records.ts';

/**
 * Inserts of one dataset's jobs in flight before jobs wait: one, so that jobs arriving during an
 * insert (about a millisecond) share the next one.
 */
export const MAX_IN_FLIGHT = 1;
/** Most jobs one insert takes; more wait for the next. */
export const MAX_GROUP_JOBS = 256;

interface Member {
  job: NewJob;
  resolve(job: Job | null): void;
  reject(err: unknown): void;
}

interface Line {
  inFlight: number;
  waiting: Member[];
}

export class JobGroups {
  /** Per dataset row as checked (the object the check passed on), its inserts in flight and the jobs waiting. */
  private readonly lines = new Map<Dataset, Line>();

  constructor(private readonly sql: Db) {}

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
    )
      .then(
        (jobs) => members.forEach((m, i) => m.resolve(jobs[i] ?? null)),
        (err) => members.forEach((m) => m.reject(err)),
      )
      .finally(() => {
        line.inFlight--;
        this.next(checkedOn, line);
      });
  }
}
