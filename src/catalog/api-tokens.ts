/** API tokens (TIMESTORE_AUTH=tokens): created, found by the hash of their secret, listed, revoked. */
import type { Db } from './db.ts';
import { UUID } from './keyset.ts';
import { errors } from '../model/errors.ts';
import type { ApiToken } from '../model/records.ts';

export interface NewApiToken {
  name: string;
  secretHash: string;
  secretPrefix: string;
  scopes: string[];
  expiresAt: Date | null;
  createdBy: string | null;
}

/** 409 `token_name_taken` when a token that is not revoked has the name. */
export async function insertApiToken(sql: Db, token: NewApiToken): Promise<ApiToken> {
  const [row] = await sql<ApiToken[]>`
    INSERT INTO api_tokens (name, secret_hash, secret_prefix, scopes, expires_at, created_by)
    VALUES (${token.name}, ${token.secretHash}, ${token.secretPrefix}, ${sql.array(token.scopes)}::text[], ${token.expiresAt}, ${token.createdBy})
    ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
    RETURNING *`;
  if (!row) throw errors.token_name_taken(`a token named "${token.name}" is in use; revoke it first or choose another name`);
  return row;
}

/** The token whose secret hashes to `secretHash`, revoked and expired ones included; null when none. */
export async function findApiTokenByHash(sql: Db, secretHash: string): Promise<ApiToken | null> {
  const [row] = await sql<ApiToken[]>`SELECT * FROM api_tokens WHERE secret_hash = ${secretHash}`;
  return row ?? null;
}

export async function findApiToken(sql: Db, id: string): Promise<ApiToken | null> {
  if (!UUID.test(id)) return null;
  const [row] = await sql<ApiToken[]>`SELECT * FROM api_tokens WHERE id = ${id}`;
  return row ?? null;
}

/** Every token, oldest first; revoked ones only when asked for. */
export async function listApiTokens(sql: Db, options: { revoked: boolean }): Promise<ApiToken[]> {
  return sql<ApiToken[]>`
    SELECT * FROM api_tokens WHERE ${options.revoked} OR revoked_at IS NULL ORDER BY created_at, id`;
}

/** Marks the token revoked (once: a second revocation keeps the first's time and actor); null when there is none. */
export async function revokeApiToken(sql: Db, id: string, actor: string | null): Promise<ApiToken | null> {
  if (!UUID.test(id)) return null;
  const [row] = await sql<ApiToken[]>`
    UPDATE api_tokens
    SET revoked_at = coalesce(revoked_at, now()), revoked_by = CASE WHEN revoked_at IS NULL THEN ${actor} ELSE revoked_by END
    WHERE id = ${id}
    RETURNING *`;
  return row ?? null;
}

/** Records that the token was used (callers write this at most once a minute per token). */
export async function touchApiToken(sql: Db, id: string): Promise<void> {
  await sql`UPDATE api_tokens SET last_used_at = now() WHERE id = ${id} AND (last_used_at IS NULL OR last_used_at < now())`;
}
