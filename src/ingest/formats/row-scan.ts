/**
 * A batch's rows checked straight from the body's bytes (NDJSON lines, or a JSON document's `rows`
 * array), without building a value per row: one pass that reads each row as a JSON object,
 * matches its keys to the schema's fields and checks each value's type, parsing only the
 * timestamps (each distinct one once).
 *
 * It passes a body only where parsing the rows and `validateRows` would, with the same summary, and
 * answers null for anything else: a bad row, and also whatever it leaves to that path (an escape in
 * a key or a timestamp, a nested value, a key that is not a field, a key twice). The caller then
 * takes that path, which names the problem. The body must be valid UTF-8 (checked before), so bytes
 * above 0x7f inside strings need no look.
 */
import { isStorableTime, parseIngestTimestamp } from '../../model/timestamps.ts';
import { type BatchSummary, perSchema, type RowRules } from '../validation.ts';

const enum Kind {
  String,
  Double,
  Integer,
  Boolean,
  Timestamp,
}

interface ScanField {
  name: string;
  /** `"<name>":`, the member's start as compact JSON writes it (names are identifiers: no escapes). */
  prefix: Uint8Array;
  /** The prefix's whole 4-byte words, little-endian: it is compared a word at a time. */
  words: Uint32Array;
  kind: Kind;
  required: boolean;
}

const KINDS: Record<string, Kind> = { string: Kind.String, double: Kind.Double, integer: Kind.Integer, boolean: Kind.Boolean, timestamp: Kind.Timestamp };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
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
 * The summary of an NDJSON body whose rows `validateRows` would pass (see the top of the file), or
 * null. Every `yieldEvery` rows it awaits `pause()`, so that other requests' I/O moves meanwhile.
 */
export async function scanNdjsonRows(raw: Uint8Array, rules: RowRules, yieldEvery: number, pause: () => Promise<void>): Promise<BatchSummary | null> {
  const scan = new RowScan(rules, INLINE_SPACE);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const n = raw.length;
  let i = 0;
  while (i < n) {
    let c = raw[i]!;
    if (c === 0x20 || c === 0x09 || c === 0x0d || c === NEWLINE) {
      i++;
      continue;
    }
    if (scan.rows > 0 && scan.rows % yieldEvery === 0) await pause();
    i = scan.object(raw, view, i, n);
    if (i < 0) return null;
    // The rest of the line is blank: one row per line, as the other path requires.
    while (i < n && (c = raw[i]!) !== NEWLINE) {
      if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return null;
      i++;
    }
  }
  return scan.summary();
}

/**
 * The summary of the rows of a JSON array (a document's `rows`, which may spread over lines; the
 * array's bytes alone, e.g. a subarray of the body) when `validateRows` would pass them, or null;
 * yields as {@link scanNdjsonRows}.
 */
export async function scanRowArray(array: Uint8Array, rules: RowRules, yieldEvery: number, pause: () => Promise<void>): Promise<BatchSummary | null> {
  const scan = new RowScan(rules, SPACE);
  const view = new DataView(array.buffer, array.byteOffset, array.byteLength);
  const n = array.length;
  let i = skip(array, 0, n, SPACE);
  if (array[i] !== OPEN_ARRAY) return null;
  i = skip(array, i + 1, n, SPACE);
  if (array[i] === CLOSE_ARRAY) return null; // no rows: the other path refuses the batch
  for (;;) {
    if (scan.rows > 0 && scan.rows % yieldEvery === 0) await pause();
    i = scan.object(array, view, i, n);
    if (i < 0) return null;
    i = skip(array, i, n, SPACE);
    const c = array[i++];
    if (c === COMMA) i = skip(array, i, n, SPACE);
    else if (c === CLOSE_ARRAY) break;
    else return null;
  }
  return skip(array, i, n, SPACE) === n ? scan.summary() : null;
}

/** 1 for JSON's whitespace; INLINE_SPACE leaves the line break out (an NDJSON row is one line). */
export const SPACE = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0d, NEWLINE]) SPACE[c] = 1;
const INLINE_SPACE = SPACE.slice();
INLINE_SPACE[NEWLINE] = 0;

/** The first index at or after `i` (and before `end`) that is not whitespace by `space`. */
export function skip(raw: Uint8Array, i: number, end: number, space: Uint8Array): number {
  while (i < end && space[raw[i]!] === 1) i++;
  return i;
}

/** What the scan needs of a schema: its fields in schema order, found by name, and the timestamp column's index. */
interface ScanSchema {
  fields: ScanField[];
  byName: Map<string, number>;
  timestamp: number;
}

const scanSchema = perSchema((rules): ScanSchema => {
  const encoder = new TextEncoder();
  const fields = rules.fields.map((f) => {
    const prefix = encoder.encode(`${JSON.stringify(f.name)}:`);
    const view = new DataView(prefix.buffer);
    const words = Uint32Array.from({ length: prefix.length >> 2 }, (_, w) => view.getUint32(4 * w, true));
    return {
      name: f.name,
      prefix,
      words,
      kind: f.name === rules.timestampColumn ? Kind.Timestamp : KINDS[f.type]!,
      required: f.name === rules.timestampColumn || f.nullable === false,
    };
  });
  return { fields, byName: new Map(fields.map((f, i) => [f.name, i])), timestamp: fields.findIndex((f) => f.name === rules.timestampColumn) };
});

/** One batch's rows, object by object, and what the check gathers of them. */
class RowScan {
  private readonly fields: ScanField[];
  private readonly byName: Map<string, number>;
  private readonly timestamp: number;
  private readonly range: RowRules['timeRange'];
  /** Row number (from 1) in which each field was last seen: a key twice in a row is left to the other path. */
  private readonly seen: Int32Array;
  /** The field found at each key position of the row before: rows usually list their keys in one order. */
  private readonly order: Int32Array;
  rows = 0;
  private minTime = Number.POSITIVE_INFINITY;
  private maxTime = Number.NEGATIVE_INFINITY;
  /** The last distinct timestamp: where its text is, and its instant (rows often share one). */
  private lastStart = -1;
  private lastEnd = -1;
  private lastTime = Number.NaN;

  constructor(
    rules: RowRules,
    private readonly space: Uint8Array,
  ) {
    ({ fields: this.fields, byName: this.byName, timestamp: this.timestamp } = scanSchema(rules));
    this.range = rules.timeRange;
    this.seen = new Int32Array(this.fields.length);
    this.order = new Int32Array(this.fields.length).fill(-1);
  }

  summary(): BatchSummary | null {
    return this.rows === 0 ? null : { rowCount: this.rows, minTime: this.minTime, maxTime: this.maxTime };
  }

  /**
   * Checks the row object at raw[i]: the index after its `}`, or -1 when the other path must judge
   * it. `n` is raw's length: reads past the end find undefined, never another value's bytes.
   */
  object(raw: Uint8Array, view: DataView, i: number, n: number): number {
    const { fields, seen, order, space } = this;
    const fieldCount = fields.length;
    if (raw[i] !== OPEN) return -1;
    const row = ++this.rows;
    i++;
    let present = 0;
    let position = 0;
    let c: number;
    for (;;) {
      // Most rows are compact and list their keys in the previous row's order: one comparison then
      // takes the key with its quotes and colon.
      let f = position < fieldCount ? order[position]! : -1;
      if (f >= 0 && prefixAt(raw, view, i, n, fields[f]!)) {
        i += fields[f]!.prefix.length;
      } else {
        i = skip(raw, i, n, space);
        if (raw[i] !== QUOTE) return -1; // `{}`, a trailing comma, a line break inside an NDJSON row
        const keyStart = ++i;
        while (i < n && (c = raw[i]!) !== QUOTE) {
          if (c === BACKSLASH || c < 0x20) return -1;
          i++;
        }
        if (i >= n) return -1;
        const found = this.byName.get(utf8.decode(raw.subarray(keyStart, i++)));
        if (found === undefined) return -1; // a key that is not a field: the other path's rules
        f = found;
        if (position < fieldCount) order[position] = f;
        i = skip(raw, i, n, space);
        if (raw[i] !== COLON) return -1;
        i++;
      }
      position++;
      if (seen[f] === row) return -1;
      seen[f] = row;
      present++;
      i = skip(raw, i, n, space);
      if (i >= n) return -1;
      i = this.value(raw, i, n, f);
      if (i < 0) return -1;
      i = skip(raw, i, n, space);
      if (i >= n) return -1;
      c = raw[i++]!;
      if (c === COMMA) continue;
      if (c === CLOSE) break;
      return -1;
    }
    if (present !== fieldCount) {
      for (let f = 0; f < fieldCount; f++) if (seen[f] !== row && fields[f]!.required) return -1;
    }
    return i;
  }

  /** Checks the value of field `f` at raw[i]: the index after it, or -1. */
  private value(raw: Uint8Array, i: number, n: number, f: number): number {
    const field = this.fields[f]!;
    let c = raw[i]!;
    if (c === 0x6e /* n */) {
      if (!literal(raw, i, NULL) || field.required) return -1;
      return i + 4;
    }
    switch (field.kind) {
      case Kind.String:
      case Kind.Timestamp: {
        if (c !== QUOTE) return -1;
        const start = ++i;
        for (;;) {
          while (i < n && STRING_BYTE[raw[i]!] === 1) i++;
          if (i >= n) return -1;
          c = raw[i]!;
          if (c === QUOTE) break;
          // A string field's escapes are read here; a timestamp's are left to the other path.
          if (c !== BACKSLASH || field.kind === Kind.Timestamp) return -1;
          i = escapeEnd(raw, i, n);
          if (i < 0) return -1;
        }
        if (field.kind === Kind.Timestamp && !this.time(raw, start, i, f)) return -1;
        return i + 1;
      }
      case Kind.Double:
      case Kind.Integer:
        return numberEnd(raw, i, n, field.kind === Kind.Integer);
      case Kind.Boolean:
        if (literal(raw, i, TRUE)) return i + 4;
        if (literal(raw, i, FALSE)) return i + 5;
        return -1;
    }
  }

  /** Checks the timestamp raw[start, end) of field `f` (and gathers the timestamp column's span): false to refuse. */
  private time(raw: Uint8Array, start: number, end: number, f: number): boolean {
    let time: number;
    if (f === this.timestamp && this.lastStart >= 0 && sameRange(raw, start, end, this.lastStart, this.lastEnd)) {
      time = this.lastTime;
    } else {
      time = parseIngestTimestamp(latin1.decode(raw.subarray(start, end)));
      if (!isStorableTime(time)) return false; // NaN too
      if (f !== this.timestamp) return true;
      this.lastStart = start;
      this.lastEnd = end;
      this.lastTime = time;
    }
    if (f !== this.timestamp) return true;
    if (this.range && (time < this.range.start || time >= this.range.end)) return false;
    if (time < this.minTime) this.minTime = time;
    if (time > this.maxTime) this.maxTime = time;
    return true;
  }
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
/** Whether raw holds the field's member prefix (`"<name>":`) at `start`. */
function prefixAt(raw: Uint8Array, view: DataView, start: number, n: number, field: ScanField): boolean {
  const { prefix, words } = field;
  const length = prefix.length;
  if (start + length > n) return false; // so every read below is inside raw
  for (let w = 0; w < words.length; w++) if (view.getUint32(start + 4 * w, true) !== words[w]) return false;
  for (let k = 4 * words.length; k < length; k++) if (raw[start + k] !== prefix[k]) return false;
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
    while (i < n && ((raw[i]! - ZERO) >>> 0) <= 9) i++;
  } else return -1;
  const integerDigits = i - digits;
  let exact = true; // no exponent, and no fraction an integer field would have to round
  if (i < n && raw[i] === DOT) {
    i++;
    const fraction = i;
    if (integer) {
      while (i < n && ((c = raw[i]!) - ZERO) >>> 0 <= 9) {
        if (c !== ZERO) exact = false;
        i++;
      }
    } else {
      while (i < n && ((raw[i]! - ZERO) >>> 0) <= 9) i++;
    }
    if (i === fraction) return -1;
  }
  if (i < n && (raw[i] === 0x65 || raw[i] === 0x45)) {
    i++;
    if (i < n && (raw[i] === 0x2b || raw[i] === MINUS)) i++;
    const exponent = i;
    while (i < n && ((raw[i]! - ZERO) >>> 0) <= 9) i++;
    if (i === exponent) return -1;
    exact = false;
  }
  if (exact && integerDigits <= (integer ? SAFE_DIGITS : FINITE_DIGITS)) return i;
  const value = Number(latin1.decode(raw.subarray(at, i)));
  return (integer ? Number.isSafeInteger(value) : Number.isFinite(value)) ? i : -1;
}
