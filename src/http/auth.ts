/**
 * Scopes, declared per route and checked in one place.
 *
 * A route says which rule applies with the `scope` option (`open`, `read`,
 * `write` or `admin`); this plugin turns the rule into a check that runs
 * before the handler and into an `x-timestore-scope` note in the OpenAPI
 * document. Scopes arrive in `x-iam-scopes` (comma- or space-separated) from
 * a trusted gateway; `x-iam-user` / `x-user-id` name the actor.
 *
 * Which scopes satisfy a rule:
 * - `read`: the dataset's `metadata.iam.readScopes` when it names any, else TIMESTORE_REQUIRE_SCOPE;
 * - `write`: the dataset's `metadata.iam.writeScopes` when it names any, else TIMESTORE_REQUIRE_WRITE_SCOPE;
 * - `admin`: TIMESTORE_ADMIN_SCOPE (falling back to TIMESTORE_REQUIRE_SCOPE).
 * No scope configured means the route is open. Having any one of the scopes
 * is enough. No header is a 401, the wrong scopes a 403; for a dataset that
 * does not exist the server-wide rule applies, so neither answer reveals
 * whether a dataset exists.
 */
import { Elysia } from 'elysia';
import type { DatasetRef } from '../access.ts';
import type { DatasetIam } from '../model/records.ts';
import type { Config } from '../config.ts';
import { errors } from '../model/errors.ts';

export type ScopeRule = 'open' | 'read' | 'write' | 'admin';


export interface AuthOptions {
  scopes: Config['scopes'];
  /** The IAM rules of the dataset a request touches; null when there is no such dataset. */
  datasetIam(ref: DatasetRef): Promise<DatasetIam | null>;
}

export function parseScopes(header: string | null | undefined): string[] {
  return header ? header.split(/[\s,]+/).filter(Boolean) : [];
}

export function actorOf(headers: Record<string, string | undefined>): string | null {
  return headers['x-iam-user'] ?? headers['x-user-id'] ?? null;
}

export function auth(options: AuthOptions) {
  const required = async (rule: ScopeRule, params: DatasetRef): Promise<string[]> => {
    switch (rule) {
      case 'open':
        return [];
      case 'admin':
        return options.scopes.admin ? [options.scopes.admin] : [];
      case 'read':
      case 'write': {
        const iam = params.datasetSlug || params.datasetId || params.jobId ? await options.datasetIam(params) : null;
        const own = rule === 'read' ? iam?.readScopes : iam?.writeScopes;
        if (own && own.length > 0) return own;
        const global = rule === 'read' ? options.scopes.read : options.scopes.write;
        return global ? [global] : [];
      }
    }
  };

  return new Elysia({ name: 'timestore/auth' }).macro({
    scope: (rule: ScopeRule) => ({
      detail: { 'x-timestore-scope': rule, security: rule === 'open' ? [] : [{ iamScopes: [] }] } as Record<string, unknown>,
      // transform runs before body validation, so an unauthorized caller learns nothing from a 400.
      async transform({ headers, params }) {
        const needed = await required(rule, (params ?? {}) as DatasetRef);
        if (needed.length === 0) return;
        const held = parseScopes(headers['x-iam-scopes']);
        // The messages name no scope: a dataset's own scopes would tell that it exists.
        if (held.length === 0) throw errors.unauthorized();
        if (!needed.some((scope) => held.includes(scope))) throw errors.forbidden();
      },
    }),
  });
}

export type Scoped = ReturnType<typeof auth>;
