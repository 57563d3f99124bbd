/**
 * The HTTP application: error rendering, request ids and logs, the API
 * documentation, and the route groups. Routes stay thin and call services.
 */
import { Elysia } from 'elysia';
import type { DatasetAccessReader } from '../access.ts';
import type { AdminService } from '../admin/service.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Tracer } from '../observability/tracing.ts';
import type { IngestService } from '../ingest/service.ts';
import type { QueryService } from '../query/service.ts';
import type { Readiness } from '../readiness.ts';
import type { AuthMode, Config } from '../config.ts';
import type { TokenService } from '../tokens/service.ts';
import { auth } from './auth.ts';
import { apiDocs } from './docs.ts';
import { errorHandler } from './errors.ts';
import { requestLog } from './request-log.ts';
import { adminRoutes } from './routes/admin.ts';
import { datasetRoutes } from './routes/datasets.ts';
import { healthRoutes } from './routes/health.ts';
import { metricsRoutes } from './routes/metrics.ts';
import { prometheusRoutes } from './routes/prometheus.ts';
import { influxRoutes } from './routes/influx.ts';
import { ingestRoutes } from './routes/ingest.ts';
import { queryRoutes } from './routes/query.ts';
import { sqlRoutes } from './routes/sql.ts';
import { tokenRoutes } from './routes/tokens.ts';

export interface AppDependencies {
  log: Logger;
  readiness: Readiness;
  scopes: Config['scopes'];
  /** Where a request's scopes come from (TIMESTORE_AUTH). */
  authMode: AuthMode;
  /** The dataset rows scope checks read (access.ts). */
  datasetAccess: DatasetAccessReader;
  tokens: TokenService;
  ingest: IngestService;
  query: QueryService;
  admin: AdminService;
  /** The largest request body the server reads (Bun refuses larger ones before a handler runs). */
  maxBodyBytes: number;
  /** Seconds a silent connection stays open (see accepted.ts for requests that wait longer). */
  idleTimeoutSeconds: number;
  /** GET /metrics, and the HTTP requests counted into it. */
  metrics: Metrics;
  /** A span per request (default: none recorded). */
  tracer?: Tracer;
}

const DESCRIPTION = [
  'A time-series store: send rows over HTTP, query time ranges with downsampling.',
  'Every error is JSON of one shape: `{"error":{"code","message","details"?}}`.',
  'Every response carries an `x-request-id` header (the caller\'s, when sent).',
];

/** How this server's callers show their scopes, for the API description. */
const CREDENTIALS: Record<AuthMode, string> = {
  headers:
    'Scopes: each operation names its rule in `x-timestore-scope` (`open`, `read`, `write`, `admin`; `listing` lists what the caller may read). Scopes are sent in the `x-iam-scopes` header (comma- or space-separated) and the actor in `x-iam-user`; both must come from a trusted gateway. With no scope configured, a route is open.',
  tokens:
    'Scopes: each operation names its rule in `x-timestore-scope` (`open`, `read`, `write`, `admin`; `listing` lists what the caller may read). Every operation that is not `open` needs an API token, sent as `Authorization: Bearer <token>` (the Authorize button here takes one); the token\'s scopes must satisfy the rule. Tokens come from `timestore token create` or `POST /admin/tokens`.',
  none: 'Every operation is open: this server checks no credentials (TIMESTORE_AUTH=none).',
};

export function createApp(deps: AppDependencies) {
  const scoped = auth({
    scopes: deps.scopes,
    mode: deps.authMode,
    datasetIam: deps.datasetAccess.read,
    recentDatasetIam: deps.datasetAccess.recent,
    rememberedDatasetIam: deps.datasetAccess.remembered,
    authenticateToken: async (secret) => {
      const token = await deps.tokens.authenticate(secret);
      return { scopes: token.scopes, actor: token.name };
    },
  });
  // normalize: false makes a property the schema does not name a 400 instead of silently dropping
  // it, so a misspelt option (`maxAge` for `maxAgeHours`) is reported rather than ignored.
  return new Elysia({ normalize: false, serve: { maxRequestBodySize: deps.maxBodyBytes + 1024 * 1024, idleTimeout: deps.idleTimeoutSeconds } })
    .use(errorHandler(deps.log))
    .use(requestLog(deps.log, { tracer: deps.tracer, metrics: deps.metrics }))
    .use(
      apiDocs({
        description: [...DESCRIPTION, CREDENTIALS[deps.authMode]].join('\n\n'),
        authMode: deps.authMode,
        tags: [
          { name: 'health', description: 'Liveness and readiness for load balancers.' },
          { name: 'ingest', description: 'Send rows; follow the jobs that write them.' },
          { name: 'query', description: 'The datasets you may read; read time ranges, raw or downsampled.' },
          { name: 'admin', description: 'Datasets, manifests, retention policies, storage targets, audit events, jobs and API tokens.' },
        ],
      }),
    )
    .use(healthRoutes(deps.readiness, scoped))
    .use(metricsRoutes(deps.metrics, scoped))
    .use(ingestRoutes(deps.ingest, scoped))
    .use(datasetRoutes(deps.query, scoped))
    .use(prometheusRoutes(deps.ingest, scoped))
    .use(influxRoutes(deps.ingest, scoped))
    .use(queryRoutes(deps.query, scoped))
    .use(sqlRoutes(deps.query, scoped))
    .use(adminRoutes(deps.admin, scoped))
    .use(tokenRoutes(deps.tokens, scoped));
}

export type App = ReturnType<typeof createApp>;
