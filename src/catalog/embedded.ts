/**
 * The embedded catalog: PostgreSQL (PGlite, compiled to WebAssembly) in this
 * process, on a thread of its own (embedded-thread.ts), served over the wire
 * protocol so the same postgres.js code serves both modes. postgres.js reaches
 * it through the thread's messages (embedded-session.ts); psql through a Unix
 * socket.
 *
 * It listens on that socket only, in a directory of mode 0700: PGlite has
 * no passwords, so a TCP port (even on loopback) would let any local user read
 * the stored S3 credentials or rewrite the catalog. A socket in a directory
 * only the owner can enter is reachable by the owner (and root) alone.
 *
 * PGlite as shipped makes no commit durable: it starts PostgreSQL with fsync off, and its file
 * system turns fsync() into nothing. The writes survive a process that dies (they are in the
 * kernel) but not a machine that does: a power loss could take committed jobs and manifest versions
 * with it, or leave the catalog corrupt. So the catalog runs with fsync on, its data directory is
 * mounted with an fsync() that reaches the disk ({@link DurableNodeFS}), and the WAL is flushed with
 * fsync(), since PGlite's fdatasync() cannot be made to reach it from here. A new cluster's files,
 * written by PGlite's initdb, are fsynced once before it serves.
 *
 * PGlite is one backend behind one session, which shapes how it is used:
 * one client's transaction at a time (embedded-session.ts), so postgres.js gets
 * exactly one connection, advisory locks and LISTEN/NOTIFY do nothing (the caller wakes workers
 * in-process), and nothing stops a second process from opening the same data
 * directory, so a lock file does.
 */
import { EventEmitter } from 'node:events';
import { chmodSync, closeSync, existsSync, fsyncSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { PGlite, type PGliteOptions } from '@electric-sql/pglite';
import { NodeFS } from '@electric-sql/pglite/nodefs';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { EmbeddedSession, type InProcessSocket, type WalSyncs } from './embedded-session.ts';
import { errors } from '../model/errors.ts';
import { acquireLockFile, type LockFile } from './lock-file.ts';
import { pgliteAssets } from './pglite-assets.ts';

export interface EmbeddedCatalogServer {
  /** The Unix socket other clients (psql) connect to. */
  socketPath: string;
  /** Its directory, mode 0700; `psql -h <dir> -U postgres postgres` reaches it as the owner. */
  socketDir: string;
  dataDir: string;
  /** A connection in this process, for postgres.js's `socket` option (embedded-session.ts). */
  connect(): InProcessSocket;
  stop(): Promise<void>;
}

/** The name PostgreSQL clients look for in a socket directory (`psql -h <dir>` finds it). */
export const SOCKET_NAME = '.s.PGSQL.5432';

/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
export const MAX_SOCKET_PATH_BYTES = 107;

/** PGlite's start parameters less `-F` (fsync off), with the WAL flushed by fsync() (see the top of this file). */
const DURABLE_START_PARAMS = [...PGlite.defaultStartParams.filter((param) => param !== '-F'), '-c', 'wal_sync_method=fsync'];

/**
 * How the catalog's PGlite is created over `dataDir`: durable (see the top of this file), with
 * `sync` as its fsync (node's; a test may watch it) and `syncLater` as the fsync it runs for the
 * WAL's deferred syncs ({@link DurableNodeFS}): by default `sync` itself, on the catalog's own
 * thread, where it holds up no request; through Bun's thread pool (two threads) it would queue
 * behind the staging logs' fdatasyncs (docs/performance.md, "The embedded catalog on its own
 * thread").
 */
export async function durablePGliteOptions(
  dataDir: string,
  sync: (fd: number) => void = fsyncSync,
  syncLater: (fd: number) => Promise<void> = async (fd) => sync(fd),
): Promise<PGliteOptions & { fs: DurableNodeFS }> {
  return { fs: new DurableNodeFS(dataDir, sync, syncLater), startParams: DURABLE_START_PARAMS, ...(await pgliteAssets()) };
}

/**
 * PGlite's Node file system with an fsync() that reaches the disk: `sync` on the file's own
 * descriptor. A failure is PostgreSQL's to handle, as on any file system: it stops rather than
 * carry on with data it cannot trust.
 *
 * While {@link deferring} (the session runs a client's messages, embedded-session.ts), an fsync
 * of a WAL segment returns at once and is run later by {@link durable}, which the session awaits
 * before it answers. PostgreSQL's one rule about the order of writes still
 * holds, the WAL on disk before anything it describes: before any other file of the cluster is
 * written or synced, and before a WAL segment is closed or synced undeferred, the WAL syncs owed
 * are run here, on this thread.
 */
export class DurableNodeFS extends NodeFS implements WalSyncs {
  deferring = false;
  /** WAL descriptors written since their last fsync, their syncs deferred. */
  private readonly owed = new Set<number>();
  /** The deferred syncs running now. */
  private running: { fds: Set<number>; done: Promise<void> } | null = null;
  /** The deferred syncs to run after those: every descriptor owed when they start. */
  private next: Promise<void> | null = null;

  constructor(
    private readonly clusterDir: string,
    private readonly sync: (fd: number) => void,
    private readonly syncLater: (fd: number) => Promise<void>,
  ) {
    super(clusterDir);
  }

  durable(): Promise<void> {
    if (this.owed.size === 0) return this.running?.done ?? Promise.resolve();
    this.next ??= (this.running?.done ?? Promise.resolve()).catch(() => {}).then(() => this.runOwed());
    return this.next;
  }

  private runOwed(): Promise<void> {
    this.next = null;
    const fds = new Set(this.owed);
    this.owed.clear();
    // EBADF: the segment was closed since, after {@link syncNow} synced it (the close hook).
    const done = Promise.all([...fds].map((fd) => this.syncLater(fd).catch((err) => (err.code === 'EBADF' ? undefined : Promise.reject(err))))).then(() => {});
    const running = { fds, done };
    this.running = running;
    done.then(
      () => this.running === running && (this.running = null),
      () => {},
    );
    return done;
  }

  /** Runs every WAL sync owed or running, here and now. */
  private syncNow(): void {
    for (const fd of this.owed) this.sync(fd);
    for (const fd of this.running?.fds ?? []) this.sync(fd);
    this.owed.clear();
    this.running?.fds.clear(); // still running, but nothing of theirs is owed any more
  }

  private get owing(): boolean {
    return this.owed.size > 0 || (this.running?.fds.size ?? 0) > 0;
  }

  override async init(...args: Parameters<NodeFS['init']>): ReturnType<NodeFS['init']> {
    const { emscriptenOpts } = await super.init(...args);
    const walDir = join(resolve(this.clusterDir), 'pg_wal') + '/';
    const hooks = (mod: { FS: { filesystems: Record<string, unknown> } }) => {
      const nodefs = mod.FS.filesystems.NODEFS as NodeFileSystem;
      const { write, close } = nodefs.stream_ops;
      const isWal = (stream: NodeStream) => (stream.timestoreWal ??= nodefs.realPath(stream.node).startsWith(walDir));
      nodefs.stream_ops.fsync = (stream) => {
        if (isWal(stream) && this.deferring) {
          this.owed.add(stream.nfd);
          return 0;
        }
        nodefs.tryFSOperation(() => {
          if (this.owing) this.syncNow();
          this.sync(stream.nfd);
        });
        return 0;
      };
      nodefs.stream_ops.write = (stream, ...rest) => {
        if (this.owing && !isWal(stream)) nodefs.tryFSOperation(() => this.syncNow());
        return write(stream, ...rest);
      };
      nodefs.stream_ops.close = (stream) => {
        if (this.owing && isWal(stream)) nodefs.tryFSOperation(() => this.syncNow());
        return close(stream);
      };
    };
    return { emscriptenOpts: { ...emscriptenOpts, preRun: [...(emscriptenOpts.preRun ?? []), hooks] } };
  }
}

/** An open file of Emscripten's NODEFS. */
interface NodeStream {
  nfd: number;
  node: unknown;
  /** Whether it is a WAL segment (set here, the first time it is asked). */
  timestoreWal?: boolean;
}

/** What {@link DurableNodeFS} uses of Emscripten's NODEFS (not in PGlite's types). */
interface NodeFileSystem {
  stream_ops: {
    fsync?: (stream: NodeStream) => number;
    write: (stream: NodeStream, ...rest: unknown[]) => number;
    close: (stream: NodeStream) => void;
  };
  realPath(node: unknown): string;
  tryFSOperation<T>(run: () => T): T;
}

/**
 * Starts the embedded catalog under `storageRoot` on a thread of its own (embedded-thread.ts),
 * holding the storage root's lock until it stops.
 */
export async function startEmbeddedCatalog(storageRoot: string): Promise<EmbeddedCatalogServer> {
  const dataDir = join(storageRoot, 'catalog');
  mkdirSync(dataDir, { recursive: true });
  const lock: LockFile = acquireLockFile(join(storageRoot, 'timestore.lock'), (holder) => errors.storage_root_in_use(storageRoot, holder));
  try {
    const thread = new Worker(CATALOG_THREAD_FILENAME, { workerData: { storageRoot, dataDir } satisfies CatalogThreadData });
    const catalog = new CatalogThread(thread);
    const started = await catalog.started;
    return {
      ...started,
      dataDir,
      connect: () => catalog.connect(),
      async stop() {
        await catalog.stop();
        lock.release();
      },
    };
  } catch (err) {
    lock.release();
    throw err;
  }
}

/** What the catalog's thread (embedded-thread.ts) is started with. */
export interface CatalogThreadData {
  storageRoot: string;
  /** `<storage root>/catalog`, the cluster's directory (made by the caller). */
  dataDir: string;
}

/** From the process to the catalog's thread: a connection opened, written to or ended; or stop. */
export type CatalogThreadRequest =
  | { type: 'open' | 'end'; connection: number }
  | { type: 'write'; connection: number; bytes: Uint8Array }
  | { type: 'stop' };

/** From the catalog's thread: started (or not), a connection's answer, error or close; stopped. */
export type CatalogThreadEvent =
  | { type: 'started'; socketPath: string; socketDir: string }
  | { type: 'failed'; message: string }
  | { type: 'data'; connection: number; bytes: Uint8Array }
  | { type: 'error'; connection: number; message: string }
  | { type: 'close'; connection: number }
  | { type: 'stopped' };

/**
 * The catalog thread's module, defined by scripts/build.ts when compiled (undefined from source:
 * then beside this one). See src/engine/pool.ts for why a URL relative to this module would not do.
 */
declare const TIMESTORE_COMPILED_CATALOG_THREAD: string | undefined;
const CATALOG_THREAD_FILENAME =
  typeof TIMESTORE_COMPILED_CATALOG_THREAD === 'string' ? TIMESTORE_COMPILED_CATALOG_THREAD : new URL('./embedded-thread.ts', import.meta.url);

/** This process's side of the catalog's thread: its connections, as postgres.js sockets. */
class CatalogThread {
  readonly started: Promise<{ socketPath: string; socketDir: string }>;
  private readonly sockets = new Map<number, InProcessSocket>();
  private nextConnection = 1;
  private stopped: (() => void) | null = null;
  /** Why the thread can serve no more, once it cannot. */
  private failure: Error | null = null;

  constructor(private readonly thread: Worker) {
    this.started = new Promise((resolve, reject) => {
      thread.on('message', (event: CatalogThreadEvent) => {
        if (event.type === 'started') resolve({ socketPath: event.socketPath, socketDir: event.socketDir });
        else if (event.type === 'failed') {
          reject(new Error(event.message));
          void thread.terminate();
        } else this.deliver(event);
      });
      thread.on('error', (err: Error) => {
        reject(err);
        this.fail(new Error(`the embedded catalog's thread failed (${err.message}): restart timestore`));
      });
      thread.on('exit', (code) => {
        reject(new Error(`the embedded catalog's thread exited (code ${code}) before it served`));
        this.fail(new Error(`the embedded catalog's thread exited (code ${code}): restart timestore`));
      });
    });
  }

  connect(): InProcessSocket {
    const connection = this.nextConnection++;
    const socket = new EventEmitter() as InProcessSocket;
    socket.readyState = 'open';
    if (this.failure) {
      const failure = this.failure;
      queueMicrotask(() => {
        socket.readyState = 'closed';
        socket.emit('error', failure);
        socket.emit('close');
      });
      return socket;
    }
    this.sockets.set(connection, socket);
    this.post({ type: 'open', connection });
    socket.write = (chunk, callback) => {
      // postgres.js reuses its buffer: the bytes are copied (by the message) before the call returns.
      this.post({ type: 'write', connection, bytes: chunk });
      callback?.();
      return true;
    };
    const end = () => {
      if (socket.readyState === 'closed') return;
      socket.readyState = 'closed';
      this.post({ type: 'end', connection }); // the thread answers with its close
    };
    socket.end = end;
    socket.destroy = end;
    return socket;
  }

  private post(request: CatalogThreadRequest): void {
    this.thread.postMessage(request);
  }

  private deliver(event: CatalogThreadEvent): void {
    if (event.type === 'stopped') return this.stopped?.();
    if (!('connection' in event)) return;
    const socket = this.sockets.get(event.connection);
    if (!socket) return;
    if (event.type === 'data') {
      if (socket.readyState === 'open') socket.emit('data', Buffer.from(event.bytes.buffer, event.bytes.byteOffset, event.bytes.byteLength));
    } else if (event.type === 'error') {
      if (socket.readyState === 'open') socket.emit('error', new Error(event.message));
    } else if (event.type === 'close') {
      this.sockets.delete(event.connection);
      socket.readyState = 'closed';
      socket.emit('close');
    }
  }

  /** The thread is gone: every connection fails, and new ones fail at once. */
  private fail(err: Error): void {
    this.failure ??= err;
    for (const [connection, socket] of this.sockets) {
      this.sockets.delete(connection);
      if (socket.readyState === 'open') socket.emit('error', this.failure);
      socket.readyState = 'closed';
      socket.emit('close');
    }
    this.stopped?.();
  }

  /** Stops the catalog (its connections end, PGlite closes) and then the thread. */
  async stop(): Promise<void> {
    if (!this.failure) {
      await new Promise<void>((resolve) => {
        this.stopped = resolve;
        this.post({ type: 'stop' });
      });
    }
    await this.thread.terminate();
  }
}

/**
 * Serves the embedded catalog under `storageRoot` on this thread (the catalog's own,
 * embedded-thread.ts): its cluster, the session every connection shares, and the Unix socket.
 * The caller holds the storage root's lock.
 */
export async function serveEmbeddedCatalog({ storageRoot, dataDir }: CatalogThreadData): Promise<Omit<EmbeddedCatalogServer, 'dataDir'>> {
  let db: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  let socket: SocketDir | undefined;
  let session: EmbeddedSession | undefined;
  try {
    socket = ownerOnlySocketDir(storageRoot);
    const fresh = !existsSync(join(dataDir, 'PG_VERSION'));
    const options = await durablePGliteOptions(dataDir);
    db = await PGlite.create(options);
    // A new cluster's files were written by PGlite's initdb, whose fsyncs are no-ops too.
    if (fresh) {
      syncTree(dataDir);
      syncPath(storageRoot); // the data directory's own entry
    }
    session = new EmbeddedSession(db, options.fs);
    server = new PGLiteSocketServer({ db, path: socket.path, maxConnections: 16 });
    // The socket's connections take their turns in the session's queue, as this process's do.
    // pglite-socket (pinned) keeps its queue in this field and hands it to each connection.
    (server as unknown as { queryQueue: EmbeddedSession }).queryQueue = session;
    await server.start();
    // The directory already keeps others out; the socket itself need not say otherwise.
    chmodSync(socket.path, 0o600);
  } catch (err) {
    await server?.stop().catch(() => {});
    await db?.close().catch(() => {});
    socket?.remove();
    throw err;
  }
  const started = server;
  const database = db;
  const dir = socket;
  const catalog = session;
  return {
    socketPath: dir.path,
    socketDir: dir.dir,
    connect: () => catalog.connect(),
    async stop() {
      await started.stop();
      await database.close();
      dir.remove();
    },
  };
}

/** fsyncs every file and directory under `dir`, `dir` last. */
function syncTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) syncTree(path);
    else if (entry.isFile()) syncPath(path);
  }
  syncPath(dir);
}

function syncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

interface SocketDir {
  dir: string;
  path: string;
  remove(): void;
}

/**
 * `<storage root>/.runtime/catalog`, mode 0700, when the socket's path fits in
 * sun_path; a storage root deep enough to overflow it gets a fresh private
 * directory under the system's temporary directory (mkdtemp creates it 0700)
 * instead, removed again at stop. Callers hold the storage root's lock, so a
 * socket file already there was left by a process that died and is removed.
 */
export function ownerOnlySocketDir(storageRoot: string): SocketDir {
  const preferred = join(resolve(storageRoot), '.runtime', 'catalog');
  if (fits(preferred)) {
    mkdirSync(preferred, { recursive: true, mode: 0o700 });
    assertOwnDirectory(preferred);
    chmodSync(preferred, 0o700);
    const path = join(preferred, SOCKET_NAME);
    rmSync(path, { force: true });
    return { dir: preferred, path, remove: () => rmSync(path, { force: true }) };
  }
  const base = fits(join(tmpdir(), 'timestore-catalog-XXXXXX')) ? tmpdir() : '/tmp';
  const dir = mkdtempSync(join(base, 'timestore-catalog-'));
  chmodSync(dir, 0o700);
  const path = join(dir, SOCKET_NAME);
  return {
    dir,
    path,
    remove: () => {
      try {
        unlinkSync(path);
      } catch {
        // never created, or already gone
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function fits(dir: string): boolean {
  return Buffer.byteLength(join(dir, SOCKET_NAME)) <= MAX_SOCKET_PATH_BYTES;
}

/** A symlink or another user's directory here would put the socket where others can reach it. */
function assertOwnDirectory(dir: string): void {
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) throw new Error(`${dir} must be a directory (it holds the embedded catalog's socket)`);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) throw new Error(`${dir} is owned by uid ${stat.uid}, not by this process (uid ${uid})`);
}
