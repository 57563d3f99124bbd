/**
 * The partition cache: a local file DuckDB can read for every partition a query scans.
 *
 * DuckDB reads local files only (httpfs cannot be installed), so:
 *
 * - **Local targets**: the partition file is used in place (`driver.materialize` returns the file
 *   itself); `acquire` checks that it exists and that its size is the catalog's, and `release` does
 *   nothing. The checksum is not recomputed (that would read every file on every query).
 * - **Remote targets** (`s3://`), cache enabled: the file is kept under `dir` as
 *   `<sha256 of the location>-<first 16 hex of the checksum><extension>`, so a location whose bytes
 *   changed never serves the old ones. A miss downloads into `dir/tmp/` with `driver.materialize`,
 *   checks size and sha256 against the catalog (a mismatch deletes the download, caches nothing and
 *   throws `partition_corrupt` naming the location), then renames the file into place. Concurrent
 *   acquires of one file share one download (single flight).
 * - **Eviction**: least recently used first (a hit touches the file's mtime, so the order survives
 *   a restart), keeping `currentBytes` (plus bytes being downloaded) within `maxBytes`. A file that a
 *   running query holds (acquired, not yet released) is never evicted, so a query holding many files
 *   can push the cache over the limit for as long as it holds them; the excess is evicted as they
 *   are released. A file larger than `maxBytes` is not cached: it is downloaded to a private
 *   temporary file that `release` deletes.
 * - **Cache disabled**: every remote acquire downloads (and verifies) a private temporary file that
 *   `release` deletes: a direct read without caching.
 * - **Startup**: `dir/tmp/` (partial downloads of a previous process) is emptied, stray
 *   `.<name>.tmp-*` files in `dir` are removed, and cache files found are indexed by size with their
 *   mtime as LRU order (then evicted down to `maxBytes` if the limit shrank). Indexed files are
 *   trusted (they were fsynced before being renamed into place) except that a size differing from
 *   the catalog's makes the entry stale and it is fetched again. Files whose names do not look like
 *   cache files are left alone.
 *
 * One process owns a cache directory: two processes sharing one would delete each other's files.
 * `release()` must be called once the query no longer reads the file (calling it twice is harmless).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, rmSync, statSync, unlinkSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.ts';
import { describeCause, StorageError, type StorageDriver } from './driver.ts';

/** What the catalog says about a partition file (a `Partition` row has these fields). */
export interface CachePartition {
  location: string;
  sizeBytes: number;
  /** `sha256:<64 hex>` of the file's bytes. */
  checksum: string;
}

export interface PartitionHandle {
  /** A local file DuckDB can read; valid until `release()`. */
  readonly path: string;
  /** The query no longer reads the file. Idempotent. */
  release(): void;
}

export interface PartitionCacheOptions {
  dir: string;
  maxBytes: number;
  enabled: boolean;
  log?: Logger;
}

export interface PartitionCacheStats {
  /** Remote acquires served by a file already in the cache. */
  hits: number;
  /** Remote acquires that started a download into the cache. */
  misses: number;
  /** Remote acquires that joined a download already under way (no second download). */
  coalesced: number;
  /** Downloads (cached, uncached and failed ones) and the bytes they brought in. */
  fetches: number;
  bytesFetched: number;
  /** Downloads into private temporary files (cache disabled, or a file larger than maxBytes). */
  uncachedFetches: number;
  /** Downloads or local files whose size or checksum differ from the catalog's. */
  integrityFailures: number;
  /** Local-target partitions handed out in place. */
  localReads: number;
  evictions: number;
  evictedBytes: number;
  /** Bytes of the files in the cache (may exceed maxBytes while queries hold files). */
  currentBytes: number;
  /** Files in the cache, and how many of them running queries hold. */
  files: number;
  pinnedFiles: number;
  maxBytes: number;
  enabled: boolean;
}

export type PartitionCacheErrorCode =
  /** The file's size or checksum is not the catalog's (or the catalog's checksum is unusable). */
  | 'partition_corrupt'
  /** The catalog names a file the storage target does not have. */
  | 'partition_missing'
  /** The file could not be fetched or stored locally (network, object store, local disk). */
  | 'partition_unavailable';

/** A partition that cannot be made readable (the HTTP layer answers with the code, http/errors.ts). */
export class PartitionCacheError extends Error {
  override readonly name = 'PartitionCacheError';

  constructor(
    readonly code: PartitionCacheErrorCode,
    readonly location: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

interface Entry {
  name: string;
  path: string;
  size: number;
  refs: number;
  /** Removed from the index (evicted or stale); releases of old handles then do nothing. */
  gone: boolean;
}

interface Flight {
  /** Acquires waiting for this download (the first included); the entry starts with this many refs. */
  waiters: number;
  promise: Promise<Entry>;
}

const CACHE_FILE = /^[0-9a-f]{64}-[0-9a-f]{16}(\.[A-Za-z0-9]{1,16})?$/;
const STRAY_TEMP = /^\..+\.tmp-[0-9a-f]+$/;
const CHECKSUM = /^sha256:([0-9a-fA-F]{64})$/;

export class PartitionCache {
  readonly dir: string;
  readonly maxBytes: number;
  readonly enabled: boolean;
  private readonly tmpDir: string;
  private readonly log: Logger | undefined;
  /** Insertion order is LRU order: the first entry is the least recently used. */
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Flight>();
  private currentBytes = 0;
  /** Bytes of downloads under way into the cache (room is made for them before they start). */
  private reservedBytes = 0;
  private initializing: Promise<void> | null = null;
  private readonly counters = {
    hits: 0,
    misses: 0,
    coalesced: 0,
    fetches: 0,
    bytesFetched: 0,
    uncachedFetches: 0,
    integrityFailures: 0,
    localReads: 0,
    evictions: 0,
    evictedBytes: 0,
  };

  constructor(options: PartitionCacheOptions) {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes < 0) throw new Error(`partition cache maxBytes must be a non-negative integer, got ${options.maxBytes}`);
    this.dir = options.dir;
    this.maxBytes = options.maxBytes;
    this.enabled = options.enabled;
    this.tmpDir = join(options.dir, 'tmp');
    this.log = options.log;
  }

  /**
   * Prepares the directory and indexes the files already there. Called by the first remote
   * `acquire` when not called before; call it at boot to fail early on an unusable directory.
   */
  init(): Promise<void> {
    this.initializing ??= this.index().catch((err: unknown) => {
      this.initializing = null; // let a later call try again
      throw new Error(`query cache directory ${this.dir} is unusable: ${describeCause(err)}`, { cause: err });
    });
    return this.initializing;
  }

  stats(): PartitionCacheStats {
    let pinnedFiles = 0;
    for (const entry of this.entries.values()) if (entry.refs > 0) pinnedFiles++;
    return { ...this.counters, currentBytes: this.currentBytes, files: this.entries.size, pinnedFiles, maxBytes: this.maxBytes, enabled: this.enabled };
  }

  /** A local file for the partition, held until `release()`. Throws `PartitionCacheError`. */
  async acquire(partition: CachePartition, driver: StorageDriver): Promise<PartitionHandle> {
    if (driver.kind === 'local') return this.acquireLocal(partition, driver);
    const checksumHex = parseChecksum(partition);
    await this.init();
    if (!this.enabled || partition.sizeBytes > this.maxBytes) return this.acquirePrivate(partition, driver, checksumHex);

    const name = cacheFileName(partition.location, checksumHex);
    for (;;) {
      const entry = this.entries.get(name);
      if (entry) {
        entry.refs++; // pinned across the awaits below
        if (entry.size !== partition.sizeBytes) {
          // Only a file indexed at startup can disagree (downloads are verified): fetch it again.
          this.log?.warn({ location: partition.location, path: entry.path, size: entry.size, expected: partition.sizeBytes }, 'query cache: stale cache file, fetching again');
          entry.refs--;
          this.remove(entry);
          continue;
        }
        const now = new Date();
        // The mtime keeps the LRU order across a restart; other errors are not worth failing the query for.
        const missing = await utimes(entry.path, now, now).then(
          () => false,
          (err: { code?: string }) => err.code === 'ENOENT',
        );
        if (missing || entry.gone) {
          // Deleted behind our back, or dropped as stale by a concurrent acquire: start over.
          entry.refs--;
          this.remove(entry);
          continue;
        }
        this.touch(entry);
        this.counters.hits++;
        return this.handle(entry);
      }

      const running = this.inflight.get(name);
      if (running) {
        running.waiters++;
        this.counters.coalesced++;
        return this.handle(await running.promise);
      }

      this.counters.misses++;
      const flight: Flight = { waiters: 1, promise: undefined as unknown as Promise<Entry> };
      flight.promise = this.fetchIntoCache(name, partition, driver, checksumHex, flight);
      this.inflight.set(name, flight);
      return this.handle(await flight.promise);
    }
  }

  private async acquireLocal(partition: CachePartition, driver: StorageDriver): Promise<PartitionHandle> {
    let path: string;
    let size: number;
    try {
      path = await driver.materialize(partition.location, '');
      size = statSync(path).size; // synchronous, as the local driver's own check (local.ts)
    } catch (err) {
      throw fetchError(partition.location, driver, err);
    }
    if (size !== partition.sizeBytes) {
      this.counters.integrityFailures++;
      throw new PartitionCacheError(
        'partition_corrupt',
        partition.location,
        `partition ${partition.location} is corrupt: the file is ${size} bytes but the catalog records ${partition.sizeBytes}`,
      );
    }
    this.counters.localReads++;
    return { path, release: () => {} };
  }

  /** Cache disabled, or a file larger than the whole cache: a private, verified temporary file. */
  private async acquirePrivate(partition: CachePartition, driver: StorageDriver, checksumHex: string): Promise<PartitionHandle> {
    const path = join(this.tmpDir, `direct-${randomBytes(8).toString('hex')}${extensionOf(partition.location)}`);
    await this.download(partition, driver, checksumHex, path);
    this.counters.uncachedFetches++;
    let released = false;
    return {
      path,
      release: () => {
        if (released) return;
        released = true;
        rmSync(path, { force: true });
      },
    };
  }

  private async fetchIntoCache(name: string, partition: CachePartition, driver: StorageDriver, checksumHex: string, flight: Flight): Promise<Entry> {
    const finalPath = join(this.dir, name);
    const tmp = join(this.tmpDir, `${name}.${randomBytes(6).toString('hex')}`);
    // Make room before downloading, so the directory stays within the limit during the download too.
    this.reservedBytes += partition.sizeBytes;
    this.evict();
    try {
      await this.download(partition, driver, checksumHex, tmp);
      try {
        await rename(tmp, finalPath);
      } catch (err) {
        throw new PartitionCacheError('partition_unavailable', partition.location, `partition ${partition.location} could not be stored in the query cache: ${describeCause(err)}`, { cause: err });
      }
      // Synchronously from here: the entry appears in the index as the flight ends, already pinned by every waiter.
      const entry: Entry = { name, path: finalPath, size: partition.sizeBytes, refs: flight.waiters, gone: false };
      this.entries.set(name, entry);
      this.currentBytes += entry.size;
      return entry;
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      throw err;
    } finally {
      this.reservedBytes -= partition.sizeBytes;
      this.inflight.delete(name);
      this.evict();
    }
  }

  /** Downloads to `path` and verifies size and sha256; on any failure nothing is left at `path`. */
  private async download(partition: CachePartition, driver: StorageDriver, checksumHex: string, path: string): Promise<void> {
    const { location } = partition;
    this.counters.fetches++;
    try {
      await driver.materialize(location, path);
    } catch (err) {
      throw fetchError(location, driver, err);
    }
    try {
      const size = (await stat(path)).size;
      this.counters.bytesFetched += size;
      if (size !== partition.sizeBytes) {
        throw corrupt(location, `the downloaded file is ${size} bytes but the catalog records ${partition.sizeBytes}`);
      }
      const actual = await sha256File(path);
      if (actual !== checksumHex) throw corrupt(location, `its sha256 is ${actual} but the catalog records ${checksumHex}`);
    } catch (err) {
      await rm(path, { force: true }).catch(() => {});
      if (err instanceof PartitionCacheError) {
        this.counters.integrityFailures++;
        this.log?.error({ location, err: err.message }, 'query cache: partition failed its integrity check');
        throw err;
      }
      throw new PartitionCacheError('partition_unavailable', location, `partition ${location} could not be checked after download: ${describeCause(err)}`, { cause: err });
    }
  }

  private handle(entry: Entry): PartitionHandle {
    let released = false;
    return {
      path: entry.path,
      release: () => {
        if (released) return;
        released = true;
        if (entry.gone) return;
        entry.refs--;
        if (entry.refs === 0) this.evict(); // the cache may have been over the limit because of us
      },
    };
  }

  private touch(entry: Entry): void {
    this.entries.delete(entry.name);
    this.entries.set(entry.name, entry);
  }

  /** Removes unpinned files, least recently used first, until the cache (and downloads under way) fit. */
  private evict(): void {
    let excess = this.currentBytes + this.reservedBytes - this.maxBytes;
    if (excess <= 0) return;
    for (const entry of this.entries.values()) {
      if (excess <= 0) break;
      if (entry.refs > 0) continue;
      excess -= entry.size;
      this.counters.evictions++;
      this.counters.evictedBytes += entry.size;
      this.log?.debug({ path: entry.path, size: entry.size }, 'query cache: evicted');
      this.remove(entry);
    }
  }

  /**
   * Takes a file out of the index and deletes it. The delete is synchronous (one unlink, fast on a
   * local disk) so that a later download of the same name cannot be deleted by a pending one.
   */
  private remove(entry: Entry): void {
    if (this.entries.get(entry.name) !== entry) return;
    this.entries.delete(entry.name);
    this.currentBytes -= entry.size;
    entry.gone = true;
    try {
      unlinkSync(entry.path);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') this.log?.warn({ path: entry.path, err: describeCause(err) }, 'query cache: could not delete an evicted file');
    }
  }

  private async index(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await rm(this.tmpDir, { recursive: true, force: true }); // partial downloads of an earlier process
    await mkdir(this.tmpDir, { recursive: true });
    let strays = 0;
    const found: { name: string; size: number; mtimeMs: number }[] = [];
    for (const dirent of await readdir(this.dir, { withFileTypes: true })) {
      if (!dirent.isFile()) continue;
      const path = join(this.dir, dirent.name);
      if (STRAY_TEMP.test(dirent.name)) {
        await unlink(path).catch(() => {});
        strays++;
      } else if (CACHE_FILE.test(dirent.name)) {
        const info = await stat(path).catch(() => null);
        if (info) found.push({ name: dirent.name, size: info.size, mtimeMs: info.mtimeMs });
      }
    }
    if (this.enabled) {
      found.sort((a, b) => a.mtimeMs - b.mtimeMs);
      for (const { name, size } of found) {
        this.entries.set(name, { name, path: join(this.dir, name), size, refs: 0, gone: false });
        this.currentBytes += size;
      }
      this.evict();
    }
    this.log?.info(
      { dir: this.dir, enabled: this.enabled, files: this.entries.size, bytes: this.currentBytes, maxBytes: this.maxBytes, removedPartial: strays, evicted: this.counters.evictions },
      'query cache indexed',
    );
  }
}

function parseChecksum(partition: CachePartition): string {
  const match = CHECKSUM.exec(partition.checksum);
  if (!match) {
    throw new PartitionCacheError(
      'partition_corrupt',
      partition.location,
      `partition ${partition.location} cannot be verified: the catalog's checksum "${partition.checksum}" is not sha256:<64 hex digits>`,
    );
  }
  return match[1]!.toLowerCase();
}

function cacheFileName(location: string, checksumHex: string): string {
  const locationHash = createHash('sha256').update(location).digest('hex');
  return `${locationHash}-${checksumHex.slice(0, 16)}${extensionOf(location)}`;
}

/** `.parquet` for `s3://b/x/y.parquet`; '' when the last segment has no plain extension. */
function extensionOf(location: string): string {
  const last = location.slice(location.lastIndexOf('/') + 1);
  return /\.[A-Za-z0-9]{1,16}$/.exec(last)?.[0] ?? '';
}

function corrupt(location: string, why: string): PartitionCacheError {
  return new PartitionCacheError('partition_corrupt', location, `partition ${location} is corrupt: ${why}; nothing was cached`);
}

function fetchError(location: string, driver: StorageDriver, err: unknown): PartitionCacheError {
  if (err instanceof PartitionCacheError) return err;
  if (err instanceof StorageError && err.code === 'not_found') {
    return new PartitionCacheError('partition_missing', location, `partition ${location} is in the catalog but not on storage target "${driver.name}"`, { cause: err });
  }
  return new PartitionCacheError('partition_unavailable', location, `partition ${location} could not be read: ${describeCause(err)}`, { cause: err });
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
