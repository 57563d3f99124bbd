/**
 * A staging log's records (src/model/staging-log-records.ts): what a replay reads back, and where it
 * stops when a crash tore the end of a log.
 */
import { expect, test } from 'bun:test';
import { readStagingLogRecords, stagingLogRecord } from '../../src/model/staging-log-records.ts';

const text = (s: string) => new TextEncoder().encode(s);
const join = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));
const bodyOf = (log: Uint8Array, r: { offset: number; length: number }) => new TextDecoder().decode(log.subarray(r.offset, r.offset + r.length));

test('records read back as appended: each body at its range, its job if it has one', () => {
  const job = { id: '3f0c2a4e-8a52-4a47-9a43-1b9f4d6f0c11', payload: { rowCount: 2 } };
  const log = join([...stagingLogRecord(text('{"a":1}\n{"a":2}\n'), job), ...stagingLogRecord(text('{"a":3}')), ...stagingLogRecord(text(''))]);
  const records = readStagingLogRecords(log);
  expect(records.map((r) => bodyOf(log, r))).toEqual(['{"a":1}\n{"a":2}\n', '{"a":3}', '']);
  expect(records.map((r) => r.job)).toEqual([job, undefined, undefined]);
  // A body without a final line break gets one after it, outside its range: the next record starts after it.
  expect(log[records[1]!.offset + records[1]!.length]).toBe(0x0a);
  expect(records.at(-1)!.end).toBe(log.byteLength);
});

test('reading stops at the first record that is torn, unwritten or does not check', () => {
  const first = stagingLogRecord(text('{"a":1}\n'), { id: 'one' });
  const second = stagingLogRecord(text('{"a":2}\n'), { id: 'two' });
  const whole = join([...first, ...second]);
  const firstEnd = join(first).byteLength;
  // Cut anywhere inside the second record: only the first is read.
  for (let cut = firstEnd; cut < whole.byteLength; cut++) expect(readStagingLogRecords(whole.subarray(0, cut)).map((r) => r.job)).toEqual([{ id: 'one' }]);
  // A body whose bytes changed (here: never written, zeros) fails its checksum.
  const zeroed = whole.slice();
  zeroed.fill(0, whole.byteLength - 4, whole.byteLength - 1);
  expect(readStagingLogRecords(zeroed)).toHaveLength(1);
  // Zeros where a header should be (a page the disk never got), and the records after them, are not read.
  const hole = join([join(first), new Uint8Array(16), join(second)]);
  expect(readStagingLogRecords(hole)).toHaveLength(1);
  // A body followed by something other than the line break it needs.
  const noBreak = join([...stagingLogRecord(text('{"a":1}'))]);
  noBreak[noBreak.byteLength - 1] = 0x20;
  expect(readStagingLogRecords(noBreak)).toEqual([]);
});
