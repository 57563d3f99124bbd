/**
 * The embedded catalog's one PostgreSQL session, and every connection to it.
 *
 * PGlite is one backend: whatever connects shares its session. This queue is the one way in. It
 * runs the wire-protocol messages of its clients one at a time and, while one client has a
 * transaction open, only that client's (PGlite cannot tell whose a statement is). Its clients are
 * postgres.js in this process, through {@link EmbeddedSession.connect} (on the catalog's own
 * thread, whose messages relay them: embedded-thread.ts), and the Unix socket's connections
 * (embedded.ts), through the interface of pglite-socket's own queue.
 *
 * An answer is held until the WAL it follows is on disk. A commit's fsync of the WAL is deferred
 * ({@link WalSyncs}) until the message that made it has run, and is then run before its answer
 * (on the catalog's thread, at once: embedded.ts); a sync that fails stops the session. Answers
 * leave in the order their messages ran, so no client sees data before it is durable, through
 * this session or another.
 */
import { EventEmitter } from 'node:events';
import type { PGlite } from '@electric-sql/pglite';

/** The WAL's fsyncs, deferred while the session runs a client's messages (embedded.ts). */
export interface WalSyncs {
  /** While true, an fsync of the WAL is recorded rather than run. */
  deferring: boolean;
  /** Resolves once every WAL write made so far is on disk (rejects if an fsync failed). */
  durable(): Promise<void>;
}

interface Request {
  client: number;
  message: Uint8Array;
  onData(bytes: Buffer): void;
  resolve(bytes: number): void;
  reject(err: unknown): void;
}

/** What postgres.js needs of a socket (its `socket` option). */
export interface InProcessSocket extends EventEmitter {
  readyState: 'open' | 'closed';
  write(chunk: Uint8Array, callback?: (err?: Error) => void): boolean;
  end(chunk?: Uint8Array): void;
  destroy(): void;
}

export class EmbeddedSession {
  private queue: Request[] = [];
  private running = false;
  /** The client whose messages ran last: while a transaction is open, the only one that may run. */
  private owner: number | null = null;
  /** Answers leave in the order their messages ran: each waits for the one before. */
  private answered: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  private nextClient = 1;

  constructor(
    private readonly db: PGlite,
    private readonly wal: WalSyncs,
  ) {}

  /** A new client's id (a Unix-socket connection's are pglite-socket's own, counted from 1 as well). */
  private newClient(): number {
    return -this.nextClient++;
  }

  /** Runs `message` for `client`; `onData` receives its answer once the WAL before it is durable. */
  enqueue(client: number, message: Uint8Array, onData: (bytes: Buffer) => void): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.queue.push({ client, message, onData, resolve, reject });
      void this.run();
    });
  }

  /** Drops what `client` left queued when it went. */
  clearQueueForHandler(client: number): void {
    const dropped = this.queue.filter((r) => r.client === client);
    this.queue = this.queue.filter((r) => r.client !== client);
    for (const r of dropped) r.reject(new Error('the catalog connection closed'));
  }

  /** Rolls back the transaction `client` left open, so that the others may run again. */
  async clearTransactionIfNeeded(client: number): Promise<void> {
    if (this.owner !== client || !this.db.isInTransaction()) return;
    await this.db.exec('ROLLBACK');
    this.owner = null;
    void this.run();
  }

  getQueueLength(): number {
    return this.queue.length;
  }

  /** A connection for postgres.js in this process. */
  connect(): InProcessSocket {
    const client = this.newClient();
    const socket = new EventEmitter() as InProcessSocket;
    socket.readyState = 'open';
    const close = () => {
      if (socket.readyState === 'closed') return;
      socket.readyState = 'closed';
      this.clearQueueForHandler(client);
      this.clearTransactionIfNeeded(client).then(
        () => socket.emit('close'),
        (err) => {
          socket.emit('error', err);
          socket.emit('close');
        },
      );
    };
    socket.write = (chunk, callback) => {
      // postgres.js reuses its buffer: the bytes are copied before the call returns.
      this.enqueue(client, new Uint8Array(chunk), (bytes) => socket.readyState === 'open' && socket.emit('data', bytes)).catch(
        (err) => socket.readyState === 'open' && socket.emit('error', err),
      );
      callback?.();
      return true;
    };
    socket.end = close;
    socket.destroy = close;
    return socket;
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const i = this.owner !== null && this.db.isInTransaction() ? this.queue.findIndex((r) => r.client === this.owner) : 0;
        if (i < 0) break; // the transaction's owner has sent nothing yet
        const request = this.queue.splice(i, 1)[0]!;
        const answer: Buffer[] = [];
        try {
          await this.db.runExclusive(async () => {
            this.wal.deferring = true;
            try {
              // The answer arrives in PGlite's buffers: copied, since it leaves later.
              await this.db.execProtocolRawStream(request.message, { onRawData: (bytes) => answer.push(Buffer.from(bytes)) });
            } finally {
              this.wal.deferring = false;
            }
          });
        } catch (err) {
          request.reject(err);
          continue;
        }
        this.owner = request.client;
        const durable = this.wal.durable();
        this.answered = this.answered
          .then(() => durable)
          .then(
            () => this.answer(request, answer),
            (err) => this.fail(err, request),
          );
      }
    } finally {
      this.running = false;
    }
  }

  private answer(request: Request, answer: Buffer[]): void {
    if (this.failure) return request.reject(this.failure);
    try {
      const bytes = answer.length === 1 ? answer[0]! : Buffer.concat(answer);
      if (bytes.byteLength > 0) request.onData(bytes);
      request.resolve(bytes.byteLength);
    } catch (err) {
      request.reject(err);
    }
  }

  /**
   * A WAL fsync failed: what was committed since may not be on disk, and PostgreSQL would stop
   * rather than go on. So does this session: every answer from now on is this error.
   */
  private fail(err: unknown, request: Request): void {
    this.failure ??= new Error(`the embedded catalog could not make its WAL durable (${(err as Error).message}): restart timestore`);
    request.reject(this.failure);
    for (const r of this.queue.splice(0)) r.reject(this.failure);
  }
}
