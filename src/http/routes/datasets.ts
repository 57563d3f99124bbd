/**
 * GET /datasets and GET /datasets/:datasetSlug: the datasets a caller may read, described for the
 * tools that ask them questions (schema, series key, time range, row count). A caller sees only
 * the datasets whose read rule its scopes satisfy (auth.ts `listing`, `read`).
 */
import { Elysia, t } from 'elysia';
import { FieldTypeSchema } from '../../model/field-types.ts';
import type { QueryService } from '../../query/service.ts';
import { datasetRuleOf, type Scoped } from '../auth.ts';
import { ErrorBody } from '../errors.ts';

const EXAMPLE = {
  slug: 'cpu',
  name: 'cpu',
  description: 'TSBS cpu-only',
  status: 'active',
  timestampColumn: 'timestamp',
  seriesKey: ['hostname'],
  schema: {
    version: 1,
    fields: [
      { name: 'timestamp', type: 'timestamp', nullable: false },
      { name: 'hostname', type: 'string', nullable: true },
      { name: 'usage_user', type: 'double', nullable: true },
    ],
  },
  timeRange: { earliest: '2026-01-01T00:00:00.000Z', latest: '2026-01-01T23:59:50.000Z' },
  rowCount: 8_640_000,
  partitionCount: 4,
  manifestVersion: 612,
};

const DatasetDescription = t.Object(
  {
    slug: t.String(),
    name: t.String(),
    description: t.Nullable(t.String()),
    status: t.String({ description: '`active` or `inactive` (refuses ingest, answers queries).' }),
    timestampColumn: t.String(),
    seriesKey: t.Array(t.String(), { description: "The columns that tell series apart: the dataset's sortColumns, else its string fields." }),
    schema: t.Nullable(
      t.Object({ version: t.Integer(), fields: t.Array(t.Object({ name: t.String(), type: FieldTypeSchema, nullable: t.Optional(t.Boolean()) })) }),
      { description: 'The current schema version; null before the first batch.' },
    ),
    timeRange: t.Nullable(t.Object({ earliest: t.String(), latest: t.String() }), { description: 'Timestamps of the earliest and latest row; null without rows.' }),
    rowCount: t.Integer(),
    partitionCount: t.Integer(),
    manifestVersion: t.Integer(),
  },
  { example: EXAMPLE },
);

export function datasetRoutes(service: QueryService, scoped: Scoped) {
  return new Elysia({ name: 'timestore/datasets' })
    .use(scoped)
    .get(
      '/datasets',
      async ({ query, request }) => {
        const rule = datasetRuleOf(request);
        return service.datasets((d) => rule.may({ ...d.metadata.iam, slug: d.slug }), { search: query.search, cursor: query.cursor, limit: query.limit ?? 100 });
      },
      {
        scope: { rule: 'read', datasets: 'known-to-handler' },
        query: t.Object({
          search: t.Optional(t.String({ maxLength: 200, description: 'Case-insensitive substring of the slug or name.' })),
          cursor: t.Optional(t.String({ description: '`nextCursor` of the previous page.' })),
          limit: t.Optional(t.Integer({ minimum: 1, maximum: 500, default: 100 })),
        }),
        response: {
          200: t.Object(
            { datasets: t.Array(DatasetDescription), nextCursor: t.Nullable(t.String()) },
            { example: { datasets: [EXAMPLE], nextCursor: null } },
          ),
          400: ErrorBody,
          401: ErrorBody,
        },
        detail: {
          tags: ['query'],
          summary: 'The datasets you may read',
          description:
            "Every dataset the caller's scopes let it query (the server-wide read scope, the dataset's own read scopes, or `read:<slug>`), archived ones left out, oldest first, `limit` at a time (`nextCursor` for the next page). Each with its schema, series key, time range and row count at its current manifest version.",
        },
      },
    )
    .get('/datasets/:datasetSlug', ({ params }) => service.describe(params.datasetSlug), {
      scope: 'read',
      params: t.Object({ datasetSlug: t.String() }),
      response: { 200: DatasetDescription, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      detail: {
        tags: ['query'],
        summary: 'One dataset you may read',
        description: 'Its schema, series key, time range (earliest and latest row) and row count at its current manifest version. 404 for a dataset that does not exist, 409 `dataset_archived` for an archived one.',
      },
    });
}
