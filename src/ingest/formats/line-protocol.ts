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
 * Each row becomes one NDJSON object (keys are checked field names, so they need no escaping); the
 * timestamp column's name is put in front later, once the dataset's is known (`stagedNdjson`).
 * Every refusal names the (1-based) line.
 */
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
}

export interface MeasurementRows {
  measurement: string;
  /** Tags and fields in the order first seen. */
  columns: Map<string, LineColumn>;
  /** Per row: `"<ISO time>"` then `,"key":value…}`; see stagedNdjson. */
  rows: string[];
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

/**
 * Parses a body. `precision` is the request's; `nowMillis` the time of rows without a timestamp.
 * Throws the refusal of the first bad line.
 */
export function parseLineProtocol(text: string, precision: Precision, nowMillis: number): Map<string, MeasurementRows> {
  const unit = UNIT[precision];
  const byName = new Map<string, MeasurementRows>();
  const n = text.length;
  // One line's keys and JSON values, reused from line to line.
  const keys: string[] = [];
  const values: string[] = [];
  const nowIso = isoOfMillis(nowMillis, 0);
  let lastStamp = '';
  let lastStampIso = '';
  let lastStampMillis = 0;
  let i = 0;
  let line = 0;

  while (i < n) {
    line++;
    // Leading whitespace, blank lines and comments.
    let c = text.charCodeAt(i);
    while (c === SPACE || c === TAB) c = text.charCodeAt(++i);
    if (i >= n) break;
    if (c === NEWLINE || c === HASH || (c === RETURN && (i + 1 >= n || text.charCodeAt(i + 1) === NEWLINE))) {
      const end = c === NEWLINE ? i : text.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
      continue;
    }

    // Measurement: up to an unescaped comma or space.
    let start = i;
    let escaped = false;
    for (; i < n; i++) {
      c = text.charCodeAt(i);
      if (c === BACKSLASH) {
        escaped = true;
        i++;
      } else if (c === COMMA || c === SPACE || c === NEWLINE) break;
    }
    if (i >= n || c === NEWLINE) throw syntax(line, 'missing fields: a line is measurement[,tag=value…] field=value[,field=value…] [timestamp]');
    const rawName = text.slice(start, i);
    let rows = byName.get(rawName);
    if (!rows) {
      const name = escaped ? unescape(rawName, false) : rawName;
      if (!MEASUREMENT.test(name)) {
        throw refuse(
          'line_measurement',
          `line ${line}: measurement "${name}" cannot name a dataset: use letters, digits and _ . -, starting with a letter or digit (at most 128)`,
          { line, measurement: name },
        );
      }
      rows = { measurement: name, columns: new Map(), rows: [], lines: [], minTime: Number.POSITIVE_INFINITY, maxTime: Number.NEGATIVE_INFINITY };
      byName.set(rawName, rows);
    }
    const row = rows.rows.length;
    const columns = rows.columns;
    keys.length = 0;
    values.length = 0;

    // Tags.
    while (c === COMMA) {
      i++;
      start = i;
      escaped = false;
      for (; i < n; i++) {
        c = text.charCodeAt(i);
        if (c === BACKSLASH) {
          escaped = true;
          i++;
        } else if (c === EQUALS || c === COMMA || c === SPACE || c === NEWLINE) break;
      }
      if (c !== EQUALS || i >= n) throw syntax(line, 'a tag is key=value: missing "="');
      const tag = column(columns, text.slice(start, i), escaped, 'string', true, line);
      if (tag.lastRow === row) throw syntax(line, `tag "${tag.name}" is given twice`);
      use(tag, row);
      const key = tag.name;
      i++;
      start = i;
      escaped = false;
      let plain = true; // nothing JSON must escape: the value can be quoted as it is
      for (; i < n; i++) {
        c = text.charCodeAt(i);
        if (c === BACKSLASH) {
          escaped = true;
          i++;
        } else if (c === COMMA || c === SPACE || c === NEWLINE || c === EQUALS) break;
        else if (c < SPACE || c === QUOTE) plain = false;
      }
      if (c === EQUALS) throw syntax(line, `tag "${key}": an "=" in a tag value must be escaped as \\=`);
      if (i === start) throw syntax(line, `tag "${key}" has no value`);
      if (i >= n || c === NEWLINE) throw syntax(line, 'missing fields after the tags');
      let value = text.slice(start, i);
      if (escaped) value = unescape(value, true);
      if (!plain && value.includes('\0')) throw nul(line, key);
      keys.push(key);
      values.push(plain && !escaped ? `"${value}"` : JSON.stringify(value));
    }

    // The space before the fields (more than one is tolerated).
    while (c === SPACE) c = text.charCodeAt(++i);
    if (i >= n || c === NEWLINE || c === RETURN) throw syntax(line, 'missing fields: a line needs at least one field=value');

    // Fields.
    for (;;) {
      start = i;
      escaped = false;
      for (; i < n; i++) {
        c = text.charCodeAt(i);
        if (c === BACKSLASH) {
          escaped = true;
          i++;
        } else if (c === EQUALS || c === COMMA || c === SPACE || c === NEWLINE) break;
      }
      if (c !== EQUALS || i >= n) throw syntax(line, 'a field is key=value: missing "="');
      const rawKey = text.slice(start, i);
      i++;
      if (i >= n) throw syntax(line, `field "${rawKey}" has no value`);
      c = text.charCodeAt(i);
      let type: FieldType;
      let json: string;
      if (c === QUOTE) {
        // A string: up to the next unescaped quote (it may span lines).
        i++;
        start = i;
        let value = '';
        for (; i < n; i++) {
          c = text.charCodeAt(i);
          if (c === BACKSLASH) {
            const next = text.charCodeAt(i + 1);
            if (next === QUOTE || next === BACKSLASH) {
              value += text.slice(start, i);
              start = i + 1;
              i++;
            }
          } else if (c === QUOTE) break;
          else if (c === NEWLINE) line++;
        }
        if (i >= n) throw syntax(line, `field "${rawKey}": the string has no closing quote`);
        value += text.slice(start, i);
        c = text.charCodeAt(++i);
        if (i < n && c !== COMMA && c !== SPACE && c !== NEWLINE && c !== RETURN && c !== TAB) {
          throw syntax(line, `field "${rawKey}": unexpected text after the closing quote`);
        }
        if (value.includes('\0')) throw nul(line, rawKey);
        type = 'string';
        json = JSON.stringify(value);
      } else {
        start = i;
        for (; i < n; i++) {
          c = text.charCodeAt(i);
          if (c === COMMA || c === SPACE || c === NEWLINE || c === RETURN || c === TAB) break;
        }
        if (i === start) throw syntax(line, `field "${rawKey}" has no value`);
        const token = text.slice(start, i);
        const last = token.charCodeAt(token.length - 1);
        if (last === 105 /* i */ || last === 117 /* u */) {
          const digits = token.slice(0, -1);
          if (!isInteger(digits, last === 105)) throw syntax(line, `field "${rawKey}": ${token} is not ${last === 105 ? 'an integer' : 'an unsigned integer'}`);
          const number = Number(digits);
          if (!Number.isSafeInteger(number)) {
            throw refuse('integer_out_of_range', `line ${line}: field "${rawKey}" is ${token}: timestore keeps integers within ±(2^53−1), exactly as JSON carries them`, {
              line,
              field: rawKey,
              value: token,
            });
          }
          type = 'integer';
          json = String(number);
        } else {
          const bool = booleanOf(token);
          if (bool !== undefined) {
            type = 'boolean';
            json = bool;
          } else {
            const form = floatForm(token);
            if (form === NOT_A_NUMBER) throw syntax(line, `field "${rawKey}": ${token} is not a number, string or boolean`);
            type = 'double';
            if (form === JSON_NUMBER) json = token; // the common case: no parse, no formatting
            else {
              const number = Number(token);
              if (!Number.isFinite(number)) {
                throw refuse('non_finite_number', `line ${line}: field "${rawKey}" is ${token}, which is not a finite number`, { line, field: rawKey, value: token });
              }
              json = String(number);
            }
          }
        }
      }
      const field = column(columns, rawKey, escaped, type, false, line);
      if (field.lastRow === row) {
        // The same field twice in one line: the last value is kept.
        values[keys.indexOf(field.name)] = json;
      } else {
        use(field, row);
        keys.push(field.name);
        values.push(json);
      }
      if (c === COMMA) {
        i++;
        continue;
      }
      break;
    }

    // Optional timestamp, then only whitespace to the end of the line.
    while (c === SPACE || c === TAB) c = text.charCodeAt(++i);
    let iso = nowIso;
    let millis = nowMillis;
    if (i < n && c !== NEWLINE && c !== RETURN) {
      start = i;
      for (; i < n; i++) {
        c = text.charCodeAt(i);
        if (c === SPACE || c === TAB || c === NEWLINE || c === RETURN) break;
      }
      const stamp = text.slice(start, i);
      if (stamp === lastStamp) {
        iso = lastStampIso;
        millis = lastStampMillis;
      } else {
        if (!isInteger(stamp, true)) throw syntax(line, `the timestamp ${stamp} is not an integer`);
        const time = timeOf(stamp, unit);
        if (time === null) throw outOfRange(line, stamp, precision);
        millis = time.millis;
        iso = isoOfMillis(time.millis, time.micros);
        lastStamp = stamp;
        lastStampIso = iso;
        lastStampMillis = millis;
      }
      while (c === SPACE || c === TAB || c === RETURN) c = text.charCodeAt(++i);
      if (i < n && c !== NEWLINE) throw syntax(line, 'unexpected text after the timestamp');
    } else {
      while (c === RETURN || c === SPACE || c === TAB) c = text.charCodeAt(++i);
      if (i < n && c !== NEWLINE) throw syntax(line, 'unexpected text after the fields');
    }
    i++; // the newline

    if (millis < rows.minTime) rows.minTime = millis;
    if (millis > rows.maxTime) rows.maxTime = millis;
    let json = `"${iso}"`;
    for (let k = 0; k < keys.length; k++) json += `,"${keys[k]}":${values[k]}`;
    rows.rows.push(`${json}}`);
    rows.lines.push(line);
  }

  for (const rows of byName.values()) {
    const count = rows.rows.length;
    for (const col of rows.columns.values()) if (col.firstGap < 0 && col.lastRow < count - 1) col.firstGap = col.lastRow + 1;
  }
  return byName;
}

/** The NDJSON to stage: each row with the timestamp column's name in front. */
export function stagedNdjson(rows: MeasurementRows, timestampColumn: string): Uint8Array {
  const head = `{"${timestampColumn}":`;
  let text = '';
  for (const row of rows.rows) text += `${head}${row}\n`;
  return new TextEncoder().encode(text);
}

/** A tag or field key's column: its type must be the same as on earlier lines, and a tag stays a tag. */
function column(columns: Map<string, LineColumn>, raw: string, escaped: boolean, type: FieldType, tag: boolean, line: number): LineColumn {
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
    col = { name, type, tag, firstLine: line, firstGap: -1, lastRow: -1 };
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

/** Whether a token is [-+]digits[.digits][e[-+]digits] (at least one digit before the exponent), and in which form. */
function floatForm(text: string): number {
  let k = 0;
  let c = text.charCodeAt(0);
  let json = c !== 43; // no leading plus
  if (c === MINUS || c === 43) c = text.charCodeAt(++k);
  let digits = 0;
  if (c === 48 && text.charCodeAt(k + 1) >= 48 && text.charCodeAt(k + 1) <= 57) json = false; // a leading zero
  while (c >= 48 && c <= 57) {
    digits++;
    c = text.charCodeAt(++k);
  }
  if (digits === 0) json = false;
  if (c === 46) {
    c = text.charCodeAt(++k);
    let fraction = 0;
    while (c >= 48 && c <= 57) {
      fraction++;
      c = text.charCodeAt(++k);
    }
    if (fraction === 0) json = false;
    digits += fraction;
  }
  if (digits === 0) return NOT_A_NUMBER;
  if (c === 101 || c === 69) {
    json = false;
    c = text.charCodeAt(++k);
    if (c === MINUS || c === 43) c = text.charCodeAt(++k);
    let exponent = 0;
    while (c >= 48 && c <= 57) {
      exponent++;
      c = text.charCodeAt(++k);
    }
    if (exponent === 0) return NOT_A_NUMBER;
  }
  if (k !== text.length) return NOT_A_NUMBER;
  // Beyond 300 digits a number may round to Infinity: such a token is parsed and checked.
  return json && digits < 300 ? JSON_NUMBER : OTHER_NUMBER;
}

function booleanOf(token: string): 'true' | 'false' | undefined {
  switch (token) {
    case 't':
    case 'T':
    case 'true':
    case 'True':
    case 'TRUE':
      return 'true';
    case 'f':
    case 'F':
    case 'false':
    case 'False':
    case 'FALSE':
      return 'false';
    default:
      return undefined;
  }
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
