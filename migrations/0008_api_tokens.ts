// API tokens: the credentials of TIMESTORE_AUTH=tokens. Only a hash of each secret is stored; the
// secret itself is shown once, when the token is created. A revoked token keeps its row (who had
// which scopes, and until when, stays readable). Self-contained (see 0001_catalog.ts).
import type { Sql } from 'postgres';

export async function up(sql: Sql): Promise<void> {
  await sql.unsafe(`
    CREATE TABLE api_tokens (
      id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      -- the actor of the audit events its requests cause
      name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$'),
      -- hex sha256 of the whole secret; a request's token is looked up by it
      secret_hash   text NOT NULL UNIQUE CHECK (secret_hash ~ '^[0-9a-f]{64}$'),
      -- the secret's first characters, so an operator can tell which token a leaked secret is
      secret_prefix text NOT NULL,
      scopes        text[] NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 50),
      created_by    text,
      created_at    timestamptz NOT NULL DEFAULT now(),
      expires_at    timestamptz,
      -- written at most once a minute per token and process, not on every request
      last_used_at  timestamptz,
      revoked_at    timestamptz,
      revoked_by    text
    );
    -- A name says which token acted, so two tokens in use never share one.
    CREATE UNIQUE INDEX api_tokens_name ON api_tokens (name) WHERE revoked_at IS NULL;
    CREATE INDEX api_tokens_created ON api_tokens (created_at DESC, id DESC);
  `);
}

export async function down(sql: Sql): Promise<void> {
  await sql.unsafe(`DROP TABLE IF EXISTS api_tokens`);
}
