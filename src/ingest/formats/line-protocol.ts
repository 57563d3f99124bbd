/**
 * InfluxDB line protocol, parsed in one pass over the text into rows grouped by measurement:
 *
 *   measurement[,tag=value…] field=value[,field=value…] [timestamp]
 *
 * - `\,` and `\ ` are escapes in the measurement, `\,` `\=` `\ ` in tag keys, tag values and field
 *   keys; in a string field value `\"` and `\\` (any other backslash is itself). Lines are split on
 *   `\n` (a `\r` before it is trailing whitespace); blank lines and lines starting with `#` are skipped.
 * - Field values: float (`1`, `-1.5`, `1e3`), integer `1i`, unsigned `1u`, string `"…"`, boolean
 *   `t T true True TRUE f F false False FALSE`. Tags are strings.
 * - The timestamp is an integer in the request's precision; without one a row takes `nowMillis`
 *   (one server time per request, as InfluxDB does). Stored to the microsecond: finer digits are
 *   dropped (rounded towards the past).
 * - A tag key given twice in a line is refused, a field key given twice keeps its last value (both
 *   as InfluxDB does); a key's type must be the same on every line of a measurement.
 *
 * Each row becomes one NDJSON object (keys are checked field names, so they need no escaping),
 * written as bytes into one growing buffer per measurement: the parser works on the body's bytes and
 * decodes only what it must (a key the first time it is seen, a value that needs escaping, a number
 * that JSON does not write as it is). Tag values, numbers and plain strings are copied from the body
 * as they are; a line that repeats the previous line's keys (TSBS and Telegraf lines do) finds its
 * columns by comparing bytes with them. Rows start `{"time":` (`stagedNdjson` names the dataset's
 * timestamp column when it is another). Every refusal names the (1-based) line.
 */
import { isUtf8 } from 'node:buffer';
import type { FieldType } from '../../model/field-types.ts';
import { refuse } from '../../model/constraints.ts';
import { FIELD_NAME } from '../../model/schema.ts';
import { isStorableTime, STORABLE_TIME_RANGE } from '../../model/timestamps.ts';

/**
 * Timestamp precisions: `ns`, `us`, `ms`, `s`, v1's `m` and `h` (minutes, hours), and InfluxDB 3's
 * `auto`, which takes each timestamp's unit from its size (below 5e9 seconds, 5e12 milliseconds,
 * 5e15 microseconds, else nanoseconds).
 */
export const PRECISIONS = ['ns', 'us', 'ms', 's', 'm', 'h', 'auto'] as const;
export type Precision = (typeof PRECISIONS)[number];

/** A tag or field of a measurement, as the request's lines use it. */
export interface LineColumn {
  name: string;
  type: FieldType;
  tag: boolean;
  /** The first line that names it (for refusals about the column). */
  firstLine: number;
  /** The first row (index among the measurement's rows) without a value for it; -1 when every row has one. */
  firstGap: number;
  lastRow: number;
  /** The key's bytes as the body writes it (escapes included). */
  raw: Uint8Array;
  /** `,"name":` as staged. */
  prefix: Uint8Array;
}

export interface MeasurementRows {
  measurement: string;
  /** Tags and fields in the order first seen. */
  columns: Map<string, LineColumn>;
  /** How many rows. */
  count: number;
  /** The rows as NDJSON, `{"time":"<ISO time>","key":value…}` a line; see stagedNdjson. */
  ndjson: Uint8Array;
  /** The body line of each row. */
  lines: number[];
  minTime: number;
  maxTime: number;
}

/** A measurement names a dataset: the same pattern as a dataset slug. */
const MEASUREMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

const NEWLINE = 10;
const RETURN = 13;
const SPACE = 32;
const TAB = 9;
const QUOTE = 34;
const HASH = 35;
const COMMA = 44;
const MINUS = 45;
const EQUALS = 61;
const BACKSLASH = 92;

/** Milliseconds per unit, and for sub-millisecond precisions how many digits lie below the microsecond. */
const UNIT: Record<Precision, { millis: number; belowMicros: number; micros: boolean }> = {
  ns: { millis: 0, belowMicros: 3, micros: true },
  us: { millis: 0, belowMicros: 0, micros: true },
  ms: { millis: 1, belowMicros: 0, micros: false },
  s: { millis: 1000, belowMicros: 0, micros: false },
  m: { millis: 60_000, belowMicros: 0, micros: false },
  h: { millis: 3_600_000, belowMicros: 0, micros: false },
  auto: { millis: 0, belowMicros: 0, micros: false },
};

/** The unit `auto` reads a timestamp in (InfluxDB 3's guess). */
function guessedUnit(stamp: string): (typeof UNIT)[Precision] {
  const size = Math.abs(Number(stamp));
  return size < 5e9 ? UNIT.s : size < 5e12 ? UNIT.ms : size < 5e15 ? UNIT.us : UNIT.ns;
}

function syntax(line: number, message: string) {
  return refuse('line_protocol_syntax', `line ${line}: ${message}`, { line });
}

/** `\,` `\ ` (and in keys and tag values `\=`) become the character; other backslashes stay. */
function unescape(text: string, equalsToo: boolean): string {
  let out = '';
  let from = 0;
  for (let at = text.indexOf('\\'); at >= 0 && at < text.length - 1; at = text.indexOf('\\', at + 1)) {
    const next = text.charCodeAt(at + 1);
    if (next === COMMA || next === SPACE || (equalsToo && next === EQUALS)) {
      out += text.slice(from, at);
      from = at + 1;
      at++;
    }
  }
  return out + text.slice(from);
}

/** A measurement's rows while they are parsed: its NDJSON so far, and the keys of its previous line. */
interface Builder {
  rows: MeasurementRows;
  /** The measurement's bytes as the body writes it. */
  raw: Uint8Array;
  out: Uint8Array;
  pos: number;
  /** The columns of the measurement's last line, in the order it named them (a cache: may hold more). */
  layout: LineColumn[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Each row's head: the timestamp column, `time` until stagedNdjson names the dataset's. */
const HEAD = encoder.encode('{"time":');
/** `"YYYY-MM-DDTHH:MM:SS.ffffffZ"`: every storable instant (years 0001 to 9999) has this length. */
const STAMP_LENGTH = 29;
const TRUE = encoder.encode('true');
const FALSE = encoder.encode('false');
const BOM = [0xef, 0xbb, 0xbf];

const text = (b: Uint8Array, from: number, to: number) => decoder.decode(b.subarray(from, to));

/** Whether b[from, to) holds the same bytes as `bytes`. */
function sameBytes(b: Uint8Array, from: number, to: number, bytes: Uint8Array): boolean {
  if (to - from !== bytes.length) return false;
  for (let k = 0; k < bytes.length; k++) if (b[from + k] !== bytes[k]) return false;
  return true;
}

/** Room for `more` bytes after `pos` in the builder's buffer (which may be replaced). */
function reserve(m: Builder, pos: number, more: number): Uint8Array {
  if (pos + more <= m.out.length) return m.out;
  const grown = new Uint8Array(Math.max(m.out.length * 2, pos + more + 1024));
  grown.set(m.out.subarray(0, pos));
  m.out = grown;
  return grown;
}

/**
 * Parses a body (its bytes, or text). `precision` is the request's; `nowMillis` the time of rows
 * without a timestamp. Throws the refusal of the first bad line.
 */
export function parseLineProtocol(body: Uint8Array | string, precision: Precision, nowMillis: number): Map<string, MeasurementRows> {
  let b: Uint8Array;
  if (typeof body === 'string') b = encoder.encode(body);
  else {
    if (!isUtf8(body)) throw refuse('encoding', 'the line-protocol body is not valid UTF-8');
    b = body;
  }
  const unit = UNIT[precision];
  const builders = new Map<string, Builder>();
  const n = b.length;
  const nowStamp = encoder.encode(`"${isoOfMillis(nowMillis, 0)}"`);
  // The previous timestamp (its place in the body) and what it became.
  let lastStampFrom = -1;
  let lastStampTo = -1;
  const lastStamp = new StampText();
  let lastStampMillis = 0;
  // Where each key's `,"key":value` starts in the row (to drop a field given twice).
  let segments: Int32Array = new Int32Array(64);
  let m: Builder | null = null;
  let i = b[0] === BOM[0] && b[1] === BOM[1] && b[2] === BOM[2] ? 3 : 0;
  let line = 0;

  while (i < n) {
    line++;
    // Leading whitespace, blank lines and comments.
    let c = b[i]!;
    while (c === SPACE || c === TAB) c = b[++i]!;
    if (i >= n) break;
    if (c === NEWLINE || c === HASH || (c === RETURN && (i + 1 >= n || b[i + 1] === NEWLINE))) {
      const end = c === NEWLINE ? i : b.indexOf(NEWLINE, i);
      i = end < 0 ? n : end + 1;
      continue;
    }

    // Measurement: up to an unescaped comma or space.
    let start = i;
    let escaped = false;
    for (; i < n; i++) {
      c = b[i]!;
      if (c === BACKSLASH) {
        escaped = true;
        i++;
      } else if (c === COMMA || c === SPACE || c === NEWLINE) break;
    }
    if (i >= n || c === NEWLINE) throw syntax(line, 'missing fields: a line is measurement[,tag=value…] field=value[,field=value…] [timestamp]');
    if (m === null || !sameBytes(b, start, i, m.raw)) {
      const rawName = text(b, start, i);
      let found = builders.get(rawName);
      if (!found) {
        const name = escaped ? unescape(rawName, false) : rawName;
        if (!MEASUREMENT.test(name)) {
          throw refuse(
            'line_measurement',
            `line ${line}: measurement "${name}" cannot name a dataset: use letters, digits and _ . -, starting with a letter or digit (at most 128)`,
            { line, measurement: name },
          );
        }
        const rows: MeasurementRows = {
          measurement: name,
          columns: new Map(),
          count: 0,
          ndjson: new Uint8Array(0),
          lines: [],
          minTime: Number.POSITIVE_INFINITY,
          maxTime: Number.NEGATIVE_INFINITY,
        };
        // The first measurement of a body is usually its only one: room for it all (NDJSON is a little larger).
        const room = builders.size === 0 ? n + (n >> 1) + 1024 : 1 << 16;
        found = { rows, raw: b.slice(start, i), out: new Uint8Array(room), pos: 0, layout: [] };
        builders.set(rawName, found);
      }
      m = found;
    }
    const rows = m.rows;
    const row = rows.count;
    const columns = rows.columns;
    const layout = m.layout;
    let keyCount = 0;
    let out = reserve(m, m.pos, HEAD.length + STAMP_LENGTH);
    let pos = m.pos;
    out.set(HEAD, pos);
    pos += HEAD.length;
    const stampAt = pos;
    pos += STAMP_LENGTH;

    // Tags.
    while (c === COMMA) {
      i++;
      // The common case first: the previous line's tag at this place, a value with nothing to escape.
      const known = layout[keyCount];
      if (known !== undefined && known.tag && known.lastRow !== row && keyAt(b, i, known.raw)) {
        const prefix = known.prefix;
        const from = i + known.raw.length + 1;
        if (pos + prefix.length + (n - from) + 2 > out.length) out = reserve(m, pos, prefix.length + Math.min(n - from, 4096) + 2);
        let at = pos;
        for (let k = 0; k < prefix.length; k++) out[at++] = prefix[k]!;
        out[at++] = QUOTE;
        let k = from;
        for (; k < n && at < out.length - 1; k++) {
          c = b[k]!;
          if (c === COMMA || c === SPACE || c < SPACE || c === QUOTE || c === BACKSLASH || c === EQUALS) break;
          out[at++] = c;
        }
        if (k > from && k < n && (c === COMMA || c === SPACE) && at < out.length) {
          out[at++] = QUOTE;
          if (keyCount === segments.length) segments = grownSegments(segments);
          segments[keyCount++] = pos;
          use(known, row);
          pos = at;
          i = k;
          continue;
        }
        c = COMMA; // not the common case: parsed again below
      }
      start = i;
      escaped = false;
      for (; i < n; i++) {
        c = b[i]!;
        if (c === BACKSLASH) {
          escaped = true;
          i++;
        } else if (c === EQUALS || c === COMMA || c === SPACE || c === NEWLINE) break;
      }
      if (c !== EQUALS || i >= n) throw syntax(line, 'a tag is key=value: missing "="');
      let tag = layout[keyCount];
      if (tag === undefined || !tag.tag || !sameBytes(b, start, i, tag.raw)) tag = column(columns, b, start, i, escaped, 'string', true, line);
      if (tag.lastRow === row) throw syntax(line, `tag "${tag.name}" is given twice`);
      use(tag, row);
      i++;
      start = i;
      escaped = false;
      let plain = true; // nothing JSON must escape: the value can be quoted as it is
      for (; i < n; i++) {
        c = b[i]!;
        if (c === BACKSLASH) {
          escaped = true;
          i++;
        } else if (c === COMMA || c === SPACE || c === NEWLINE || c === EQUALS) break;
        else if (c < SPACE || c === QUOTE) plain = false;
      }
      if (c === EQUALS) throw syntax(line, `tag "${tag.name}": an "=" in a tag value must be escaped as \\=`);
      if (i === start) throw syntax(line, `tag "${tag.name}" has no value`);
      if (i >= n || c === NEWLINE) throw syntax(line, 'missing fields after the tags');
      if (keyCount === segments.length) segments = grownSegments(segments);
      segments[keyCount] = pos;
      layout[keyCount++] = tag;
      if (plain && !escaped) {
        const prefix = tag.prefix;
        if (pos + prefix.length + i - start + 2 > out.length) out = reserve(m, pos, prefix.length + i - start + 2);
        for (let k = 0; k < prefix.length; k++) out[pos++] = prefix[k]!;
        out[pos++] = QUOTE;
        for (let k = start; k < i; k++) out[pos++] = b[k]!;
        out[pos++] = QUOTE;
      } else {
        let value = text(b, start, i);
        if (escaped) value = unescape(value, true);
        if (!plain && value.includes('\0')) throw nul(line, tag.name);
        pos = writeText(m, pos, tag.prefix, JSON.stringify(value));
        out = m.out;
      }
    }

    // The space before the fields (more than one is tolerated).
    while (c === SPACE) c = b[++i]!;
    if (i >= n || c === NEWLINE || c === RETURN) throw syntax(line, 'missing fields: a line needs at least one field=value');

    // Fields.
    for (;;) {
      // The common case first: the previous line's float field at this place, a number JSON writes as it is.
      const known = layout[keyCount];
      if (known !== undefined && known.type === 'double' && !known.tag && known.lastRow !== row && keyAt(b, i, known.raw)) {
        const prefix = known.prefix;
        const from = i + known.raw.length + 1;
        if (pos + prefix.length + 330 > out.length) out = reserve(m, pos, prefix.length + 330);
        let at = pos;
        for (let k = 0; k < prefix.length; k++) out[at++] = prefix[k]!;
        const k = plainNumber(b, from, n, out, at);
        if (k > 0) {
          if (keyCount === segments.length) segments = grownSegments(segments);
          segments[keyCount++] = pos;
          use(known, row);
          pos = at + (k - from);
          i = k;
          c = i < n ? b[i]! : 0;
          if (c === COMMA) {
            i++;
            continue;
          }
          break;
        }
      }
      const keyFrom = i;
      escaped = false;
      for (; i < n; i++) {
        c = b[i]!;
        if (c === BACKSLASH) {
          escaped = true;
          i++;
        } else if (c === EQUALS || c === COMMA || c === SPACE || c === NEWLINE) break;
      }
      if (c !== EQUALS || i >= n) throw syntax(line, 'a field is key=value: missing "="');
      const keyTo = i;
      i++;
      if (i >= n) throw syntax(line, `field "${text(b, keyFrom, keyTo)}" has no value`);
      c = b[i]!;
      let type: FieldType;
      // The value to stage: `json` or `constant` when either is not null, else b[start, valueTo) as it is.
      let json: string | null = null;
      let valueTo = -1;
      let constant: Uint8Array | null = null;
      if (c === QUOTE) {
        // A string: up to the next unescaped quote (it may span lines).
        start = i;
        i++;
        let plain = true;
        for (; i < n; i++) {
          c = b[i]!;
          if (c === BACKSLASH) {
            plain = false;
            const next = b[i + 1];
            if (next === QUOTE || next === BACKSLASH) i++;
          } else if (c === QUOTE) break;
          else if (c < SPACE) {
            plain = false;
            if (c === NEWLINE) line++;
          }
        }
        if (i >= n) throw syntax(line, `field "${text(b, keyFrom, keyTo)}": the string has no closing quote`);
        c = b[++i]!;
        if (i < n && c !== COMMA && c !== SPACE && c !== NEWLINE && c !== RETURN && c !== TAB) {
          throw syntax(line, `field "${text(b, keyFrom, keyTo)}": unexpected text after the closing quote`);
        }
        if (!plain) {
          const value = unescapeString(text(b, start + 1, i - 1));
          if (value.includes('\0')) throw nul(line, text(b, keyFrom, keyTo));
          json = JSON.stringify(value);
        }
        type = 'string';
      } else {
        start = i;
        for (; i < n; i++) {
          c = b[i]!;
          if (c === COMMA || c === SPACE || c === NEWLINE || c === RETURN || c === TAB) break;
        }
        if (i === start) throw syntax(line, `field "${text(b, keyFrom, keyTo)}" has no value`);
        const last = b[i - 1];
        if (last === 105 /* i */ || last === 117 /* u */) {
          type = 'integer';
          if (plainInteger(b, start, i - 1, last === 105)) valueTo = i - 1; // the suffix is not staged
          else json = integerJson(b, start, i, line, keyFrom, keyTo);
        } else if ((constant = booleanAt(b, start, i)) !== null) {
          type = 'boolean';
        } else {
          const form = floatForm(b, start, i);
          if (form === NOT_A_NUMBER) throw syntax(line, `field "${text(b, keyFrom, keyTo)}": ${text(b, start, i)} is not a number, string or boolean`);
          type = 'double';
          if (form !== JSON_NUMBER) {
            const token = text(b, start, i);
            const number = Number(token);
            if (!Number.isFinite(number)) {
              const rawKey = text(b, keyFrom, keyTo);
              throw refuse('non_finite_number', `line ${line}: field "${rawKey}" is ${token}, which is not a finite number`, { line, field: rawKey, value: token });
            }
            json = String(number);
          }
        }
      }
      let field = layout[keyCount];
      if (field === undefined || field.tag || field.type !== type || !sameBytes(b, keyFrom, keyTo, field.raw)) {
        field = column(columns, b, keyFrom, keyTo, escaped, type, false, line);
      }
      if (field.lastRow === row) {
        // The same field twice in one line: the last value is kept (its earlier one is dropped).
        const k = layout.indexOf(field);
        const from = segments[k]!;
        const to = k + 1 < keyCount ? segments[k + 1]! : pos;
        out.copyWithin(from, to, pos);
        pos -= to - from;
        for (let j = k + 1; j < keyCount; j++) {
          segments[j - 1] = segments[j]! - (to - from);
          layout[j - 1] = layout[j]!;
        }
        keyCount--;
      } else use(field, row);
      if (keyCount === segments.length) segments = grownSegments(segments);
      segments[keyCount] = pos;
      layout[keyCount++] = field;
      if (json !== null) {
        pos = writeText(m, pos, field.prefix, json);
        out = m.out;
      } else {
        const prefix = field.prefix;
        if (pos + prefix.length + i - start + 5 > out.length) out = reserve(m, pos, prefix.length + i - start + 5);
        for (let k = 0; k < prefix.length; k++) out[pos++] = prefix[k]!;
        if (constant !== null) for (let k = 0; k < constant.length; k++) out[pos++] = constant[k]!;
        else for (let k = start, end = valueTo < 0 ? i : valueTo; k < end; k++) out[pos++] = b[k]!;
      }
      if (c === COMMA) {
        i++;
        continue;
      }
      break;
    }

    // Optional timestamp, then only whitespace to the end of the line.
    while (c === SPACE || c === TAB) c = b[++i]!;
    let stamp = nowStamp;
    let millis = nowMillis;
    if (i < n && c !== NEWLINE && c !== RETURN) {
      start = i;
      for (; i < n; i++) {
        c = b[i]!;
        if (c === SPACE || c === TAB || c === NEWLINE || c === RETURN) break;
      }
      if (i - start === lastStampTo - lastStampFrom && sameRange(b, start, lastStampFrom, i - start)) {
        stamp = lastStamp.bytes;
        millis = lastStampMillis;
      } else {
        const time = timeAt(b, start, i, unit, line, precision);
        millis = time.millis;
        lastStamp.set(time.millis, time.micros);
        stamp = lastStamp.bytes;
        lastStampFrom = start;
        lastStampTo = i;
        lastStampMillis = millis;
      }
      while (c === SPACE || c === TAB || c === RETURN) c = b[++i]!;
      if (i < n && c !== NEWLINE) throw syntax(line, 'unexpected text after the timestamp');
    } else {
      while (c === RETURN || c === SPACE || c === TAB) c = b[++i]!;
      if (i < n && c !== NEWLINE) throw syntax(line, 'unexpected text after the fields');
    }
    i++; // the newline

    if (millis < rows.minTime) rows.minTime = millis;
    if (millis > rows.maxTime) rows.maxTime = millis;
    for (let k = 0; k < STAMP_LENGTH; k++) out[stampAt + k] = stamp[k]!;
    out = reserve(m, pos, 2);
    out[pos++] = 125; // }
    out[pos++] = NEWLINE;
    if (keyCount < layout.length) layout.length = keyCount;
    m.pos = pos;
    rows.count++;
    rows.lines.push(line);
  }

  const byName = new Map<string, MeasurementRows>();
  for (const [rawName, built] of builders) {
    const rows = built.rows;
    rows.ndjson = built.out.subarray(0, built.pos);
    for (const col of rows.columns.values()) if (col.firstGap < 0 && col.lastRow < rows.count - 1) col.firstGap = col.lastRow + 1;
    byName.set(rawName, rows);
  }
  return byName;
}

/** `"<ISO time>"` of an instant, as staged; the text of its second is kept for the next instant. */
class StampText {
  readonly bytes = new Uint8Array(STAMP_LENGTH);
  private second = Number.NaN;

  set(millis: number, micros: number): void {
    const second = Math.floor(millis / 1000);
    if (second !== this.second) {
      // `"YYYY-MM-DDTHH:MM:SS.`
      encoder.encodeInto(`"${new Date(second * 1000).toISOString().slice(0, 20)}`, this.bytes);
      this.second = second;
    }
    let fraction = (millis - second * 1000) * 1000 + micros;
    for (let k = 26; k >= 21; k--) {
      this.bytes[k] = 48 + (fraction % 10);
      fraction = Math.floor(fraction / 10);
    }
    this.bytes[27] = 90; // Z
    this.bytes[28] = QUOTE;
  }
}

/** Whether b at `at` holds the key `raw` followed by `=`. */
function keyAt(b: Uint8Array, at: number, raw: Uint8Array): boolean {
  for (let k = 0; k < raw.length; k++) if (b[at + k] !== raw[k]) return false;
  return b[at + raw.length] === EQUALS;
}

/**
 * A float written as JSON writes it (-?digits[.digits], no leading zero, under 300 digits) at
 * b[from…), ending at a separator or the end of the body: copied to out at `at`, and the position
 * after it returned; 0 when the value is anything else (nothing is assumed of what was copied).
 */
function plainNumber(b: Uint8Array, from: number, n: number, out: Uint8Array, at: number): number {
  let k = from;
  let c = b[k];
  if (c === MINUS) {
    out[at++] = c;
    c = b[++k];
  }
  const digitsFrom = k;
  while (c !== undefined && c >= 48 && c <= 57) {
    out[at++] = c;
    c = b[++k];
  }
  const whole = k - digitsFrom;
  if (whole === 0 || (whole > 1 && b[digitsFrom] === 48)) return 0;
  if (c === 46) {
    out[at++] = c;
    c = b[++k];
    const fractionFrom = k;
    while (c !== undefined && c >= 48 && c <= 57) {
      out[at++] = c;
      c = b[++k];
    }
    if (k === fractionFrom) return 0;
  }
  if (k - from >= 299) return 0;
  return k >= n || c === COMMA || c === SPACE || c === NEWLINE || c === RETURN || c === TAB ? k : 0;
}

/** Whether b[a, a+length) and b[other, other+length) hold the same bytes. */
function sameRange(b: Uint8Array, a: number, other: number, length: number): boolean {
  for (let k = length - 1; k >= 0; k--) if (b[a + k] !== b[other + k]) return false;
  return true;
}

function grownSegments(segments: Int32Array): Int32Array {
  const grown = new Int32Array(segments.length * 2);
  grown.set(segments);
  return grown;
}

/** Writes `prefix` then `value` (text) at `pos`; the position after them. */
function writeText(m: Builder, pos: number, prefix: Uint8Array, value: string): number {
  const out = reserve(m, pos, prefix.length + value.length * 3);
  out.set(prefix, pos);
  pos += prefix.length;
  return pos + encoder.encodeInto(value, out.subarray(pos)).written;
}

/** In a string field value `\"` and `\\` are the character; any other backslash is itself. */
function unescapeString(value: string): string {
  let out = '';
  let start = 0;
  for (let at = value.indexOf('\\'); at >= 0; at = value.indexOf('\\', at + 1)) {
    const next = value.charCodeAt(at + 1);
    if (next === QUOTE || next === BACKSLASH) {
      out += value.slice(start, at);
      start = at + 1;
      at++;
    }
  }
  return out + value.slice(start);
}

/** The staged NDJSON of the rows, each naming the timestamp column `timestampColumn`. */
export function stagedNdjson(rows: MeasurementRows, timestampColumn: string): Uint8Array {
  if (timestampColumn === 'time') return rows.ndjson;
  const head = encoder.encode(`{"${timestampColumn}":`);
  const from = rows.ndjson;
  const out = new Uint8Array(from.length + rows.count * (head.length - HEAD.length));
  let pos = 0;
  for (let at = 0; at < from.length; ) {
    const end = from.indexOf(NEWLINE, at) + 1;
    out.set(head, pos);
    pos += head.length;
    out.set(from.subarray(at + HEAD.length, end), pos);
    pos += end - at - HEAD.length;
    at = end;
  }
  return out;
}

/**
 * The column of the key b[from, to): its type must be the same as on earlier lines, and a tag stays
 * a tag. Keys are decoded and checked the first time they are seen.
 */
function column(
  columns: Map<string, LineColumn>,
  b: Uint8Array,
  from: number,
  to: number,
  escaped: boolean,
  type: FieldType,
  tag: boolean,
  line: number,
): LineColumn {
  const raw = text(b, from, to);
  let col = columns.get(raw);
  if (!col) {
    const name = escaped ? unescape(raw, true) : raw;
    if (!FIELD_NAME.test(name)) {
      throw refuse(
        'field_name',
        `line ${line}: ${tag ? 'tag' : 'field'} key "${name}" is not a safe identifier: use letters, digits and _, starting with a letter or _ (at most 63)`,
        { line, field: name },
      );
    }
    col = { name, type, tag, firstLine: line, firstGap: -1, lastRow: -1, raw: b.slice(from, to), prefix: encoder.encode(`,"${name}":`) };
    columns.set(raw, col);
  } else if (col.tag !== tag) {
    throw syntax(line, `"${col.name}" is a ${col.tag ? 'tag' : 'field'} on line ${col.firstLine} and a ${tag ? 'tag' : 'field'} here: a key is one or the other`);
  } else if (col.type !== type) {
    throw refuse(
      'line_field_type',
      `line ${line}: field type conflict: "${col.name}" is ${type} here but ${col.type} on line ${col.firstLine}`,
      { line, field: col.name, type, earlierType: col.type, earlierLine: col.firstLine },
    );
  }
  return col;
}

/** Notes that `row` has a value for the column (and the first row before it that had none). */
function use(col: LineColumn, row: number): void {
  if (col.firstGap < 0 && col.lastRow < row - 1) col.firstGap = col.lastRow + 1;
  col.lastRow = row;
}

function nul(line: number, key: string) {
  return refuse('nul_character', `line ${line}: "${key}" contains U+0000, which the catalog cannot store; remove it`, { line, field: key });
}

function outOfRange(line: number, stamp: string, precision: Precision) {
  return refuse(
    'timestamp_out_of_storable_range',
    `line ${line}: the timestamp ${stamp} (precision ${precision}) is outside the range timestore stores (${STORABLE_TIME_RANGE.min} to ${STORABLE_TIME_RANGE.max})`,
    { line, value: stamp, min: STORABLE_TIME_RANGE.min, max: STORABLE_TIME_RANGE.max },
  );
}

/** Digits, with a leading minus when `signed`. */
function isInteger(text: string, signed: boolean): boolean {
  let k = signed && text.charCodeAt(0) === MINUS ? 1 : 0;
  if (k >= text.length) return false;
  for (; k < text.length; k++) {
    const d = text.charCodeAt(k) - 48;
    if (d < 0 || d > 9) return false;
  }
  return true;
}

const NOT_A_NUMBER = 0;
/** A float written as JSON writes numbers, without an exponent: finite, and staged as it is. */
const JSON_NUMBER = 1;
/** Any other float (`+1`, `.5`, `1.`, `007`, `1e3`): parsed, checked finite and written again. */
const OTHER_NUMBER = 2;

/** Whether b[from, to) is [-+]digits[.digits][e[-+]digits] (at least one digit before the exponent), and in which form. */
function floatForm(b: Uint8Array, from: number, to: number): number {
  let k = from;
  let c = b[k]!;
  let json = c !== 43; // no leading plus
  if (c === MINUS || c === 43) c = b[++k]!;
  let digits = 0;
  if (c === 48 && k + 1 < to && b[k + 1]! >= 48 && b[k + 1]! <= 57) json = false; // a leading zero
  while (k < to && c >= 48 && c <= 57) {
    digits++;
    c = b[++k]!;
  }
  if (digits === 0) json = false;
  if (k < to && c === 46) {
    c = b[++k]!;
    let fraction = 0;
    while (k < to && c >= 48 && c <= 57) {
      fraction++;
      c = b[++k]!;
    }
    if (fraction === 0) json = false;
    digits += fraction;
  }
  if (digits === 0) return NOT_A_NUMBER;
  if (k < to && (c === 101 || c === 69)) {
    json = false;
    c = b[++k]!;
    if (k < to && (c === MINUS || c === 43)) c = b[++k]!;
    let exponent = 0;
    while (k < to && c >= 48 && c <= 57) {
      exponent++;
      c = b[++k]!;
    }
    if (exponent === 0) return NOT_A_NUMBER;
  }
  if (k !== to) return NOT_A_NUMBER;
  // Beyond 300 digits a number may round to Infinity: such a token is parsed and checked.
  return json && digits < 300 ? JSON_NUMBER : OTHER_NUMBER;
}

/** `true` or `false` for a boolean's spellings in b[from, to), else null. */
function booleanAt(b: Uint8Array, from: number, to: number): Uint8Array | null {
  const first = b[from];
  const length = to - from;
  if (first === 116 /* t */ || first === 84 /* T */) {
    if (length === 1) return TRUE;
    return length === 4 && booleanWord(b, from, 'true') ? TRUE : null;
  }
  if (first === 102 /* f */ || first === 70 /* F */) {
    if (length === 1) return FALSE;
    return length === 5 && booleanWord(b, from, 'false') ? FALSE : null;
  }
  return null;
}

/** Whether b at `from` spells `word` as `word`, `Word` or `WORD` (its first letter is one of them). */
function booleanWord(b: Uint8Array, from: number, word: string): boolean {
  const firstUpper = b[from]! < 97;
  const restUpper = b[from + 1]! < 97;
  if (restUpper && !firstUpper) return false;
  for (let k = 1; k < word.length; k++) if (b[from + k] !== word.charCodeAt(k) - (restUpper ? 32 : 0)) return false;
  return true;
}

/**
 * Whether the integer b[from, to) (its suffix excluded) is staged as it is: 1 to 15 digits (always
 * a safe integer), no leading zero, a minus only when `signed` and not before a lone zero.
 */
function plainInteger(b: Uint8Array, from: number, to: number, signed: boolean): boolean {
  let k = from;
  if (signed && b[k] === MINUS) k++;
  const digits = to - k;
  if (digits < 1 || digits > 15) return false;
  if (b[k] === 48 && (digits > 1 || k > from)) return false;
  for (; k < to; k++) {
    const d = b[k]! - 48;
    if (d < 0 || d > 9) return false;
  }
  return true;
}

/** The JSON of an integer field b[from, to) (its suffix included) that plainInteger does not take. */
function integerJson(b: Uint8Array, from: number, to: number, line: number, keyFrom: number, keyTo: number): string {
  const token = text(b, from, to);
  const signed = token.charCodeAt(token.length - 1) === 105;
  const digits = token.slice(0, -1);
  const rawKey = text(b, keyFrom, keyTo);
  if (!isInteger(digits, signed)) throw syntax(line, `field "${rawKey}": ${token} is not ${signed ? 'an integer' : 'an unsigned integer'}`);
  const number = Number(digits);
  if (!Number.isSafeInteger(number)) {
    throw refuse('integer_out_of_range', `line ${line}: field "${rawKey}" is ${token}: timestore keeps integers within ±(2^53−1), exactly as JSON carries them`, {
      line,
      field: rawKey,
      value: token,
    });
  }
  return String(number);
}

/**
 * The instant of the timestamp b[from, to). The common case (not negative, at most 2^53 − 1
 * microseconds or coarser units) is read from the bytes.
 */
function timeAt(b: Uint8Array, from: number, to: number, unit: (typeof UNIT)[Precision], line: number, precision: Precision): { millis: number; micros: number } {
  if (unit === UNIT.auto) {
    // guessedUnit's choice: below 2^53 the digits are read exactly, beyond every guess is nanoseconds.
    let size = 0;
    let k = from;
    for (; k < to; k++) {
      const d = b[k]! - 48;
      if (d < 0 || d > 9) break;
      size = size * 10 + d;
    }
    if (k === to && to > from) return timeAt(b, from, to, size < 5e9 ? UNIT.s : size < 5e12 ? UNIT.ms : size < 5e15 ? UNIT.us : UNIT.ns, line, precision);
  }
  const head = to - from - unit.belowMicros;
  if (unit !== UNIT.auto && head >= 1 && head <= 16) {
    let value = 0;
    let k = from;
    for (; k < to; k++) {
      const d = b[k]! - 48;
      if (d < 0 || d > 9) break;
      if (k < from + head) value = value * 10 + d;
    }
    // Sixteen digits may pass 2^53: then Number arithmetic is not exact, and the general path reads it.
    if (k === to && value <= EXACT) {
      let millis = value * unit.millis;
      let micros = 0;
      if (unit.micros) {
        millis = Math.floor(value / 1000);
        micros = value - millis * 1000;
      }
      if (!isStorableTime(millis)) throw outOfRange(line, text(b, from, to), precision);
      return { millis, micros };
    }
  }
  const stamp = text(b, from, to);
  if (!isInteger(stamp, true)) throw syntax(line, `the timestamp ${stamp} is not an integer`);
  const time = timeOf(stamp, unit);
  if (time === null) throw outOfRange(line, stamp, precision);
  return time;
}

/** Microseconds beyond which Number arithmetic is not exact (year 2255): BigInt takes over there. */
const EXACT = Number.MAX_SAFE_INTEGER;

/** A timestamp's milliseconds and the microseconds within them (0–999), or null when it cannot be stored. */
function timeOf(stamp: string, precision: (typeof UNIT)[Precision]): { millis: number; micros: number } | null {
  const unit = precision === UNIT.auto ? guessedUnit(stamp) : precision;
  let millis: number;
  let micros = 0;
  if (unit.micros) {
    // Drop the digits below the microsecond, rounding towards the past.
    let head = stamp;
    let dropped = false;
    if (unit.belowMicros > 0) {
      head = stamp.length - (stamp.charCodeAt(0) === MINUS ? 1 : 0) > unit.belowMicros ? stamp.slice(0, -unit.belowMicros) : '0';
      const tail = stamp.slice(-unit.belowMicros);
      dropped = tail !== '000' && tail !== '-000';
      if (head === '-') head = '0';
    }
    let us = Number(head);
    if (Math.abs(us) > EXACT) {
      let big = BigInt(head);
      if (dropped && stamp.charCodeAt(0) === MINUS) big -= 1n;
      const ms = big / 1000n - (big % 1000n < 0n ? 1n : 0n);
      millis = Number(ms);
      micros = Number(big - ms * 1000n);
    } else {
      if (dropped && stamp.charCodeAt(0) === MINUS) us -= 1;
      millis = Math.floor(us / 1000);
      micros = us - millis * 1000;
    }
  } else {
    millis = Number(stamp) * unit.millis;
  }
  return isStorableTime(millis) ? { millis, micros } : null;
}

/** ISO-8601 UTC with microseconds. */
function isoOfMillis(millis: number, micros: number): string {
  return `${new Date(millis).toISOString().slice(0, -1)}${micros < 10 ? '00' : micros < 100 ? '0' : ''}${micros}Z`;
}
