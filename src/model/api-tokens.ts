/**
 * API tokens in words: what a secret looks like, how a request carries one, what a token's name
 * and scopes may be.
 *
 * A secret is `ts_` followed by 43 base64url characters (32 random bytes). The fixed prefix lets
 * secret scanners (and people) recognise a leaked timestore token; the length lets a request
 * with anything else be refused before the catalog is asked.
 */

export const TOKEN_PREFIX = 'ts_';
export const TOKEN_SECRET_BYTES = 32;
const SECRET = /^ts_[A-Za-z0-9_-]{43}$/;

/** Letters, digits and `_ . @ : -`: the name is the actor of the audit events, so it must read well in one. */
export const TOKEN_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$';
/** Anything but whitespace and commas, which separate the scopes of an `x-iam-scopes` header. */
export const TOKEN_SCOPE_PATTERN = '^[^\\s,]{1,200}$';
export const TOKEN_MAX_SCOPES = 50;

export function isTokenSecret(value: string): boolean {
  return SECRET.test(value);
}

export type BearerToken = { secret: string } | { problem: 'missing' | 'malformed' };

/** The secret of an `Authorization: Bearer <token>` header (the scheme's case does not matter, RFC 7235). */
export function bearerToken(authorization: string | null | undefined): BearerToken {
  if (!authorization) return { problem: 'missing' };
  const match = /^bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match || !isTokenSecret(match[1] as string)) return { problem: 'malformed' };
  return { secret: match[1] as string };
}

/**
 * A token's scopes from the command line or a request: separated by commas or whitespace, as in
 * `x-iam-scopes`, each kept once, in order.
 */
export function splitScopes(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter(Boolean))];
}

/** What is wrong with a token's name and scopes, or null when they are fine. */
export function tokenProblem(name: string, scopes: readonly string[]): string | null {
  if (!new RegExp(TOKEN_NAME_PATTERN).test(name)) {
    return `token name "${name}" must be 1–128 letters, digits and _ . @ : -, starting with a letter or digit`;
  }
  if (scopes.length === 0) return 'a token needs at least one scope (e.g. read, write, admin, read:<dataset slug>)';
  if (scopes.length > TOKEN_MAX_SCOPES) return `a token may carry at most ${TOKEN_MAX_SCOPES} scopes`;
  const scope = new RegExp(TOKEN_SCOPE_PATTERN);
  const bad = scopes.find((s) => !scope.test(s));
  return bad === undefined ? null : `scope "${bad}" must be 1–200 characters without whitespace or commas`;
}

export type TokenState = 'active' | 'expired' | 'revoked';

export function tokenState(token: { revokedAt: Date | null; expiresAt: Date | null }, now: number): TokenState {
  if (token.revokedAt) return 'revoked';
  if (token.expiresAt && token.expiresAt.getTime() <= now) return 'expired';
  return 'active';
}
