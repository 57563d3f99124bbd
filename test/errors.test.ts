/**
 * The error catalogue (src/model/errors.ts): the makers answer with the catalogue's status, a
 * code's conflict status is only asked of codes that have one, and docs/api.md's "Error codes"
 * table lists every code with its statuses and no other.
 */
import { expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AppError, appError, ERROR_CODES, errors, statusesOf, statusOf } from '../src/model/errors.ts';
import { INGEST_CONSTRAINTS } from '../src/model/constraints.ts';

test('a maker builds an AppError with its code, the catalogue status, message, details and cause', () => {
  const cause = new Error('disk');
  const error = errors.storage_unavailable('storage put of file:///x on target "local" failed: EIO', 'local', cause);
  expect(error).toBeInstanceOf(AppError);
  expect({ code: error.code, status: error.status, message: error.message, details: error.details, cause: error.cause }).toEqual({
    code: 'storage_unavailable',
    status: 503,
    message: 'storage put of file:///x on target "local" failed: EIO; the request did not take effect: retry it later',
    details: { target: 'local' },
    cause,
  });
  expect(errors.not_found('dataset', 'weather')).toMatchObject({ status: 404, message: 'dataset "weather" was not found', details: undefined });
});

test('a conflict status is given only by codes that have one', () => {
  expect(appError('field_name_conflict', ['m'], { conflict: true }).status).toBe(409);
  expect(appError('field_name_conflict', ['m']).status).toBe(400);
  expect(() => statusOf('invalid_type', { conflict: true })).toThrow(/no conflict status/);
  for (const constraint of Object.values(INGEST_CONSTRAINTS)) expect(statusesOf(constraint.code)).toContain(constraint.status);
});

test('docs/api.md lists every error code with its statuses under "Error codes", and no other', () => {
  const api = readFileSync(join(import.meta.dir, '../docs/api.md'), 'utf8');
  const start = api.indexOf('\n## Error codes');
  expect(start).toBeGreaterThan(0);
  const end = api.indexOf('\n## ', start + 1);
  const documented = new Map<string, number[]>();
  for (const [, statuses, code] of api.slice(start, end < 0 ? undefined : end).matchAll(/^\| ([\d, ]+) \| `([a-z_]+)` \|/gm)) {
    expect(documented.has(code!)).toBe(false);
    documented.set(code!, statuses!.split(',').map(Number));
  }
  expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(ERROR_CODES.map((code) => [code, statusesOf(code)])));
});
