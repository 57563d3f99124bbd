/**
 * The error catalogue: every machine-readable code the server answers with, its HTTP status and
 * how its message is made, each declared once here. Errors are raised only through it:
 * `errors.<code>(…)`, or `refuse` (constraints.ts) for a refused batch. docs/api.md, "Error codes",
 * lists every code with its status (test/errors.test.ts compares them).
 *
 * The HTTP layer renders an AppError as `{"error":{code,message,details?}}` (http/errors.ts). The
 * failures of the layers below services (StorageError, PartitionCacheError, QueryError, the
 * catalog's lost connections) carry no status: http/errors.ts turns them into catalogue errors, at
 * that one boundary. Anything else is logged and answered 500 `internal_error`.
 */
import type { ValueError } from '@sinclair/typebox/errors';

export type HttpStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 422 | 500 | 503 | 507;

/** What an error says: its message, and what goes with it in the answer and the log. */
export interface Said {
  message: string;
  details?: unknown;
  cause?: unknown;
}

interface Entry {
  status: HttpStatus;
  /**
   * For a code that is answered both ways: the status when the request is well formed but conflicts
   * with what is stored (a declared field against the dataset's schema), rather than with itself.
   */
  conflict?: HttpStatus;
  message: (...args: never[]) => string | Said;
}

/** The message of a code whose raiser writes it: it names the row, field, parameter or value. */
const said = (message: string, details?: unknown): Said => ({ message, details });
/** The message of a failure of a lower layer, which stays the error's cause. */
const failed = (message: string, cause?: unknown): Said => ({ message, cause });
/** A partition that cannot be made readable for a query. */
const partition = (message: string, location: string, cause?: unknown): Said => ({ message, details: { location }, cause });
/** Readiness: the message and every check's outcome. */
const readiness = (message: string, checks: Record<string, string>): Said => ({ message, details: { checks } });

/** A value that does not match its TypeBox schema: where (`body`, `query`, …) and what its first error says. */
function schemaMismatch(location: string, error: ValueError | undefined): Said {
  const first = error && closest(error);
  const where = first?.path ? first.path : '(body)';
  return {
    message: `${location} is invalid at ${where}: ${first?.message ?? 'does not match the schema'}`,
    details: { location, path: first?.path, summary: first?.message },
  };
}

/**
 * A union's own error says only "Expected union value"; the error of the alternative the value came
 * closest to (not the null of a nullable field) says what to change.
 */
function closest(error: ValueError): ValueError {
  const nested = (error.errors ?? []).map((alternative) => alternative.First()).filter((e): e is ValueError => e !== undefined);
  const chosen = nested.find((e) => e.schema.type !== 'null') ?? nested[0];
  return chosen ? closest(chosen) : error;
}

const CATALOGUE = {
  // Any route: the request itself.
  validation_failed: { status: 400, message: schemaMismatch },
  invalid_body: { status: 400, message: (why: string) => `request body could not be parsed: ${why}` },
  invalid_cookie: { status: 400, message: () => 'invalid cookie signature' },
  invalid_cursor: { status: 400, message: () => 'cursor is not one this server returned; start again without it' },
  unauthorized: { status: 401, message: (message = 'this route needs a scope: send it in x-iam-scopes') => message },
  forbidden: { status: 403, message: (message = 'x-iam-scopes holds none of the scopes this route needs') => message },
  not_found: { status: 404, message: (what: string, id: string) => `${what} "${id}" was not found` },
  route_not_found: { status: 404, message: (method: string, path: string) => `no route for ${method} ${path}` },

  // API tokens.
  invalid_token_request: { status: 400, message: said },
  token_name_taken: { status: 409, message: said },

  // Ingestion: a batch that breaks a rule of constraints.ts (raised through `refuse`).
  payload_too_large: {
    status: 413,
    message: (limitBytes: number) => ({ message: `request body is larger than the limit of ${limitBytes} bytes`, details: { limitBytes } }),
  },
  unsupported_media_type: { status: 415, message: said },
  invalid_json: { status: 400, message: said },
  invalid_encoding: { status: 400, message: said },
  invalid_unicode: { status: 400, message: said },
  invalid_csv: { status: 400, message: said },
  invalid_arrow: { status: 400, message: said },
  invalid_remote_write: { status: 400, message: said },
  invalid_line_protocol: { status: 400, message: said },
  unsupported_arrow_type: { status: 400, message: said },
  invalid_query_parameter: { status: 400, message: said },
  invalid_idempotency_key: { status: 400, message: said },
  nul_character: { status: 400, message: said },
  invalid_field_name: { status: 400, message: said },
  duplicate_field: { status: 400, message: said },
  field_name_conflict: { status: 400, conflict: 409, message: said },
  missing_timestamp_field: { status: 400, message: said },
  field_type_conflict: { status: 400, conflict: 409, message: said },
  non_nullable_addition: { status: 409, message: said },
  too_many_fields: { status: 400, conflict: 409, message: said },
  dataset_not_found: { status: 404, message: said },
  dataset_has_no_schema: { status: 409, message: said },
  dataset_inactive: { status: 409, message: said },
  dataset_archived: { status: 409, message: said },
  schema_changed: { status: 409, message: said },
  dataset_changed: { status: 409, message: said },
  storage_target_not_found: {
    status: 404,
    message: (idOrName: string) => ({
      message: `storage target "${idOrName}" is not registered; GET /admin/storage-targets lists them`,
      details: { storageTarget: idOrName },
    }),
  },
  idempotency_key_reused: { status: 409, message: said },
  idempotency_key_expired: { status: 409, message: said },
  empty_batch: { status: 400, message: said },
  invalid_row: { status: 400, message: said },
  missing_timestamp: { status: 400, message: said },
  invalid_timestamp: { status: 400, message: said },
  timestamp_out_of_range: { status: 400, message: said },
  invalid_type: { status: 400, message: said },
  missing_field: { status: 400, message: said },
  non_finite_number: { status: 400, message: said },
  integer_out_of_range: { status: 400, message: said },
  unknown_field: { status: 400, message: said },
  invalid_partition_key: { status: 400, message: said },
  invalid_time_range: { status: 400, message: said },
  object_key_too_long: { status: 400, message: said },
  too_many_partitions: { status: 400, message: said },
  too_many_rows: { status: 413, message: said },
  /** A batch whose client waited for it was accepted but its job failed for good. */
  ingest_failed: {
    status: 500,
    message: (lastError: string | null, job: unknown) => ({ message: `the batch was accepted but could not be written: ${lastError}`, details: job }),
  },

  // Queries: the request checked against the dataset (query/request.ts), then the engine's answers.
  unknown_column: { status: 400, message: said },
  invalid_timestamp_column: { status: 400, message: said },
  invalid_filter: { status: 400, message: said },
  invalid_aggregation: { status: 400, message: said },
  invalid_percentile: { status: 400, message: said },
  invalid_group_by: { status: 400, message: said },
  invalid_by: { status: 400, message: said },
  invalid_alias: { status: 400, message: said },
  duplicate_alias: { status: 400, message: said },
  no_aggregations: { status: 400, message: said },
  too_many_buckets: { status: 400, message: said },
  invalid_fill: { status: 400, message: said },
  limit_too_large: { status: 400, message: said },
  query_too_large: { status: 400, message: said },
  invalid_query: { status: 400, message: failed },
  query_timeout: { status: 503, message: failed },
  query_memory_limit: { status: 503, message: failed },
  query_stream_abandoned: { status: 503, message: failed },
  /** A statement of POST/GET /sql that DuckDB refused (syntax, unknown column, a type): its message, and where in the statement. */
  sql_error: {
    status: 400,
    message: (message: string, cause?: unknown, at?: { position?: number; line?: number; column?: number }) => ({ message, cause, details: at }),
  },
  /** A statement that does what SQL over datasets may not: write, change settings, read files, name no dataset. */
  sql_not_allowed: { status: 400, message: failed },
  partition_corrupt: { status: 500, message: partition },
  partition_missing: { status: 500, message: partition },
  partition_unavailable: { status: 503, message: partition },

  // Administration and the catalog's refusals.
  dataset_exists: { status: 409, message: (slug: string) => `a dataset with slug "${slug}" already exists` },
  unknown_manifest_version: {
    status: 400,
    message: (slug: string, latest: number, version: number) => ({
      message: `dataset "${slug}" has published manifest versions 1 to ${latest}; version ${version} does not exist yet`,
      details: { latest },
    }),
  },
  manifest_version_gone: {
    status: 404,
    message: (slug: string, version: number, latest: number) => ({
      message: `manifest version ${version} of dataset "${slug}" is no longer kept`,
      details: { latest },
    }),
  },
  invalid_sort_columns: { status: 400, message: said },
  storage_target_exists: { status: 409, message: (name: string) => `a storage target named "${name}" already exists; choose another name` },
  storage_target_not_owned: {
    status: 409,
    message: (name: string, found: string, details: Record<string, unknown>, override: string) => ({
      message:
        `storage target "${name}": ${found}; timestore takes a prefix only when it is empty or holds this catalog's owner marker, ` +
        `so that it never deletes what it did not write. To take it anyway, ${override}`,
      details: { storageTarget: name, ...details },
    }),
  },
  storage_target_unwritable: {
    status: 422,
    message: (name: string, why: string, cause: unknown) => ({
      message: `storage target "${name}" failed a write probe from this server: ${why}`,
      details: { storageTarget: name },
      cause,
    }),
  },
  slug_is_dataset_id: {
    status: 409,
    message: (slug: string, existing: string) => ({
      message: `"${slug}" is the id of dataset "${existing}": every route takes a dataset's id or slug, so a new dataset may not use another's id as its slug`,
      details: { slug, dataset: existing },
    }),
  },
  job_not_failed: {
    status: 409,
    message: (jobId: string, state: string, now: string, what: 'retried' | 'deleted') => ({
      message: `job "${jobId}" ${now}; only a failed job can be ${what}`,
      details: { jobId, state },
    }),
  },
  staged_body_missing: {
    status: 409,
    message: (jobId: string, location: string) => ({
      message: `job "${jobId}" cannot be retried: its staged batch ${location} no longer exists; delete the job (DELETE /admin/jobs/${jobId}) and send the batch again`,
      details: { jobId, location },
    }),
  },
  job_key_busy: {
    status: 409,
    message: (jobId: string, jobKey: string | null) => ({
      message: `job "${jobId}" cannot be retried while another job with its key "${jobKey}" is queued or running; try again once that one has finished`,
      details: { jobId, jobKey },
    }),
  },
  duplicate_partition: {
    status: 409,
    message: (detail: string | undefined) => ({ message: 'a partition with this location is already recorded', details: { detail } }),
  },
  partition_not_active: {
    status: 409,
    message: () => 'a partition to remove is no longer active (another publish removed it); retry from the current manifest',
  },
  lifecycle_not_running: {
    status: 503,
    message: (windowSeconds: number) => ({
      message:
        `no process runs lifecycle jobs: this server runs with TIMESTORE_LIFECYCLE_ENABLED=false and no process sharing its catalog has done lifecycle work in the last ${windowSeconds} s; ` +
        'start `timestore lifecycle` (or `timestore lifecycle --once`) against the same catalog, or enable the lifecycle in `serve`',
      details: { lifecycleEnabled: false, windowSeconds },
    }),
  },

  // What the server depends on: nothing was acknowledged or changed unless the message says otherwise.
  catalog_unavailable: {
    status: 503,
    message: (cause: unknown) => failed('the catalog (PostgreSQL) cannot be reached; the request did not take effect: retry it later', cause),
  },
  outcome_unknown: {
    status: 503,
    message: (cause: unknown) =>
      failed(
        'the connection to the catalog was lost before it confirmed the change, which may or may not have taken effect: ' +
          'retry with the same Idempotency-Key to be sure (a retry without one may apply it twice)',
        cause,
      ),
  },
  storage_unavailable: {
    status: 503,
    message: (failure: string, target: string, cause: unknown) => ({
      message: `${failure}; the request did not take effect: retry it later`,
      details: { target },
      cause,
    }),
  },
  storage_full: {
    status: 507,
    message: (failure: string, target: string, cause: unknown) => ({
      message: `${failure}; the request did not take effect: retry it once space is freed`,
      details: { target },
      cause,
    }),
  },
  /**
   * A workload's threads are busy and its queue is full (engine/lanes.ts): refused at once, with
   * `retryAfterSeconds` in the details, which the HTTP layer also sends as `Retry-After`.
   */
  queue_full: {
    status: 503,
    message: (workload: string, limits: { threads: number; maxQueue: number }, retryAfterSeconds: number) => ({
      message:
        `the server is at its limit for ${workload} work (${limits.threads} running, ${limits.maxQueue} waiting); ` +
        `nothing was done: retry after ${retryAfterSeconds} s`,
      details: { workload, ...limits, retryAfterSeconds },
    }),
  },
  not_ready: { status: 503, message: readiness },
  shutting_down: { status: 503, message: readiness },
  /** At start-up, never over HTTP: the embedded catalog's storage root is locked by another process. */
  storage_root_in_use: {
    status: 500,
    message: (root: string, holderPid: number) =>
      `the storage root ${root} is in use by another timestore process (pid ${holderPid}); ` +
      'stop it, or give this process its own TIMESTORE_STORAGE_ROOT, or point several processes at one PostgreSQL with TIMESTORE_DATABASE_URL',
  },
  /** At start-up, never over HTTP: with the local driver, the catalog's `local` target is a directory this process does not see. */
  local_target_elsewhere: {
    status: 500,
    message: (registered: string, mine: string, why: string) =>
      `the catalog's "local" storage target is the directory ${registered} of another timestore process, and this process cannot use it ` +
      `(its own is ${mine}: ${why}). With TIMESTORE_STORAGE_DRIVER=local every process that shares a catalog must run on one machine with one ` +
      'TIMESTORE_STORAGE_ROOT; processes on several machines need shared storage: set TIMESTORE_STORAGE_DRIVER=s3 ' +
      '(docs/operations.md, "Supported topologies")',
  },
  internal_error: { status: 500, message: (cause: unknown) => failed('internal error; the server log has the details', cause) },
} as const satisfies Record<string, Entry>;

type Catalogue = typeof CATALOGUE;

/** Every machine-readable code the server answers with. */
export type ErrorCode = keyof Catalogue;

/** What a code's message is made from. */
export type MessageArgs<C extends ErrorCode> = Parameters<Catalogue[C]['message']>;

/** Codes answered with another status when the request conflicts with what is stored (see Entry.conflict). */
export type ConflictCode = { [C in ErrorCode]: Catalogue[C] extends { conflict: HttpStatus } ? C : never }[ErrorCode];

export const ERROR_CODES = Object.keys(CATALOGUE) as readonly ErrorCode[];

/** A failure a client should understand: a catalogue code, its status, and a message that says what to fix. */
export class AppError extends Error {
  override readonly name = 'AppError';

  constructor(
    readonly code: ErrorCode,
    readonly status: HttpStatus,
    message: string,
    readonly details?: unknown,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The status of `code`: its conflict status when asked for and it has one. */
export function statusOf(code: ErrorCode, options: { conflict?: boolean } = {}): HttpStatus {
  const entry: Entry = CATALOGUE[code];
  if (!options.conflict) return entry.status;
  if (entry.conflict === undefined) throw new Error(`error code ${code} has no conflict status`);
  return entry.conflict;
}

/** Every status `code` is answered with. */
export function statusesOf(code: ErrorCode): HttpStatus[] {
  const entry: Entry = CATALOGUE[code];
  return entry.conflict === undefined ? [entry.status] : [entry.status, entry.conflict];
}

/** True when the request is at fault (a 4xx): what a client must change, not something to retry as is. */
export function isRequestFault(code: ErrorCode): boolean {
  return CATALOGUE[code].status < 500;
}

/** The error of `code`, its message made from `args`; `conflict` answers with the code's conflict status. */
export function appError<C extends ErrorCode>(code: C, args: MessageArgs<C>, options: { conflict?: boolean } = {}): AppError {
  const made = (CATALOGUE[code].message as (...a: MessageArgs<C>) => string | Said)(...args);
  const { message, details, cause } = typeof made === 'string' ? ({ message: made } as Said) : made;
  return new AppError(code, statusOf(code, options), message, details, cause === undefined ? undefined : { cause });
}

/** One maker per code: `throw errors.not_found('dataset', slug)`. */
export const errors = Object.fromEntries(
  ERROR_CODES.map((code) => [code, (...args: MessageArgs<typeof code>) => appError(code, args)]),
) as { readonly [C in ErrorCode]: (...args: MessageArgs<C>) => AppError };
