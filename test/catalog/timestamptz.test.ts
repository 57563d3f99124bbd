import { expect, test } from 'bun:test';
import { parseTimestamptz } from '../../src/catalog/timestamptz.ts';

test.each([
  ['0001-01-01 00:00:00+00', '0001-01-01T00:00:00.000Z'],
  ['0049-06-01 12:34:56.789+00', '0049-06-01T12:34:56.789Z'],
  ['0050-01-01 00:00:00.123456+00', '0050-01-01T00:00:00.123Z'],
  ['2026-01-01 05:30:00+05:30', '2026-01-01T00:00:00.000Z'],
  ['0001-01-01 00:00:00-00:19:32', '0001-01-01T00:19:32.000Z'],
  ['9999-12-31 23:59:59.999999+00', '9999-12-31T23:59:59.999Z'],
  ['0001-12-31 23:00:00+00 BC', '0000-12-31T23:00:00.000Z'],
])('PostgreSQL %s is %s', (text, iso) => {
  expect(parseTimestamptz(text).toISOString()).toBe(iso);
});

test('infinity stays what new Date makes of it', () => {
  expect(Number.isNaN(parseTimestamptz('infinity').getTime())).toBe(true);
});
