/**
 * The NDJSON rows of a batch checked straight from the body's bytes, without building a value per
 * row: one pass that reads each line as a JSON object, matches its keys to the schema's fields and
 * checks each value's type, parsing only the timestamps (each distinct one once).
 *
 * It passes a body only where parsing the rows and `validateRows` would, with the same summary, and
 * answers null for anything else: a bad row, and also whatever it leaves to that path (an escape
 * in a key or a timestamp, a nested value, a key that is not a field, a key twice). The caller then takes that path, which names the problem. The body must be valid UTF-8
 * (checked before), so bytes above 0x7f inside strings need no look.
 */
import { isStorableTime, parseIngestTimestamp } from '../../model/timestamps.ts';
import type { BatchSummary, RowRules } from '../validation.ts';

const enum Kind {
  String,
  Double,
  Integer,
  Boolean,
  Timestamp,
}

interface ScanField {
  name: string;
  /** The name's bytes as they appear between quotes (names are identifiers: ASCII, no escapes). */
  key: Uint8Array;
  kind: Kind;
  required: boolean;
}

export interface ScanPlan {
  fields: ScanField[];
  byName: Map<string, number>;
  timestamp: number;
}

const KINDS: Record<string, Kind> = { string: Kind.String, double: Kind.Double, integer: Kind.Integer, boolean: Kind.Boolean, timestamp: Kind.Timestamp };

const plans = new WeakMap<RowRules['fields'], Map<string, ScanPlan>>();

export function scanPlan(rules: RowRules): ScanPlan {
  let byTimestamp = plans.get(rules.fields);
  if (!byTimestamp) {
    byTimestamp = new Map();
    plans.set(rules.fields, byTimestamp);
  }
  let plan = byTimestamp.get(rules.timestampColumn);
  if (!plan) {
    const encoder = new TextEncoder();
    const fields = rules.fields.map((f) => ({
      name: f.name,
      key: encoder.encode(f.name),
      kind: f.name === rules.timestampColumn ? Kind.Timestamp : KINDS[f.type]!,
      required: f.name === rules.timestampColumn || f.nullable === false,
    }));
    plan = { fields, byName: new Map(fields.map((f, i) => [f.name, i])), timestamp: fields.findIndex((f) => f.name === rules.timestampColumn) };
    byTimestamp.set(rules.timestampColumn, plan);
  }
  return plan;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const NEWLINE = 0x0a;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;
const DOT = 0x2e;

/** Digits of an integer that every double holds exactly (and so a safe integer). */
const SAFE_DIGITS = 15;
/** Digits before the point of a number that is finite as a double whatever they are (the largest is about 1.8e308). */
const FINITE_DIGITS = 308;

/** 1 for the bytes a string holds as they are (not the quote, a backslash or a control character). */
const STRING_BYTE = new Uint8Array(256).fill(1);
for (let byte = 0; byte < 0x20; byte++) STRING_BYTE[byte] = 0;
STRING_BYTE[QUOTE] = 0;
STRING_BYTE[BACKSLASH] = 0;

const latin1 = new TextDecoder('latin1');
const utf8 = new TextDecoder();

/**
 * The summary of a body whose rows `validateRows` would pass (see the top of the file), or null.
 * `yieldEvery` lines it awaits `pause()`, so that other requests' I/O moves meanwhile.
 */
export async function scanRows(raw: Uint8Array, rules: RowRules, yieldEvery: number, pause: () => Promise<void>): Promise<BatchSummary | null> {
  const plan = scanPlan(rules);
  const { fields } = plan;
  const fieldCount = fields.length;
  /** Row number (from 1) in which each field was last seen: a key twice in a row is left to the other path. */
  const seen = new Int32Array(fieldCount);
  /** The field found at each key position of the row before: rows usually list their keys in one order. */
  const order = new Int32Array(fieldCount).fill(-1);
  const range = rules.timeRange;
  const n = raw.length;
  let minTime = Number.POSITIVE_INFINITY;
  let maxTime = Number.NEGATIVE_INFINITY;
  let lastStart = -1;
  let lastEnd = -1;
  let lastTime = Number.NaN;
  let rows = 0;
  let i = 0;
  while (i < n) {
    let c = raw[i]!;
    if (c === 0x20 || c === 0x09 || c === 0x0d || c === NEWLINE) {
      i++;
      continue;
    }
    if (c !== OPEN) return null;
    rows++;
    if (rows % yieldEvery === 0) await pause();
    i++;
    let present = 0;
    let position = 0;
    for (;;) {
      while (i < n && ((c = raw[i]!) === 0x20 || c === 0x09 || c === 0x0d)) i++;
      if (raw[i] !== QUOTE) return null; // `{}`, a trailing comma, a line break inside the row
      const keyStart = ++i;
      let f = position < fieldCount ? order[position]! : -1;
      if (f >= 0 && keyAt(raw, keyStart, fields[f]!.key)) {
        i = keyStart + fields[f]!.key.length + 1;
      } else {
        while (i < n && (c = raw[i]!) !== QUOTE) {
          if (c === BACKSLASH || c < 0x20) return null;
          i++;
        }
        if (i >= n) return null;
        const found = plan.byName.get(utf8.decode(raw.subarray(keyStart, i++)));
        if (found === undefined) return null; // a key that is not a field: the other path's rules
        f = found;
        if (position < fieldCount) order[position] = f;
      }
      position++;
      if (seen[f] === rows) return null;
      seen[f] = rows;
      present++;
      while (i < n && ((c = raw[i]!) === 0x20 || c === 0x09 || c === 0x0d)) i++;
      if (raw[i] !== COLON) return null;
      i++;
      while (i < n && ((c = raw[i]!) === 0x20 || c === 0x09 || c === 0x0d)) i++;
      if (i >= n) return null;
      const field = fields[f]!;
      c = raw[i]!;
      if (c === 0x6e /* n */) {
        if (!literal(raw, i, NULL)) return null;
        if (field.required) return null;
        i += 4;
      } else {
        switch (field.kind) {
          case Kind.String:
          case Kind.Timestamp: {
            if (c !== QUOTE) return null;
            const start = ++i;
            for (;;) {
              while (i < n && STRING_BYTE[raw[i]!] === 1) i++;
              if (i >= n) return null;
              c = raw[i]!;
              if (c === QUOTE) break;
              // A string field's escapes are read here; a timestamp's are left to the other path.
              if (c !== BACKSLASH || field.kind === Kind.Timestamp) return null;
              i = escapeEnd(raw, i, n);
              if (i < 0) return null;
            }
            const end = i++;
            if (field.kind === Kind.Timestamp) {
              let time: number;
              if (f === plan.timestamp && lastStart >= 0 && sameRange(raw, start, end, lastStart, lastEnd)) {
                time = lastTime;
              } else {
                time = parseIngestTimestamp(latin1.decode(raw.subarray(start, end)));
                if (!isStorableTime(time)) return null; // NaN too
                if (f === plan.timestamp) {
                  lastStart = start;
                  lastEnd = end;
                  lastTime = time;
                }
              }
              if (f === plan.timestamp) {
                if (range && (time < range.start || time >= range.end)) return null;
                if (time < minTime) minTime = time;
                if (time > maxTime) maxTime = time;
              }
            }
            break;
          }
          case Kind.Double:
          case Kind.Integer: {
            const end = numberEnd(raw, i, n, field.kind === Kind.Integer);
            if (end < 0) return null;
            i = end;
            break;
          }
          case Kind.Boolean:
            if (literal(raw, i, TRUE)) i += 4;
            else if (literal(raw, i, FALSE)) i += 5;
            else return null;
            break;
        }
      }
      while (i < n && ((c = raw[i]!) === 0x20 || c === 0x09 || c === 0x0d)) i++;
      if (i >= n) return null;
      c = raw[i++]!;
      if (c === COMMA) continue;
      if (c === CLOSE) break;
      return null;
    }
    // The rest of the line is blank: one row per line, as the other path requires.
    while (i < n && (c = raw[i]!) !== NEWLINE) {
      if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return null;
      i++;
    }
    if (present !== fieldCount) {
      for (let f = 0; f < fieldCount; f++) if (seen[f] !== rows && fields[f]!.required) return null;
    }
  }
  if (rows === 0) return null;
  return { rowCount: rows, minTime, maxTime };
}

/**
 * Where the escape at raw[at] (a backslash) ends, or -1 for one the other path refuses or that
 * this one does not judge: not one of JSON's, `\u0000` (a string field cannot hold U+0000), or a
 * surrogate that is not half of a pair.
 */
function escapeEnd(raw: Uint8Array, at: number, n: number): number {
  if (at + 1 >= n) return -1;
  const c = raw[at + 1]!;
  if (c !== 0x75 /* u */) return SIMPLE_ESCAPE[c] === 1 ? at + 2 : -1;
  const code = hex4(raw, at + 2, n);
  if (code <= 0 || (code >= 0xdc00 && code <= 0xdfff)) return -1;
  if (code < 0xd800 || code > 0xdbff) return at + 6;
  if (raw[at + 6] !== BACKSLASH || raw[at + 7] !== 0x75) return -1;
  const low = hex4(raw, at + 8, n);
  return low >= 0xdc00 && low <= 0xdfff ? at + 12 : -1;
}

/** The four hex digits at raw[at] as a number, or -1. */
function hex4(raw: Uint8Array, at: number, n: number): number {
  if (at + 4 > n) return -1;
  let code = 0;
  for (let k = at; k < at + 4; k++) {
    const c = raw[k]!;
    const lower = c | 0x20;
    const digit = c >= ZERO && c <= NINE ? c - ZERO : lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -1;
    if (digit < 0) return -1;
    code = code * 16 + digit;
  }
  return code;
}

/** 1 for what may follow a backslash besides `u`: " \ / b f n r t. */
const SIMPLE_ESCAPE = new Uint8Array(256);
for (const c of '"\\/bfnrt') SIMPLE_ESCAPE[c.charCodeAt(0)] = 1;

const NULL = new Uint8Array([0x6e, 0x75, 0x6c, 0x6c]);
const TRUE = new Uint8Array([0x74, 0x72, 0x75, 0x65]);
const FALSE = new Uint8Array([0x66, 0x61, 0x6c, 0x73, 0x65]);

function literal(raw: Uint8Array, at: number, word: Uint8Array): boolean {
  if (at + word.length > raw.length) return false;
  for (let k = 0; k < word.length; k++) if (raw[at + k] !== word[k]) return false;
  return true;
}

/** Whether raw holds `key` followed by its closing quote at `start`. */
function keyAt(raw: Uint8Array, start: number, key: Uint8Array): boolean {
  const length = key.length;
  if (raw[start + length] !== QUOTE) return false;
  for (let k = 0; k < length; k++) if (raw[start + k] !== key[k]) return false;
  return true;
}

function sameRange(raw: Uint8Array, start: number, end: number, otherStart: number, otherEnd: number): boolean {
  if (end - start !== otherEnd - otherStart) return false;
  for (let k = 0; k < end - start; k++) if (raw[start + k] !== raw[otherStart + k]) return false;
  return true;
}

/**
 * Where the JSON number at `at` ends (JSON's grammar exactly), when it fits the field: a double
 * finite, an integer a safe integer, as JSON.parse would read it; -1 otherwise. Plain digits, with
 * or without a fraction, are judged from their count; an exponent, a long number or an integer
 * field's fraction that is not all zeros, by the value.
 */
function numberEnd(raw: Uint8Array, at: number, n: number, integer: boolean): number {
  let i = at;
  if (raw[i] === MINUS) i++;
  if (i >= n) return -1;
  let c = raw[i]!;
  const digits = i;
  if (c === ZERO) i++;
  else if (c > ZERO && c <= NINE) {
    i++;
    while (i < n && (c = raw[i]!) >= ZERO && c <= NINE) i++;
  } else return -1;
  const integerDigits = i - digits;
  let exact = true; // no exponent, and no fraction an integer field would have to round
  if (i < n && raw[i] === DOT) {
    i++;
    const fraction = i;
    while (i < n && (c = raw[i]!) >= ZERO && c <= NINE) {
      if (c !== ZERO && integer) exact = false;
      i++;
    }
    if (i === fraction) return -1;
  }
  if (i < n && (raw[i] === 0x65 || raw[i] === 0x45)) {
    i++;
    if (i < n && (raw[i] === 0x2b || raw[i] === MINUS)) i++;
    const exponent = i;
    while (i < n && (c = raw[i]!) >= ZERO && c <= NINE) i++;
    if (i === exponent) return -1;
    exact = false;
  }
  if (exact && integerDigits <= (integer ? SAFE_DIGITS : FINITE_DIGITS)) return i;
  const value = Number(latin1.decode(raw.subarray(at, i)));
  return (integer ? Number.isSafeInteger(value) : Number.isFinite(value)) ? i : -1;
}
