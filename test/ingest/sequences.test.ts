/**
 * "Every dataset answers queries after any sequence of batches": seeded sequences of batches in
 * every format, with fields that differ only in case, repeated keys, new and unknown fields, values
 * of the wrong type and timestamps at the edges, sent to a real server. Each batch is either
 * refused with a listed 4xx, or written (never acknowledged and then failed); after each one the
 * dataset answers a query with exactly the rows acknowledged so far. Then batches are queued
 * while no runner writes them, and written together (coalesced), with the same outcome.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { join } from 'node:path';
import { Bool, DateMillisecond, Float64, Int64, Table, tableToIPC, Utf8, type Vector, vectorFromArray } from 'apache-arrow';
import { CatalogCache } from '../../src/catalog/lookup-cache.ts';
import { findDataset } from '../../src/catalog/datasets.ts';
import { getSchemaVersion } from '../../src/catalog/schema-versions.ts';
import type { FieldType } from '../../src/model/field-types.ts';
import type { SchemaField } from '../../src/model/records.ts';
import { INGEST_JOB_KIND } from '../../src/ingest/accept.ts';
import { INGEST_REFUSAL_CODES } from '../../src/model/constraints.ts';
import { ingestJobHandler } from '../../src/ingest/write.ts';
import { JobRunner } from '../../src/jobs/runner.ts';
import { StorageDrivers } from '../../src/storage/index.ts';
import { silentLog } from '../harness/catalog.ts';
import { prng } from '../harness/prng.ts';
import { againstBinary, postJson, startTestServer, type TestServer } from '../harness/server.ts';

let ts: TestServer;
beforeAll(async () => {
  ts = await startTestServer();
});
afterAll(() => ts.stop());

type Format = 'json' | 'ndjson' | 'csv' | 'arrow';
const CONTENT_TYPES: Record<Format, string> = {
  json: 'application/json',
  ndjson: 'application/x-ndjson',
  csv: 'text/csv',
  arrow: 'application/vnd.apache.arrow.stream',
};
const NAMES = ['temp', 'humidity', 'site', 'status', 'count', 'seen_at', 'flag'];
const TYPES: FieldType[] = ['double', 'integer', 'string', 'boolean', 'timestamp'];
const DAY = 86_400_000;
const START = Date.parse('2026-01-01T00:00:00Z');

/** One seeded source of batches; `truth` is the type each name usually gets. */
class Generator {
  readonly random: () => number;
  readonly truth: Record<string, FieldType>;

  constructor(seed: number) {
    this.random = prng(seed);
    this.truth = Object.fromEntries(NAMES.map((name) => [name, this.pick(TYPES)]));
  }

  chance(p: number): boolean {
    return this.random() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  int(max: number): number {
    return Math.floor(this.random() * max);
  }

  /** The name, or one differing only in case. */
  variant(name: string): string {
    if (!this.chance(0.05)) return name;
    return this.chance(0.5) ? name.toUpperCase() : name[0]!.toUpperCase() + name.slice(1);
  }

  timestamp(): string {
    if (this.chance(0.04)) return this.pick(['2026-01-01T00:00Z', '0001-01-01T00:30:00+01:00', '9999-12-31T23:59:59-00:01', '2026-02-30T00:00:00Z', 'soon']);
    const at = new Date(START + this.int(3 * DAY) + this.int(1000));
    const iso = at.toISOString();
    switch (this.int(4)) {
      case 0:
        return iso;
      case 1:
        return iso.replace('T', ' ').replace('Z', '');
      case 2: {
        const shifted = new Date(at.getTime() + 90 * 60_000).toISOString();
        return shifted.replace('Z', '+01:30');
      }
      default:
        return `${iso.slice(0, 19)}.${String(this.int(1_000_000)).padStart(6, '0')}Z`;
    }
  }

  /** A value for a field of `type`; mostly valid. */
  value(type: FieldType): unknown {
    if (this.chance(0.1)) return null;
    if (this.chance(0.02)) return this.pick<unknown>(['x', 1.5, true, 2 ** 60, 'a\u0000b', '2026-01-01T00:00Z']);
    switch (type) {
      case 'double':
        return this.chance(0.3) ? this.int(100) : Math.round(this.random() * 1e6) / 1e3;
      case 'integer':
        return this.int(1_000_000) - 500_000;
      case 'string':
        return this.pick(['a', 'b,c', 'quote "q"', 'line\nbreak', 'ünï', '', ' spaced ']);
      case 'boolean':
        return this.chance(0.5);
      case 'timestamp':
        return this.timestamp();
    }
  }
}

interface Batch {
  format: Format;
  body: string | Uint8Array;
  query: string;
  rows: number;
}

/** JSON text of an object whose entries may repeat a name (JSON.parse keeps the last). */
const objectText = (entries: [string, unknown][]) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;

function csvValue(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) || text === '' ? `"${text.replaceAll('"', '""')}"` : text;
}

function arrowVector(type: FieldType, values: unknown[]): Vector {
  switch (type) {
    case 'double':
      return vectorFromArray(values.map((v) => (typeof v === 'number' ? v : null)), new Float64());
    case 'integer':
      return vectorFromArray(values.map((v) => (typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : null)), new Int64());
    case 'string':
      return vectorFromArray(values.map((v) => (typeof v === 'string' ? v : null)), new Utf8());
    case 'boolean':
      return vectorFromArray(values.map((v) => (typeof v === 'boolean' ? v : null)), new Bool());
    case 'timestamp':
      return vectorFromArray(
        values.map((v) => {
          const ms = typeof v === 'string' ? Date.parse(v) : Number.NaN;
          return Number.isNaN(ms) ? null : new Date(ms);
        }),
        new DateMillisecond(),
      );
  }
}

/** A batch for a dataset whose latest fields are `fields` (null: it has none yet). */
function nextBatch(g: Generator, fields: SchemaField[] | null): Batch {
  const format: Format = fields === null ? g.pick(['json', 'arrow'] as const) : g.pick(['json', 'json', 'ndjson', 'csv', 'arrow'] as const);
  const known = fields ?? [{ name: 'timestamp', type: 'timestamp' as const }];
  // Declared (JSON, Arrow): the timestamp, some known fields, sometimes a new one or a case variant.
  const declared: SchemaField[] = [{ name: 'timestamp', type: 'timestamp' }];
  for (const name of NAMES) {
    if (!g.chance(0.5)) continue;
    const type = g.chance(0.08) ? g.pick(TYPES) : g.truth[name]!;
    declared.push({ name: g.variant(name), type });
  }
  if (g.chance(0.05)) declared.push({ name: 'timestamp', type: 'timestamp' }); // named twice
  const writable = format === 'json' || format === 'arrow' ? declared : known;
  const rowCount = 1 + g.int(g.chance(0.1) ? 200 : 12);
  const rows: [string, unknown][][] = [];
  for (let i = 0; i < rowCount; i++) {
    const entries: [string, unknown][] = [['timestamp', g.timestamp()]];
    for (const field of writable) {
      if (field.name === 'timestamp' || !g.chance(0.7)) continue;
      entries.push([g.chance(0.05) ? g.variant(field.name) : field.name, g.value(field.type)]);
    }
    if (g.chance(0.05)) entries.push(['unknown_key', g.value(g.pick(TYPES))]);
    if (g.chance(0.04) && entries.length > 1) entries.push([entries[1]![0], entries[1]![1]]); // a repeated key
    rows.push(entries);
  }
  const key = g.chance(0.2) ? '' : `key.part=${g.pick(['a', 'b'])}`;
  switch (format) {
    case 'json': {
      const body = `{"schema":{"fields":${JSON.stringify(declared)}},"partition":{"key":${key ? `{"part":"${key.slice(9)}"}` : '{}'}},"rows":[${rows.map(objectText).join(',')}]}`;
      return { format, body, query: '', rows: rowCount };
    }
    case 'ndjson':
      return { format, body: `${rows.map(objectText).join(g.chance(0.2) ? '\r\n' : '\n')}\n`, query: key, rows: rowCount };
    case 'csv': {
      const columns = [...new Set(rows.flatMap((r) => r.map(([k]) => k)))];
      const lineEnd = g.chance(0.2) ? '\r\n' : '\n';
      const records = rows.map((r) => {
        const values = new Map(r);
        return columns.map((c) => csvValue(values.get(c))).join(',');
      });
      if (g.chance(0.03)) records.push(`${records[0]}\r\n`); // a mixed line end
      return { format, body: `${[columns.join(','), ...records].join(lineEnd)}${lineEnd}`, query: key, rows: rowCount };
    }
    case 'arrow': {
      const columns: Record<string, Vector> = {};
      for (const field of declared) {
        if (columns[field.name]) continue;
        columns[field.name] = arrowVector(field.type, rows.map((r) => new Map(r).get(field.name) ?? null));
      }
      return { format, body: tableToIPC(new Table(columns), 'stream'), query: key, rows: rowCount };
    }
  }
}

async function latestFields(slug: string): Promise<SchemaField[] | null> {
  const dataset = await findDataset(ts.sql, slug);
  if (!dataset || dataset.schemaVersion === 0) return null;
  return (await getSchemaVersion(ts.sql, dataset.id, dataset.schemaVersion))!.fields;
}

async function send(slug: string, batch: Batch, wait: boolean): Promise<{ status: number; body: any }> {
  const query = [batch.query, wait ? 'wait=true' : ''].filter(Boolean).join('&');
  const res = await fetch(`${ts.url}/datasets/${slug}/ingest${query ? `?${query}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': CONTENT_TYPES[batch.format] },
    body: batch.body,
  });
  return { status: res.status, body: await res.json() };
}

async function rowCount(slug: string): Promise<number> {
  const res = await postJson(`${ts.url}/datasets/${slug}/query`, {
    timeRange: { start: '0001-01-01T00:00:00Z', end: '9999-12-31T23:59:59Z' },
    limit: 50_000,
  });
  if (res.status === 404) return 0;
  expect(res.status).toBe(200);
  expect(res.body.truncated).toBe(false);
  return res.body.rows.length;
}

const refusals = new Map<string, number>();
function refused(answer: { status: number; body: any }, batch: Batch): void {
  const code = answer.body?.error?.code;
  if (!(answer.status >= 400 && answer.status < 500 && INGEST_REFUSAL_CODES.has(code))) {
    throw new Error(`a ${batch.format} batch got ${answer.status} ${JSON.stringify(answer.body).slice(0, 500)}:\n${String(batch.body).slice(0, 2000)}`);
  }
  refusals.set(code, (refusals.get(code) ?? 0) + 1);
}

test('seeded sequences of batches: each is refused with a listed 4xx or written, and every dataset answers with the rows acknowledged', async () => {
  let accepted = 0;
  let sent = 0;
  for (const [d, seed] of [11, 23, 37, 41, 53, 67, 79, 89].entries()) {
    const g = new Generator(seed);
    const slug = `seq-${d}`;
    if (d % 2 === 1) {
      // Half the datasets ignore unknown fields.
      const created = await postJson(`${ts.url}/admin/datasets`, { slug, metadata: { allowUnknownFields: true } });
      expect(created.status).toBe(201);
    }
    let expected = 0;
    for (let i = 0; i < 20; i++) {
      const batch = nextBatch(g, await latestFields(slug));
      const answer = await send(slug, batch, true);
      sent++;
      if (answer.status === 201) {
        expect(answer.body.result.rowCount).toBe(batch.rows);
        expected += batch.rows;
        accepted++;
      } else {
        refused(answer, batch);
      }
      expect(await rowCount(slug)).toBe(expected);
    }
  }
  // The sequences exercise both outcomes (and more than one refusal).
  expect(accepted).toBeGreaterThan(sent / 5);
  expect(sent - accepted).toBeGreaterThan(sent / 5);
  expect(refusals.size).toBeGreaterThan(4);
}, 300_000);

// Stops the server's own runner and writes with one of its own: in process only.
test.skipIf(againstBinary)('batches queued while no runner writes them are written together: every acknowledged one is, and the datasets answer', async () => {
  await ts.server.runner.stop(10_000);
  const sql = ts.sql;
  const drivers = new StorageDrivers(ts.config.s3);
  const runner = new JobRunner({ catalog: ts.server.catalog, log: silentLog, concurrency: 1, pollIntervalMs: 50 }).register(
    INGEST_JOB_KIND,
    ingestJobHandler({ sql, drivers, pool: ts.server.pool, scratchDir: join(ts.config.storageRoot, 'tmp'), log: silentLog, catalogCache: new CatalogCache(sql) }),
    { queue: ts.config.ingest.queueName, coalesce: { maxJobs: 256, weightField: 'rowCount', maxWeight: 1_000_000 } },
  );
  try {
    // Written together, a batch is read with the fields it was validated against: the unknown
    // key x of the first is not read into the field x the second adds, whose type it lacks.
    const loose = await postJson(`${ts.url}/admin/datasets`, {
      slug: 'queued-loose',
      metadata: { allowUnknownFields: true },
      schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'v', type: 'double' }] },
    });
    expect(loose.status).toBe(201);
    const pinned: { slug: string; job: string }[] = [];
    const first = await send('queued-loose', { format: 'ndjson', body: '{"timestamp":"2026-01-01T00:00:00Z","v":1,"x":"not a number"}\n', query: '', rows: 1 }, false);
    const second = await send(
      'queued-loose',
      {
        format: 'json',
        body: JSON.stringify({
          schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'x', type: 'double' }] },
          partition: { key: {} },
          rows: [{ timestamp: '2026-01-01T00:01:00Z', x: 2.5 }],
        }),
        query: '',
        rows: 1,
      },
      false,
    );
    // A repeated key whose first value does not convert: validation kept the last one.
    const repeated = await send('queued-loose', { format: 'ndjson', body: '{"timestamp":"2026-01-01T00:02:00Z","v":"text","v":3}\n', query: '', rows: 1 }, false);
    for (const answer of [first, second, repeated]) {
      expect(answer.status).toBe(202);
      pinned.push({ slug: 'queued-loose', job: answer.body.jobId });
    }

    const expected = new Map<string, number>([['queued-loose', 3]]);
    const jobs: string[] = pinned.map((p) => p.job);
    for (const [d, seed] of [71, 83, 97].entries()) {
      const g = new Generator(seed);
      const slug = `queued-${d}`;
      if (d === 1) expect((await postJson(`${ts.url}/admin/datasets`, { slug, metadata: { allowUnknownFields: true } })).status).toBe(201);
      // The first batch must be written before NDJSON and CSV batches have a schema to be checked against.
      let fields = await latestFields(slug);
      for (let i = 0; i < 16; i++) {
        const batch = nextBatch(g, fields);
        const answer = await send(slug, batch, false);
        if (answer.status === 202) {
          jobs.push(answer.body.jobId);
          expected.set(slug, (expected.get(slug) ?? 0) + batch.rows);
        } else {
          refused(answer, batch);
        }
        fields = await latestFields(slug);
      }
    }
    expect(jobs.length).toBeGreaterThan(15);

    await runner.start();
    for (const id of jobs) {
      const job = await runner.waitForJob(id, 60_000);
      expect({ id, state: job?.state, lastError: job?.lastError }).toEqual({ id, state: 'succeeded', lastError: null });
    }
    // They were written together.
    const coalesced = await sql<{ n: number }[]>`SELECT max((result->>'coalescedJobs')::int) AS n FROM jobs WHERE id IN ${sql(jobs)}`;
    expect(coalesced[0]!.n).toBeGreaterThan(1);
    // Each job's result lists the files its rows went to (its partition key), not every file written.
    const results = await sql<{ key: Record<string, string>; parts: { partitionKey: Record<string, string> }[] }[]>`
      SELECT payload->'partitionKey' AS key, result->'partitions' AS parts FROM jobs WHERE id IN ${sql(jobs)}`;
    for (const { key, parts } of results) {
      expect(parts.length).toBeGreaterThan(0);
      for (const part of parts) expect(part.partitionKey).toEqual(key);
    }

    for (const [slug, rows] of expected) expect({ slug, rows: await rowCount(slug) }).toEqual({ slug, rows });
    const answer = await postJson(`${ts.url}/datasets/queued-loose/query`, { timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' } });
    expect(answer.body.rows).toEqual([
      { timestamp: '2026-01-01T00:00:00.000Z', v: 1, x: null },
      { timestamp: '2026-01-01T00:01:00.000Z', v: null, x: 2.5 },
      { timestamp: '2026-01-01T00:02:00.000Z', v: 3, x: null },
    ]);
  } finally {
    await runner.stop(10_000);
    drivers.close();
  }
}, 300_000);
