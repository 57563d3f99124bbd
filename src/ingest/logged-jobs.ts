/**
 * The jobs of batches acknowledged on their staging log's records (accept.ts). The process that
 * appended a record inserts its job once the record is durable, in log order, and moves the log's
 * mark past it in the same statement (staging-groups.ts calls {@link LoggedJobs.insert}). When that
 * process stops first, its logs hold the jobs it still owed: the next process to start inserts
 * them, as do the other processes of a shared catalog every minute ({@link LoggedJobs.start}), and
 * the orphan sweep of any process before it looks at a log ({@link LoggedJobs.replay}). A replay
 * reads a log's records up to the first that does not check (a crash tears only appends that were
 * never acknowledged) and inserts the jobs of those past the mark that have no row; a job inserted
 * twice keeps its first row (its id is in the record). Only logs not modified for OPEN_LOG_AGE_MS are replayed, unless the catalog is this
 * process's own: a younger one may belong to a process that is still appending to it and
 * inserting its jobs.
 */
import type { Sql } from 'postgres';
import { catalogId } from '../catalog/identity.ts';
import { enqueueLoggedJobs, forgetStagingLogs, type Job, loggedJobsThrough, type NewJob } from '../catalog/job-table.ts';
import { listStorageTargets } from '../catalog/storage-targets.ts';
import type { Logger } from '../log.ts';
import { OBJECT_KEY_PREFIXES, OPEN_LOG_AGE_MS, sweepableKind } from '../model/object-keys.ts';
import { readStagingLogRecords } from '../model/staging-log-records.ts';
import { readOwnerMarker, type StorageDriver, type StorageDrivers } from '../storage/index.ts';
import { jobOfRecord } from './accept.ts';
import type { JobGroups } from './job-groups.ts';
import { type LoggedJobSink, MAX_LOGGED_JOBS_PER_INSERT } from './staging-groups.ts';

export class LoggedJobs implements LoggedJobSink {
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly o: {
      sql: Sql;
      drivers: StorageDrivers;
      /** Tells other processes of the jobs inserted. */
      jobs: JobGroups;
      /** Wakes this process's job runner for them. */
      wake(enqueued: readonly Job[]): void;
      log: Logger;
    },
  ) {}

  async insert(location: string, through: number, records: ReadonlyArray<{ job: unknown; offset: number; length: number }>): Promise<void> {
    const jobs = await enqueueLoggedJobs(this.o.sql, location, through, records.map((r) => jobOfRecord(r.job as NewJob, location, r)));
    this.inserted(jobs);
  }

  forget(locations: string[]): Promise<void> {
    return forgetStagingLogs(this.o.sql, locations);
  }

  /** Inserts the jobs that `location`'s records hold past its mark and that have no row; answers how many it inserted. */
  async replay(driver: StorageDriver, location: string): Promise<number> {
    const records = readStagingLogRecords<NewJob>(await driver.read(location)).filter((r) => r.job !== undefined);
    const through = await loggedJobsThrough(this.o.sql, location);
    const owed = records.filter((r) => r.end > through);
    let inserted = 0;
    for (let i = 0; i < owed.length; i += MAX_LOGGED_JOBS_PER_INSERT) {
      const chunk = owed.slice(i, i + MAX_LOGGED_JOBS_PER_INSERT);
      const jobs = await enqueueLoggedJobs(this.o.sql, location, chunk.at(-1)!.end, chunk.map((r) => jobOfRecord(r.job!, location, r)));
      this.inserted(jobs);
      inserted += jobs.length;
    }
    if (inserted > 0) {
      this.o.log.info({ location, batches: inserted, records: owed.length }, 'ingest: jobs of acknowledged batches inserted from a staging log a process left');
    }
    return inserted;
  }

  /**
   * Replays the staging logs that processes left on this catalog's local targets: at once all of
   * them when `exclusive` (an embedded catalog: no other process uses it, so every log is one this
   * process left before it stopped); otherwise those not modified for OPEN_LOG_AGE_MS, now and
   * every OPEN_LOG_AGE_MS after, so that the logs of a process that stopped and did not come back
   * are replayed by the others.
   */
  async start({ exclusive }: { exclusive: boolean }): Promise<void> {
    if (!exclusive) {
      this.timer = setInterval(() => void this.replayLeftLogs(OPEN_LOG_AGE_MS).catch((err) => this.o.log.warn({ err }, 'ingest: staging logs not replayed')), OPEN_LOG_AGE_MS);
      this.timer.unref?.();
    }
    await this.replayLeftLogs(exclusive ? 0 : OPEN_LOG_AGE_MS);
  }

  /** Stops the replays. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Replays every log not modified for `minAgeMs` under this catalog's local targets; one that cannot be is logged and left for the next round. */
  private async replayLeftLogs(minAgeMs: number): Promise<void> {
    const owner = await catalogId(this.o.sql);
    for (const target of await listStorageTargets(this.o.sql)) {
      const driver = this.o.drivers.forTarget(target);
      if (!driver.openLog || (await readOwnerMarker(driver))?.catalog !== owner) continue;
      for await (const object of driver.list(OBJECT_KEY_PREFIXES.staging)) {
        if (sweepableKind(object.key) !== 'stagingLog' || object.lastModified.getTime() > Date.now() - minAgeMs) continue;
        await this.replay(driver, object.location).catch((err) => {
          if ((err as { code?: string }).code !== 'not_found') this.o.log.warn({ err, location: object.location }, 'ingest: could not replay a staging log; tried again later');
        });
      }
    }
  }

  private inserted(jobs: readonly Job[]): void {
    if (jobs.length === 0) return;
    this.o.wake(jobs);
    this.o.jobs.notice(jobs);
  }
}
