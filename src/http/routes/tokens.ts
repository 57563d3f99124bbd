/**
 * API tokens under /admin/tokens: created (the secret is answered once), listed and read without
 * their secret, revoked. Admin scope, as every /admin route.
 */
import { Elysia, t } from 'elysia';
import { TOKEN_MAX_SCOPES, TOKEN_NAME_PATTERN, TOKEN_SCOPE_PATTERN, tokenState } from '../../model/api-tokens.ts';
import type { ApiToken } from '../../model/records.ts';
import type { TokenService } from '../../tokens/service.ts';
import { actorOf, type Scoped } from '../auth.ts';
import { ErrorBody } from '../errors.ts';

const Timestamp = t.String({ format: 'date-time' });

const TokenView = t.Object({
  id: t.String(),
  name: t.String({ description: 'Recorded as the actor of what the token does.' }),
  prefix: t.String({ description: 'The first characters of the secret, to tell which token a secret is.' }),
  scopes: t.Array(t.String()),
  state: t.Union([t.Literal('active'), t.Literal('expired'), t.Literal('revoked')]),
  createdBy: t.Nullable(t.String()),
  createdAt: Timestamp,
  expiresAt: t.Nullable(Timestamp),
  lastUsedAt: t.Nullable(t.String({ format: 'date-time', description: 'Updated at most once a minute per server process.' })),
  revokedAt: t.Nullable(Timestamp),
  revokedBy: t.Nullable(t.String()),
});

const NewToken = t.Object(
  {
    name: t.String({ pattern: TOKEN_NAME_PATTERN, description: 'Letters, digits and _ . @ : - (at most 128); unique among tokens not revoked.' }),
    scopes: t.Array(t.String({ pattern: TOKEN_SCOPE_PATTERN }), {
      minItems: 1,
      maxItems: TOKEN_MAX_SCOPES,
      description: '`read`, `write`, `admin` (or the scopes configured in their place), `read:<dataset slug>`, `write:<dataset slug>`, or a scope a dataset names in `iam`.',
    }),
    expiresAt: t.Optional(t.String({ format: 'date-time', description: 'When the token stops working (default: never).' })),
    expiresInSeconds: t.Optional(t.Integer({ minimum: 1, description: 'Or: how long from now the token works.' })),
  },
  { additionalProperties: false, example: { name: 'ingest-weather', scopes: ['write:weather'], expiresInSeconds: 7_776_000 } },
);

const TokenParams = t.Object({ tokenId: t.String() });

function tokenView(token: ApiToken) {
  return {
    id: token.id,
    name: token.name,
    prefix: token.secretPrefix,
    scopes: token.scopes,
    state: tokenState(token, Date.now()),
    createdBy: token.createdBy,
    createdAt: token.createdAt.toISOString(),
    expiresAt: token.expiresAt?.toISOString() ?? null,
    lastUsedAt: token.lastUsedAt?.toISOString() ?? null,
    revokedAt: token.revokedAt?.toISOString() ?? null,
    revokedBy: token.revokedBy,
  };
}

const errorsOf = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorBody]));
const detail = (summary: string, description: string) => ({ tags: ['admin'], summary, description });

export function tokenRoutes(tokens: TokenService, scoped: Scoped) {
  return new Elysia({ name: 'timestore/tokens', prefix: '/admin/tokens' })
    .use(scoped)
    .post(
      '',
      async ({ body, request, set }) => {
        const created = await tokens.create(body, actorOf(request));
        set.status = 201;
        set.headers.location = `/admin/tokens/${created.token.id}`;
        return { ...tokenView(created.token), token: created.secret };
      },
      {
        scope: 'admin',
        body: NewToken,
        response: {
          201: t.Object({ ...TokenView.properties, token: t.String({ description: 'The secret, shown this once: send it as `Authorization: Bearer <token>`.' }) }),
          ...errorsOf(400, 401, 403, 409),
        },
        detail: detail(
          'Create an API token',
          'Answers the token with its secret (`token`), which is stored only as a hash and never shown again. Used with `TIMESTORE_AUTH=tokens`. 409 `token_name_taken` when a token that is not revoked has the name. Writes a `token.created` audit event.',
        ),
      },
    )
    .get('', async ({ query }) => ({ tokens: (await tokens.list({ revoked: query.revoked === 'true' })).map(tokenView) }), {
      scope: 'admin',
      query: t.Object({ revoked: t.Optional(t.Union([t.Literal('true'), t.Literal('false')], { description: '`true`: revoked tokens too.' })) }),
      response: { 200: t.Object({ tokens: t.Array(TokenView) }), ...errorsOf(400, 401, 403) },
      detail: detail('List API tokens', 'Oldest first, without their secrets; revoked ones only with `?revoked=true`.'),
    })
    .get('/:tokenId', async ({ params }) => tokenView(await tokens.get(params.tokenId)), {
      scope: 'admin',
      params: TokenParams,
      response: { 200: TokenView, ...errorsOf(401, 403, 404) },
      detail: detail('An API token', 'Its name, scopes, expiry, last use and revocation; never its secret.'),
    })
    .delete('/:tokenId', async ({ params, request }) => tokenView(await tokens.revoke(params.tokenId, actorOf(request))), {
      scope: 'admin',
      params: TokenParams,
      response: { 200: TokenView, ...errorsOf(401, 403, 404) },
      detail: detail(
        'Revoke an API token',
        'The token stops working at once on this server process, and within TIMESTORE_AUTH_TOKEN_CACHE_SECONDS on the others. Its row stays (listed with `?revoked=true`). Writes a `token.revoked` audit event; revoking a revoked token changes nothing.',
      ),
    });
}
