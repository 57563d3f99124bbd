/**
 * The timestamp grammar, checked strictly (Date.parse would take `2026-02-30` and read a string
 * without an offset as local time):
 *
 *   YYYY-MM-DD[(T| )hh:mm[:ss[.fraction up to 9 digits]]][Z|±hh[:mm]]
 *
 * A value without an offset is UTC. Queries read every string of this grammar (their times are
 * handed on normalized). Ingestion stages rows as they arrived, for DuckDB's TIMESTAMPTZ cast to
 * read, so it takes less (`parseIngestTimestamp`): an offset only after the seconds (DuckDB
 * refuses `2026-01-01T00:00Z` and `2026-01-01+01:00`), and only instants the catalog can record.
 *
 * DuckDB's instants (microseconds since the epoch) are written back in two ways, at the end.
 */
const ISO_TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(?:(Z)|([+-])(\d{2})(?::?(\d{2}))?)?$/;

/** The same, with ISO 8601's expanded years (`+010000`, `-000001`: what toISOString gives beyond 0000–9999). */
const EXPANDED_TIMESTAMP =
  /^([+-]\d{6}|\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(?:(Z)|([+-])(\d{2})(?::?(\d{2}))?)?$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * The instants every part of timestore can hold, in milliseconds since the epoch: PostgreSQL takes
 * a partition's time range as written by JavaScript's toISOString, which names year 0 `0000` and
 * later years `+010000`, and PostgreSQL refuses both. (DuckDB, Parquet and JavaScript dates reach
 * much further.)
 */
export const STORABLE_TIME_RANGE = {
  min: '0001-01-01T00:00:00Z',
  max: '9999-12-31T23:59:59.999999Z',
  minMillis: -62_135_596_800_000,
  maxMillis: 253_402_300_799_999,
} as const;

function daysIn(year: number, month: number): number {
  if (month === 2 && (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0))) return 29;
  return DAYS_IN_MONTH[month - 1] as number;
}

/** Milliseconds since the epoch (UTC), or NaN when the string is not in the grammar. */
export function parseTimestamp(value: string): number {
  const m = ISO_TIMESTAMP.exec(value);
  if (!m || Number(m[1]) < 1) return Number.NaN;
  return instant(m);
}

/**
 * A timestamp of an ingested row: milliseconds since the epoch, NaN when DuckDB could not read
 * the string (not in the grammar, or an offset without seconds). Years 0 and beyond 9999 (also
 * ISO 8601's expanded `+010000`) parse, so that `isStorableTime` can say what is wrong with them.
 */
export function parseIngestTimestamp(value: string): number {
  const m = EXPANDED_TIMESTAMP.exec(value);
  if (!m) return Number.NaN;
  if ((m[8] !== undefined || m[9] !== undefined) && m[6] === undefined) return Number.NaN;
  if (m[1] === '-000000') return Number.NaN; // ISO 8601 has no negative zero year
  return instant(m);
}

/** Whether an instant is in STORABLE_TIME_RANGE. */
export function isStorableTime(millis: number): boolean {
  return millis >= STORABLE_TIME_RANGE.minMillis && millis <= STORABLE_TIME_RANGE.maxMillis;
}

function instant(m: RegExpExecArray): number {
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = m[4] ? Number(m[4]) : 0;
  const minute = m[5] ? Number(m[5]) : 0;
  const second = m[6] ? Number(m[6]) : 0;
  const millis = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return Number.NaN;
  if (hour > 23 || minute > 59 || second > 59) return Number.NaN;
  let offsetMinutes = 0;
  if (m[9]) {
    const offsetHours = Number(m[10]);
    const offsetMins = m[11] ? Number(m[11]) : 0;
    if (offsetHours > 23 || offsetMins > 59) return Number.NaN;
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  const utc = new Date(0);
  utc.setUTCFullYear(year, month - 1, day); // Date.UTC maps years 0–99 to 1900–1999
  utc.setUTCHours(hour, minute, second, millis);
  return utc.getTime() - offsetMinutes * 60_000;
}

/**
 * Microseconds since the epoch as ISO-8601 UTC with all six fraction digits, e.g.
 * `2026-01-01T00:00:00.123456Z`: what the partition writer reports (window starts, time ranges,
 * statistics) keeps DuckDB's precision.
 */
export function isoFromMicrosFixed(micros: bigint): string {
  let ms = micros / 1000n;
  let rest = micros % 1000n;
  if (rest < 0n) {
    ms -= 1n;
    rest += 1000n;
  }
  const iso = new Date(Number(ms)).toISOString();
  return `${iso.slice(0, -1)}${rest.toString().padStart(3, '0')}Z`;
}

/**
 * Microseconds since the epoch as ISO-8601 UTC as query answers show it: milliseconds always
 * (`2026-01-01T00:00:00.000Z`), microseconds when the value has a sub-millisecond part
 * (`2026-01-01T00:00:00.000001Z`); `infinity`/`-infinity` for DuckDB's infinite timestamps.
 */
export function isoFromMicrosTrimmed(micros: bigint): string {
  const n = Number(micros);
  let ms: number;
  let sub: number;
  if (Number.isSafeInteger(n)) {
    ms = Math.floor(n / 1000);
    sub = n - ms * 1000;
  } else {
    let big = micros / 1000n;
    let rest = micros % 1000n;
    if (rest < 0n) {
      big -= 1n;
      rest += 1000n;
    }
    ms = Number(big);
    sub = Number(rest);
  }
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) return micros > 0n ? 'infinity' : '-infinity';
  const iso = date.toISOString();
  return sub === 0 ? iso : `${iso.slice(0, -1)}${sub.toString().padStart(3, '0')}Z`;
}

/**
 * An answer's timestamp (isoFromMicrosTrimmed: `…T00:00:00.000Z`, or `…T00:00:00.000001Z` with
 * microseconds) with six fraction digits, so that string order is time order (years 0001–9999).
 */
export function fixedMicros(iso: string): string {
  return iso.length === 24 ? `${iso.slice(0, 23)}000Z` : iso;
}
