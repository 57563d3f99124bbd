/**
 * A staging log's records. Each body appended to a log is preceded by a header line that says how
 * long the body is, its CRC-32, and, for a batch acknowledged on the log's fdatasync alone (before
 * its job row existed), that job: so a process that starts again finds in the log what it owes the
 * catalog (src/ingest/logged-jobs.ts). A record is
 *
 *     #timestore-record {"length":N,"crc32":C,"job":{…}}\n  <N bytes of body>  [\n]
 *
 * the line break after the body only where the body does not end with one (staged-lines.ts), so
 * the body's byte range reads as it always did. A crash may leave a torn or unwritten record at a
 * log's end; the records of acknowledged batches all precede it (an append is acknowledged only
 * once every earlier one is on disk), so reading stops at the first record that does not check.
 */
import { crc32 } from 'node:zlib';
import { endsLine, LINE_FEED, NEW_LINE } from './staged-lines.ts';

const MARK = '#timestore-record ';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A record's body as it was appended, and the job it carries (absent when the job row came first). */
export interface StagingLogRecord<J = unknown> {
  /** The body's first byte within the log. */
  offset: number;
  length: number;
  /** The first byte after the record (its body's line break included). */
  end: number;
  job?: J;
}

/** What to append for `body`: its header, the body, and a line break where the body needs one. */
export function stagingLogRecord(body: Uint8Array, job?: unknown): Uint8Array[] {
  const header = JSON.stringify({ length: body.byteLength, crc32: crc32(body), ...(job === undefined ? {} : { job }) });
  const parts = [encoder.encode(`${MARK}${header}\n`), body];
  if (!endsLine(body)) parts.push(NEW_LINE);
  return parts;
}

/** The records of a log, in order, up to the first one that is torn, unwritten or does not check. */
export function readStagingLogRecords<J = unknown>(log: Uint8Array): StagingLogRecord<J>[] {
  const records: StagingLogRecord<J>[] = [];
  let at = 0;
  while (at < log.byteLength) {
    const headerEnd = log.indexOf(LINE_FEED, at);
    if (headerEnd < 0) break;
    const line = decoder.decode(log.subarray(at, headerEnd));
    if (!line.startsWith(MARK)) break;
    let header: { length?: unknown; crc32?: unknown; job?: J };
    try {
      header = JSON.parse(line.slice(MARK.length));
    } catch {
      break;
    }
    const { length } = header;
    const offset = headerEnd + 1;
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0 || offset + length > log.byteLength) break;
    const body = log.subarray(offset, offset + length);
    if (crc32(body) !== header.crc32) break;
    let end = offset + length;
    if (!endsLine(body)) {
      if (log[end] !== LINE_FEED) break;
      end += 1;
    }
    records.push({ offset, length, end, ...(header.job === undefined ? {} : { job: header.job }) });
    at = end;
  }
  return records;
}
