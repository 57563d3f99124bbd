/**
 * A write takes in the newest file of each window it writes to when that file holds no more rows
 * than the write brings, and publishes the merged file in its place (ingest/write.ts): rows that
 * arrive in time order fill one file per window however many writes bring them. What it takes in
 * is never lost nor read twice: a file that cannot be read, or that another publish removed first,
 * is left out and the batch written again without it.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { publishManifestVersion } from '../../src/catalog/manifests.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'seq', type: 'integer' },
];

let ts: TestServer;

beforeAll(async () => {
  ts = await startTestServer();
}, 60_000);
afterAll(async () => {
  await ts?.stop();
});

// The default partition window is a UTC day.
const at = (day: number, second: number) => new Date(Date.UTC(2026, 0, 1 + day, 0, 0, second)).toISOString();
const rows = (day: number, seconds: number[], seq0: number) => seconds.map((s, i) => ({ timestamp: at(day, s), seq: seq0 + i }));
const range = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);

/** Sends rows and waits for them to be published (201). */
async function send(slug: string, batch: { timestamp: string; seq: number }[]) {
  const res = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: {} }, rows: batch });
  expect(res.status).toBe(201);
  return res.body;
}

interface ActiveFile {
  id: string;
  location: string;
  rowCount: number;
  startTime: Date;
}

/** The dataset's active files, by window, then smallest first. */
const active = (slug: string) =>
  ts.sql<ActiveFile[]>`
    SELECT p.id, p.location, p.row_count, p.start_time FROM partitions p JOIN datasets d ON d.id = p.dataset_id
    WHERE d.slug = ${slug} AND p.removed_version IS NULL ORDER BY date_trunc('day', p.start_time AT TIME ZONE 'UTC'), p.row_count, p.start_time`;

/** Every row's seq, in time order. */
async function seqs(slug: string): Promise<number[]> {
  const res = await postJson(`${ts.url}/datasets/${slug}/query`, { timeRange: { start: at(0, 0), end: at(7, 0) }, limit: 10_000 });
  expect(res.status).toBe(200);
  return res.body.rows.map((r: { seq: number }) => r.seq);
}

test('rows in time order fill one file per window, however many writes bring them', async () => {
  await send('in-order', rows(0, range(0, 10), 0));
  const second = await send('in-order', [...rows(0, range(10, 10), 10), ...rows(1, range(0, 10), 20)]);

  const files = await active('in-order');
  expect(files.map((f) => [f.startTime.getUTCDate(), f.rowCount])).toEqual([
    [1, 20],
    [2, 10],
  ]);
  // The second write's version replaced the first file with the merged one.
  const [version] = await ts.sql`
    SELECT m.partitions_added, m.partitions_removed, m.partition_count, m.row_count FROM manifest_versions m
    JOIN datasets d ON d.id = m.dataset_id WHERE d.slug = 'in-order' AND m.version = ${second.result.manifestVersion}`;
  expect(version).toMatchObject({ partitionsAdded: 2, partitionsRemoved: 1, partitionCount: 2, rowCount: 30 });
  expect(second.result.partitions.map((p: { rowCount: number }) => p.rowCount)).toEqual([20, 10]);
  expect(await seqs('in-order')).toEqual(range(0, 30));
});

test('a file with more rows than the write brings is left as it is; the next small one is taken in', async () => {
  await send('sizes', rows(0, range(0, 100), 0));
  await send('sizes', rows(0, range(100, 5), 100));
  expect((await active('sizes')).map((f) => f.rowCount)).toEqual([5, 100]);
  await send('sizes', rows(0, range(105, 5), 105));
  expect((await active('sizes')).map((f) => f.rowCount)).toEqual([10, 100]);
  expect(await seqs('sizes')).toEqual(range(0, 110));
});

test('an earlier file that cannot be read is left out: the batch gets a file of its own', async () => {
  await send('unreadable', rows(0, range(0, 10), 0));
  const [earlier] = await active('unreadable');
  writeFileSync(fileURLToPath(earlier!.location), 'not a Parquet file');

  await send('unreadable', rows(0, range(10, 10), 10));
  const files = await active('unreadable');
  expect(files.map((f) => [f.id === earlier!.id, f.rowCount])).toEqual([
    [true, 10],
    [false, 10],
  ]);
});

test('an earlier file that another publish removed first: the batch is written again without it, and no row is kept twice', async () => {
  await send('raced', rows(0, range(0, 10), 0));
  const [earlier] = await active('raced');
  const [dataset] = await ts.sql<{ id: string }[]>`SELECT id FROM datasets WHERE slug = 'raced'`;

  // Hold the dataset's row as a publish does, so that the write's publish waits for it; then
  // remove the file the write took in, as retention would, and let the write go on.
  const { pending } = await ts.sql.begin(async (tx) => {
    await tx`SELECT 1 FROM datasets WHERE id = ${dataset!.id} FOR NO KEY UPDATE`;
    const pending = postJson(`${ts.url}/datasets/raced/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: {} }, rows: rows(0, range(10, 10), 10) });
    const waits = async () => (await ts.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)[0]!.n;
    const deadline = Date.now() + 30_000;
    while ((await waits()) === 0) {
      if (Date.now() > deadline) throw new Error('the write never waited for the dataset row');
      await Bun.sleep(20);
    }
    await publishManifestVersion(tx, { datasetId: dataset!.id, reason: 'retention', add: [], remove: [earlier!.id] });
    return { pending };
  });

  expect((await pending).status).toBe(201);
  const files = await active('raced');
  expect(files.map((f) => f.rowCount)).toEqual([10]);
  expect(files[0]!.id).not.toBe(earlier!.id);
  expect(await seqs('raced')).toEqual(range(10, 10));
});
