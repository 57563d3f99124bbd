/**
 * InfluxDB line protocol on the paths InfluxDB clients and agents write to: `POST /write` (v1),
 * `POST /api/v2/write` (v2) and `POST /api/v3/write_lp` (InfluxDB 3). Each measurement of the body
 * is the dataset of that name; the service (ingest/line-protocol.ts) checks, stages and queues the
 * whole body before the 204. The token may come the ways InfluxDB clients send it (auth.ts, `influx`).
 */
import { Elysia, t } from 'elysia';
import { errors } from '../../model/errors.ts';
import type { InfluxApi } from '../../ingest/line-protocol.ts';
import type { IngestService } from '../../ingest/service.ts';
import { keepOpenFor, requestedWaitMs } from '../accepted.ts';
import { actorOf, datasetRuleOf, type Scoped } from '../auth.ts';
import { ErrorBody } from '../errors.ts';
import { requestTraceparent } from '../request-log.ts';

const EXAMPLE = [
  '# measurement,tag=value… field=value… timestamp',
  'cpu,host=server01,region=eu-west usage_user=12.5,usage_idle=80.25,procs=231i,healthy=true 1767225600000000000',
  'cpu,host=server02,region=eu-west usage_user=3.75,usage_idle=95.5,procs=118i,healthy=true 1767225600000000000',
  'mem,host=server01 used_percent=41.2,note="swap \\"off\\"" 1767225600000000000',
  '',
].join('\n');

const BODY_DESCRIPTION = [
  'InfluxDB line protocol, UTF-8, one point per line: `measurement[,tag=value…] field=value[,field=value…] [timestamp]`; blank lines and `#` comments are skipped; `Content-Encoding: gzip` is accepted.',
  'Each **measurement is a dataset** (its slug; `db`, `bucket` and `org` name none), created by its first line with the timestamp column `time`; tags become string fields and the series key (`sortColumns`), fields typed fields (float → double, `1i` and `1u` → integer, `"…"` → string, `t`/`true`/`F`/… → boolean); new keys add nullable fields; a key whose type differs from the dataset\'s is 400 `field_type_conflict` naming the line.',
  'A missing timestamp is the server\'s time; timestamps are kept to the microsecond. Integers must lie within ±(2^53−1).',
].join('\n\n');

const REQUEST_BODY = {
  required: true,
  description: 'Points in InfluxDB line protocol.',
  content: { 'text/plain': { schema: { type: 'string', description: BODY_DESCRIPTION }, example: EXAMPLE } },
};

const RESPONSES = {
  204: t.Void({ description: 'Every point is durable and queued (or, with `Prefer: wait` or inline mode, written).' }),
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  409: ErrorBody,
  413: ErrorBody,
  415: ErrorBody,
  500: ErrorBody,
};

interface Variant {
  api: InfluxApi;
  path: string;
  summary: string;
  parameters: Record<string, string>;
  precision: string;
}

const VARIANTS: Variant[] = [
  {
    api: 'v1',
    path: '/write',
    summary: 'Write line protocol (InfluxDB 1.x API)',
    parameters: {
      db: 'Required by InfluxDB clients; names no dataset here (each measurement is one).',
      rp: 'Ignored.',
      consistency: 'Ignored.',
      u: 'Ignored (the user name).',
      p: 'The API token, when it is not in `Authorization` (TIMESTORE_AUTH=tokens).',
    },
    precision: '`n`/`ns` (default), `u`/`us`, `ms`, `s`, `m`, `h`.',
  },
  {
    api: 'v2',
    path: '/api/v2/write',
    summary: 'Write line protocol (InfluxDB 2.x API)',
    parameters: { org: 'Ignored.', orgID: 'Ignored.', bucket: 'Required by InfluxDB clients; names no dataset here (each measurement is one).' },
    precision: '`ns` (default), `us`, `ms`, `s`.',
  },
  {
    api: 'v3',
    path: '/api/v3/write_lp',
    summary: 'Write line protocol (InfluxDB 3 API)',
    parameters: { db: 'Names no dataset here (each measurement is one).', accept_partial: 'Ignored: a request is written whole or not at all.', no_sync: 'Ignored: the answer always waits until the points are durable.' },
    precision: '`auto` (default: each timestamp\'s unit from its size), `nanosecond`/`ns`, `microsecond`/`us`, `millisecond`/`ms`, `second`/`s`.',
  },
];

export function influxRoutes(service: IngestService, scoped: Scoped) {
  let app = new Elysia({ name: 'timestore/influx' }).use(scoped);
  for (const variant of VARIANTS) {
    app = app.post(
      variant.path,
      async ({ headers, query, request, set, server }) => {
        const waitMs = requestedWaitMs(headers.prefer, undefined, service.inline);
        keepOpenFor(server, request, waitMs);
        const { jobs, replayed } = await service.ingestLineProtocol({
          api: variant.api,
          body: new Uint8Array(await request.arrayBuffer()),
          contentEncoding: headers['content-encoding'] ?? null,
          precision: query.precision,
          actor: actorOf(request),
          traceParent: requestTraceparent(request),
          waitMs,
          idempotencyKey: headers['idempotency-key'] ?? null,
          authorize: async (slugs) => {
            const rule = datasetRuleOf(request);
            for (const slug of slugs) await rule.check(slug);
          },
        });
        const failed = jobs.find((job) => job.state === 'failed');
        if (failed) throw errors.ingest_failed(failed.lastError, { jobId: failed.id, dataset: (failed.payload as { datasetSlug?: string }).datasetSlug });
        set.status = 204;
        set.headers['x-influxdb-version'] = 'timestore';
        if (replayed) set.headers['x-timestore-replayed'] = 'true';
      },
      {
        scope: { rule: 'write', body: 'read-by-handler', datasets: 'known-to-handler', credentials: 'influx' },
        query: t.Object(
          {
            precision: t.Optional(t.String({ description: `Unit of the timestamps: ${variant.precision}` })),
            ...Object.fromEntries(Object.entries(variant.parameters).map(([name, description]) => [name, t.Optional(t.String({ description }))])),
          },
          { additionalProperties: true },
        ),
        response: RESPONSES,
        detail: {
          tags: ['ingest'],
          summary: variant.summary,
          description: [
            BODY_DESCRIPTION,
            'The whole body is checked before it is acknowledged: any refused line refuses the request (400 naming the line, in timestore\'s error shape), and nothing of it is stored. Then one batch per measurement is staged and queued, all in one catalog transaction, and the answer is **204**.',
            'Authentication (TIMESTORE_AUTH=tokens): `Authorization: Token <token>` or `Bearer <token>`, Basic with the token as the password, or `?p=<token>`. The token needs the `write` rule of every dataset the body writes (`write`, `write:<measurement>` or the dataset\'s own write scopes).',
          ].join('\n\n'),
          requestBody: REQUEST_BODY as never,
        },
      },
    ) as unknown as typeof app;
  }
  return app;
}
