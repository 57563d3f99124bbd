/**
 * The storage driver: where partition files and staged ingest batches are kept.
 *
 * One driver serves one storage target (a catalog row): a local root directory (`file://` URIs) or
 * an S3 bucket and prefix (`s3://bucket/key` URIs). Callers name new objects by *key*, a relative
 * path such as `datasets/weather/2026-01-01/abc.parquet`, and keep the returned *location* (the URI)
 * in the catalog; every other operation takes a location. A location that does not belong to the
 * driver's target is refused, so a bad catalog row cannot make the collector delete a stranger's file.
 *
 * Writes are durable when they resolve: local writes go to a temporary name in the destination
 * directory, are fsynced, renamed into place and the directory fsynced; S3 writes are PutObject or
 * a multipart upload (aborted when it fails). Readers never see a half-written object.
 */
import { probeObjectKey } from '../model/object-keys.ts';

export type StorageKind = 'local' | 's3';

export interface StoredObject {
  location: string;
  sizeBytes: number;
}

export interface ListedObject {
  location: string;
  /** The key relative to the target (what `locationOf` takes). */
  key: string;
  sizeBytes: number;
  lastModified: Date;
}

export interface PutFileOptions {
  /**
   * The caller gives the source file away: on success it no longer exists (local: renamed into place
   * when on the same file system, else copied and removed; s3: uploaded, then removed).
   */
  move?: boolean;
}

export interface ListOptions {
  /** Objects asked for per request (S3 `MaxKeys`, at most 1000); tests use a small one to exercise paging. */
  pageSize?: number;
}

/** An object written by appending (`StorageDriver.openLog`). */
export interface AppendLog {
  readonly location: string;
  /**
   * Appends `parts` one after another; resolves with the offset of their first byte once they are
   * durable. Appends may overlap: each has its own bytes, in the order the calls were made.
   */
  append(parts: readonly Uint8Array[]): Promise<number>;
  /** Closes the object once the appends in flight have finished; it takes no more. */
  close(): Promise<void>;
}

export interface StorageDriver {
  readonly kind: StorageKind;
  /** The storage target's name, as used in error messages. */
  readonly name: string;
  /** The URI for a key. Throws `StorageError` (`invalid_key`) for a key that is empty, absolute or has `.`/`..`/empty segments. */
  locationOf(key: string): string;
  /** Durably stores a local file under key; returns its location and size. */
  putFile(key: string, sourcePath: string, options?: PutFileOptions): Promise<StoredObject>;
  /**
   * Durably stores bytes under key: one array, or the object's parts in order (a local target
   * writes them as they are, without joining them into one array first).
   */
  putBytes(key: string, bytes: Uint8Array | readonly Uint8Array[]): Promise<StoredObject>;
  /**
   * Creates an empty object under key, to be written by appending (local targets; absent where an
   * object is only ever written whole, as on S3). Its name is durable when this resolves.
   */
  openLog?(key: string): Promise<AppendLog>;
  /**
   * A local path DuckDB can read for this location: local → the file itself (no copy, `destPath` is
   * unused); s3 → downloaded (streamed) to a temporary name beside `destPath`, fsynced and renamed to it.
   */
  materialize(location: string, destPath: string): Promise<string>;
  /** Reads an object fully into memory (for small staged files). */
  read(location: string): Promise<Uint8Array>;
  /** Deletes an object; a missing one is not an error. */
  delete(location: string): Promise<void>;
  exists(location: string): Promise<boolean>;
  /** Objects whose key starts with `prefix` (a plain string prefix: `a/b` matches `a/b/x` and `a/bc`), in no promised order. */
  list(prefix: string, options?: ListOptions): AsyncIterable<ListedObject>;
  /** Writes, reads back and deletes a small probe object; throws a `StorageError` saying why the target is unusable. */
  probe(): Promise<void>;
  /** Releases connections (S3 client sockets). The driver must not be used afterwards. */
  close(): void;
}

export type StorageErrorCode =
  /** The object does not exist. */
  | 'not_found'
  /** The key or prefix is not a safe relative path. */
  | 'invalid_key'
  /** The location is not a URI of this driver's target. */
  | 'foreign_location'
  /** The file system is full (ENOSPC) or over its quota (EDQUOT). */
  | 'no_space'
  /** Anything else: I/O, permissions, network, the object store's answer. */
  | 'failed';

/** A failed storage operation: what (operation), where (target, location) and why (cause). */
export class StorageError extends Error {
  constructor(
    readonly operation: string,
    readonly target: string,
    readonly location: string,
    readonly code: StorageErrorCode,
    /** Why, without the operation and location. */
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`storage ${operation} of ${location} on target "${target}" failed: ${detail}`, options);
    this.name = 'StorageError';
  }
}

/** For a probe: which step failed and why, without repeating the target. */
export function describeProbeStep(err: unknown): string {
  return err instanceof StorageError ? `${err.operation} of ${err.location} failed: ${err.detail}` : describeCause(err);
}

/** A one-line description of an error from fs or the AWS SDK, for error messages. */
export function describeCause(err: unknown): string {
  if (err instanceof StorageError) return err.message;
  if (err instanceof Error) {
    const e = err as Error & { code?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode;
    // The SDK names the S3 error code in `name`; messages of bodiless answers (HEAD) are just "UnknownError".
    const label = e.code ?? (e.name && e.name !== 'Error' ? e.name : undefined);
    // Answers without an error message (HEAD, or servers that send only a code) read "UnknownError".
    const message = e.message && e.message !== label && e.message !== 'UnknownError' ? e.message : '';
    if (label && !status && message.startsWith(label)) return message; // fs: "ENOENT: no such file …"
    return [label, status ? `HTTP ${status}` : undefined].filter(Boolean).join(', ') + (message ? `${label || status ? ': ' : ''}${message}` : '');
  }
  return String(err);
}

const MAX_KEY_BYTES = 1024;

/**
 * Checks a key: a relative path of non-empty segments, none `.` or `..`, no control characters or
 * backslashes, at most 1024 bytes. Returns the problem, or null when the key is fine.
 */
export function keyProblem(key: string, what: 'key' | 'prefix' = 'key'): string | null {
  if (what === 'key' && key === '') return 'the key is empty';
  if (key.startsWith('/')) return `the ${what} must be relative (it starts with "/")`;
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `the ${what} is longer than ${MAX_KEY_BYTES} bytes`;
  if (/[\u0000-\u001f\u007f\\]/.test(key)) return `the ${what} contains a control character or a backslash`;
  if (key === '') return null;
  const segments = key.split('/');
  // A prefix may end with "/" (everything under a folder); its last segment may be partial.
  if (what === 'prefix' && segments.at(-1) === '') segments.pop();
  for (const segment of segments) {
    if (segment === '') return `the ${what} has an empty path segment ("//" or a trailing "/")`;
    if (segment === '.' || segment === '..') return `the ${what} has a "${segment}" path segment`;
  }
  return null;
}

/** Writes, reads back and deletes a small object under `.timestore-probe/`: the body of every driver's probe(). */
export async function probeRoundTrip(driver: StorageDriver): Promise<void> {
  const payload = new TextEncoder().encode(`timestore probe ${new Date().toISOString()}`);
  const { location } = await driver.putBytes(probeObjectKey(), payload);
  try {
    const back = await driver.read(location);
    if (Buffer.compare(Buffer.from(back), Buffer.from(payload)) !== 0) {
      throw new StorageError('probe', driver.name, location, 'failed', 'the probe object read back differs from what was written');
    }
  } finally {
    await driver.delete(location);
  }
}
