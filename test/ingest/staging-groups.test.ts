/**
 * Group commit of staged bodies (src/ingest/staging-groups.ts), with a storage driver whose writes
 * finish when the test says: who waits for whom, what one shared object holds, and failures.
 */
import { expect, test } from 'bun:test';
import { MAX_GROUPED_BODY_BYTES, MAX_IN_FLIGHT, StagingGroups } from '../../src/ingest/staging-groups.ts';
import type { StorageDriver } from '../../src/storage/driver.ts';

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
const newKey = () => `staging/ds/${++n}.ndjson`;

/** Fills a line's writes in flight with bodies staged alone; returns their promises. */
async function fillLine(groups: StagingGroups, driver: StorageDriver, line: string) {
  const alone = Array.from({ length: MAX_IN_FLIGHT }, (_, k) => groups.stage(driver, line, newKey, text(`alone ${k}\n`)));
  await turn();
  return alone;
}

test(`bodies that find fewer than ${MAX_IN_FLIGHT} writes in flight are staged at once and alone; those arriving then are staged together after one`, async () => {
  const groups = new StagingGroups();
  const { driver, writes } = heldDriver();
  const alone = await fillLine(groups, driver, 'line');
  expect(writes).toHaveLength(MAX_IN_FLIGHT);
  const second = groups.stage(driver, 'line', newKey, text('bb\n'));
  const third = groups.stage(driver, 'line', newKey, text('ccc')); // no final line break: one is added after it
  const fourth = groups.stage(driver, 'line', newKey, text('d\n'));
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
  const later = groups.stage(driver, 'line', newKey, text('e\n'));
  await turn();
  expect(writes).toHaveLength(MAX_IN_FLIGHT + 2);
  writes.at(-1)!.finish();
  expect((await later).range).toBeUndefined();
});

test('one body waiting alone is staged as an object of its own; other lines and large bodies do not wait', async () => {
  const groups = new StagingGroups();
  const { driver, writes } = heldDriver();
  const alone = await fillLine(groups, driver, 'one');
  const other = groups.stage(driver, 'two', newKey, text('x\n'));
  const large = groups.stage(driver, 'one', newKey, new Uint8Array(MAX_GROUPED_BODY_BYTES + 1));
  const waiting = groups.stage(driver, 'one', newKey, text('b\n'));
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
  const b = groups.stage(driver, 'line', newKey, text('b\n'));
  const c = groups.stage(driver, 'line', newKey, text('c\n'));
  // Each caller awaits its own body at once, as acceptBatch does.
  const outcomes = [...alone, b, c].map((p) => p.then(() => 'staged', (err: Error) => err.message));
  await turn();
  writes[0]!.fail(new Error('disk full'));
  await turn();
  writes.at(-1)!.fail(new Error('still full'));
  for (const w of writes.slice(1, MAX_IN_FLIGHT)) w.fail(new Error('full too'));
  expect(await Promise.all(outcomes)).toEqual(['disk full', ...Array(MAX_IN_FLIGHT - 1).fill('full too'), 'still full', 'still full']);
  const d = groups.stage(driver, 'line', newKey, text('d\n'));
  await turn();
  writes.at(-1)!.finish();
  expect(await d).toEqual({ location: `mem://${writes.at(-1)!.key}`, sizeBytes: 2 });
});

test('a shared object none of whose batches was queued is deleted once the last settles; one with a queued batch stays', async () => {
  const groups = new StagingGroups();
  const { driver, writes, deleted } = heldDriver();
  const stageShared = async () => {
    const alone = await fillLine(groups, driver, 'line');
    const shared = [groups.stage(driver, 'line', newKey, text('b\n')), groups.stage(driver, 'line', newKey, text('c\n'))];
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
