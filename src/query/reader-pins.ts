/**
 * This process's reader pins (catalog/reader-pins.ts): every query and stream holds a pin on the
 * manifest version it reads from its start until its last row, so the collector of any process
 * leaves the files of that version alone however long the reader lives.
 *
 * Queries of one dataset at one version share a pin row: the first inserts it, the others count
 * on it in memory, so a busy dataset costs the catalog one row per version rather than two writes
 * per query. A row no reader has used for `idleMs` is deleted (at once when readers have moved on
 * to a newer version of its dataset); every row of the process is
 * refreshed well before it expires, and one that stops being refreshed (the process died, or lost
 * the catalog for longer than `ttlMs`) stops protecting anything once it expires.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Sql } from 'postgres';
import { pinCurrentManifestVersion, refreshReaderPins, releaseReaderPins } from '../catalog/reader-pins.ts';
import type { Logger } from '../log.ts';

export interface ReaderPinsOptions {
  /** How long a pin protects without a refresh (default 60 s); refreshed every quarter of it. */
  ttlMs?: number;
  /** How long an unused pin row is kept for the next reader of its version (default 5 s). */
  idleMs?: number;
}

/** A pin held by one reader: the version it may read, and the release to call when it has finished. */
export interface HeldPin {
  version: number;
  release(): void;
}

interface Shared {
  key: string;
  datasetId: string;
  version: number;
  /** Pin rows of this dataset and version (usually one; two when first readers raced). */
  ids: string[];
  readers: number;
  idleSince: number;
}

export class ReaderPins {
  readonly owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly ttlMs: number;
  private readonly idleMs: number;
  private readonly shared = new Map<string, Shared>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastRefresh = Date.now();
  private ticking: Promise<void> | null = null;

  constructor(
    private readonly sql: Sql,
    private readonly log: Logger,
    options: ReaderPinsOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.idleMs = options.idleMs ?? 5_000;
  }

  start(): void {
    this.timer ??= setInterval(() => {
      this.ticking ??= this.tick().finally(() => {
        this.ticking = null;
      });
    }, Math.min(1_000, this.idleMs));
  }

  /**
   * Pins the dataset for one reader. `readVersion` is the manifest version the caller just read:
   * when this process already holds a pin on it, that one is shared; otherwise the dataset's
   * current version is pinned (it may be newer than `readVersion`) and returned.
   */
  async pin(datasetId: string, readVersion: number): Promise<HeldPin> {
    const held = this.shared.get(`${datasetId}@${readVersion}`);
    if (held) return this.hold(held, readVersion);
    const id = randomUUID();
    const version = await pinCurrentManifestVersion(this.sql, { id, datasetId, owner: this.owner, ttlMs: this.ttlMs });
    const key = `${datasetId}@${version}`;
    let entry = this.shared.get(key);
    if (entry) entry.ids.push(id);
    else this.shared.set(key, (entry = { key, datasetId, version, ids: [id], readers: 0, idleSince: 0 }));
    return this.hold(entry, version);
  }

  /** Stops refreshing and removes this process's pins (its readers are gone). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.ticking;
    this.shared.clear();
    await releaseReaderPins(this.sql, this.owner).catch((err) => this.log.warn({ err }, 'reader pins: not removed at shutdown; they expire'));
  }

  private hold(entry: Shared, version: number): HeldPin {
    entry.readers += 1;
    let released = false;
    return {
      version,
      release: () => {
        if (released) return;
        released = true;
        entry.readers -= 1;
        if (entry.readers === 0) entry.idleSince = Date.now();
      },
    };
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    const newest = new Map<string, number>();
    for (const e of this.shared.values()) newest.set(e.datasetId, Math.max(e.version, newest.get(e.datasetId) ?? 0));
    // Unused and idle long enough, or unused and older than a version readers have moved on to.
    const idle = [...this.shared.values()].filter(
      (e) => e.readers === 0 && (now - e.idleSince >= this.idleMs || e.version < newest.get(e.datasetId)!),
    );
    // Out of the map first: a reader arriving now inserts a row of its own.
    for (const entry of idle) this.shared.delete(entry.key);
    try {
      await releaseReaderPins(this.sql, this.owner, idle.flatMap((e) => e.ids));
      if (this.shared.size > 0 && now - this.lastRefresh >= this.ttlMs / 4) {
        await refreshReaderPins(this.sql, this.owner, this.ttlMs);
        this.lastRefresh = now;
      }
    } catch (err) {
      // Unreleased rows expire; unrefreshed ones are tried again at the next tick.
      this.log.warn({ err }, 'reader pins: catalog unavailable; trying again');
    }
  }
}
