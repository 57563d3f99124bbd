/**
 * Group commit of staged bodies (src/ingest/staging-groups.ts), with a storage driver whose writes
 * finish when the test says: who waits for whom, what one shared object holds, and failures; and,
 * on a target that takes appends, the staging logs: what goes to them, when they close and go.
 */
import { expect, test } from 'bun:test';
import { MAX_GROUPED_BODY_BYTES, MAX_IN_FLIGHT, type StagedBody, StagingGroups } from '../../src/ingest/staging-groups.ts';
import { STAGING_LOG_OPEN_MS } from '../../src/model/object-keys.ts';
import { readStagingLogRecords } from '../../src/model/staging-log-records.ts';
import type { AppendLog, StorageDriver } from '../../src/storage/driver.ts';

interface Write {
  key: string;
  bytes: Uint8Array;
  finish(): void;
  fail(err: Error): void;
}

/** A driver that records each putBytes and completes it on demand, and records deletes. */
function heldDriver() {
  const writes: Write[] = [];
  const deleted: string[] = [];
  const driver = {
    putBytes(key: string, object: Uint8Array | Uint8Array[]) {
      const bytes = new Uint8Array(Array.isArray(object) ? Buffer.concat(object) : object);
      return new Promise((resolve, reject) => {
        writes.push({ key, bytes, finish: () => resolve({ location: `mem://${key}`, sizeBytes: bytes.byteLength }), fail: reject });
      });
    },
    async delete(location: string) {
      deleted.push(location);
    },
  } as unknown as StorageDriver;
  return { driver, writes, deleted };
}

const text = (s: string) => new TextEncoder().encode(s);
const turn = () => new Promise((r) => setTimeout(r, 0));
let n = 0;
const keys = { body: () => `staging/ds/${++n}.ndjson`, log: () => `staging/ds/log-${++n}.ndjson` };

/** Fills a line's writes in flight with bodies staged alone; returns their promises. */
async function fillLine(groups: StagingGroups, driver: StorageDriver, line: string) {
  const alone = Array.from({ length: MAX_IN_FLIGHT }, (_, k) => groups.stage(driver, line, keys, text(`alone ${k}\n`)));
  await turn();
  return alone;
}

test(`bodies that find fewer than ${MAX_IN_FLIGHT} writes in flight are staged at once and alone; those arriving then are staged together after one`, async () => {
  const groups = new StagingGroups();
  const { driver, writes } = heldDriver();
  const alone = await fillLine(groups, driver, 'line');
  expect(writes).toHaveLength(MAX_IN_FLIGHT);
  const second = groups.stage(driver, 'line', keys, text('bb\n'));
  const third = groups.stage(driver, 'line', keys, text('ccc')); // no final line break: one is added after it
  const fourth = groups.stage(driver, 'line', keys, text('d\n'));
  await turn();
  expect(writes).toHaveLength(MAX_IN_FLIGHT); // the others wait for a write in flight

  writes[0]!.finish();
  expect(await alone[0]).toEqual({ location: `mem://${writes[0]!.key}`, sizeBytes: 8 });
  await turn();
  expect(writes).toHaveLength(MAX_IN_FLIGHT + 1);
  expect(new TextDecoder().decode(writes.at(-1)!.bytes)).toBe('bb\nccc\nd\n');
  writes.at(-1)!.finish();
  const location = `mem://${writes.at(-1)!.key}`;
  expect(await second).toEqual({ location, sizeBytes: 3, range: { offset: 0, length: 3, batches: 3 } });
  expect(await third).toEqual({ location, sizeBytes: 3, range: { offset: 3, length: 3, batches: 3 } });
  expect(await fourth).toEqual({ location, sizeBytes: 2, range: { offset: 7, length: 2, batches: 3 } });

  // Writes finish and none waits: the line is over, and the next body goes at once again.
  for (const w of writes.slice(1, MAX_IN_FLIGHT)) w.finish();
  await Promise.all(alone);
  const later = groups.stage(driver, 'line', keys, text('e\n'));
  await turn();
  expect(writes).toHaveLength(MAX_IN_FLIGHT + 2);
  writes.at(-1)!.finish();
  expect((await later).range).toBeUndefined();
});

test('one body waiting alone is staged as an object of its own; other lines and large bodies do not wait', async () => {
  const groups = new StagingGroups();
  const { driver, writes } = heldDriver();
  const alone = await fillLine(groups, driver, 'one');
  const other = groups.stage(driver, 'two', keys, text('x\n'));
  const large = groups.stage(driver, 'one', keys, new Uint8Array(MAX_GROUPED_BODY_BYTES + 1));
  const waiting = groups.stage(driver, 'one', keys, text('b\n'));
  await turn();
  expect(writes).toHaveLength(MAX_IN_FLIGHT + 2); // the line's, other, large
  for (const w of writes) w.finish();
  await Promise.all([...alone, other, large]);
  await turn();
  expect(writes).toHaveLength(MAX_IN_FLIGHT + 3);
  writes.at(-1)!.finish();
  expect(await waiting).toEqual({ location: `mem://${writes.at(-1)!.key}`, sizeBytes: 2 });
});

test('a failed shared write fails each of its bodies, and the line goes on', async () => {
  const groups = new StagingGroups();
  const { driver, writes } = heldDriver();
  const alone = await fillLine(groups, driver, 'line');
  const b = groups.stage(driver, 'line', keys, text('b\n'));
  const c = groups.stage(driver, 'line', keys, text('c\n'));
  // Each caller awaits its own body at once, as acceptBatch does.
  const outcomes = [...alone, b, c].map((p) => p.then(() => 'staged', (err: Error) => err.message));
  await turn();
  writes[0]!.fail(new Error('disk full'));
  await turn();
  writes.at(-1)!.fail(new Error('still full'));
  for (const w of writes.slice(1, MAX_IN_FLIGHT)) w.fail(new Error('full too'));
  expect(await Promise.all(outcomes)).toEqual(['disk full', ...Array(MAX_IN_FLIGHT - 1).fill('full too'), 'still full', 'still full']);
  const d = groups.stage(driver, 'line', keys, text('d\n'));
  await turn();
  writes.at(-1)!.finish();
  expect(await d).toEqual({ location: `mem://${writes.at(-1)!.key}`, sizeBytes: 2 });
});

test('a shared object none of whose batches was queued is deleted once the last settles; one with a queued batch stays', async () => {
  const groups = new StagingGroups();
  const { driver, writes, deleted } = heldDriver();
  const stageShared = async () => {
    const alone = await fillLine(groups, driver, 'line');
    const shared = [groups.stage(driver, 'line', keys, text('b\n')), groups.stage(driver, 'line', keys, text('c\n'))];
    await turn();
    for (const w of writes.slice(-MAX_IN_FLIGHT)) w.finish();
    await Promise.all(alone);
    await turn();
    writes.at(-1)!.finish();
    return Promise.all(shared);
  };

  // Both refused (or answered from an idempotency key): the object goes with the second.
  const [b, c] = await stageShared();
  expect(b!.range).toBeDefined();
  await groups.settle(b!, false);
  expect(deleted).toEqual([]);
  await groups.settle(c!, false);
  expect(deleted).toEqual([b!.location]);

  // One queued: its write deletes the object once it is published, not the refusal.
  const [d, e] = await stageShared();
  await groups.settle(d!, true);
  await groups.settle(e!, false);
  expect(deleted).toEqual([b!.location]);
  expect(d!.location).not.toBe(b!.location);
});

/** heldDriver, on a target that takes appends: each log records its appends, which succeed at once unless `failNext` is set. */
function loggingDriver() {
  const held = heldDriver();
  const logs: Array<{ location: string; bytes: Uint8Array[]; closed: boolean }> = [];
  let failNext = false;
  const driver = Object.assign(held.driver, {
    async openLog(key: string): Promise<AppendLog> {
      const log = { location: `mem://${key}`, bytes: [] as Uint8Array[], closed: false };
      logs.push(log);
      let end = 0;
      return {
        location: log.location,
        async append(parts: readonly Uint8Array[]) {
          if (log.closed) throw new Error('appended after close');
          if (failNext) {
            failNext = false;
            throw new Error('disk full');
          }
          const offset = end;
          for (const part of parts) log.bytes.push(part);
          end += parts.reduce((sum, part) => sum + part.byteLength, 0);
          return offset;
        },
        async close() {
          log.closed = true;
        },
      };
    },
  });
  const bytes = (i: number) => new Uint8Array(Buffer.concat(logs[i]!.bytes));
  /** Log i's records (model/staging-log-records.ts): each body's range, and the body. */
  const records = (i: number) =>
    readStagingLogRecords(bytes(i)).map((r) => ({ range: { offset: r.offset, length: r.length }, body: new TextDecoder().decode(bytes(i).subarray(r.offset, r.offset + r.length)) }));
  return { ...held, driver, logs, failAppend: () => (failNext = true), records };
}

/** Stages `bodies` while the line's writes in flight are full, so they wait and go together; returns them staged. */
async function stageGroup(groups: StagingGroups, d: ReturnType<typeof loggingDriver>, bodies: string[]) {
  const alone = await fillLine(groups, d.driver, 'line');
  const staged = bodies.map((b) => groups.stage(d.driver, 'line', keys, text(b)));
  await turn();
  for (const w of d.writes.slice(-MAX_IN_FLIGHT)) w.finish();
  await Promise.all(alone);
  return Promise.all(staged.map((p) => p.catch((err: Error) => err)));
}

test(`on a target that takes appends, the bodies that waited go to their line's staging log; while it is open, bodies alone too`, async () => {
  const groups = new StagingGroups(async () => new Set());
  const d = loggingDriver();
  const [b, c] = (await stageGroup(groups, d, ['b\n', 'cc'])) as StagedBody[];
  expect(d.logs).toHaveLength(1);
  const location = d.logs[0]!.location;
  // No batch count: a log is never read whole. Each body is a record of its own, which says where it is.
  expect([b, c]).toEqual(d.records(0).map(({ range }) => ({ location, sizeBytes: 2, range })));
  // The log is open: a body alone is appended to it, not given an object of its own.
  const writes = d.writes.length;
  const e = await groups.stage(d.driver, 'line', keys, text('e\n'));
  expect(d.writes).toHaveLength(writes);
  expect(d.records(0).map((r) => r.body)).toEqual(['b\n', 'cc', 'e\n']);
  expect(e).toEqual({ location, sizeBytes: 2, range: d.records(0)[2]!.range });

  // Once the log is STAGING_LOG_OPEN_MS old, it takes nothing more: a body alone gets an object of
  // its own again, and the next group opens another log.
  await Bun.sleep(STAGING_LOG_OPEN_MS + 100);
  const [f] = (await stageGroup(groups, d, ['f\n'])) as StagedBody[];
  expect(d.writes).toHaveLength(writes + MAX_IN_FLIGHT);
  expect(d.logs.map((l) => l.closed)).toEqual([true, false]);
  expect(f).toEqual({ location: d.logs[1]!.location, sizeBytes: 2, range: d.records(1)[0]!.range });
  await groups.close();
});

test('a closed staging log is deleted once each of its batches has settled and no job that has not succeeded names it', async () => {
  const named = new Set<string>();
  const groups = new StagingGroups(async (locations) => new Set(locations.filter((l) => named.has(l))));
  const d = loggingDriver();
  const [b, c] = (await stageGroup(groups, d, ['b\n', 'c\n'])) as StagedBody[];
  const location = b!.location;
  const round = () => Bun.sleep(STAGING_LOG_OPEN_MS + 200); // the log is looked at once a STAGING_LOG_OPEN_MS

  await round();
  expect(d.logs[0]!.closed).toBe(true);
  expect(d.deleted).toEqual([]); // its batches' jobs may still be on their way

  named.add(location); // their jobs are queued, not written yet
  await groups.settle(b!, true);
  await groups.settle(c!, false);
  await round();
  expect(d.deleted).toEqual([]);

  named.clear(); // written
  await round();
  expect(d.deleted).toEqual([location]);
  await groups.close();
});

test('a failed append fails the bodies appended with it, and the next group opens a new log', async () => {
  const groups = new StagingGroups(async () => new Set());
  const d = loggingDriver();
  await stageGroup(groups, d, ['a\n', 'b\n']);
  d.failAppend();
  await expect(groups.stage(d.driver, 'line', keys, text('c\n'))).rejects.toThrow('disk full');
  const [e] = (await stageGroup(groups, d, ['e\n'])) as StagedBody[];
  expect(d.logs.map((l) => l.closed)).toEqual([true, false]);
  expect(e).toEqual({ location: d.logs[1]!.location, sizeBytes: 2, range: d.records(1)[0]!.range });
  await groups.close();
});

test('without a way to ask the catalog what names a log, no log is used', async () => {
  const groups = new StagingGroups();
  const d = loggingDriver();
  const alone = await fillLine(groups, d.driver, 'line');
  const staged = [groups.stage(d.driver, 'line', keys, text('b\n')), groups.stage(d.driver, 'line', keys, text('c\n'))];
  await turn();
  for (const w of d.writes) w.finish();
  await Promise.all(alone);
  await turn();
  d.writes.at(-1)!.finish(); // an object of their own
  const [b] = await Promise.all(staged);
  expect(b!.range?.batches).toBe(2);
  expect(d.logs).toHaveLength(0);
});

/** A sink for logged records' jobs that records each insert, and fails the first `failures`. */
function recordingSink(failures = 0) {
  const inserts: Array<{ location: string; through: number; jobs: unknown[] }> = [];
  const forgotten: string[] = [];
  let failed = 0;
  return {
    inserts,
    forgotten,
    sink: {
      async insert(location: string, through: number, records: ReadonlyArray<{ job: unknown }>) {
        if (failed++ < failures) throw new Error('catalog unavailable');
        inserts.push({ location, through, jobs: records.map((r) => r.job) });
      },
      async forget(locations: string[]) {
        forgotten.push(...locations);
      },
    },
  };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

test('jobs kept in log records are inserted in log order once durable and accepted; a withdrawn one is not, and the mark passes it', async () => {
  const { sink, inserts, forgotten } = recordingSink();
  const groups = new StagingGroups(async () => new Set(), sink);
  const d = loggingDriver();
  const alone = await fillLine(groups, d.driver, 'line');
  const first = deferred<boolean>();
  const staged = [
    groups.stage(d.driver, 'line', keys, text('a\n'), () => ({ job: 'job a', accepted: first.promise })),
    groups.stage(d.driver, 'line', keys, text('b\n'), () => ({ job: 'job b', accepted: Promise.resolve(true) })),
    groups.stage(d.driver, 'line', keys, text('c\n'), () => ({ job: 'job c', accepted: Promise.resolve(false) })),
  ];
  for (const w of d.writes) w.finish();
  await Promise.all(alone);
  const [a, b, c] = (await Promise.all(staged)) as StagedBody[];
  expect(d.records(0).map((r) => r.body)).toEqual(['a\n', 'b\n', 'c\n']);
  // Whether the first batch is accepted is not known yet: nothing after it is inserted.
  await Bun.sleep(50);
  expect(inserts).toEqual([]);
  first.resolve(true);
  await Promise.all([a!.jobRow, b!.jobRow, c!.jobRow]);
  const bytes = readStagingLogRecords(new Uint8Array(Buffer.concat(d.logs[0]!.bytes)));
  expect(inserts).toEqual([{ location: a!.location, through: bytes[2]!.end, jobs: ['job a', 'job b'] }]);
  // Every record's job is in the log, the withdrawn one's too: the mark is what keeps a replay from inserting it.
  expect(bytes.map((r) => r.job)).toEqual(['job a', 'job b', 'job c']);
  // Its batches settled by the inserts, the log goes once closed, and its mark is forgotten.
  await Bun.sleep(STAGING_LOG_OPEN_MS * 2 + 200);
  expect(d.deleted).toEqual([a!.location]);
  expect(forgotten).toEqual([a!.location]);
  await groups.close();
});

test('an insert of logged jobs that fails is tried again until it succeeds', async () => {
  const { sink, inserts } = recordingSink(2);
  const groups = new StagingGroups(async () => new Set(), sink);
  const d = loggingDriver();
  const alone = await fillLine(groups, d.driver, 'line');
  const staged = groups.stage(d.driver, 'line', keys, text('a\n'), () => ({ job: 'job a', accepted: Promise.resolve(true) }));
  for (const w of d.writes) w.finish();
  await Promise.all(alone);
  const a = (await staged) as StagedBody;
  await a.jobRow;
  expect(inserts.map((i) => i.jobs)).toEqual([['job a']]);
  await groups.close();
});
