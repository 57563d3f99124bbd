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
 * A route that learns only from the request which datasets it reaches (GET /datasets, the datasets
 * a SQL statement names, the metrics of a Prometheus write) says `datasets: 'known-to-handler'`:
 * the check then only identifies the caller (no credentials is a 401 where the rule needs a
 * server-wide scope), and the handler applies the rule to each dataset through {@link datasetRuleOf}.
 * No scope configured means the route is open. Having any one of the scopes is enough. No
 * credentials is a 401, the wrong scopes a 403; for a dataset that does not exist the server-wide
 * rule applies, so neither answer reveals whether a dataset exists.
 *
 * The check runs as the route's first parse hook, so a caller without the scope never makes the
 * server read or parse a body (and learns nothing from a 400); requests without a body (GET,
 * DELETE) and routes whose handler reads the body itself are checked in transform, still
 * before validation and the handler. A request is checked once, whichever hook comes first.
 *
 * A read-only route that says `dataset: 'recent'` (the queries) does not wait for the catalog when
 * this process has read the dataset's row before and that row lets the caller in: the request goes
 * on with that row while the catalog's current row is read alongside (pending-checks.ts). The
 * handler works on the recent row and compares the two before answering; a refusal by the current
 * row replaces whatever the request would have answered, so the answer is the same as the one a
 * check that waited would have given. A recent row that refuses the caller is never trusted: the
 * check then waits for the catalog.
 *
 * A write that says `dataset: 'remembered'` (ingest) passes its check on the row this process last
 * read for the dataset, whatever has changed since, when that row lets the caller in: nothing is
 * read. The handler's own write confirms it (an ingest's job INSERT holds only while the catalog's
 * row still accepts the batch as that row did: catalog/datasets.ts `acceptsAsBefore`); when it does
 * not, the handler asks {@link checkAgain} for the check on the row read now and starts over; so
 * does a refusal made on the remembered row (an old status or schema), which stands only if the
 * current row gives it too.
 */
import { Elysia } from 'elysia';
import type { DatasetAccess, DatasetRef } from '../access.ts';
import type { AuthMode, Config } from '../config.ts';
import { AppError, errors } from '../model/errors.ts';
import { bearerToken } from '../model/api-tokens.ts';
import type { Dataset } from '../model/records.ts';
import { influxToken } from './influx-credentials.ts';
import { toAppError } from './errors.ts';
import { awaitingConfirmation, confirmedDatasetOf } from './pending-checks.ts';

export type ScopeRule = 'open' | 'read' | 'write' | 'admin';

/** The row of a route's dataset its check may pass on: the catalog's current one, or see above. */
type DatasetRowUse = 'current' | 'recent' | 'remembered';

/**
 * A route's `scope` option: its rule, or its rule with `body: 'read-by-handler'` (the handler reads
 * the request body itself, which a parse hook would read first), `datasets: 'known-to-handler'`
 * (see above), `dataset: 'recent'` (see above; the handler passes {@link confirmedDatasetOf} on to
 * its service), `dataset: 'remembered'` (see above; the handler's write confirms the row), and
 * `credentials: 'influx'` (the InfluxDB write routes: a token is also taken as `Authorization:
 * Token …`, Basic with the token as password, or v1's `?p=`).
 */
export type ScopeOption =
  | ScopeRule
  | { rule: ScopeRule; body?: 'read-by-handler'; datasets?: 'known-to-handler'; dataset?: 'recent' | 'remembered'; credentials?: 'influx' };

export { confirmedDatasetOf };

export interface Principal {
  scopes: string[];
  /** Who is recorded on jobs and audit events. */
  actor: string | null;
}

export interface AuthOptions {
  scopes: Config['scopes'];
  /** The access rules of the dataset a request touches; null when there is no such dataset. */
  datasetIam(ref: DatasetRef): Promise<DatasetAccess | null>;
  /** What `datasetIam` last found for the same dataset in this process, for routes with `dataset: 'recent'`. */
  recentDatasetIam?(ref: DatasetRef): DatasetAccess | null;
  /** The same, however often the row has changed since, for routes with `dataset: 'remembered'`. */
  rememberedDatasetIam?(ref: DatasetRef): DatasetAccess | null;
  /** Default `headers`. */
  mode?: AuthMode;
  /** Mode `tokens`: the principal of a token's secret; throws a 401 AppError for a secret that is not valid. */
  authenticateToken?(secret: string): Promise<Principal>;
}

export function parseScopes(header: string | null | undefined): string[] {
  return header ? header.split(/[\s,]+/).filter(Boolean) : [];
}

/** A route's rule applied to one dataset at a time, with the scopes of the caller of one request. */
export interface DatasetRule {
  /** Whether the caller may (its scopes satisfy the rule for the dataset of these scopes and slug). */
  may(dataset: DatasetAccess): boolean;
  /** Refuses (401 or 403) unless the caller may; a dataset that does not exist by the server-wide rule. */
  check(slug: string): Promise<void>;
}

const principals = new WeakMap<Request, Principal>();
const datasetRules = new WeakMap<Request, DatasetRule>();
const NOTHING: DatasetRule = {
  may: () => false,
  check: async () => {
    throw errors.forbidden('this request was not checked for any scope');
  },
};
const EVERYTHING: DatasetRule = { may: () => true, check: async () => {} };

/** For a route whose datasets are known to its handler: its rule for the caller of a request that passed its check (one that did not may nothing). */
export function datasetRuleOf(request: Request): DatasetRule {
  return datasetRules.get(request) ?? NOTHING;
}

/** The actor of a request that passed its scope check: the token's name, or the gateway's `x-iam-user`. */
export function actorOf(request: Request): string | null {
  return principals.get(request)?.actor ?? null;
}

const administrators = new WeakMap<Request, boolean>();

const datasetsRead = new WeakMap<Request, Dataset>();

/**
 * The dataset row a request's scope check read (the route's `:datasetSlug`, `:datasetId` or job),
 * if it read one: the handler's service takes it rather than asking the catalog again, so a query
 * or a batch costs one dataset read, not two.
 */
export function datasetReadBy(request: Request): Dataset | undefined {
  return datasetsRead.get(request);
}

const checksAgain = new WeakMap<Request, () => Promise<void>>();
const passedOnRemembered = new WeakSet<Request>();

/** Whether the request's check passed on a row remembered from an earlier request (`dataset: 'remembered'`). */
export function checkedOnRememberedRow(request: Request): boolean {
  return passedOnRemembered.has(request);
}

/**
 * For a route with `dataset: 'remembered'` whose write found the dataset changed: checks the caller
 * again on the dataset's row read now (a 401 or 403 when it refuses), after which
 * {@link datasetReadBy} gives that row (undefined: the dataset is gone).
 */
export async function checkAgain(request: Request): Promise<void> {
  await checksAgain.get(request)?.();
}

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
  /** Tokens are also taken in the forms InfluxDB clients send them (influx-credentials.ts). */
  influxCredentials?: boolean;
}

export function auth(options: AuthOptions) {
  const mode = options.mode ?? 'headers';
  if (mode === 'tokens' && !options.authenticateToken) throw new Error('auth: mode tokens needs authenticateToken');

  /** The scopes that grant `rule` on a dataset (`null`: none named, the server-wide rule), any one enough; [] when open. */
  const grantedBy = (rule: 'read' | 'write', dataset: DatasetAccess | null, slug: string | undefined): string[] => {
    const own = rule === 'read' ? dataset?.readScopes : dataset?.writeScopes;
    const global = rule === 'read' ? options.scopes.read : options.scopes.write;
    const needed = own && own.length > 0 ? own : global ? [global] : [];
    return needed.length > 0 && slug ? [...needed, `${rule}:${slug}`] : needed;
  };

  const required = async (rule: ScopeRule, params: DatasetRef, request?: Request): Promise<string[]> => {
    switch (rule) {
      case 'open':
        return [];
      case 'admin':
        return options.scopes.admin ? [options.scopes.admin] : [];
      case 'read':
      case 'write': {
        const dataset = params.datasetSlug || params.datasetId || params.jobId ? await options.datasetIam(params) : null;
        if (request && dataset?.dataset) datasetsRead.set(request, dataset.dataset);
        return grantedBy(rule, dataset, dataset?.slug ?? params.datasetSlug);
      }
    }
  };

  const satisfied = (needed: readonly string[], held: readonly string[]): boolean => needed.length === 0 || needed.some((scope) => held.includes(scope));

  /** Refuses a caller holding none of `needed` (none needed: the route is open to it). */
  const demand = (needed: readonly string[], held: readonly string[]): void => {
    if (satisfied(needed, held)) return;
    // The message names no scope: a dataset's own scopes would tell that it exists.
    if (mode === 'tokens') throw errors.forbidden('the token holds none of the scopes this route needs');
    if (held.length === 0) throw errors.unauthorized('this route needs a scope: send it in x-iam-scopes');
    throw errors.forbidden('x-iam-scopes holds none of the scopes this route needs');
  };

  const datasetRule = (rule: ScopeRule, held: readonly string[]): DatasetRule => ({
    may: (dataset) => satisfied(rule === 'read' || rule === 'write' ? grantedBy(rule, dataset, dataset.slug) : [], held),
    check: async (slug) => demand(await required(rule, { datasetSlug: slug }), held),
  });

  const tokenPrincipal = async (c: HookContext): Promise<Principal> => {
    const bearer = c.influxCredentials ? influxToken(c.request) : bearerToken(c.request.headers.get('authorization'));
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

  /** Whether a row this process read before lets the caller in under `rule`; if so the request goes on with it. */
  const goesOnWith = (access: DatasetAccess | null | undefined, rule: 'read' | 'write', request: Request, held: readonly string[]): boolean => {
    if (!access?.dataset || !satisfied(grantedBy(rule, access, access.slug), held)) return false;
    datasetsRead.set(request, access.dataset);
    return true;
  };

  /**
   * A read passes its check on the dataset's recent row when that row lets the caller in, with the
   * catalog's current row read alongside and checked the same way (pending-checks.ts); false when
   * there is no such row, or it does not let the caller in.
   */
  const passedOnRecentRow = (params: DatasetRef, request: Request, held: readonly string[]): boolean => {
    if (!goesOnWith(options.recentDatasetIam?.(params), 'read', request, held)) return false;
    awaitingConfirmation(
      request,
      options.datasetIam(params).then((current) => {
        demand(grantedBy('read', current, current?.slug ?? params.datasetSlug), held);
        return current?.dataset ?? null;
      }),
    );
    return true;
  };

  /**
   * `perDataset`: the datasets are known to the handler only, so here the caller is identified (a
   * 401 before the body is read) and the rule is left for the handler to apply to each dataset.
   * `row`: which row of the dataset the check may pass on (see the top of this file).
   */
  const authorize = async (rule: ScopeRule, c: HookContext, perDataset: boolean, row: DatasetRowUse): Promise<void> => {
    let principal: Principal;
    if (mode === 'tokens') {
      // Anonymous requests are refused before the catalog is asked anything about datasets.
      principal = await tokenPrincipal(c);
    } else {
      const headers = c.request.headers;
      principal = { scopes: parseScopes(headers.get('x-iam-scopes')), actor: actorFromHeaders(headers) };
    }
    principals.set(c.request, principal);
    administrators.set(c.request, holdsAdmin(principal.scopes));
    if (perDataset) {
      datasetRules.set(c.request, datasetRule(rule, principal.scopes));
      if (mode === 'headers' && principal.scopes.length === 0 && (await required(rule, {})).length > 0) {
        throw errors.unauthorized('this route needs a scope: send it in x-iam-scopes');
      }
      return;
    }
    const params = (c.params ?? {}) as DatasetRef;
    const onCurrentRow = async () => demand(await required(rule, params, c.request), principal.scopes);
    if (row === 'recent' && rule === 'read' && passedOnRecentRow(params, c.request, principal.scopes)) return;
    if (row === 'remembered' && rule === 'write') {
      checksAgain.set(c.request, () => {
        datasetsRead.delete(c.request);
        passedOnRemembered.delete(c.request);
        return onCurrentRow();
      });
      if (goesOnWith(options.rememberedDatasetIam?.(params), 'write', c.request, principal.scopes)) {
        passedOnRemembered.add(c.request);
        return;
      }
    }
    await onCurrentRow();
  };

  const checked = new WeakMap<Request, Promise<void>>();
  const checkOnce = (rule: ScopeRule, c: HookContext, perDataset: boolean, row: DatasetRowUse): Promise<void> => {
    let check = checked.get(c.request);
    if (!check) {
      check = authorize(rule, c, perDataset, row);
      checked.set(c.request, check);
    }
    return check;
  };

  return new Elysia({ name: 'timestore/auth' }).macro({
    scope: (option: ScopeOption) => {
      const { rule, body, datasets, dataset, credentials } = typeof option === 'string' ? { rule: option } : option;
      const influxCredentials = credentials === 'influx';
      const perDataset = datasets === 'known-to-handler';
      const row: DatasetRowUse = dataset ?? 'current';
      const recentRow = row === 'recent';
      const detail = {
        'x-timestore-scope': rule,
        security: rule === 'open' || mode === 'none' ? [] : [mode === 'tokens' ? { bearerToken: [] } : { iamScopes: [] }],
      } as Record<string, unknown>;
      if (rule === 'open' && perDataset) {
        return { detail, transform: ({ request }: { request: Request }) => void datasetRules.set(request, EVERYTHING) };
      }
      if (rule === 'open') return { detail };
      if (mode === 'none') {
        // Nothing is checked: every caller may do what an administrator may, with every dataset.
        return {
          detail,
          transform: ({ request }: { request: Request }) => {
            administrators.set(request, true);
            datasetRules.set(request, EVERYTHING);
          },
        };
      }
      // Hooks destructure what they read: Elysia infers from a hook's parameters what to prepare,
      // and a hook taking the whole context would make it parse every body (sucrose).
      const transform = ({ request, params, set }: HookContext) => checkOnce(rule, { request, params, set, influxCredentials }, perDataset, row);
      // A handler that answered before its check was confirmed still waits for the confirmation here.
      const afterHandle = async ({ request }: { request: Request }) => void (await confirmedDatasetOf(request));
      if (body === 'read-by-handler') return { detail, transform, ...(recentRow ? { afterHandle } : {}) };
      return {
        detail,
        ...(recentRow ? { afterHandle } : {}),
        // Returns nothing, so Elysia's own parser reads the body afterwards (only if the check passed).
        // Elysia wraps what a parse hook throws as a parse error, so anything else becomes its AppError here.
        async parse({ request, params, set }: HookContext) {
          try {
            await checkOnce(rule, { request, params, set, influxCredentials }, perDataset, row);
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
