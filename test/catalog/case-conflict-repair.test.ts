/**
 * Migration 0006 repairs datasets that hold fields differing only in case, as ingestion created them
 * before it compared names without case: a server is upgraded (stopped, started again on the same
 * catalog and storage) and the datasets ingest and answer queries again.
 */
import { afterAll, expect, test } from 'bun:test';
import { rmSync } from 'node:fs';
import postgres from 'postgres';
import { recordAuditEvent } from '../../src/catalog/audit.ts';
import { MIGRATIONS } from '../../src/catalog/migrate.ts';
import { createDataset, findDataset } from '../../src/catalog/datasets.ts';
import { listSchemaVersions, recordSchemaVersion } from '../../src/catalog/schema-versions.ts';
import type { SchemaField } from '../../src/model/records.ts';
import { type RunningServer, startServer } from '../../src/server.ts';
import { silentLog } from '../harness/catalog.ts';
import { postJson, startTestServer } from '../harness/server.ts';

const MIGRATION = '0006_case_conflicting_fields.ts';
let upgraded: RunningServer | undefined;
let storageRoot: string | undefined;
afterAll(async () => {
  await upgraded?.shutdown('test finished');
  if (storageRoot) rmSync(storageRoot, { recursive: true, force: true });
});

const v1: SchemaField[] = [
  { name: 'timestamp', type: 'timestamp', nullable: false },
  { name: 'temp', type: 'double', nullable: true },
];
const range = { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' };

async function jobOf(url: string, id: string): Promise<any> {
  return (await fetch(`${url}/ingestion/jobs/${id}`)).json();
}

test('datasets holding fields that differ only in case ingest and answer queries again after the upgrade that runs migration 0006', async () => {
  const ts = await startTestServer();
  storageRoot = ts.config.storageRoot;
  const { url } = ts;
  const sql = ts.sql;

  // "evolved": v1 {timestamp, temp} with rows; the old code then accepted a batch adding Temp (v2),
  // and one adding humidity on top of it (v3).
  const first = await postJson(`${url}/datasets/evolved/ingest?wait=true`, {
    schema: { fields: v1 },
    partition: { key: { site: 'a' } },
    rows: [{ timestamp: '2026-01-01T00:00:00Z', temp: 1.5 }],
  });
  expect(first.status).toBe(201);
  const evolved = (await findDataset(sql, 'evolved'))!;
  await sql.begin(async (tx) => {
    await recordSchemaVersion(tx, evolved.id, [...v1, { name: 'Temp', type: 'double', nullable: true }], 'timestamp');
    await recordSchemaVersion(
      tx,
      evolved.id,
      [...v1, { name: 'Temp', type: 'double', nullable: true }, { name: 'humidity', type: 'double', nullable: true }],
      'timestamp',
    );
  });

  // "declared": the old code took {timestamp, Temp, temp} in one first declaration, and temp was
  // made a sort column. Temp, declared first, is the one kept.
  const declared = await createDataset(sql, { slug: 'declared', sortColumns: ['temp'] });
  await sql.begin((tx) =>
    recordSchemaVersion(
      tx,
      declared.id,
      [
        { name: 'timestamp', type: 'timestamp', nullable: false },
        { name: 'Temp', type: 'double', nullable: true },
        { name: 'temp', type: 'double', nullable: true },
      ],
      'timestamp',
    ),
  );
  await recordAuditEvent(sql, { datasetId: declared.id, action: 'dataset.created', actor: 'old-code', details: {} });

  // Broken as users saw it: queries refused, and a batch is acknowledged and then fails to be written.
  const broken = await postJson(`${url}/datasets/evolved/query`, { timeRange: range });
  expect(broken.status).toBe(400);
  expect(broken.body.error.code).toBe('invalid_query');
  const stuck = await postJson(`${url}/datasets/evolved/ingest`, {
    schema: { fields: v1 },
    partition: { key: { site: 'a' } },
    rows: [{ timestamp: '2026-01-01T00:01:00Z', temp: 2.5 }],
  });
  expect(stuck.status).toBe(202);
  const deadline = Date.now() + 15_000;
  let job = await jobOf(url, stuck.body.jobId);
  while (!job.lastError && Date.now() < deadline) {
    await Bun.sleep(50);
    job = await jobOf(url, stuck.body.jobId);
  }
  // The writer cannot write it, whichever batches it is written with: it fails at once, its batch kept.
  expect(job).toMatchObject({ state: 'failed', lastError: expect.stringContaining('case-insensitive') });

  // The upgrade: stop, and start the new version on the same catalog and storage.
  await ts.server.shutdown('upgrade');
  const admin = postgres(ts.config.databaseUrl!, { max: 1, onnotice: () => {} });
  try {
    // The catalog as the version before the repair left it: without the repair and what came after
    // it (each later migration undone by its own `down`, newest first; the repair has none).
    const later = MIGRATIONS.slice(MIGRATIONS.findIndex((m) => m.name === MIGRATION) + 1).reverse();
    await admin.unsafe(`SET search_path TO ${ts.config.pgSchema}`);
    for (const { name } of later) await ((await import(`../../migrations/${name}`)) as { down(sql: unknown): Promise<void> }).down(admin);
    const undone = [MIGRATION, ...later.map((m) => m.name)];
    await admin`DELETE FROM ${admin(ts.config.pgSchema)}.migrations WHERE name IN ${admin(undone)}`;
  } finally {
    await admin.end();
  }
  upgraded = await startServer(ts.config, silentLog);
  const after = upgraded.catalog.sql;

  // The batch acknowledged while the dataset was broken is written once an operator retries it.
  const retried = await postJson(`${upgraded.url}/admin/jobs/${stuck.body.jobId}/retry`, {});
  expect(retried.status).toBe(200);
  const written = await upgraded.runner.waitForJob(stuck.body.jobId, 30_000);
  expect(written).toMatchObject({ state: 'succeeded' });

  const evolvedVersions = await listSchemaVersions(after, evolved.id);
  expect(evolvedVersions.map((v) => v.fields.map((f) => f.name))).toEqual([
    ['timestamp', 'temp'],
    ['timestamp', 'temp'],
    ['timestamp', 'temp', 'humidity'],
  ]);
  const declaredVersions = await listSchemaVersions(after, declared.id);
  expect(declaredVersions.map((v) => v.fields.map((f) => f.name))).toEqual([['timestamp', 'Temp']]);
  expect((await findDataset(after, 'declared'))!.sortColumns).toEqual([]);
  const audit = await after`SELECT dataset_id, details FROM audit_events WHERE action = 'schema.repaired'`;
  expect(Object.fromEntries(audit.map((a) => [a.datasetId, a.details]))).toEqual({
    [evolved.id]: { removed: [{ field: 'Temp', kept: 'temp' }], versions: [2, 3] },
    [declared.id]: { removed: [{ field: 'temp', kept: 'Temp' }], versions: [1] },
  });

  // Both datasets take batches and answer queries.
  const more = await postJson(`${upgraded.url}/datasets/evolved/ingest?wait=true`, {
    schema: { fields: [...v1, { name: 'humidity', type: 'double' }] },
    partition: { key: { site: 'a' } },
    rows: [{ timestamp: '2026-01-01T00:02:00Z', temp: 3.5, humidity: 0.4 }],
  });
  expect(more.status).toBe(201);
  const answer = await postJson(`${upgraded.url}/datasets/evolved/query`, { timeRange: range });
  expect(answer.status).toBe(200);
  expect(answer.body.rows.map((r: any) => [r.timestamp, r.temp, r.humidity])).toEqual([
    ['2026-01-01T00:00:00.000Z', 1.5, null],
    ['2026-01-01T00:01:00.000Z', 2.5, null],
    ['2026-01-01T00:02:00.000Z', 3.5, 0.4],
  ]);
  const refused = await postJson(`${upgraded.url}/datasets/evolved/ingest`, {
    schema: { fields: [v1[0], { name: 'Temp', type: 'double' }] },
    partition: { key: {} },
    rows: [{ timestamp: '2026-01-01T00:03:00Z' }],
  });
  expect(refused.status).toBe(409);
  expect(refused.body.error).toMatchObject({ code: 'field_name_conflict', details: { field: 'Temp', conflictsWith: 'temp' } });

  const declaredBatch = await postJson(`${upgraded.url}/datasets/declared/ingest?wait=true`, {
    schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'Temp', type: 'double' }] },
    partition: { key: {} },
    rows: [{ timestamp: '2026-01-01T00:00:00Z', Temp: 9 }],
  });
  expect(declaredBatch.status).toBe(201);
  const declaredAnswer = await postJson(`${upgraded.url}/datasets/declared/query`, { timeRange: range });
  expect(declaredAnswer.body.rows).toEqual([{ timestamp: '2026-01-01T00:00:00.000Z', Temp: 9 }]);
}, 120_000);
