/**
 * The HTTP application: error rendering, request ids and logs, the API
 * documentation, and the route groups. Routes stay thin and call services.
 */
import { Elysia } from 'elysia';
import type { Logger } from '../log.ts';
import type { Readiness } from '../readiness.ts';
import { apiDocs } from './docs.ts';
import { errorHandler } from './errors.ts';
import { requestLog } from './request-log.ts';
import { healthRoutes } from './routes/health.ts';

export interface AppDependencies {
  log: Logger;
  readiness: Readiness;
}

const DESCRIPTION = [
  'A time-series store: send rows over HTTP, query time ranges with downsampling.',
  'Every error is JSON of one shape: `{"error":{"code","message","details"?}}`.',
  'Every response carries an `x-request-id` header (the caller\'s, when sent).',
].join('\n\n');

export function createApp(deps: AppDependencies) {
  return new Elysia()
    .use(errorHandler(deps.log))
    .use(requestLog(deps.log))
    .use(
      apiDocs({
        description: DESCRIPTION,
        tags: [{ name: 'health', description: 'Liveness and readiness for load balancers.' }],
      }),
    )
    .use(healthRoutes(deps.readiness));
}

export type App = ReturnType<typeof createApp>;
