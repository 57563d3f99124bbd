/**
 * Group commit of staged bodies. Staging makes each body durable before its 202 (a file written,
 * fsynced and renamed, or an object PUT); with many small batches at once, that wait bounds the
 * batches per second more than the work does (docs/performance.md). So small bodies of one
 * dataset, format and storage target that arrive while its writes in flight are at their limit
 * wait for one of them, and are then staged together: one object written once, each body on lines
 * of its own (NDJSON rows, or JSON documents one after another, which DuckDB's JSON reader takes as
 * one file), each job naming its byte range of it (`IngestJobPayload.staged.range`). A body that
 * finds fewer than {@link MAX_IN_FLIGHT} writes of its line in flight is staged at once and alone,
 * as are large ones: one or two requests at a time wait no longer than before.
 *
 * An object of several bodies is shared: a write that has all its batches reads it whole, and the
 * write that publishes some of them deletes it only when no job that has not succeeded names it any
 * more (write.ts); the orphan sweep removes one that two writes finishing together both left.
 */
import type { StorageDriver, StoredObject } from '../storage/driver.ts';

/** A body's bytes within a shared staged object. */
export interface StagedRange {
  offset: number;
  length: number;
  /** How many batches' bodies the object holds: a write that has them all reads the object whole. */
  batches: number;
}

/** Where a body is staged: an object of its own, or a range of a shared one. */
export interface StagedBody extends StoredObject {
  range?: StagedRange;
}

/** Bodies larger than this are staged alone: their own write costs more than the wait for it. */
export const MAX_GROUPED_BODY_BYTES = 1024 * 1024;
/** Most bytes one shared object takes; a body that does not fit is staged alone. */
export const MAX_GROUP_BYTES = 16 * 1024 * 1024;
/**
 * Writes of one line in flight before bodies wait: two, so that two clients each sending a batch
 * at a time stage side by side as they would alone (with one, the second waited for the first:
 * 9–15 % fewer batches a second); beyond that, bodies wait and share the next write.
 */
export const MAX_IN_FLIGHT = 2;

const LINE_FEED = 0x0a;
const NEW_LINE = new Uint8Array([LINE_FEED]);

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

export class StagingGroups {
  /** Per group key, its writes in flight and the bodies waiting for one; absent when none is in flight. */
  private readonly lines = new Map<string, Line>();
  /** Shared objects some of whose batches are not settled yet (see {@link settle}), by location. */
  private readonly unsettled = new Map<string, { driver: StorageDriver; left: number; queued: boolean }>();

  /**
   * Says what became of a batch staged in a shared object: queued (its job committed, or perhaps:
   * a commit of unknown outcome), or not (refused, answered from an idempotency key, its job not
   * inserted). Once every batch of an object has settled and none was queued, nothing will read
   * or delete the object: it is deleted here, so a refusal stores nothing.
   */
  async settle(body: StagedBody, queued: boolean): Promise<void> {
    const entry = body.range && this.unsettled.get(body.location);
    if (!entry) return;
    entry.queued ||= queued;
    if (--entry.left > 0) return;
    this.unsettled.delete(body.location);
    if (!entry.queued) await entry.driver.delete(body.location).catch(() => {}); // else left for the orphan sweep
  }

  /**
   * Stages `bytes` through `driver` under a new key from `newKey`, grouped with the other bodies of
   * `groupKey` (same target, dataset and format) that arrive while its writes in flight are at
   * {@link MAX_IN_FLIGHT}.
   * Resolves once the body is durable.
   */
  stage(driver: StorageDriver, groupKey: string, newKey: () => string, bytes: Uint8Array): Promise<StagedBody> {
    if (bytes.byteLength > MAX_GROUPED_BODY_BYTES) return driver.putBytes(newKey(), bytes);
    let line = this.lines.get(groupKey);
    if (!line) this.lines.set(groupKey, (line = { inFlight: 0, waiting: null }));
    if (line.inFlight < MAX_IN_FLIGHT) {
      line.inFlight++;
      return this.writeAlone(driver, groupKey, newKey, bytes);
    }
    const waiting = (line.waiting ??= { parts: [], bytes: 0, members: [] });
    if (waiting.bytes + bytes.byteLength > MAX_GROUP_BYTES) return driver.putBytes(newKey(), bytes);
    return new Promise<StagedBody>((resolve, reject) => {
      waiting.members.push({ offset: waiting.bytes, length: bytes.byteLength, resolve, reject });
      waiting.parts.push(bytes);
      waiting.bytes += bytes.byteLength;
      // The next body starts on a line of its own: NDJSON stays NDJSON, and a JSON document that
      // is one line stays one line.
      if (bytes.byteLength > 0 && bytes[bytes.byteLength - 1] !== LINE_FEED) {
        waiting.parts.push(NEW_LINE);
        waiting.bytes += 1;
      }
    });
  }

  private async writeAlone(driver: StorageDriver, groupKey: string, newKey: () => string, bytes: Uint8Array): Promise<StagedBody> {
    try {
      return await driver.putBytes(newKey(), bytes);
    } finally {
      this.next(driver, groupKey, newKey);
    }
  }

  /** Stages the bodies that waited, in the place of the write just finished; or one write fewer is in flight. */
  private next(driver: StorageDriver, groupKey: string, newKey: () => string): void {
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
        ? driver.putBytes(newKey(), waiting.parts[0]!).then((stored) => waiting.members[0]!.resolve(stored))
        : driver.putBytes(newKey(), waiting.parts).then(({ location }) => {
            this.unsettled.set(location, { driver, left: batches, queued: false });
            for (const m of waiting.members) m.resolve({ location, sizeBytes: m.length, range: { offset: m.offset, length: m.length, batches } });
          });
    write
      .catch((err) => {
        for (const m of waiting.members) m.reject(err);
      })
      .finally(() => this.next(driver, groupKey, newKey));
  }
}
