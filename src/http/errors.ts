/**
 * Renders every failure in one shape, `{"error":{"code","message","details"?}}`. This is the one
 * boundary where what lower layers throw becomes an error of the catalogue (model/errors.ts):
 * AppErrors answer with their own status and code; Elysia's validation, parse and not-found
 * errors, the engine's QueryError and WorkloadBusyError, the storage's StorageError and PartitionCacheError and the
 * catalog's lost connections with theirs; anything else is a logged 500 `internal_error`.
 */
import { Elysia, type Static, t, ValidationError } from 'elysia';
import { isCatalogUnavailable } from '../catalog/db.ts';
import { CommitOutcomeUnknownError } from '../catalog/transaction.ts';
import { WorkloadBusyError } from '../engine/lanes.ts';
import { QueryError } from '../engine/query.ts';
import { AppError, errors } from '../model/errors.ts';
import { StorageError } from '../storage/driver.ts';
import { PartitionCacheError } from '../storage/partition-cache.ts';
import type { Logger } from '../log.ts';
import { checkFailureOf } from './pending-checks.ts';
import { requestId } from './request-log.ts';

export const ErrorBody = t.Object(
  {
    error: t.Object({
      code: t.String({ description: 'Machine-readable error code, e.g. `validation_failed`.' }),
      message: t.String({ description: 'What went wrong and what to change.' }),
      details: t.Optional(t.Unknown()),
    }),
  },
  { $id: '#/components/schemas/Error', title: 'Error' },
);

/** The answer's body for `error`, for a handler that sets the status itself. */
export function errorBody(error: AppError): Static<typeof ErrorBody> {
  const body: Static<typeof ErrorBody>['error'] = { code: error.code, message: error.message };
  if (error.details !== undefined) body.details = error.details;
  return { error: body };
}

/**
 * The answer for `error`. An error whose details name `retryAfterSeconds` (a full queue) says it
 * in a `Retry-After` header too, the one clients and proxies act on.
 */
export function errorResponse(error: AppError, headers: Record<string, string> = {}): Response {
  const retryAfter = (error.details as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
  const withRetry = typeof retryAfter === 'number' ? { ...headers, 'retry-after': String(retryAfter) } : headers;
  return Response.json(errorBody(error), { status: error.status, headers: withRetry });
}

/** Turns whatever a handler threw into an AppError. */
export function toAppError(code: string | number, error: unknown, request: Request): AppError {
  if (error instanceof AppError) return error;
  // Elysia wraps what a parse hook throws in a ParseError.
  if (code === 'PARSE' && (error as Error).cause instanceof AppError) return (error as Error).cause as AppError;
  if (error instanceof ValidationError) return errors.validation_failed(error.type, error.valueError);
  if (error instanceof QueryError) return errors[error.code](error.message, error);
  if (error instanceof PartitionCacheError) return errors[error.code](error.message, error.location, error);
  // Whatever a storage target refused (an I/O error, a missing object, a location outside it): the
  // request did not take effect, and the message names the operation, the object and the target.
  if (error instanceof StorageError) {
    return error.code === 'no_space' ? errors.storage_full(error.message, error.target, error) : errors.storage_unavailable(error.message, error.target, error);
  }
  if (error instanceof WorkloadBusyError) return errors.queue_full(error.workload, error.limits, error.retryAfterSeconds);
  if (error instanceof CommitOutcomeUnknownError) return errors.outcome_unknown(error);
  if (isCatalogUnavailable(error)) return errors.catalog_unavailable(error);
  if (code === 'NOT_FOUND') return errors.route_not_found(request.method, new URL(request.url).pathname);
  if (code === 'PARSE') return errors.invalid_body((error as Error).message);
  if (code === 'INVALID_COOKIE_SIGNATURE') return errors.invalid_cookie();
  return errors.internal_error(error);
}

export function errorHandler(log: Logger) {
  return new Elysia({ name: 'timestore/errors' }).onError({ as: 'global' }, async ({ code, error, request, set }) => {
    // A scope check still being confirmed decides first: a caller it refuses learns nothing else.
    const refusal = await checkFailureOf(request);
    const appError = refusal ? toAppError('UNKNOWN', refusal, request) : toAppError(code, error, request);
    if (appError.status >= 500) log.error({ err: refusal ?? error, requestId: requestId(request), method: request.method, url: request.url }, 'request failed');
    set.status = appError.status;
    return errorResponse(appError, set.headers as Record<string, string>);
  });
}
