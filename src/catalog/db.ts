import type { Sql, TransactionSql } from 'postgres';

/** A catalog handle: the pool, or a transaction begun on it. Repositories accept either. */
export type Db = Sql | TransactionSql;

/**
 * PostgreSQL text cannot hold U+0000: a statement with such a parameter fails (22021) rather than
 * matching nothing. A lookup by a name from a request answers "none" for it instead.
 */
export function namesNothing(text: string): boolean {
  return text.includes('\u0000');
}

/** postgres.js's own codes for a connection that could not be made or was lost. */
const CONNECTION_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE']);

/**
 * True when an error says the catalog cannot be reached right now (down, restarting, connection
 * lost), rather than that a statement was wrong: SQLSTATE class 08 (connection exception) and
 * 57P01–57P03 (shutdown, crash, not yet accepting connections) included.
 */
export function isCatalogUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return CONNECTION_CODES.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03';
}
