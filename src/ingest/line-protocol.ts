/**
 * Accepting a body of InfluxDB line protocol (POST /write, /api/v2/write, /api/v3/write_lp).
 *
 * Each measurement is a dataset (its slug is the measurement's name; `db`, `bucket` and `org` name
 * no dataset): one request may write several, and each becomes one batch and one job, exactly as
 * an NDJSON batch of that dataset would. The request is all or nothing up to its acknowledgement:
 * every measurement's rows are checked against its dataset first (a refusal stores nothing), then
 * every batch is staged, then one catalog transaction creates the datasets and schema versions
 * that are new and inserts every job. Only after that commit does the client hear 204.
 *
 * Tags and fields declare the batch's schema as `schema.fields` does in a JSON batch (tags are
 * strings; float → double, integer and unsigned → integer, string, boolean), so a measurement
 * creates its dataset (timestamp column `time`) and new keys add nullable fields; a key whose type
 * differs from the dataset's is refused, 400 with its line, as InfluxDB refuses a field type
 * conflict. Tags are the series key: a dataset that line protocol creates gets its tags as
 * `sortColumns`, and tags added later are appended to a dataset's non-empty `sortColumns`, up to
 * the 8 sortColumns a dataset may have (beyond, the series key is the string fields, tags included).
 */
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { DEFAULT_PARTITION_WINDOW_SECONDS, findDataset, lockDataset, updateDataset } from '../catalog/datasets.ts';
import { enqueueJob, type Job } from '../catalog/job-table.ts';
import type { Db } from '../catalog/db.ts';
import { claimIdempotencyKey, findIdempotencyKey } from '../catalog/idempotency.ts';
import { CommitOutcomeUnknownError, inStatement, inTransaction } from '../catalog/transaction.ts';
import type { Dataset, SchemaField, SchemaVersion } from '../model/records.ts';
import { AppError } from '../model/errors.ts';
import { refuse } from '../model/constraints.ts';
import { checkDeclaredFields, mergeSchema, type MergedSchema } from '../model/schema.ts';
import {
  type AcceptDeps,
  assertAcceptsIngest,
  checkIdempotencyKey,
  checkWindowSpan,
  ensureDataset,
  ingestJob,
  KeyHeld,
  recordSchema,
  replay,
  datasetTarget,
  settleStaged,
  stageBytes,
} from './accept.ts';
import { atLine } from './formats/batch.ts';
import { type LineColumn, type MeasurementRows, parseLineProtocol, type Precision, stagedNdjson } from './formats/line-protocol.ts';

/** The timestamp column of a dataset that line protocol creates (InfluxDB's name for it). */
export const LINE_PROTOCOL_TIMESTAMP_COLUMN = 'time';

/** The most sortColumns a dataset may have (PATCH /admin/datasets/:id allows as many). */
const MAX_SORT_COLUMNS = 8;

/** Which InfluxDB API a request came through: each names its precisions its own way. */
export type InfluxApi = 'v1' | 'v2' | 'v3';

const PRECISION_NAMES: Record<InfluxApi, Record<string, Precision>> = {
  v1: { n: 'ns', ns: 'ns', u: 'us', us: 'us', ms: 'ms', s: 's', m: 'm', h: 'h' },
  v2: { ns: 'ns', us: 'us', ms: 'ms', s: 's' },
  v3: { auto: 'auto', nanosecond: 'ns', microsecond: 'us', millisecond: 'ms', second: 's', ns: 'ns', us: 'us', ms: 'ms', s: 's' },
};
const DEFAULT_PRECISION: Record<InfluxApi, Precision> = { v1: 'ns', v2: 'ns', v3: 'auto' };

/** The request's `precision` parameter; 400 `invalid_query_parameter` naming the accepted ones. */
export function precisionOf(api: InfluxApi, value: string | undefined): Precision {
  if (value === undefined || value === '') return DEFAULT_PRECISION[api];
  const precision = Object.hasOwn(PRECISION_NAMES[api], value) ? PRECISION_NAMES[api][value] : undefined;
  if (!precision) {
    const accepted = Object.keys(PRECISION_NAMES[api]);
    throw refuse('query_parameter', `precision "${value}" is not one of ${accepted.join(', ')}`, { parameter: 'precision', accepted });
  }
  return precision;
}

const gunzipAsync = promisify(gunzip);

/**
 * The body as line-protocol bytes: as received, or gunzipped (`Content-Encoding: gzip`) to at most
 * `maxBytes`; any other encoding is a 415.
 */
export async function decodeContent(body: Uint8Array, contentEncoding: string | null | undefined, maxBytes: number): Promise<Uint8Array> {
  const encoding = (contentEncoding ?? '').trim().toLowerCase();
  if (encoding === '' || encoding === 'identity') return body;
  if (encoding !== 'gzip' && encoding !== 'x-gzip') {
    throw refuse('content_encoding', `Content-Encoding "${encoding}" is not supported: send the body as it is, or gzip it`, { accepted: ['identity', 'gzip'] });
  }
  try {
    return await gunzipAsync(body, { maxOutputLength: maxBytes });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) throw refuse('body_size', maxBytes);
    throw refuse('content_encoding', `the body is not valid gzip: ${(err as Error).message}`, { accepted: ['identity', 'gzip'] });
  }
}

export interface LineProtocolRequest {
  /** The body's bytes, decoded from its Content-Encoding. */
  body: Uint8Array;
  precision: Precision;
  actor: string | null;
  traceParent: string | null;
  /** A client waits for the batches to be written. */
  awaited: boolean;
  /**
   * `Idempotency-Key`: the request's batches are queued once. A request with the same key and body
   * gets the first one's jobs; with another body, 409. Held by each measurement's dataset.
   */
  idempotencyKey: string | null;
  /** Refuses when the caller may not write every one of these datasets (called before anything is staged). */
  authorize(slugs: string[]): Promise<void>;
}

/** One measurement's batch, checked against its dataset. */
interface Checked {
  rows: MeasurementRows;
  existing: Dataset | null;
  latest: SchemaVersion | null;
  timestampColumn: string;
  declared: SchemaField[];
  merged: MergedSchema;
}

/** Checks, stages and queues every measurement of the body; the jobs, one per measurement (by slug), and whether they answer an earlier request. */
export async function acceptLineProtocol(deps: AcceptDeps, request: LineProtocolRequest): Promise<{ jobs: Job[]; replayed: boolean }> {
  checkIdempotencyKey(request.idempotencyKey);
  const parsed = [...parseLineProtocol(request.body, request.precision, Date.now()).values()].sort((a, b) => (a.measurement < b.measurement ? -1 : 1));
  if (parsed.length === 0) throw refuse('empty_batch', 'the body holds no line of line protocol (only blank lines and comments); send at least one');
  // Measurements written as escaped and unescaped names are one dataset: one batch would do, two are refused.
  for (let k = 1; k < parsed.length; k++) {
    if (parsed[k]!.measurement === parsed[k - 1]!.measurement) {
      throw refuse('line_protocol_syntax', `line ${parsed[k]!.lines[0]}: measurement "${parsed[k]!.measurement}" is written in two ways; write it one way`, {
        line: parsed[k]!.lines[0],
      });
    }
  }
  await request.authorize(parsed.map((rows) => rows.measurement));
  const checked: Checked[] = [];
  for (const rows of parsed) checked.push(await check(deps, rows));
  const key = request.idempotencyKey || null;
  const requestHash = key ? createHash('sha256').update(request.body).update(`\0${request.precision}`).digest('hex') : '';
  if (key) {
    const earlier = await heldJobs(deps, checked, key, requestHash);
    if (earlier) return { jobs: earlier, replayed: true };
  }

  const staging = await Promise.allSettled(
    checked.map((c) =>
      datasetTarget(deps, c.existing).then((target) =>
        stageBytes(deps, c.rows.measurement, target, { bytes: stagedNdjson(c.rows, c.timestampColumn), format: 'ndjson', extension: 'ndjson' }, {}),
      ),
    ),
  );
  const stagedOk = staging.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const settle = (queued: boolean) => Promise.all(stagedOk.map((batch) => settleStaged(deps, batch, queued)));
  const failed = staging.find((s) => s.status === 'rejected');
  if (failed) {
    await settle(false);
    throw (failed as PromiseRejectedResult).reason;
  }
  const staged = stagedOk;

  const newJob = (c: Checked, dataset: Dataset, schema: SchemaVersion, k: number) =>
    ingestJob(deps.queue, request, dataset, schema, staged[k]!, {}, { rowCount: c.rows.count, minTime: c.rows.minTime, maxTime: c.rows.maxTime });
  const unchanged = (c: Checked) => c.existing !== null && c.latest !== null && c.merged.added.length === 0;

  try {
    const only = checked.length === 1 ? checked[0]! : null;
    // The common case, one measurement of an existing dataset that adds no field: one statement, no lock (as NDJSON).
    const jobs =
      only && unchanged(only) && !key
        ? [(await inStatement(() => enqueueJob(deps.sql, newJob(only, only.existing!, only.latest!, 0)))).job]
        : await inTransaction(deps.sql, async (tx) => {
            const out: Job[] = [];
            for (const [k, c] of checked.entries()) {
              let job: Job;
              let dataset: Dataset;
              if (unchanged(c)) {
                dataset = c.existing!;
                job = (await enqueueJob(tx, newJob(c, dataset, c.latest!, k))).job;
              } else {
                dataset = await ensureDataset(tx, c.rows.measurement, { format: 'line-protocol' }, c.timestampColumn, request.actor, null);
                const schema = await recordSchema(tx, dataset, c.declared, c.timestampColumn, request.actor, deps.maxFields);
                await extendSeriesKey(tx, dataset, c);
                job = (await enqueueJob(tx, newJob(c, dataset, schema, k))).job;
              }
              if (key) {
                const held = await claimIdempotencyKey(tx, { datasetId: dataset.id, key, requestHash, jobId: job.id, ttlSeconds: deps.idempotencyTtlSeconds });
                if (held) throw new KeyHeld(held);
              }
              out.push(job);
            }
            return out;
          });
    deps.wake(jobs);
    await settle(true);
    return { jobs, replayed: false };
  } catch (err) {
    // After a commit of unknown outcome the jobs may exist and need their bodies: the collector decides.
    await settle(err instanceof CommitOutcomeUnknownError);
    // A request with the same key committed first (it held the key's row lock): answer with its jobs.
    const earlier = err instanceof KeyHeld && key ? await heldJobs(deps, checked, key, requestHash) : null;
    if (earlier) return { jobs: earlier, replayed: true };
    throw err;
  }
}

/**
 * The jobs of an earlier request with this idempotency key, one per measurement, or null when no
 * measurement's dataset holds the key. An earlier request queued all its measurements or none, so
 * a key held for some measurements but not others means another body: 409, as for a different body.
 */
async function heldJobs(deps: AcceptDeps, checked: Checked[], key: string, requestHash: string): Promise<Job[] | null> {
  const datasets = await Promise.all(checked.map((c) => c.existing ?? findDataset(deps.sql, c.rows.measurement)));
  const held = await Promise.all(datasets.map((d) => (d ? findIdempotencyKey(deps.sql, d.id, key) : null)));
  const first = held.find((h) => h !== null);
  if (!first) return null;
  const jobs: Job[] = [];
  for (const record of held) jobs.push((await replay(deps.sql, record ?? { ...first, requestHash: '' }, requestHash)).job);
  return jobs;
}

/** A measurement's rows against its dataset: the schema they make, every rule a JSON batch's rows meet. */
async function check(deps: AcceptDeps, rows: MeasurementRows): Promise<Checked> {
  const slug = rows.measurement;
  const existing = await findDataset(deps.sql, slug);
  if (existing) assertAcceptsIngest(existing);
  const latest = existing && existing.schemaVersion > 0 ? await deps.catalogCache.schemaVersion(existing.id, existing.schemaVersion) : null;
  const timestampColumn = latest?.timestampColumn ?? existing?.timestampColumn ?? LINE_PROTOCOL_TIMESTAMP_COLUMN;
  const byName = new Map<string, LineColumn>();
  for (const column of rows.columns.values()) byName.set(column.name, column);

  const clash = byName.get(timestampColumn);
  if (clash) {
    throw refuse('line_field_type', `line ${clash.firstLine}: "${timestampColumn}" is the timestamp column of dataset "${slug}": a tag or field cannot take its name`, {
      line: clash.firstLine,
      field: timestampColumn,
    });
  }
  const declared: SchemaField[] = [...byName.values()].map((c) => ({ name: c.name, type: c.type }));
  if (!latest) declared.unshift({ name: timestampColumn, type: 'timestamp' });
  const merged = withLine(byName, slug, () => {
    checkDeclaredFields(declared);
    return mergeSchema(latest, declared, timestampColumn);
  });
  for (const field of merged.fields) {
    if (field.nullable !== false || field.name === timestampColumn) continue;
    const column = byName.get(field.name);
    const row = column ? column.firstGap : 0;
    if (row >= 0) {
      const line = rows.lines[row];
      throw refuse('missing_field', `line ${line}: "${field.name}" is required by dataset "${slug}" and missing`, { line, field: field.name });
    }
  }
  checkWindowSpan(rows, existing?.partitionWindowSeconds ?? DEFAULT_PARTITION_WINDOW_SECONDS);
  return { rows, existing, latest, timestampColumn, declared, merged };
}

/**
 * Schema refusals with the line of the key they name. A type that differs from the dataset's is a
 * 400 here (InfluxDB's answer to a field type conflict), where a JSON batch's is a 409.
 */
function withLine<T>(columns: Map<string, LineColumn>, slug: string, body: () => T): T {
  try {
    return body();
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    const details = (typeof err.details === 'object' && err.details !== null ? err.details : {}) as Record<string, unknown>;
    const line = typeof details.field === 'string' ? columns.get(details.field)?.firstLine : undefined;
    if (err.code === 'field_type_conflict') {
      throw refuse(
        'line_field_type',
        `line ${line}: field type conflict: "${details.field}" is ${details.declaredType} here but ${details.existingType} in dataset "${slug}" (schema version ${details.schemaVersion})`,
        { ...details, line },
      );
    }
    throw atLine(err, line);
  }
}

/** Appends the batch's new tags to the series key of a dataset it created or whose series key is named. */
async function extendSeriesKey(tx: Db, dataset: Dataset, c: Checked): Promise<void> {
  const tags = new Set([...c.rows.columns.values()].filter((col) => col.tag).map((col) => col.name));
  const added = c.merged.added.filter((f) => tags.has(f.name)).map((f) => f.name);
  if (added.length === 0) return;
  const current = await lockDataset(tx, dataset.id); // held since recordSchema: the latest sortColumns
  if (c.existing !== null && current.sortColumns.length === 0) return; // the dataset's series key is its string fields
  const next = [...current.sortColumns, ...added.filter((name) => !current.sortColumns.includes(name)).sort()];
  // Beyond the admin route's limit the series key stays the dataset's string fields (tags included).
  if (next.length > current.sortColumns.length && next.length <= MAX_SORT_COLUMNS) await updateDataset(tx, dataset.id, { sortColumns: next });
}
