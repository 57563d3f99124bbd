/**
 * timestamptz values as the catalog reads them. postgres.js hands PostgreSQL's text to
 * `new Date()`, whose non-ISO parsing reads the years 0001–0099 as 1950–2049 (`0001-01-01
 * 00:00:00+00` became 2001-01-01): partitions of such years came back with the wrong time range.
 */

/** PostgreSQL's ISO DateStyle output: `YYYY-MM-DD hh:mm:ss[.ffffff]±hh[:mm[:ss]]`, ` BC` after years before 1. */
const ISO_OUTPUT = /^(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?( BC)?$/;

/** A timestamptz as text from PostgreSQL, as a Date (milliseconds; `infinity` and other DateStyles as `new Date` reads them). */
export function parseTimestamptz(text: string): Date {
  const m = ISO_OUTPUT.exec(text);
  if (!m) return new Date(text);
  const year = m[12] ? 1 - Number(m[1]) : Number(m[1]);
  const utc = new Date(0);
  utc.setUTCFullYear(year, Number(m[2]) - 1, Number(m[3]));
  utc.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]), m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0);
  const offsetSeconds = (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0));
  return new Date(utc.getTime() - offsetSeconds * 1000);
}

/** postgres.js type options for timestamptz (OID 1184): written as postgres.js does, read with parseTimestamptz. */
export const TIMESTAMPTZ_TYPE = {
  to: 1184,
  from: [1184],
  serialize: (value: Date | string) => (value instanceof Date ? value : new Date(value)).toISOString(),
  parse: parseTimestamptz,
};
