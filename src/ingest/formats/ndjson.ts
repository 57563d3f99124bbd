/**
 * application/x-ndjson (and application/ndjson): one JSON row object per line, blank lines
 * ignored, `\n` or `\r\n` line ends. The schema is the dataset's; the rows are checked with the
 * same rules as a JSON batch's, and errors name the row index (blank lines not counted) and the
 * line. The body is staged as it arrived (DuckDB reads it as newline-delimited JSON).
 */
import { AppError } from '../../model/errors.ts';
import { rowError, validateRows } from '../validation.ts';
import { atLine, type BatchParams, type DecodedBatch, decodeUtf8, hashRequest, hasSurrogateEscape, refuseLoneSurrogates } from './batch.ts';

const NOT_BLANK = /[^ \t\r]/;
const YIELD_EVERY_LINES = 1000;

export function ndjsonBatch(raw: Uint8Array, params: BatchParams): DecodedBatch {
  const text = decodeUtf8(raw, 'NDJSON');
  return {
    format: 'ndjson',
    ...params,
    declare: () => null,
    async validate(rules) {
      const rows: unknown[] = [];
      const lines: number[] = [];
      const surrogates = hasSurrogateEscape(text);
      let start = 0;
      for (let line = 1; start < text.length; line++) {
        // A 5,000-row body takes about 10 ms to parse: let other requests' I/O move meanwhile.
        if (line % YIELD_EVERY_LINES === 0) await new Promise<void>((resolve) => setImmediate(resolve));
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
    },
    stagesBodyAsReceived: true,
    staged: () => ({ bytes: raw, format: 'ndjson', extension: 'ndjson' }),
    requestHash: () => hashRequest(raw, 'ndjson', params),
  };
}
