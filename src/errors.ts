/**
 * The one error family. Every failure a client should understand is an
 * `AppError` with an HTTP status, a machine-readable code and a message that
 * says what to fix; the HTTP layer renders it as `{"error":{code,message,details?}}`.
 * Anything else is logged and becomes a 500 `internal_error`.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AppError';
  }
}

export const errors = {
  badRequest: (code: string, message: string, details?: unknown) => new AppError(400, code, message, details),
  validation: (message: string, details?: unknown) => new AppError(400, 'validation_failed', message, details),
  unauthorized: (message = 'missing x-iam-scopes header') => new AppError(401, 'unauthorized', message),
  forbidden: (message: string) => new AppError(403, 'forbidden', message),
  notFound: (what: string, id: string) => new AppError(404, 'not_found', `${what} "${id}" was not found`),
  routeNotFound: (method: string, path: string) => new AppError(404, 'route_not_found', `no route for ${method} ${path}`),
  conflict: (code: string, message: string, details?: unknown) => new AppError(409, code, message, details),
  payloadTooLarge: (limit: number) =>
    new AppError(413, 'payload_too_large', `request body is larger than the limit of ${limit} bytes`, { limitBytes: limit }),
  unavailable: (code: string, message: string, details?: unknown, options?: { cause?: unknown }) => new AppError(503, code, message, details, options),
  storageFull: (message: string, details?: unknown, options?: { cause?: unknown }) => new AppError(507, 'storage_full', message, details, options),
};
