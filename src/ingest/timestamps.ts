/**
 * The timestamp grammar ingestion accepts, checked strictly (Date.parse would
 * take `2026-02-30` and read a string without an offset as local time):
 *
 *   YYYY-MM-DD[(T| )hh:mm[:ss[.fraction up to 9 digits]]][Z|±hh[:mm]]
 *
 * A value without an offset is UTC. DuckDB's TIMESTAMPTZ cast reads every
 * string this accepts, so what passes here is what gets stored.
 */
const ISO_TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(?:(Z)|([+-])(\d{2})(?::?(\d{2}))?)?$/;

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysIn(year: number, month: number): number {
  if (month === 2 && (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0))) return 29;
  return DAYS_IN_MONTH[month - 1] as number;
}

/** Milliseconds since the epoch (UTC), or NaN when the string is not an accepted timestamp. */
export function parseTimestamp(value: string): number {
  const m = ISO_TIMESTAMP.exec(value);
  if (!m) return Number.NaN;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = m[4] ? Number(m[4]) : 0;
  const minute = m[5] ? Number(m[5]) : 0;
  const second = m[6] ? Number(m[6]) : 0;
  const millis = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return Number.NaN;
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
