/**
 * Scopes, declared per route and checked in one place, before the request's body is read.
 *
 * A route says which rule applies with the `scope` option (`open`, `read`, `write` or `admin`);
 * this plugin turns the rule into a check and into an `x-timestore-scope` note in the OpenAPI
 * document. Where the caller's scopes come from is the server's auth mode (TIMESTORE_AUTH):
 * - `headers`: `x-iam-scopes` (comma- or space-separated) from a trusted gateway; `x-iam-user` /
 *   `x-user-id` name the actor;
 * - `tokens`: the API token in `Authorization: Bearer …` (src/tokens/); the token's scopes are held,
 *   its name is the actor, and `x-iam-*` headers are ignored;
 * - `none`: every route is open and no actor is named.
 *
 * Which scopes satisfy a rule (the same for headers and tokens):
 * - `read`: the dataset's `metadata.iam.readScopes` when it names any, else TIMESTORE_REQUIRE_SCOPE;
 * - `write`: the dataset's `metadata.iam.writeScopes` when it names any, else TIMESTORE_REQUIRE_WRITE_SCOPE;
 * - `admin`: TIMESTORE_ADMIN_SCOPE (in header mode falling back to TIMESTORE_REQUIRE_SCOPE);
 * and, wherever `read` or `write` needs a scope, also `read:<slug>` or `write:<slug>` of the
 * dataset the request touches (its slug in the path, or the slug of the dataset it names by id or
 * through a job): the per-dataset form, for a token (or gateway) that may use one dataset only.
 * No scope configured means the route is open. Having any one of the scopes is enough. No
 * credentials is a 401, the wrong scopes a 403; for a dataset that does not exist the server-wide
 * rule applies, so neither answer reveals whether a dataset exists.
 *
 * The check runs as the route's first parse hook, so a caller without the scope never makes the
 * server read or parse a body (and learns nothing from a 400); requests without a body (GET,
 * DELETE) and routes whose handler reads the body itself are checked in transform, still
 * before validation and the handler. A request is checked once, whichever hook comes first.
 */
import { Elysia } from 'elysia';
import type { DatasetAccess, DatasetRef } from '../access.ts';
import type { AuthMode, Config } from '../config.ts';
import { AppError, errors } from '../model/errors.ts';
import { bearerToken } from '../model/api-tokens.ts';
import { toAppError } from './errors.ts';

export type ScopeRule = 'open' | 'read' | 'write' | 'admin';

/**
 * A route's `scope` option: its rule, or (for a route whose handler reads the request body itself,
 * which a parse hook would read first) `{ rule, body: 'read-by-handler' }`.
 */
export type ScopeOption = ScopeRule | { rule: ScopeRule; body: 'read-by-handler' };

export interface Principal {
  scopes: string[];
  /** Who is recorded on jobs and audit events. */
  actor: string | null;
}

export interface AuthOptions {
  scopes: Config['scopes'];
  /** The access rules of the dataset a request touches; null when there is no such dataset. */
  datasetIam(ref: DatasetRef): Promise<DatasetAccess | null>;
  /** Default `headers`. */
  mode?: AuthMode;
  /** Mode `tokens`: the principal of a token's secret; throws a 401 AppError for a secret that is not valid. */
  authenticateToken?(secret: string): Promise<Principal>;
}

export function parseScopes(header: string | null | undefined): string[] {
  return header ? header.split(/[\s,]+/).filter(Boolean) : [];
}

const principals = new WeakMap<Request, Principal>();

/** The actor of a request that passed its scope check: the token's name, or the gateway's `x-iam-user`. */
export function actorOf(request: Request): string | null {
  return principals.get(request)?.actor ?? null;
}

const administrators = new WeakMap<Request, boolean>();

/**
 * True when the caller of a request that passed its scope check would also pass the admin rule
 * (what a write needs to choose a storage target other than its dataset's). False for a request
 * that was not checked.
 */
export function mayAdminister(request: Request): boolean {
  return administrators.get(request) === true;
}

function actorFromHeaders(headers: Headers): string | null {
  return headers.get('x-iam-user') ?? headers.get('x-user-id');
}

interface HookContext {
  request: Request;
  params?: unknown;
  set: { headers: Record<string, unknown> };
}

export function auth(options: AuthOptions) {
  const mode = options.mode ?? 'headers';
  if (mode === 'tokens' && !options.authenticateToken) throw new Error('auth: mode tokens needs authenticateToken');

  const required = async (rule: ScopeRule, params: DatasetRef): Promise<string[]> => {
    switch (rule) {
      case 'open':
        return [];
      case 'admin':
        return options.scopes.admin ? [options.scopes.admin] : [];
      case 'read':
      case 'write': {
        const dataset = params.datasetSlug || params.datasetId || params.jobId ? await options.datasetIam(params) : null;
        const own = rule === 'read' ? dataset?.readScopes : dataset?.writeScopes;
        const global = rule === 'read' ? options.scopes.read : options.scopes.write;
        const needed = own && own.length > 0 ? own : global ? [global] : [];
        const slug = dataset?.slug ?? params.datasetSlug;
        return needed.length > 0 && slug ? [...needed, `${rule}:${slug}`] : needed;
      }
    }
  };

  const tokenPrincipal = async (c: HookContext): Promise<Principal> => {
    const bearer = bearerToken(c.request.headers.get('authorization'));
    try {
      if ('problem' in bearer) {
        throw errors.unauthorized(
          bearer.problem === 'missing'
            ? 'this route needs an API token: send Authorization: Bearer <token>'
            : 'Authorization must be "Bearer " followed by a timestore API token (ts_…)',
        );
      }
      return await (options.authenticateToken as NonNullable<AuthOptions['authenticateToken']>)(bearer.secret);
    } catch (err) {
      if (err instanceof AppError && err.status === 401) {
        c.set.headers['www-authenticate'] = 'problem' in bearer && bearer.problem === 'missing' ? 'Bearer realm="timestore"' : 'Bearer realm="timestore", error="invalid_token"';
      }
      throw err;
    }
  };

  const holdsAdmin = (scopes: string[]) => !options.scopes.admin || scopes.includes(options.scopes.admin);

  const authorize = async (rule: ScopeRule, c: HookContext): Promise<void> => {
    const params = (c.params ?? {}) as DatasetRef;
    if (mode === 'tokens') {
      // Anonymous requests are refused before the catalog is asked anything about datasets.
      const principal = await tokenPrincipal(c);
      principals.set(c.request, principal);
      administrators.set(c.request, holdsAdmin(principal.scopes));
      const needed = await required(rule, params);
      // The message names no scope: a dataset's own scopes would tell that it exists.
      if (needed.length > 0 && !needed.some((scope) => principal.scopes.includes(scope))) {
        throw errors.forbidden('the token holds none of the scopes this route needs');
      }
      return;
    }
    const headers = c.request.headers;
    const held = parseScopes(headers.get('x-iam-scopes'));
    principals.set(c.request, { scopes: held, actor: actorFromHeaders(headers) });
    administrators.set(c.request, holdsAdmin(held));
    const needed = await required(rule, params);
    if (needed.length === 0) return;
    if (held.length === 0) throw errors.unauthorized('this route needs a scope: send it in x-iam-scopes');
    if (!needed.some((scope) => held.includes(scope))) throw errors.forbidden('x-iam-scopes holds none of the scopes this route needs');
  };

  const checked = new WeakMap<Request, Promise<void>>();
  const checkOnce = (rule: ScopeRule, c: HookContext): Promise<void> => {
    let check = checked.get(c.request);
    if (!check) {
      check = authorize(rule, c);
      checked.set(c.request, check);
    }
    return check;
  };

  return new Elysia({ name: 'timestore/auth' }).macro({
    scope: (option: ScopeOption) => {
      const rule = typeof option === 'string' ? option : option.rule;
      const detail = {
        'x-timestore-scope': rule,
        security: rule === 'open' || mode === 'none' ? [] : [mode === 'tokens' ? { bearerToken: [] } : { iamScopes: [] }],
      } as Record<string, unknown>;
      if (rule === 'open') return { detail };
      // Nothing is checked: every caller may do what an administrator may.
      if (mode === 'none') return { detail, transform: ({ request }: { request: Request }) => void administrators.set(request, true) };
      // Hooks destructure what they read: Elysia infers from a hook's parameters what to prepare,
      // and a hook taking the whole context would make it parse every body (sucrose).
      const transform = ({ request, params, set }: HookContext) => checkOnce(rule, { request, params, set });
      if (typeof option !== 'string') return { detail, transform };
      return {
        detail,
        // Returns nothing, so Elysia's own parser reads the body afterwards (only if the check passed).
        // Elysia wraps what a parse hook throws as a parse error, so anything else becomes its AppError here.
        async parse({ request, params, set }: HookContext) {
          try {
            await checkOnce(rule, { request, params, set });
          } catch (err) {
            throw err instanceof AppError ? err : toAppError('UNKNOWN', err, request);
          }
        },
        transform,
      };
    },
  });
}

export type Scoped = ReturnType<typeof auth>;
