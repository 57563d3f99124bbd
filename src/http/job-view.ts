/** How a job is shown to clients, by the ingest routes (a batch's job) and the admin routes (every job). */
import { t } from 'elysia';
import type { Job } from '../catalog/job-table.ts';

export const JobView = t.Object({
  id: t.String(),
  kind: t.String(),
  state: t.Union([t.Literal('queued'), t.Literal('running'), t.Literal('succeeded'), t.Literal('failed')]),
  attempts: t.Integer({ description: 'Runs so far, the current one included.' }),
  maxAttempts: t.Integer({ description: 'The most runs that may end with the lease lost (the process running it died, or lost the catalog) before the job fails unrun.' }),
  leaseExpiries: t.Integer({ description: 'Runs that ended with the lease lost.' }),
  runAt: t.String({ format: 'date-time', description: 'When queued: when the next attempt is due.' }),
  retryUntil: t.Nullable(t.String({ format: 'date-time', description: 'Failed attempts are retried while the retry falls due by then (set at the first failure).' })),
  datasetId: t.Nullable(t.String()),
  lastError: t.Nullable(t.String()),
  result: t.Unknown({ description: 'When succeeded: the manifest version and partitions written.' }),
  createdAt: t.String({ format: 'date-time' }),
  finishedAt: t.Nullable(t.String({ format: 'date-time' })),
});

export function jobView(job: Job) {
  return {
    id: job.id,
    kind: job.kind,
    state: job.state,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    leaseExpiries: job.leaseExpiries,
    runAt: job.runAt.toISOString(),
    retryUntil: job.retryUntil?.toISOString() ?? null,
    datasetId: job.datasetId,
    lastError: job.lastError,
    result: job.result ?? null,
    createdAt: job.createdAt.toISOString(),
    finishedAt: job.finishedAt?.toISOString() ?? null,
  };
}
