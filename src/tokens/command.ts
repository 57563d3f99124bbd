/**
 * `timestore token create | list | revoke`: API tokens managed straight in the catalog
 * (TIMESTORE_DATABASE_URL, or the embedded catalog under the storage root while no server runs on
 * it), so the first admin token of a fresh deployment needs no token itself.
 */
import { userInfo } from 'node:os';
import { openCatalog } from '../catalog/connection.ts';
import type { Config } from '../config.ts';
import { AppError, isRequestFault } from '../model/errors.ts';
import type { Logger } from '../log.ts';
import { splitScopes, tokenState } from '../model/api-tokens.ts';
import type { ApiToken } from '../model/records.ts';
import { TokenService } from './service.ts';

export const TOKEN_USAGE = `Usage:
  timestore token create --name <name> --scopes <scope,…> [--expires-in <n>[s|m|h|d] | --expires-at <ISO-8601>]
      prints the token's secret on stdout, this once (details go to stderr)
  timestore token list [--revoked]
  timestore token revoke <token id>

Scopes: read, write, admin (or the scopes TIMESTORE_REQUIRE_SCOPE, TIMESTORE_REQUIRE_WRITE_SCOPE and
TIMESTORE_ADMIN_SCOPE name), read:<dataset slug>, write:<dataset slug>, or a scope a dataset names.`;

/** A mistake on the command line: the CLI prints it with the usage and exits 2. */
export class TokenUsageError extends Error {}

interface Output {
  out(line: string): void;
  err(line: string): void;
}

type Parsed =
  | { action: 'create'; name: string; scopes: string[]; expiresAt?: string; expiresInSeconds?: number }
  | { action: 'list'; revoked: boolean }
  | { action: 'revoke'; id: string };

export function parseTokenArgs(args: string[]): Parsed {
  const [action, ...rest] = args;
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    if (flags.has(name)) throw new TokenUsageError(`--${name} given twice`);
    if (eq > 0) flags.set(name, arg.slice(eq + 1));
    else if (name === 'revoked') flags.set(name, true);
    else {
      const value = rest[++i];
      if (value === undefined) throw new TokenUsageError(`--${name} needs a value`);
      flags.set(name, value);
    }
  }
  const allow = (...known: string[]) => {
    const unknown = [...flags.keys()].find((f) => !known.includes(f));
    if (unknown) throw new TokenUsageError(`token ${action} takes no --${unknown}`);
  };
  const text = (name: string) => {
    const value = flags.get(name);
    return typeof value === 'string' ? value : undefined;
  };
  switch (action) {
    case 'create': {
      allow('name', 'scopes', 'expires-in', 'expires-at');
      if (positional.length > 0) throw new TokenUsageError(`unexpected argument "${positional[0]}"`);
      const name = text('name');
      const scopes = text('scopes');
      if (!name) throw new TokenUsageError('token create needs --name');
      if (!scopes) throw new TokenUsageError('token create needs --scopes (e.g. --scopes read,write)');
      const expiresIn = text('expires-in');
      return {
        action,
        name,
        scopes: splitScopes(scopes),
        ...(expiresIn !== undefined ? { expiresInSeconds: parseDuration(expiresIn) } : {}),
        ...(text('expires-at') !== undefined ? { expiresAt: text('expires-at') } : {}),
      };
    }
    case 'list':
      allow('revoked');
      if (positional.length > 0) throw new TokenUsageError(`unexpected argument "${positional[0]}"`);
      return { action, revoked: flags.get('revoked') === true };
    case 'revoke':
      allow();
      if (positional.length !== 1) throw new TokenUsageError('token revoke needs one token id (see `timestore token list`)');
      return { action, id: positional[0] as string };
    default:
      throw new TokenUsageError(action ? `unknown token command "${action}"` : 'token needs a command: create, list or revoke');
  }
}

/** `90d`, `12h`, `30m`, `45s` or a number of seconds. */
function parseDuration(text: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(text);
  if (!match) throw new TokenUsageError(`--expires-in must be a number of seconds or <n>s, <n>m, <n>h, <n>d (got "${text}")`);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

function describe(token: ApiToken): string {
  const expires = token.expiresAt ? `expires ${token.expiresAt.toISOString()}` : 'never expires';
  const used = token.lastUsedAt ? `last used ${token.lastUsedAt.toISOString()}` : 'never used';
  return `${token.id}  ${token.name}  ${tokenState(token, Date.now())}  scopes=${token.scopes.join(',')}  ${expires}  ${used}  ${token.secretPrefix}…`;
}

/** Runs a token command against the configured catalog (migrating it first, as `serve` would). */
export async function runTokenCommand(args: string[], config: Config, log: Logger, output: Output): Promise<number> {
  const command = parseTokenArgs(args);
  const catalog = await openCatalog({ databaseUrl: config.databaseUrl, schema: config.pgSchema, storageRoot: config.storageRoot, log });
  try {
    await catalog.migrate();
    const tokens = new TokenService({ sql: catalog.sql, log, cacheMs: 0 });
    const actor = `cli:${safeUserName()}`;
    switch (command.action) {
      case 'create': {
        const { token, secret } = await tokens.create(command, actor);
        output.err(`created token ${token.name} (id ${token.id}) with scopes ${token.scopes.join(', ')}; ${token.expiresAt ? `it expires ${token.expiresAt.toISOString()}` : 'it never expires'}.`);
        output.err('The secret below is shown this once: send it as "Authorization: Bearer <secret>".');
        output.out(secret);
        break;
      }
      case 'list':
        for (const token of await tokens.list({ revoked: command.revoked })) output.out(describe(token));
        break;
      case 'revoke':
        output.out(describe(await tokens.revoke(command.id, actor)));
        output.err('Servers on this catalog refuse it within TIMESTORE_AUTH_TOKEN_CACHE_SECONDS.');
        break;
    }
    return 0;
  } catch (err) {
    if (err instanceof AppError && isRequestFault(err.code)) {
      output.err(`timestore: ${err.message}`);
      return 1;
    }
    throw err;
  } finally {
    await catalog.close();
  }
}

function safeUserName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}
