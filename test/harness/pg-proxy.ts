/**
 * A TCP proxy in front of the harness PostgreSQL that can make one COMMIT's outcome unknown to
 * the client, as a network failure would:
 *
 * - `reply`: the COMMIT reaches the server and commits; its answer is dropped and the connection
 *   cut, so the client sees the connection lost after a transaction that did commit;
 * - `request`: the COMMIT is dropped and the connection cut, so the server rolls the transaction
 *   back while the client, again, only sees the connection lost.
 *
 * It reads the frontend protocol (Parse/Bind/Query messages) to recognise the COMMIT of a
 * transaction that ran a statement matching `after`, named prepared statements included.
 *
 * `loseAnswer` does the same to a statement run on its own (autocommit): it runs and commits, its
 * answer is dropped and the connection cut.
 *
 * `runs` counts the statements clients ran through it, to prove how many catalog round trips a
 * request costs.
 */
import { createServer, connect, type Socket } from 'node:net';

export type CommitLoss = 'reply' | 'request';

export interface PgProxy {
  /** The database URL to hand to the client instead of the real one. */
  url: string;
  /** Arms the proxy: the next COMMIT of a transaction that ran a statement matching `after`. Resolves once it happened. */
  loseCommit(after: RegExp, loss: CommitLoss): Promise<void>;
  /** Arms the proxy: the answer to the next statement matching `statement` that commits on its own. Resolves once it happened. */
  loseAnswer(statement: RegExp): Promise<void>;
  /** How many times a statement matching `statement` ran so far (simple queries, and binds of prepared ones). */
  runs(statement: RegExp): number;
  close(): Promise<void>;
}

interface Armed {
  after: RegExp;
  loss: CommitLoss;
  done(): void;
}

const COMMIT = /^\s*commit\s*;?\s*$/i;
const TRANSACTION_END = /^\s*(commit|rollback|end|abort)\b/i;
/** The backend's CommandComplete for a COMMIT: 'C', int32 length 11, "COMMIT\0". */
const COMMIT_COMPLETE = Buffer.from([0x43, 0, 0, 0, 11, ...Buffer.from('COMMIT\0')]);
/** The backend's ReadyForQuery outside a transaction: 'Z', int32 length 5, 'I' (idle). */
const READY_IDLE = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);

export async function startPgProxy(databaseUrl: string): Promise<PgProxy> {
  const target = new URL(databaseUrl);
  let armed: Armed | null = null;
  let armedAnswer: { statement: RegExp; done(): void } | null = null;
  const sockets = new Set<Socket>();
  const ran: string[] = [];

  const server = createServer((client) => {
    const backend = connect(Number(target.port), target.hostname);
    sockets.add(client).add(backend);
    const cut = () => {
      client.destroy();
      backend.destroy();
    };
    client.on('close', () => backend.destroy()).on('error', cut);
    backend.on('close', () => client.destroy()).on('error', cut);

    const statements = new Map<string, string>();
    let pending = Buffer.alloc(0);
    let startupDone = false;
    let matched = false; // this transaction ran a statement matching the armed pattern
    let losingReply: Armed | null = null;
    let inTransaction = false;
    let losingAnswer: { done(): void } | null = null;

    backend.on('data', (chunk: Buffer) => {
      if (losingAnswer) {
        // The statement ran and committed once the backend is idle again; the client never hears it.
        if (chunk.includes(READY_IDLE)) {
          const { done } = losingAnswer;
          losingAnswer = null;
          cut();
          done();
        }
        return;
      }
      if (!losingReply) {
        client.write(chunk);
        return;
      }
      // The answer to the COMMIT: the transaction committed; the client never hears it.
      if (chunk.includes(COMMIT_COMPLETE)) {
        const done = losingReply.done;
        losingReply = null;
        cut();
        done();
      }
    });

    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (!startupDone) {
          if (pending.length < 4) return;
          const length = pending.readInt32BE(0);
          if (pending.length < length) return;
          backend.write(pending.subarray(0, length));
          pending = pending.subarray(length);
          startupDone = true;
          continue;
        }
        if (pending.length < 5) return;
        const length = pending.readInt32BE(1) + 1;
        if (pending.length < length) return;
        const message = pending.subarray(0, length);
        pending = pending.subarray(length);
        const text = statementOf(message, statements);
        if (text !== null) ran.push(text);
        if (text !== null && armed) {
          if (armed.after.test(text)) matched = true;
          if (COMMIT.test(text) && matched) {
            const hit = armed;
            armed = null;
            if (hit.loss === 'request') {
              cut();
              hit.done();
              return;
            }
            losingReply = hit;
          }
        }
        if (text !== null && armedAnswer && !inTransaction && armedAnswer.statement.test(text)) {
          losingAnswer = armedAnswer;
          armedAnswer = null;
        }
        if (text !== null && /^\s*begin\b/i.test(text)) inTransaction = true;
        if (text !== null && TRANSACTION_END.test(text)) {
          matched = false;
          inTransaction = false;
        }
        if (!backend.destroyed) backend.write(message);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(address.port);

  return {
    url: url.toString(),
    loseCommit(after, loss) {
      return new Promise<void>((done) => {
        armed = { after, loss, done };
      });
    },
    loseAnswer(statement) {
      return new Promise<void>((done) => {
        armedAnswer = { statement, done };
      });
    },
    runs(statement) {
      return ran.filter((text) => statement.test(text)).length;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The SQL text a frontend message runs: a simple Query, or the statement a Bind names (Parse records it). */
function statementOf(message: Buffer, statements: Map<string, string>): string | null {
  const type = String.fromCharCode(message[0]!);
  const body = message.subarray(5);
  const cString = (at: number): [string, number] => {
    const end = body.indexOf(0, at);
    return [body.toString('utf8', at, end), end + 1];
  };
  if (type === 'Q') return cString(0)[0];
  if (type === 'P') {
    const [name, next] = cString(0);
    statements.set(name, cString(next)[0]);
    return null;
  }
  if (type === 'B') {
    const [, next] = cString(0); // portal
    return statements.get(cString(next)[0]) ?? null;
  }
  return null;
}
