/** Liveness and readiness for load balancers. Always open: no scope applies. */
import { Elysia, t } from 'elysia';
import type { Readiness } from '../../readiness.ts';
import type { Scoped } from '../auth.ts';
import { errors } from '../../model/errors.ts';
import { ErrorBody, errorBody } from '../errors.ts';

const ReadyBody = t.Object({
  status: t.Literal('ready'),
  checks: t.Record(t.String(), t.Literal('ok'), { description: 'Each readiness check and its outcome.' }),
  warnings: t.Optional(
    t.Array(t.String(), { description: 'What an operator should fix that does not stop the server serving, e.g. that it listens beyond loopback with no authentication.' }),
  ),
});

export function healthRoutes(readiness: Readiness, scoped: Scoped) {
  return new Elysia({ name: 'timestore/health' })
    .use(scoped)
    .get('/health', () => ({ status: 'ok' as const }), {
      scope: 'open',
      response: { 200: t.Object({ status: t.Literal('ok') }) },
      detail: { tags: ['health'], summary: 'Liveness', description: 'Answers 200 while the process serves HTTP.' },
    })
    .get(
      '/ready',
      async ({ set }) => {
        const report = await readiness.check();
        const warnings = report.warnings.length > 0 ? { warnings: report.warnings } : {};
        if (report.code === 'ready') return { status: 'ready' as const, checks: report.checks as Record<string, 'ok'>, ...warnings };
        const error = errors[report.code](report.message, report.checks);
        set.status = error.status;
        const body = errorBody(error);
        body.error.details = { ...(body.error.details as Record<string, unknown>), ...warnings };
        return body;
      },
      {
        scope: 'open',
        response: { 200: ReadyBody, 503: ErrorBody },
        detail: {
          tags: ['health'],
          summary: 'Readiness',
          description:
            'Answers 200 when the catalog answers and is migrated, the storage root is writable and a worker thread runs DuckDB (a thread kept for this check, never behind queries or writes); ' +
            'otherwise 503 naming the failing check. Turns 503 as soon as shutdown begins. `warnings` (in `error.details` on a 503) names what an operator should fix, ' +
            'such as listening beyond loopback with no authentication.',
        },
      },
    );
}
