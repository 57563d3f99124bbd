/**
 * The one boundary where lower layers' failures become catalogue errors (src/http/errors.ts,
 * toAppError): every StorageError answers 503 storage_unavailable naming its target (507
 * storage_full when the disk is full), the engine's QueryError and the partition cache's errors
 * answer with their own codes, anything else is a 500 internal_error that keeps its cause.
 */
import { expect, test } from 'bun:test';
import { QueryError } from '../../src/engine/query.ts';
import { toAppError } from '../../src/http/errors.ts';
import { AppError, errors } from '../../src/model/errors.ts';
import { StorageError, type StorageErrorCode } from '../../src/storage/driver.ts';
import { PartitionCacheError } from '../../src/storage/partition-cache.ts';

const request = new Request('http://127.0.0.1/admin/jobs/j', { method: 'DELETE' });
const answer = (error: unknown) => {
  const mapped = toAppError('UNKNOWN', error, request);
  expect(mapped).toBeInstanceOf(AppError);
  return { status: mapped.status, code: mapped.code, message: mapped.message, details: mapped.details, cause: mapped.cause };
};

test.each<StorageErrorCode>(['failed', 'not_found', 'invalid_key', 'foreign_location'])('a StorageError %s is 503 storage_unavailable naming the target', (code) => {
  const error = new StorageError('delete', 'archive', 'file:///elsewhere/b.json', code, 'the location is outside the target');
  expect(answer(error)).toEqual({
    status: 503,
    code: 'storage_unavailable',
    message:
      'storage delete of file:///elsewhere/b.json on target "archive" failed: the location is outside the target; the request did not take effect: retry it later',
    details: { target: 'archive' },
    cause: error,
  });
});

test('a StorageError no_space is 507 storage_full', () => {
  const error = new StorageError('put', 'local', 'file:///r/x', 'no_space', 'ENOSPC: no space left on device');
  expect(answer(error)).toMatchObject({ status: 507, code: 'storage_full', details: { target: 'local' }, cause: error });
});

test('QueryError and PartitionCacheError answer with their own codes and the catalogue statuses', () => {
  expect(answer(new QueryError('invalid_query', 'Conversion Error'))).toMatchObject({ status: 400, code: 'invalid_query', message: 'invalid_query: Conversion Error' });
  expect(answer(new QueryError('query_timeout', 'too long'))).toMatchObject({ status: 503, code: 'query_timeout' });
  expect(answer(new PartitionCacheError('partition_missing', 's3://b/k', 'gone'))).toMatchObject({ status: 500, code: 'partition_missing', details: { location: 's3://b/k' } });
  expect(answer(new PartitionCacheError('partition_unavailable', 's3://b/k', 'down'))).toMatchObject({ status: 503, code: 'partition_unavailable' });
});

test('an AppError passes through; anything else is a 500 internal_error with its cause', () => {
  const refused = errors.invalid_cursor();
  expect(toAppError('UNKNOWN', refused, request)).toBe(refused);
  const bug = new TypeError('undefined is not a function');
  expect(answer(bug)).toMatchObject({ status: 500, code: 'internal_error', message: 'internal error; the server log has the details', cause: bug });
});
