/**
 * GET /metrics: the Prometheus text exposition of this process (observability/metrics.ts).
 *
 * Open, like /health and /ready: Prometheus scrapes each process directly rather than through
 * the gateway that sets `x-iam-scopes`, and the page holds counts, durations and dataset slugs,
 * never rows. Keep it off the public side of the gateway, as /ready.
 */
import { Elysia, t } from 'elysia';
import type { Metrics } from '../../observability/metrics.ts';
import type { Scoped } from '../auth.ts';

export function metricsRoutes(metrics: Metrics, scoped: Scoped) {
  return new Elysia({ name: 'timestore/metrics' }).use(scoped).get(
    '/metrics',
    async () => new Response(await metrics.render(), { headers: { 'content-type': metrics.contentType } }),
    {
      scope: 'open',
      response: { 200: t.String({ description: 'Prometheus text format 0.0.4.' }) },
      detail: {
        tags: ['health'],
        summary: 'Metrics for Prometheus',
        description:
          'The Prometheus text exposition format (0.0.4) of this process: ingest, jobs, queries, HTTP, the partition cache, the worker pool and the lifecycle tasks, ' +
          'plus job counts and dataset totals read from the catalog at scrape time. docs/api.md lists every metric and its labels.',
        responses: {
          200: {
            description: 'The metrics.',
            content: { 'text/plain; version=0.0.4': { schema: { type: 'string' } } },
          },
        },
      } as Record<string, unknown>,
    },
  );
}
