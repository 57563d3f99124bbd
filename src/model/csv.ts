/**
 * The CSV grammar timestore accepts, RFC 4180: `,` between fields, `"` quoting (`""` inside quotes
 * is a quote; quoted fields may hold commas and line breaks), records ended by `\r\n`, `\n` or
 * `\r` (one of them throughout: DuckDB's reader refuses a mix), a UTF-8 BOM allowed. Stricter than
 * DuckDB where it would guess: a quote inside an unquoted field or text after a closing quote is a
 * syntax error. Ingestion checks CSV bodies with it (ingest/formats/csv.ts); the partition writer
 * reads the header of a staged body with it (engine/staged-readers.ts).
 */
import type { AppError } from './errors.ts';
import { refuse } from './constraints.ts';

const COMMA = 0x2c;
const QUOTE = 0x22;
const CR = 0x0d;
const LF = 0x0a;

/**
 * Called for each record with its fields (`null`: empty and unquoted) in values[0..count) and the
 * line it starts on; returning true stops the parse after this record. `values` is reused.
 */
export type CsvRecordHandler = (values: (string | null)[], count: number, line: number) => boolean | void;

/**
 * Parses RFC 4180 text record by record; a syntax error is a 400 `invalid_csv` naming the line.
 * Returns the position after the last record parsed (text.length unless the handler stopped it).
 */
export function parseCsv(text: string, onRecord: CsvRecordHandler): number {
  const length = text.length;
  const values: (string | null)[] = [];
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  let lineEnd: string | undefined;
  const endRecord = (end: string, recordLine: number) => {
    if (lineEnd === undefined) lineEnd = end;
    else if (end !== lineEnd) {
      throw csvError(
        `line ${recordLine} ends with ${LINE_END_NAMES[end]} but the lines before it with ${LINE_END_NAMES[lineEnd]}: use one kind of line end throughout`,
        recordLine,
      );
    }
  };
  while (pos < length) {
    const recordLine = line;
    let count = 0;
    for (;;) {
      let code = text.charCodeAt(pos);
      if (code === QUOTE) {
        const fieldLine = line;
        let value = '';
        let from = pos + 1;
        for (;;) {
          const close = text.indexOf('"', from);
          if (close < 0) throw csvError(`the quoted field that starts on line ${fieldLine} is never closed`, fieldLine);
          line += lineBreaks(text, from, close);
          value += text.slice(from, close);
          if (text.charCodeAt(close + 1) === QUOTE) {
            value += '"';
            from = close + 2;
            continue;
          }
          pos = close + 1;
          break;
        }
        code = text.charCodeAt(pos);
        if (code !== COMMA && code !== LF && code !== CR && pos < length) {
          throw csvError(`line ${line}: text after the closing quote of a field (a quoted field ends at its closing quote)`, line);
        }
        values[count++] = value;
      } else {
        const from = pos;
        while (pos < length) {
          code = text.charCodeAt(pos);
          if (code === COMMA || code === LF || code === CR) break;
          if (code === QUOTE) throw csvError(`line ${line}: a quote inside an unquoted field (quote the whole field and double the quote)`, line);
          pos++;
        }
        values[count++] = pos === from ? null : text.slice(from, pos);
      }
      code = text.charCodeAt(pos);
      if (code === COMMA) {
        pos++;
        continue;
      }
      if (code === CR) {
        const crlf = text.charCodeAt(pos + 1) === LF;
        endRecord(crlf ? '\r\n' : '\r', line);
        pos += crlf ? 2 : 1;
        line++;
      } else if (code === LF) {
        endRecord('\n', line);
        pos++;
        line++;
      }
      break;
    }
    if (onRecord(values, count, recordLine) === true) break;
  }
  return pos;
}

const LINE_END_NAMES: Record<string, string> = { '\n': '\\n', '\r\n': '\\r\\n', '\r': '\\r' };

/** Line breaks (`\r\n`, `\n` or `\r`) in text[from, to). */
function lineBreaks(text: string, from: number, to: number): number {
  let breaks = 0;
  for (let i = from; i < to; i++) {
    const code = text.charCodeAt(i);
    if (code === LF) breaks++;
    else if (code === CR && text.charCodeAt(i + 1) !== LF) breaks++;
  }
  return breaks;
}

/** A refusal of CSV text that breaks the grammar (or the header rules of its reader). */
export function csvError(message: string, line: number, extra: Record<string, unknown> = {}): AppError {
  return refuse('csv_syntax', message, { line, ...extra });
}
