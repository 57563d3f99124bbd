/**
 * application/x-ndjson (and application/ndjson): one JSON row object per line, blank lines
 * ignored, `\n` or `\r\n` line ends. The schema is the dataset's; the rows are checked with the
 * same rules as a JSON batch's, and errors name the row index (blank lines not counted) and the
 * line. The body is staged as it arrived (DuckDB reads it as newline-delimited JSON).
 *
 * Rows are first checked straight from the bytes (row-scan.ts), with no value built per row; a
 * body that scan leaves alone is parsed from the bytes in native chunks (Bun.JSONL), without a
 * decoded copy of the body; a body that does not pass that way cleanly either (a syntax error, a
 * value over several lines, an escape that may hide a lone surrogate, a bad row) is checked again
 * line by line, which names the first problem exactly.
 */
import { AppError } from '../../model/errors.ts';
import { type BatchSummary, type RowRules, rowError, validateRows } from '../validation.ts';
import { scanNdjsonRows } from './row-scan.ts';
import { atLine, type BatchParams, checkUtf8, type DecodedBatch, decodeUtf8, hashRequest, hasSurrogateEscape, hasUnicodeEscape, nextTurn, refuseLoneSurrogates, YIELD_EVERY_ROWS } from './batch.ts';

const NOT_BLANK = /[^ \t\r]/;

export function ndjsonBatch(raw: Uint8Array, params: BatchParams): DecodedBatch {
  checkUtf8(raw, 'NDJSON');
  return {
    format: 'ndjson',
    ...params,
    declare: () => null,
    async validate(rules) {
      const scanned = await scanNdjsonRows(raw, rules, YIELD_EVERY_ROWS, nextTurn);
      if (scanned) return scanned;
      const rows = await parseRows(raw);
      if (rows) {
        try {
          return validateRows(rows, rules);
        } catch {
          // checked again below, for the row's line
        }
      }
      return checkLineByLine(decodeUtf8(raw, 'NDJSON'), rules);
    },
    stagesBodyAsReceived: true,
    staged: () => ({ bytes: raw, format: 'ndjson', extension: 'ndjson' }),
    requestHash: () => hashRequest(raw, 'ndjson', params),
  };
}

const NEWLINE = 0x0a;
const OPEN_BRACE = 0x7b;

/**
 * The rows of a body whose every non-blank line holds exactly one JSON value, parsed from the bytes;
 * null when the body is anything else, or has a `\u` escape (a lone surrogate needs the text to find).
 */
async function parseRows(raw: Uint8Array): Promise<unknown[] | null> {
  if (hasUnicodeEscape(raw)) return null;
  const rows: unknown[] = [];
  let chunkStart = 0;
  let chunkLines = 0;
  let lines = 0;
  for (let start = 0; start < raw.length; ) {
    let end = raw.indexOf(NEWLINE, start);
    if (end < 0) end = raw.length;
    if (raw[start] === OPEN_BRACE || !isBlank(raw, start, end)) chunkLines++;
    start = end + 1;
    if (++lines % YIELD_EVERY_ROWS !== 0 && start < raw.length) continue;
    const parsed = Bun.JSONL.parseChunk(raw, chunkStart, Math.min(start, raw.length));
    // As many values as non-blank lines: no value spans two lines, none shares one.
    if (parsed.error || !parsed.done || parsed.values.length !== chunkLines) return null;
    for (const row of parsed.values) rows.push(row);
    chunkStart = start;
    chunkLines = 0;
    if (start < raw.length) await nextTurn();
  }
  return rows;
}

/** Whether raw[start, end) holds only spaces, tabs and carriage returns (what NOT_BLANK calls blank). */
function isBlank(raw: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const byte = raw[i];
    if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) return false;
  }
  return true;
}

/** Parses and checks the rows one line at a time: the first problem is refused with its row index and line (exported for its test). */
export async function checkLineByLine(text: string, rules: RowRules): Promise<BatchSummary> {
  const rows: unknown[] = [];
  const lines: number[] = [];
  const surrogates = hasSurrogateEscape(text);
  let start = 0;
  for (let line = 1; start < text.length; line++) {
    if (line % YIELD_EVERY_ROWS === 0) await nextTurn();
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const content = text.slice(start, end);
    start = end + 1;
    if (!NOT_BLANK.test(content)) continue;
    let row: unknown;
    try {
      row = JSON.parse(content);
    } catch (err) {
      throw atLine(rowError('json_syntax', `line ${line} is not valid JSON: ${(err as Error).message}`, rows.length), line);
    }
    if (surrogates) {
      const index = rows.length;
      refuseLoneSurrogates(content, row, () => ({ message: `row ${index} (line ${line})`, details: { index, line } }));
    }
    rows.push(row);
    lines.push(line);
  }
  try {
    return validateRows(rows, rules);
  } catch (err) {
    const index = err instanceof AppError ? (err.details as { index?: number } | undefined)?.index : undefined;
    throw atLine(err, index === undefined ? undefined : lines[index]);
  }
}
