/**
 * Group commit of staged bodies. Staging makes each body durable before its 202 (a file written,
 * fsynced and renamed, or an object PUT); with many small batches at once, that wait bounds the
 * batches per second more than the work does (docs/performance.md). A small body of a line (same
 * storage target, dataset and format) that finds fewer than {@link MAX_IN_FLIGHT} of the line's
 * writes in flight is staged at once as an object of its own, as are large ones: one or two
 * requests at a time wait no longer than before. Beyond that, bodies share, each on lines of its
 * own (NDJSON rows, or JSON documents one after another, which DuckDB's JSON reader takes as one
 * file), each job naming its byte range (`IngestJobPayload.staged.range`):
 *
 * - On a target that takes appends (local disk), the line's staging log. A body is written to it
 *   at once, at its own offset, as a record that says what it is (model/staging-log-records.ts:
 *   its length, its checksum, and the job of a batch acknowledged before its job row exists), and
 *   is durable with the log's next fdatasync (one runs at a time; the bodies written meanwhile
 *   share the next). While a line's log is open, every small body of
 *   the line goes to it. A log takes appends for {@link STAGING_LOG_OPEN_MS} (or up to
 *   {@link MAX_LOG_BYTES}), then the next body opens another: creating, renaming and deleting a
 *   file per body or group cost more CPU than their bytes (docs/performance.md, "Staging logs").
 *   A closed log is deleted here once each of its batches has settled and no job that has not
 *   succeeded names it (checked every {@link STAGING_LOG_OPEN_MS}); a write never deletes one,
 *   since it may still be open. A log left by a process that stopped first goes with the orphan
 *   sweep.
 * - Elsewhere (S3), the bodies wait for one of the writes in flight and are then staged together
 *   as one new object, which knows how many batches it holds: a write that has them all reads it
 *   whole, and the write that publishes some of them deletes it only when no job that has not
 *   succeeded names it any more (write.ts); the orphan sweep removes one that two writes finishing
 *   together both left.
 */
import { STAGING_LOG_OPEN_MS } from '../model/object-keys.ts';
import { endsLine, NEW_LINE } from '../model/staged-lines.ts';
import { stagingLogRecord } from '../model/staging-log-records.ts';
import type { AppendLog, StorageDriver, StoredObject } from '../storage/driver.ts';

/** A body's bytes within a shared staged object. */
export interface StagedRange {
  offset: number;
  length: number;
  /**
   * How many batches' bodies the object holds: a write that has them all reads the object whole.
   * Absent for a staging log, which is never read whole.
   */
  batches?: number;
}

/** Whether a range is of a staging log (which only the process appending to it deletes). */
export const inStagingLog = (range: StagedRange | undefined): boolean => range !== undefined && range.batches === undefined;

/** Where a body is staged: an object of its own, or a range of a shared one. */
export interface StagedBody extends StoredObject {
  range?: StagedRange;
  /**
   * For a body staged with its job in a log's record: resolves once the log's mark has passed the
   * record, its job inserted if the batch was accepted ({@link LoggedJob}).
   */
  jobRow?: Promise<void>;
}

/** Bodies larger than this are staged alone: their own write costs more than the wait for it. */
export const MAX_GROUPED_BODY_BYTES = 1024 * 1024;

/** Whether a body of this size is always staged as an object of its own (never shared). */
export const stagedAlone = (byteLength: number): boolean => byteLength > MAX_GROUPED_BODY_BYTES;
/** Most bytes one shared object takes; a body that does not fit is staged alone. */
export const MAX_GROUP_BYTES = 16 * 1024 * 1024;
/**
 * Writes of one line in flight before bodies wait: two, so that two clients each sending a batch
 * at a time stage side by side as they would alone (with one, the second waited for the first:
 * 9–15 % fewer batches a second); beyond that, bodies wait and share the next write.
 */
export const MAX_IN_FLIGHT = 2;
/**
 * How long the jobs of a log's durable records wait for others before they are inserted: their
 * batches are acknowledged already, and one insert for many costs the catalog (and the requests
 * whose reads wait behind it there) less than many for few.
 */
const LOGGED_JOBS_WAIT_MS = 10;
/** Most jobs of logged records one insert takes; more wait for the next. */
export const MAX_LOGGED_JOBS_PER_INSERT = 256;
/** Most bytes one staging log takes before the next body opens a new one. */
export const MAX_LOG_BYTES = 64 * 1024 * 1024;

/** A body as it is staged beside others (model/staged-lines.ts). */
const onLinesOfItsOwn = (bytes: Uint8Array): Uint8Array[] => (endsLine(bytes) ? [bytes] : [bytes, NEW_LINE]);

interface Member {
  offset: number;
  length: number;
  resolve(body: StagedBody): void;
  reject(err: unknown): void;
}

/** The bodies waiting for the write in flight, to be staged together after it. */
interface Waiting {
  parts: Uint8Array[];
  bytes: number;
  members: Member[];
}

interface Line {
  inFlight: number;
  waiting: Waiting | null;
}

/** The names of a new object for one body, and of a new staging log. */
export interface StagingKeys {
  body(): string;
  log(): string;
}

/**
 * A job to keep in a staging log's record with its body, and whether its batch is accepted: a
 * check that may still be running while the body is appended. A batch not accepted is withdrawn:
 * its job is never inserted, and the log's mark passes its record all the same, so that no replay
 * inserts it either.
 */
export interface LoggedJob {
  job: unknown;
  accepted: Promise<boolean>;
}

/** A record appended with a job (an acknowledgement before its job row), until the log's mark passes it. */
interface LoggedRecord {
  job: unknown;
  /** The body's range within the log. */
  offset: number;
  length: number;
  /** The byte after the record. */
  end: number;
  /** Durable: its job may be inserted. Until then, it holds back the jobs after it. */
  durable: boolean;
  /** Whether its batch is accepted; undefined until known, which holds back the jobs after it too. */
  accepted: boolean | undefined;
  passed(): void;
}

/**
 * Where the jobs of logged records go: inserted in log order, with the log's mark moved past them
 * in the same statement (catalog/job-table.ts `enqueueLoggedJobs`); and the marks of deleted logs forgotten.
 */
export interface LoggedJobSink {
  insert(location: string, through: number, records: ReadonlyArray<{ job: unknown; offset: number; length: number }>): Promise<void>;
  forget(locations: string[]): Promise<void>;
}

/** The longest {@link StagingGroups.close} waits for the jobs of logged records to be inserted. */
const CLOSE_WAIT_MS = 5_000;
/** The longest a log waits before it tries again to insert the jobs of its records. */
const MAX_INSERT_RETRY_MS = 5_000;

interface Log {
  driver: StorageDriver;
  /** Resolves once the log's file exists. */
  opened: Promise<AppendLog>;
  openedAt: number;
  /** Bytes handed to appends so far. */
  bytes: number;
  /** Batches appended (or being appended) whose fate is not settled yet (see {@link StagingGroups.settle}). */
  unsettled: number;
  closed: boolean;
  /** Records appended with a job that the log's mark has not passed yet, in log order. */
  logged: LoggedRecord[];
  /** Known once the log is opened. */
  location?: string;
  /** An insert of the logged records' jobs is in flight, or waits to try again. */
  inserting: boolean;
  retryMs: number;
}

/** Whether a logged record's job may be inserted (or its withdrawal marked): durable, and its batch's fate known. */
const ready = (record: LoggedRecord | undefined): boolean => record !== undefined && record.durable && record.accepted !== undefined;

/** Whether `log` takes `bytes` more: open, younger than STAGING_LOG_OPEN_MS, and not full. */
function takes(log: Log, bytes: number): boolean {
  return !log.closed && Date.now() - log.openedAt < STAGING_LOG_OPEN_MS && log.bytes + bytes <= MAX_LOG_BYTES;
}

export class StagingGroups {
  /** Per group key, its writes in flight and the bodies waiting for one; absent when none is in flight. */
  private readonly lines = new Map<string, Line>();
  /** Shared objects some of whose batches are not settled yet (see {@link settle}), by location. */
  private readonly unsettled = new Map<string, { driver: StorageDriver; left: number; queued: boolean }>();
  /** Per group key, the staging log its bodies are appended to. */
  private readonly openLogs = new Map<string, Log>();
  /** Every log not deleted yet, open or closed, by location once known. */
  private readonly logs = new Map<string, Log>();
  private tidying: ReturnType<typeof setInterval> | null = null;
  private closed = false;

  /**
   * `referenced`: the locations among these that a job that has not succeeded names (the catalog's
   * answer). Without it, no staging log is used: nothing could tell when one may go.
   */
  constructor(
    private readonly referenced?: (locations: string[]) => Promise<Set<string>>,
    private readonly loggedJobs?: LoggedJobSink,
  ) {}


  /**
   * Says what became of a batch staged in a shared object: queued (its job committed, or perhaps:
   * a commit of unknown outcome), or not (refused, answered from an idempotency key, its job not
   * inserted). Once every batch of an object has settled and none was queued, nothing will read
   * or delete the object: it is deleted here, so a refusal stores nothing. A batch in a staging log
   * is only counted as settled: the log goes once it is closed and no job names it ({@link tidy}).
   */
  async settle(body: StagedBody, queued: boolean): Promise<void> {
    const log = body.range && this.logs.get(body.location);
    if (log) {
      log.unsettled--;
      return;
    }
    const entry = body.range && this.unsettled.get(body.location);
    if (!entry) return;
    entry.queued ||= queued;
    if (--entry.left > 0) return;
    this.unsettled.delete(body.location);
    if (!entry.queued) await entry.driver.delete(body.location).catch(() => {}); // else left for the orphan sweep
  }

  /**
   * Stages `bytes` through `driver` for the line `groupKey` (same target, dataset and format):
   * alone while fewer than {@link MAX_IN_FLIGHT} of its writes are in flight; beyond that, in its
   * staging log where the target has logs, else with the other bodies that arrive meanwhile.
   * `job`, if given, is asked for when the body goes to a staging log: written into its record with
   * the body, and inserted once the record is durable and the batch accepted, after the jobs of the
   * records before it (`jobRow` of the answer resolves then). Resolves once the body is durable.
   */
  stage(driver: StorageDriver, groupKey: string, keys: StagingKeys, bytes: Uint8Array, job?: () => LoggedJob): Promise<StagedBody> {
    if (stagedAlone(bytes.byteLength)) return driver.putBytes(keys.body(), bytes);
    const logs = driver.openLog !== undefined && this.referenced !== undefined;
    const log = this.openLogs.get(groupKey);
    if (logs && log && takes(log, bytes.byteLength + 1)) return this.append(driver, groupKey, keys, bytes, job);
    let line = this.lines.get(groupKey);
    if (!line) this.lines.set(groupKey, (line = { inFlight: 0, waiting: null }));
    if (line.inFlight < MAX_IN_FLIGHT) {
      line.inFlight++;
      return this.writeAlone(driver, groupKey, keys, bytes);
    }
    if (logs) return this.append(driver, groupKey, keys, bytes, job);
    const waiting = (line.waiting ??= { parts: [], bytes: 0, members: [] });
    if (waiting.bytes + bytes.byteLength > MAX_GROUP_BYTES) return driver.putBytes(keys.body(), bytes);
    return new Promise<StagedBody>((resolve, reject) => {
      waiting.members.push({ offset: waiting.bytes, length: bytes.byteLength, resolve, reject });
      waiting.parts.push(...onLinesOfItsOwn(bytes));
      waiting.bytes += bytes.byteLength + (endsLine(bytes) ? 0 : 1);
    });
  }

  private async writeAlone(driver: StorageDriver, groupKey: string, keys: StagingKeys, bytes: Uint8Array): Promise<StagedBody> {
    try {
      return await driver.putBytes(keys.body(), bytes);
    } finally {
      this.next(driver, groupKey, keys);
    }
  }

  /** Stages the bodies that waited, in the place of the write just finished; or one write fewer is in flight. */
  private next(driver: StorageDriver, groupKey: string, keys: StagingKeys): void {
    const line = this.lines.get(groupKey)!;
    const waiting = line.waiting;
    if (!waiting) {
      if (--line.inFlight === 0) this.lines.delete(groupKey);
      return;
    }
    line.waiting = null;
    const batches = waiting.members.length;
    const write =
      batches === 1
        ? driver.putBytes(keys.body(), waiting.parts[0]!).then((stored) => waiting.members[0]!.resolve(stored))
        : driver.putBytes(keys.body(), waiting.parts).then(({ location }) => {
            this.unsettled.set(location, { driver, left: batches, queued: false });
            for (const m of waiting.members) m.resolve({ location, sizeBytes: m.length, range: { offset: m.offset, length: m.length, batches } });
          });
    write
      .catch((err) => {
        for (const m of waiting.members) m.reject(err);
      })
      .finally(() => this.next(driver, groupKey, keys));
  }

  /**
   * Appends a body's record to its line's staging log (a new one when it is full or old): written
   * at once, durable with the fdatasync it shares.
   */
  private async append(driver: StorageDriver, groupKey: string, keys: StagingKeys, bytes: Uint8Array, jobOf: (() => LoggedJob) | undefined): Promise<StagedBody> {
    const job = this.loggedJobs ? jobOf?.() : undefined;
    const parts = stagingLogRecord(bytes, job?.job);
    const size = parts.reduce((sum, part) => sum + part.byteLength, 0);
    let log = this.openLogs.get(groupKey);
    if (!log || !takes(log, size)) {
      if (log) this.closeLog(groupKey, log);
      const opened = driver.openLog!(keys.log());
      log = { driver, opened, openedAt: Date.now(), bytes: 0, unsettled: 0, closed: false, logged: [], inserting: false, retryMs: 0 };
      this.openLogs.set(groupKey, log);
      this.tidying ??= setInterval(() => void this.tidy(), STAGING_LOG_OPEN_MS);
      this.tidying.unref?.();
      const entry = log;
      opened.then(
        (object) => {
          entry.location = object.location;
          this.logs.set(object.location, entry);
        },
        () => this.closeLog(groupKey, entry),
      );
    }
    log.bytes += size;
    // Counted before the append: the log is not deleted while this batch's job may still be inserted.
    log.unsettled++;
    let record: LoggedRecord | undefined;
    let jobRow: Promise<void> | undefined;
    if (job) {
      // Listed in the order of these calls, which is the records' order in the log: each append
      // waits for the same `opened`, then takes its place at once. Its place is known once written.
      jobRow = new Promise<void>((passed) => {
        record = { job: job.job, offset: 0, length: bytes.byteLength, end: 0, durable: false, accepted: undefined, passed };
      });
      const entry = record!;
      log.logged.push(entry);
      const settled = (accepted: boolean) => {
        entry.accepted = accepted;
        this.insertLogged(log);
      };
      job.accepted.then(settled, () => settled(false));
    }
    try {
      const object = await log.opened;
      const at = await object.append(parts);
      const offset = at + parts[0]!.byteLength;
      if (record) {
        Object.assign(record, { offset, end: at + size, durable: true });
        this.insertLogged(log);
      }
      return { location: object.location, sizeBytes: bytes.byteLength, range: { offset, length: bytes.byteLength }, ...(jobRow ? { jobRow } : {}) };
    } catch (err) {
      // Not acknowledged: its job is never inserted, and holds back no other.
      if (record) log.logged.splice(log.logged.indexOf(record), 1);
      log.unsettled--;
      this.closeLog(groupKey, log); // the next body opens a new log
      throw err;
    }
  }

  /**
   * Inserts the jobs of the log's durable records that no record still being appended precedes,
   * with the log's mark after the last of them; one insert at a time per log, in log order. One
   * that fails is tried again (the batches are acknowledged, and only their job rows are missing:
   * a process that starts again would insert them from the log).
   */
  private insertLogged(log: Log): void {
    if (log.inserting || !ready(log.logged[0])) return;
    log.inserting = true;
    setTimeout(() => this.insertReady(log), LOGGED_JOBS_WAIT_MS);
  }

  private insertReady(log: Log): void {
    const waiting = log.logged.findIndex((r) => !ready(r));
    const records = log.logged.slice(0, Math.min(waiting < 0 ? log.logged.length : waiting, MAX_LOGGED_JOBS_PER_INSERT));
    const accepted = records.filter((r) => r.accepted);
    this.loggedJobs!.insert(log.location!, records.at(-1)!.end, accepted).then(
      () => {
        log.logged.splice(0, records.length);
        log.unsettled -= records.length;
        log.retryMs = 0;
        log.inserting = false;
        for (const r of records) r.passed();
        this.insertLogged(log);
      },
      () => {
        if (this.closed) return;
        log.retryMs = Math.min(MAX_INSERT_RETRY_MS, Math.max(100, log.retryMs * 2));
        setTimeout(() => this.insertReady(log), log.retryMs).unref?.();
      },
    );
  }

  /** Takes no more appends into `log` (those in flight finish). */
  private closeLog(groupKey: string, log: Log): void {
    if (log.closed) return;
    log.closed = true;
    if (this.openLogs.get(groupKey) === log) this.openLogs.delete(groupKey);
    log.opened.then((object) => object.close()).catch(() => {});
  }

  /**
   * Closes the logs open for {@link STAGING_LOG_OPEN_MS}, and deletes the closed ones whose batches
   * have all settled and that no job that has not succeeded names (left for the next round if the
   * catalog cannot say). Stops once no log is left.
   */
  private async tidy(): Promise<void> {
    for (const [groupKey, log] of this.openLogs) if (Date.now() - log.openedAt >= STAGING_LOG_OPEN_MS) this.closeLog(groupKey, log);
    const done = [...this.logs].filter(([, log]) => log.closed && log.unsettled === 0);
    if (done.length > 0) {
      try {
        const named = await this.referenced!(done.map(([location]) => location));
        const deleted: string[] = [];
        for (const [location, log] of done) {
          if (named.has(location)) continue;
          this.logs.delete(location);
          // else left for the orphan sweep
          if (await log.driver.delete(location).then(() => true, () => false)) deleted.push(location);
        }
        await this.loggedJobs?.forget(deleted);
      } catch {
        // the catalog did not answer: the next round asks again
      }
    }
    if (this.logs.size === 0 && this.openLogs.size === 0 && this.tidying) {
      clearInterval(this.tidying);
      this.tidying = null;
    }
  }

  /**
   * Closes every log; deletes those already done with (see {@link tidy}). The rest go with the
   * orphan sweep, and the jobs of logged records not inserted within {@link CLOSE_WAIT_MS} are
   * inserted from their logs by the next process to start (src/ingest/logged-jobs.ts).
   */
  async close(): Promise<void> {
    for (const [groupKey, log] of this.openLogs) this.closeLog(groupKey, log);
    const deadline = Date.now() + CLOSE_WAIT_MS;
    while (Date.now() < deadline && [...this.logs.values()].some((log) => log.logged.length > 0)) await Bun.sleep(10);
    this.closed = true;
    await this.tidy();
    if (this.tidying) clearInterval(this.tidying);
    this.tidying = null;
  }
}
