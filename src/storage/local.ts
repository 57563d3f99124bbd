/**
 * Local storage driver: objects are files under a root directory, locations are `file://` URIs.
 *
 * A write goes to a temporary name (`.<name>.tmp-<random>`) in the destination directory, is
 * fsynced, renamed over the final name and the directory fsynced (as is the parent of every
 * directory the write had to create), so after a crash a file either is complete under its final
 * name or is absent. A temporary file left by a crash is listed like any other file, for the
 * garbage collector to remove once it is old enough.
 */
import { randomBytes } from 'node:crypto';
import { statSync, writevSync } from 'node:fs';
import { copyFile, type FileHandle, mkdir, open, readFile, readdir, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { temporaryObjectName } from '../model/object-keys.ts';
import type { LocalTargetConfig } from '../model/records.ts';
import {
  describeCause,
  describeProbeStep,
  keyProblem,
  StorageError,
  type AppendLog,
  type ListedObject,
  type PutFileOptions,
  type StorageDriver,
  type StoredObject,
  probeRoundTrip,
} from './driver.ts';

type Errno = Error & { code?: string };

/** The longest file name (NAME_MAX) and path (PATH_MAX less its terminating NUL) of Linux file systems, in bytes. */
const MAX_NAME_BYTES = 255;
const MAX_PATH_BYTES = 4095;
/** A write goes through a temporary name beside the final one: `.<name>.tmp-<12 hex digits>`. */
const TEMP_NAME_EXTRA_BYTES = '.'.length + '.tmp-'.length + 12;
const errno = (err: unknown): string | undefined => (err as Errno | undefined)?.code;

export class LocalStorageDriver implements StorageDriver {
  readonly kind = 'local' as const;
  readonly root: string;

  constructor(
    readonly name: string,
    config: LocalTargetConfig,
  ) {
    this.root = resolve(config.root);
  }

  locationOf(key: string): string {
    return pathToFileURL(this.pathOfKey(key, 'locate')).href;
  }

  async putFile(key: string, sourcePath: string, options: PutFileOptions = {}): Promise<StoredObject> {
    const path = this.pathOfKey(key, 'put');
    const location = pathToFileURL(path).href;
    return this.guard('put', location, async () => {
      await stat(sourcePath).catch((err) => {
        throw new Error(`cannot read the source file: ${describeCause(err)}`, { cause: err });
      });
      const created = await this.ensureDir(dirname(path));
      if (options.move) {
        // Make the data durable first, then one atomic rename puts it in place.
        if (await this.tryMove(sourcePath, path)) {
          await fsyncDirs(dirname(path), created);
          return { location, sizeBytes: (await stat(path)).size };
        }
      }
      const tmp = tempPath(path);
      try {
        await copyFile(sourcePath, tmp);
        await fsyncFile(tmp);
        await rename(tmp, path);
      } catch (err) {
        await unlink(tmp).catch(() => {});
        throw err;
      }
      await fsyncDirs(dirname(path), created);
      if (options.move) await unlink(sourcePath);
      return { location, sizeBytes: (await stat(path)).size };
    });
  }

  async putBytes(key: string, bytes: Uint8Array | readonly Uint8Array[]): Promise<StoredObject> {
    const parts: readonly Uint8Array[] = Array.isArray(bytes) ? bytes : [bytes as Uint8Array];
    const path = this.pathOfKey(key, 'put');
    const location = pathToFileURL(path).href;
    return this.guard('put', location, async () => {
      const created = await this.ensureDir(dirname(path));
      const tmp = tempPath(path);
      try {
        const handle = await open(tmp, 'wx');
        try {
          await writeAll(handle, parts, 0);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await rename(tmp, path);
      } catch (err) {
        await unlink(tmp).catch(() => {});
        throw err;
      }
      await fsyncDirs(dirname(path), created);
      return { location, sizeBytes: parts.reduce((sum, part) => sum + part.byteLength, 0) };
    });
  }

  /**
   * A log is written under its final name: a crash may leave bytes of appends that never finished
   * at its end, which no acknowledged range names. An append is written at once at its own offset,
   * then waits until every earlier append is written too, and for an fdatasync that started after
   * that: one runs at a time, and the appends written while it runs share the next (group commit).
   * So what an acknowledged append stands on is all of the log before it, and a crash tears only
   * appends that were not acknowledged (model/staging-log-records.ts). After a failed write or fdatasync the log
   * takes no more appends: what the page cache holds of it can no longer be trusted to reach the
   * disk.
   */
  async openLog(key: string): Promise<AppendLog> {
    const path = this.pathOfKey(key, 'put');
    const location = pathToFileURL(path).href;
    const handle = await this.guard('put', location, async () => {
      const created = await this.ensureDir(dirname(path));
      const handle = await open(path, 'wx');
      try {
        await fsyncDirs(dirname(path), created);
      } catch (err) {
        await handle.close();
        await unlink(path).catch(() => {});
        throw err;
      }
      return handle;
    });
    let end = 0;
    let failed: unknown = null;
    let closed = false;
    let syncing: Promise<void> | null = null;
    let nextSync: Promise<void> | null = null;
    const sync = (): Promise<void> => {
      if (failed) return Promise.reject(failed);
      if (!syncing) {
        const run = handle.datasync().catch((err) => {
          failed ??= err;
          throw err;
        });
        syncing = run.then(
          () => void (syncing = null),
          () => void (syncing = null),
        );
        return run;
      }
      nextSync ??= syncing.then(() => {
        nextSync = null;
        return sync();
      });
      return nextSync;
    };
    const inFlight = new Set<Promise<number>>();
    // Resolves once every append so far is written (fails with the first write that failed).
    let written: Promise<void> = Promise.resolve();
    return {
      location,
      append: (parts) => {
        const appended = this.guard('put', location, async () => {
          if (closed) throw new Error('the log is closed');
          if (failed) throw failed;
          const offset = end;
          const size = parts.reduce((sum, part) => sum + part.byteLength, 0);
          end += size;
          // A small body is written on this thread, into the page cache, in microseconds:
          // through the thread pool it waited behind the fsyncs there (about 1.4 ms under load,
          // docs/performance.md, "The embedded catalog on its own thread").
          const write = writeAll(handle, parts, offset, size <= MAX_APPEND_WRITTEN_HERE).catch((err) => {
            failed ??= err;
            throw err;
          });
          const before = written;
          written = Promise.all([before, write]).then(() => {});
          written.catch(() => {});
          await write;
          await before;
          await sync();
          return offset;
        });
        inFlight.add(appended);
        void appended.catch(() => {}).finally(() => inFlight.delete(appended));
        return appended;
      },
      close: async () => {
        closed = true;
        await Promise.allSettled(inFlight);
        await handle.close();
      },
    };
  }

  async materialize(location: string, _destPath: string): Promise<string> {
    const path = this.pathOfLocation(location, 'materialize');
    // A synchronous stat: every query checks each file it reads, and the async one's trip through
    // the thread pool cost more than the stat itself (about 0.1 ms a file against microseconds).
    return this.guard('materialize', location, async () => {
      if (!statSync(path).isFile()) throw notAFile();
      return path;
    });
  }

  async read(location: string): Promise<Uint8Array> {
    const path = this.pathOfLocation(location, 'read');
    return this.guard('read', location, async () => new Uint8Array(await readFile(path)));
  }

  async delete(location: string): Promise<void> {
    const path = this.pathOfLocation(location, 'delete');
    await this.guard('delete', location, async () => {
      try {
        await unlink(path);
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err;
      }
    });
  }

  async exists(location: string): Promise<boolean> {
    const path = this.pathOfLocation(location, 'exists');
    return this.guard('exists', location, async () => {
      try {
        return (await stat(path)).isFile();
      } catch (err) {
        if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return false;
        throw err;
      }
    });
  }

  async *list(prefix: string): AsyncIterable<ListedObject> {
    const problem = keyProblem(prefix, 'prefix');
    if (problem) throw new StorageError('list', this.name, `${this.rootUri()}${prefix}`, 'invalid_key', problem);
    // "a/b/c" → walk the folder a/b, entries whose name starts with "c" (their whole subtree).
    const slash = prefix.lastIndexOf('/');
    const folder = prefix.slice(0, slash + 1);
    const namePrefix = prefix.slice(slash + 1);
    yield* this.walk(folder, namePrefix, prefix);
  }

  private async *walk(folder: string, namePrefix: string, prefix: string): AsyncGenerator<ListedObject> {
    const dir = join(this.root, folder);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return;
      throw new StorageError('list', this.name, `${this.rootUri()}${prefix}`, 'failed', `reading ${dir}: ${describeCause(err)}`, { cause: err });
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (!entry.name.startsWith(namePrefix)) continue;
      const key = `${folder}${entry.name}`;
      if (entry.isDirectory()) {
        yield* this.walk(`${key}/`, '', prefix);
      } else if (entry.isFile()) {
        const path = join(this.root, key);
        let info;
        try {
          info = await stat(path);
        } catch (err) {
          if (errno(err) === 'ENOENT') continue; // deleted while listing
          throw new StorageError('list', this.name, pathToFileURL(path).href, 'failed', describeCause(err), { cause: err });
        }
        yield { location: pathToFileURL(path).href, key, sizeBytes: info.size, lastModified: info.mtime };
      }
    }
  }

  async probe(): Promise<void> {
    try {
      await probeRoundTrip(this);
    } catch (err) {
      throw new StorageError('probe', this.name, this.rootUri(), 'failed', `the root ${this.root} is not writable: ${describeProbeStep(err)}`, {
        cause: err,
      });
    }
  }

  close(): void {}

  /**
   * The absolute path for a key, refusing keys that are not plain relative paths inside the root,
   * and keys whose file (or its temporary name) the file system would refuse as too long.
   */
  private pathOfKey(key: string, operation: string): string {
    const problem = keyProblem(key) ?? this.lengthProblem(key);
    if (problem) throw new StorageError(operation, this.name, `${this.rootUri()}${key}`, 'invalid_key', problem);
    return join(this.root, key);
  }

  private lengthProblem(key: string): string | null {
    const segments = key.split('/');
    for (const [i, segment] of segments.entries()) {
      const bytes = Buffer.byteLength(segment) + (i === segments.length - 1 ? TEMP_NAME_EXTRA_BYTES : 0);
      if (bytes > MAX_NAME_BYTES) {
        return `the path component "${segment.slice(0, 40)}…" is ${Buffer.byteLength(segment)} bytes; the file system takes at most ${MAX_NAME_BYTES}` +
          (i === segments.length - 1 ? ` (${MAX_NAME_BYTES - TEMP_NAME_EXTRA_BYTES} for a file name, which is written under a longer temporary name first)` : '');
      }
    }
    const pathBytes = Buffer.byteLength(join(this.root, key)) + TEMP_NAME_EXTRA_BYTES;
    if (pathBytes > MAX_PATH_BYTES) return `the path under ${this.root} would be ${pathBytes} bytes; the file system takes at most ${MAX_PATH_BYTES}`;
    return null;
  }

  /** The absolute path for a `file://` location of this target. */
  private pathOfLocation(location: string, operation: string): string {
    let path: string;
    try {
      path = fileURLToPath(location);
    } catch (err) {
      throw new StorageError(operation, this.name, location, 'foreign_location', `not a file:// URI (${describeCause(err)})`);
    }
    const rel = relative(this.root, path);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
      throw new StorageError(operation, this.name, location, 'foreign_location', `the location is outside the target's root ${this.root}`);
    }
    const problem = keyProblem(rel.split(sep).join('/'));
    if (problem) throw new StorageError(operation, this.name, location, 'invalid_key', problem);
    return path;
  }

  private rootUri(): string {
    return pathToFileURL(this.root + sep).href;
  }

  /** Creates `dir` and its missing parents; returns the first directory created (or undefined). */
  private async ensureDir(dir: string): Promise<string | undefined> {
    return mkdir(dir, { recursive: true });
  }

  /** Renames source to dest after fsyncing it; false when they are on different file systems. */
  private async tryMove(source: string, dest: string): Promise<boolean> {
    await fsyncFile(source);
    try {
      await rename(source, dest);
      return true;
    } catch (err) {
      if (errno(err) === 'EXDEV') return false;
      throw err;
    }
  }

  private async guard<T>(operation: string, location: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof StorageError) throw err;
      const cause = errno(err);
      const code = cause === 'ENOENT' && operation !== 'put' ? 'not_found' : cause === 'ENOSPC' || cause === 'EDQUOT' ? 'no_space' : 'failed';
      const detail = code === 'not_found' ? 'the object does not exist' : describeCause(err);
      throw new StorageError(operation, this.name, location, code, detail, { cause: err });
    }
  }
}

function notAFile(): Errno {
  const err: Errno = new Error('not a regular file');
  err.code = 'ENOENT';
  return err;
}

/** Most buffers one writev takes (Linux's IOV_MAX). */
const IOV_MAX = 1024;

/** The largest append to a staging log written on the calling thread (see `openLog`). */
const MAX_APPEND_WRITTEN_HERE = 64 * 1024;

/**
 * Writes `parts` one after another from byte `position` of the file, with as few writev calls as
 * they allow: a group of staged bodies goes to disk without first being copied into one buffer.
 * `here`: on the calling thread, before this returns, rather than through the thread pool.
 */
async function writeAll(handle: FileHandle, parts: readonly Uint8Array[], position: number, here = false): Promise<void> {
  let rest = parts.filter((part) => part.byteLength > 0);
  while (rest.length > 0) {
    const chunk = rest.slice(0, IOV_MAX);
    const bytesWritten = here ? writevSync(handle.fd, chunk, position) : (await handle.writev(chunk, position)).bytesWritten;
    position += bytesWritten;
    rest = unwritten(rest, bytesWritten);
  }
}

/** What is left of `parts` after a write took `bytesWritten` of them (a short write, rare for a regular file, goes on from there). */
function unwritten(parts: readonly Uint8Array[], bytesWritten: number): Uint8Array[] {
  let done = 0;
  while (done < parts.length && bytesWritten >= parts[done]!.byteLength) bytesWritten -= parts[done++]!.byteLength;
  const rest = parts.slice(done);
  if (bytesWritten > 0) rest[0] = rest[0]!.subarray(bytesWritten);
  return rest;
}

function tempPath(path: string): string {
  return join(dirname(path), temporaryObjectName(basename(path), randomBytes(6).toString('hex')));
}

async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Fsyncs `dir` (it holds the new entry) and, when directories were created for the write, the
 * parent of each of them up to the parent of the first one created, so the new entries survive a crash.
 */
async function fsyncDirs(dir: string, firstCreated: string | undefined): Promise<void> {
  await fsyncFile(dir);
  if (!firstCreated) return;
  for (let d = dir; d !== dirname(d); d = dirname(d)) {
    await fsyncFile(dirname(d));
    if (d === firstCreated) break;
  }
}
