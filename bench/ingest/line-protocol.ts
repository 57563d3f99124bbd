/**
 * Line protocol against NDJSON on the same TSBS cpu-only rows, in one run.
 *
 *   node_modules/.bin/bun bench/ingest/line-protocol.ts [--rows 200000] [--batch 5000] [--clients 2] [--rounds 2]
 *
 * 1. The parse alone, in this process: each body's check as the server does it (NDJSON: one
 *    JSON.parse per line and the row rules; line protocol: the one-pass parser and the staged NDJSON).
 * 2. End to end: a timestore server (the working tree) with two identical datasets (timestamp column
 *    `time`; TSBS's 10 tags are more than the 8 sortColumns allowed, so both keep the default series key), each sent the same rows as NDJSON (POST /datasets/:slug/ingest)
 *    or as line protocol (POST /api/v2/write) by `clients` concurrent clients; rows/s is rows over
 *    the time until the last batch is acknowledged. Rounds alternate the formats, and each round
 *    waits for the previous round's jobs to be written, so both meet the same background work.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { ndjsonBatch } from '../../src/ingest/formats/ndjson.ts';
import { parseLineProtocol, stagedNdjson } from '../../src/ingest/formats/line-protocol.ts';
import type { SchemaField } from '../../src/model/records.ts';
import { FIELDS, generate, TAGS } from './tsbs.ts';
import { REPO_ROOT, round, startServer } from './server.ts';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '200000' },
    batch: { type: 'string', default: '5000' },
    clients: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '2' },
  },
});
const rows = Number(args.rows);
const batch = Number(args.batch);
const clients = Number(args.clients);
const rounds = Number(args.rounds);
const log = (message: string) => console.error(`[lp-bench] ${message}`);

// The same rows in both formats, converted from the generator's JSON batches (not timed).
const data = generate({ hosts: 1000, hours: 24, batch, rows, partitionKey: {}, cacheRoot: '/tmp/timestore-bench-data', log });
const ndjsonBodies: string[] = [];
const lineBodies: string[] = [];
for (const file of data.files) {
  const body = JSON.parse(readFileSync(file, 'utf8')) as { rows: Record<string, string | number>[] };
  let nd = '';
  let lp = '';
  for (const row of body.rows) {
    const { timestamp, ...rest } = row;
    nd += `${JSON.stringify({ time: timestamp, ...rest })}\n`;
    const tags = TAGS.map((t) => `${t}=${row[t]}`).join(',');
    const fields = FIELDS.map((f) => `${f}=${row[f]}`).join(',');
    lp += `cpu,${tags} ${fields} ${Date.parse(timestamp as string)}000000\n`;
  }
  ndjsonBodies.push(nd);
  lineBodies.push(lp);
}
const schema: SchemaField[] = [
  { name: 'time', type: 'timestamp', nullable: false },
  ...TAGS.map((name) => ({ name, type: 'string' as const, nullable: true })),
  ...FIELDS.map((name) => ({ name, type: 'double' as const, nullable: true })),
];
const mb = (bodies: string[]) => round(bodies.reduce((n, b) => n + Buffer.byteLength(b), 0) / 1e6, 1);
log(`${data.totalRows} rows in ${data.files.length} batches: NDJSON ${mb(ndjsonBodies)} MB, line protocol ${mb(lineBodies)} MB`);

// 1. Parse alone.
const encoder = new TextEncoder();
const ndBytes = ndjsonBodies.map((b) => encoder.encode(b));
const lpBytes = lineBodies.map((b) => encoder.encode(b));
const rules = { fields: schema, timestampColumn: 'time', strict: true };
async function parseNdjson(): Promise<number> {
  const started = performance.now();
  for (const body of ndBytes) await ndjsonBatch(body, { partition: { key: {} } }).validate(rules);
  return performance.now() - started;
}
function parseLines(): number {
  const started = performance.now();
  for (const body of lpBytes) {
    for (const measurement of parseLineProtocol(body, 'ns', Date.now()).values()) stagedNdjson(measurement, 'time');
  }
  return performance.now() - started;
}
const parse = { ndjson: [] as number[], lineProtocol: [] as number[] };
for (let r = 0; r < 3; r++) {
  parse.ndjson.push(await parseNdjson());
  parse.lineProtocol.push(parseLines());
}
const best = (ms: number[]) => Math.min(...ms);
const parseRate = { ndjson: round(data.totalRows / (best(parse.ndjson) / 1000)), lineProtocol: round(data.totalRows / (best(parse.lineProtocol) / 1000)) };
log(`parse: NDJSON ${parseRate.ndjson} rows/s, line protocol ${parseRate.lineProtocol} rows/s (best of 3)`);

// 2. End to end.
const databaseUrl = await createBenchDatabase('lp-bench');
const server = await startServer({ databaseUrl });
const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
try {
  for (const slug of ['cpu', 'cpu_nd']) {
    const res = await fetch(`${server.url}/admin/datasets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ slug, timestampColumn: 'time', schema: { fields: schema } }),
    });
    if (res.status !== 201) throw new Error(`creating ${slug}: ${res.status} ${await res.text()}`);
  }
  const send = async (format: 'ndjson' | 'line-protocol', index: number) => {
    const res =
      format === 'ndjson'
        ? await fetch(`${server.url}/datasets/cpu_nd/ingest`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: ndjsonBodies[index] })
        : await fetch(`${server.url}/api/v2/write?bucket=bench`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: lineBodies[index] });
    await res.arrayBuffer();
    if (res.status !== 202 && res.status !== 204) throw new Error(`${format} batch ${index}: ${res.status}`);
  };
  const drained = async () => {
    for (;;) {
      const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM timestore.jobs WHERE kind = 'ingest' AND state IN ('queued', 'running')`;
      if (row!.n === 0) return;
      await Bun.sleep(200);
    }
  };
  const run = async (format: 'ndjson' | 'line-protocol'): Promise<number> => {
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        for (let i = next++; i < data.files.length; i = next++) await send(format, i);
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    await drained();
    return round(data.totalRows / seconds);
  };
  const endToEnd = { ndjson: [] as number[], lineProtocol: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    const order: ('ndjson' | 'line-protocol')[] = r % 2 === 0 ? ['ndjson', 'line-protocol'] : ['line-protocol', 'ndjson'];
    for (const format of order) {
      const rate = await run(format);
      (format === 'ndjson' ? endToEnd.ndjson : endToEnd.lineProtocol).push(rate);
      log(`round ${r + 1}: ${format} ${rate} rows/s acknowledged`);
    }
  }
  const mean = (xs: number[]) => round(xs.reduce((a, b) => a + b, 0) / xs.length);
  const [counted] = await sql<{ nd: number; lp: number }[]>`
    SELECT (SELECT sum(row_count)::int FROM timestore.partitions p JOIN timestore.datasets d ON d.id = p.dataset_id WHERE d.slug = 'cpu_nd' AND p.removed_version IS NULL) AS nd,
           (SELECT sum(row_count)::int FROM timestore.partitions p JOIN timestore.datasets d ON d.id = p.dataset_id WHERE d.slug = 'cpu' AND p.removed_version IS NULL) AS lp`;
  console.log(
    JSON.stringify(
      {
        rows: data.totalRows,
        batch,
        clients,
        rounds,
        bytes: { ndjsonMB: mb(ndjsonBodies), lineProtocolMB: mb(lineBodies) },
        parseRowsPerSecond: parseRate,
        acknowledgedRowsPerSecond: { ndjson: mean(endToEnd.ndjson), lineProtocol: mean(endToEnd.lineProtocol), each: endToEnd },
        ratio: round(mean(endToEnd.lineProtocol) / mean(endToEnd.ndjson), 2),
        rowsWritten: counted,
      },
      null,
      2,
    ),
  );
} finally {
  await sql.end();
  await server.stop();
}
