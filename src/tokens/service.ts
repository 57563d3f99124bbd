/**
 * API tokens: created (the secret is returned once and never stored), listed, revoked, and
 * checked on every request of a server with TIMESTORE_AUTH=tokens.
 *
 * Checking a request's token costs a hash and a map lookup: what the catalog says about a secret
 * is kept in this process for `cacheMs` (TIMESTORE_AUTH_TOKEN_CACHE_SECONDS). A token revoked
 * through this process is refused at once; one revoked through another process is refused here
 * once the kept answer is older than `cacheMs`. Expiry is checked on every request. The time of
 * last use is written at most once a minute per token and process, never on every request.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Sql } from 'postgres';
import { recordAuditEvent } from '../catalog/audit.ts';
import { findApiToken, findApiTokenByHash, insertApiToken, listApiTokens, revokeApiToken, touchApiToken } from '../catalog/api-tokens.ts';
import { errors } from '../model/errors.ts';
import type { Logger } from '../log.ts';
import { TOKEN_PREFIX, TOKEN_SECRET_BYTES, tokenProblem, tokenState } from '../model/api-tokens.ts';
import type { ApiToken } from '../model/records.ts';

/** Who a valid token says the caller is. */
export interface TokenPrincipal {
  id: string;
  name: string;
  scopes: string[];
}

export interface NewTokenRequest {
  name: string;
  scopes: string[];
  /** When the token stops working (ISO-8601 or a Date); at most one of this and `expiresInSeconds`. */
  expiresAt?: string | Date | null;
  expiresInSeconds?: number | null;
}

export interface TokenServiceOptions {
  sql: Sql;
  log: Logger;
  /** How long what the catalog said about a secret is trusted; 0 asks it on every request. */
  cacheMs: number;
  /** The clock (ms since the epoch). */
  now?: () => number;
}

const TOUCH_EVERY_MS = 60_000;
/** Secrets (known or not) whose answer is kept; past this the oldest is forgotten first. */
const CACHE_ENTRIES = 10_000;
const MAX_LIFETIME_SECONDS = 10 * 366 * 86_400;

/**
 * sha256 and not a slow password hash: the secret is 256 random bits, so there is no dictionary to
 * try and no brute force that a slower hash would hold back, while a slow hash would cost CPU on
 * every request. The lookup by hash also means no secret is ever compared byte by byte here.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export class TokenService {
  private readonly answers = new Map<string, { readAt: number; token: Promise<ApiToken | null> }>();
  /** Tokens revoked through this process: refused even when a read that began before the revocation answers later. */
  private readonly revokedHere = new Set<string>();
  private readonly touchedAt = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly o: TokenServiceOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Creates a token; its secret is in the answer and nowhere else. */
  async create(request: NewTokenRequest, actor: string | null): Promise<{ token: ApiToken; secret: string }> {
    const scopes = [...new Set(request.scopes)];
    const problem = tokenProblem(request.name, scopes);
    if (problem) throw errors.invalid_token_request(problem);
    const expiresAt = this.expiryOf(request);
    const secret = `${TOKEN_PREFIX}${randomBytes(TOKEN_SECRET_BYTES).toString('base64url')}`;
    const token = await this.o.sql.begin(async (tx) => {
      const row = await insertApiToken(tx, {
        name: request.name,
        secretHash: hashSecret(secret),
        secretPrefix: secret.slice(0, TOKEN_PREFIX.length + 4),
        scopes,
        expiresAt,
        createdBy: actor,
      });
      await recordAuditEvent(tx, {
        datasetId: null,
        action: 'token.created',
        actor,
        details: { tokenId: row.id, name: row.name, scopes: row.scopes, expiresAt: row.expiresAt?.toISOString() ?? null },
      });
      return row;
    });
    return { token, secret };
  }

  list(options: { revoked: boolean }): Promise<ApiToken[]> {
    return listApiTokens(this.o.sql, options);
  }

  async get(id: string): Promise<ApiToken> {
    const token = await findApiToken(this.o.sql, id);
    if (!token) throw errors.not_found('token', id);
    return token;
  }

  /** Revokes the token; revoking a revoked token changes nothing and answers it as it is. */
  async revoke(id: string, actor: string | null): Promise<ApiToken> {
    const token = await this.o.sql.begin(async (tx) => {
      const before = await findApiToken(tx, id);
      if (!before) throw errors.not_found('token', id);
      const after = (await revokeApiToken(tx, id, actor)) as ApiToken;
      if (!before.revokedAt) {
        await recordAuditEvent(tx, { datasetId: null, action: 'token.revoked', actor, details: { tokenId: id, name: after.name } });
      }
      return after;
    });
    this.revokedHere.add(token.id);
    const hash = token.secretHash;
    this.answers.delete(hash);
    return token;
  }

  /** The token a request's secret belongs to; 401 when it is unknown, revoked or expired. */
  async authenticate(secret: string): Promise<TokenPrincipal> {
    const now = this.now();
    const token = await this.lookup(hashSecret(secret), now);
    const state = token && !this.revokedHere.has(token.id) ? tokenState(token, now) : 'revoked';
    if (state === 'revoked') throw errors.unauthorized('the token is not valid (unknown or revoked): send one from `timestore token create` or POST /admin/tokens');
    if (state === 'expired') throw errors.unauthorized(`the token expired at ${token!.expiresAt!.toISOString()}: ask for a new one`);
    await this.touch(token as ApiToken, now);
    return { id: (token as ApiToken).id, name: (token as ApiToken).name, scopes: (token as ApiToken).scopes };
  }

  private lookup(hash: string, now: number): Promise<ApiToken | null> {
    const kept = this.answers.get(hash);
    if (kept && now - kept.readAt < this.o.cacheMs) return kept.token;
    this.answers.delete(hash);
    const entry = { readAt: now, token: findApiTokenByHash(this.o.sql, hash) };
    if (this.o.cacheMs > 0) {
      if (this.answers.size >= CACHE_ENTRIES) this.answers.delete(this.answers.keys().next().value as string);
      this.answers.set(hash, entry);
      // A failed read (the catalog is down) is not an answer: the next request asks again.
      entry.token.catch(() => this.answers.get(hash) === entry && this.answers.delete(hash));
    }
    return entry.token;
  }

  private async touch(token: ApiToken, now: number): Promise<void> {
    const last = Math.max(this.touchedAt.get(token.id) ?? 0, token.lastUsedAt?.getTime() ?? 0);
    if (now - last < TOUCH_EVERY_MS) return;
    this.touchedAt.set(token.id, now);
    try {
      await touchApiToken(this.o.sql, token.id);
    } catch (err) {
      // The request is authenticated either way; the time of last use is a hint for operators.
      this.o.log.warn({ err, tokenId: token.id }, 'api token: the time of last use could not be recorded');
    }
  }

  private expiryOf(request: NewTokenRequest): Date | null {
    const { expiresAt, expiresInSeconds } = request;
    if (expiresAt != null && expiresInSeconds != null) throw errors.invalid_token_request('give expiresAt or expiresInSeconds, not both');
    const now = this.now();
    if (expiresInSeconds != null) {
      if (!Number.isInteger(expiresInSeconds) || expiresInSeconds < 1 || expiresInSeconds > MAX_LIFETIME_SECONDS) {
        throw errors.invalid_token_request(`expiresInSeconds must be an integer from 1 to ${MAX_LIFETIME_SECONDS} (ten years)`);
      }
      return new Date(now + expiresInSeconds * 1000);
    }
    if (expiresAt == null) return null;
    const at = expiresAt instanceof Date ? expiresAt : new Date(expiresAt);
    if (Number.isNaN(at.getTime())) throw errors.invalid_token_request(`expiresAt "${String(expiresAt)}" is not an ISO-8601 date-time`);
    if (at.getTime() <= now) throw errors.invalid_token_request(`expiresAt ${at.toISOString()} is not in the future`);
    return at;
  }
}
