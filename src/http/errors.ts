/**
 * Renders every failure in one shape, `{"error":{"code","message","details"?}}`:
 * AppErrors with their own status and code, Elysia's validation, parse and
 * not-found errors as 400/404, anything else as a logged 500.
 */
import type { ValueError } from '@sinclair/typebox/errors';
import { Elysia, t, ValidationError } from 'elysia';
import { isCatalogUnavailable } from '../catalog/db.ts';
import { CommitOutcomeUnknownError } from '../catalog/transaction.ts';
import { AppError, errors } from '../errors.ts';
import { StorageError } from '../storage/driver.ts';
import type { Logger } from '../log.ts';
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

export function errorResponse(error: AppError, headers: Record<string, string> = {}): Response {
  const body: { code: string; message: string; details?: unknown } = { code: error.code, message: error.message };
  if (error.details !== undefined) body.details = error.details;
  return Response.json({ error: body }, { status: error.status, headers });
}

/** Turns whatever a handler threw into an AppError. */
export function toAppError(code: string | number, error: unknown, request: Request): AppError {
  if (error instanceof AppError) return error;
  // Elysia wraps what a parse hook throws in a ParseError.
  if (code === 'PARSE' && (error as Error).cause instanceof AppError) return (error as Error).cause as AppError;
  if (error instanceof ValidationError) {
    const first = error.valueError && specific(error.valueError);
    const where = first?.path ? first.path : '(body)';
    return errors.validation(`${error.type} is invalid at ${where}: ${first?.message ?? 'does not match the schema'}`, {
      location: error.type,
      path: first?.path,
      summary: first?.message,
    });
  }
  if (error instanceof StorageError && error.code === 'no_space') {
    return errors.storageFull(`${error.message}; the request did not take effect: retry it once space is freed`, { target: error.target }, { cause: error });
  }
  if (error instanceof StorageError && error.code === 'failed') {
    return errors.unavailable('storage_unavailable', `${error.message}; the request did not take effect: retry it later`, { target: error.target }, { cause: error });
  }
  if (error instanceof CommitOutcomeUnknownError) {
    return errors.unavailable(
      'outcome_unknown',
      'the connection to the catalog was lost before it confirmed the change, which may or may not have taken effect: ' +
        'retry with the same Idempotency-Key to be sure (a retry without one may apply it twice)',
      undefined,
      { cause: error },
    );
  }
  if (isCatalogUnavailable(error)) {
    return errors.unavailable('catalog_unavailable', 'the catalog (PostgreSQL) cannot be reached; the request did not take effect: retry it later', undefined, { cause: error });
  }
  if (code === 'NOT_FOUND') return errors.routeNotFound(request.method, new URL(request.url).pathname);
  if (code === 'PARSE') return errors.badRequest('invalid_body', `request body could not be parsed: ${(error as Error).message}`);
  if (code === 'INVALID_COOKIE_SIGNATURE') return errors.badRequest('invalid_cookie', 'invalid cookie signature');
  return new AppError(500, 'internal_error', 'internal error; the server log has the details', undefined, { cause: error });
}

/**
 * A union's own error says only "Expected union value"; the error of the alternative the value came
 * closest to (not the null of a nullable field) says what to change.
 */
function specific(error: ValueError): ValueError {
  const nested = (error.errors ?? []).map((alternative) => alternative.First()).filter((e): e is ValueError => e !== undefined);
  const chosen = nested.find((e) => e.schema.type !== 'null') ?? nested[0];
  return chosen ? specific(chosen) : error;
}

export function errorHandler(log: Logger) {
  return new Elysia({ name: 'timestore/errors' }).onError({ as: 'global' }, ({ code, error, request, set }) => {
    const appError = toAppError(code, error, request);
    if (appError.status >= 500) log.error({ err: error, requestId: requestId(request), method: request.method, url: request.url }, 'request failed');
    set.status = appError.status;
    return errorResponse(appError, set.headers as Record<string, string>);
  });
}
