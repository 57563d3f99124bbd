/**
 * The query service's catalog steps, run in the benchmark process with timestore's own modules
 * (loaded from the source the server runs, so `--at` compares like with like): for a request it
 * does what src/query/service.ts `prepare` does — findDataset, the schema version and the active
 * partitions (kept per process since the manifest snapshots; before them listActivePartitions, the
 * manifest's partition count and getStorageTarget per target), planQuery, prunePartitions — and
 * times it; then src/engine/query-sql.ts `buildQuery` gives the exact statement and
 * parameters a worker would run. DuckDB alone runs that statement on the same files: the floor.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { QueryBody } from './shapes.ts';

type Connection = typeof import('../../src/catalog/connection.ts');
type Datasets = typeof import('../../src/catalog/datasets.ts');
type SchemaVersions = typeof import('../../src/catalog/schema-versions.ts');
type Manifests = typeof import('../../src/catalog/manifests.ts');
type StorageTargets = typeof import('../../src/catalog/storage-targets.ts');
type Request = typeof import('../../src/query/request.ts');
type Prune = typeof import('../../src/query/prune.ts');
type QuerySql = typeof import('../../src/engine/query-sql.ts');
type Snapshots = typeof import('../../src/query/manifest-snapshots.ts');
type CatalogCacheModule = typeof import('../../src/catalog/lookup-cache.ts');
type QueryInput = import('../../src/engine/query-sql.ts').QueryInput;
type Partition = import('../../src/model/records.ts').Partition;

/** A bound parameter as JSON (bigints as decimal strings), for the DuckDB-alone process. */
export type JsonParam = { type: string; value: unknown };

export interface Planned {
  input: QueryInput;
  /** Local paths of the partitions the server would scan, in its order. */
  files: string[];
  partitions: Array<{ path: string; start: number; end: number }>;
  /** The catalog steps (round trips to PostgreSQL plus planning and pruning), ms. */
  catalogMs: number;
}

export interface Planner {
  prepare(slug: string, body: QueryBody): Promise<Planned | null>;
  /** The worker's statement for `input` (optionally over other files). */
  statement(input: QueryInput, files?: string[]): { sql: string; params: JsonParam[] };
  /** Every active partition of a dataset, oldest first. */
  allPartitions(slug: string): Promise<Array<{ path: string; start: number; end: number; rows: number }>>;
  close(): Promise<void>;
}

const LIMITS = { maxRows: 100_000, defaultRows: 10_000, maxBuckets: 100_000 }; // the server's defaults

export async function createPlanner(sourceRoot: string, databaseUrl: string): Promise<Planner> {
  const load = <T>(path: string) => import(join(sourceRoot, path)) as Promise<T>;
  const { openCatalog } = await load<Connection>('src/catalog/connection.ts');
  const { findDataset } = await load<Datasets>('src/catalog/datasets.ts');
  const { getSchemaVersion } = await load<SchemaVersions>('src/catalog/schema-versions.ts');
  const { listActivePartitions } = await load<Manifests>('src/catalog/manifests.ts');
  const { getStorageTarget } = await load<StorageTargets>('src/catalog/storage-targets.ts');
  const { planQuery } = await load<Request>('src/query/request.ts');
  // Older revisions lack columnsWithoutNulls and fieldsInFiles.
  const { prunePartitions, columnsWithoutNulls, fieldsInFiles } = (await load<Prune>('src/query/prune.ts')) as Partial<Prune> &
    Pick<Prune, 'prunePartitions'>;
  const { buildQuery } = await load<QuerySql>('src/engine/query-sql.ts');
  // Revisions before the per-process manifest snapshots and catalog cache read everything from the
  // catalog for every query; the planner does what the revision's service does.
  // (The modules had shorter names until 2026-12-03: query/snapshots.ts, catalog/cache.ts.)
  const snapshotsModule = await load<Snapshots>('src/query/manifest-snapshots.ts')
    .catch(() => load<Snapshots>('src/query/snapshots.ts'))
    .catch(() => null);
  const cacheModule = await load<CatalogCacheModule>('src/catalog/lookup-cache.ts')
    .catch(() => load<CatalogCacheModule>('src/catalog/cache.ts'))
    .catch(() => null);

  const quiet = { info() {}, warn() {}, error() {}, debug() {}, trace() {}, fatal() {}, child() { return quiet; } };
  const catalog = await openCatalog({
    databaseUrl,
    schema: 'timestore',
    storageRoot: '/nonexistent',
    log: quiet as unknown as Parameters<typeof openCatalog>[0]['log'],
    maxConnections: 2,
  });
  const sql = catalog.sql;
  const snapshots = snapshotsModule ? new snapshotsModule.ManifestSnapshots(sql, 20_000) : null;
  const catalogCache = cacheModule ? new cacheModule.CatalogCache(sql) : null;
  const toFile = (p: Partition) => ({ path: fileURLToPath(p.location), start: p.startTime.getTime(), end: p.endTime.getTime() });

  return {
    async prepare(slug, body) {
      const started = performance.now();
      const dataset = await findDataset(sql, slug);
      if (!dataset) throw new Error(`dataset ${slug} not found`);
      const schema = catalogCache
        ? await catalogCache.schemaVersion(dataset.id, dataset.schemaVersion)
        : await getSchemaVersion(sql, dataset.id, dataset.schemaVersion);
      const fields = schema!.fields;
      const plan = planQuery(body as Parameters<typeof planQuery>[0], fields, dataset.timestampColumn, LIMITS);
      const version = dataset.manifestVersion;
      const selection = { datasetId: dataset.id, version, from: plan.from, to: plan.to, partitionKey: plan.partitionKey };
      const active = snapshots ? await snapshots.active(dataset.id, version) : null;
      let overlapping: Partition[];
      if (active && snapshotsModule) overlapping = snapshotsModule.selectPartitions(active, selection);
      else {
        overlapping = await listActivePartitions(sql, selection);
        await sql`SELECT partition_count FROM manifest_versions WHERE dataset_id = ${dataset.id} AND version = ${version}`;
      }
      const selected = prunePartitions(overlapping, plan.filters, fields);
      for (const id of new Set(selected.map((p) => p.storageTargetId))) {
        await (catalogCache ? catalogCache.storageTarget(id) : getStorageTarget(sql, id));
      }
      const catalogMs = performance.now() - started;
      if (selected.length === 0) return null;
      const partitions = selected.map(toFile);
      const input: QueryInput = {
        files: partitions.map((p) => p.path),
        fields,
        timestampColumn: plan.timestampColumn,
        timeRange: { start: plan.from.toISOString(), end: plan.to.toISOString() },
        filters: plan.filters,
        mode: plan.mode,
        timeoutMs: 30_000,
        memoryLimitBytes: 1_073_741_824,
        nonNullColumns: columnsWithoutNulls && plan.mode.kind === 'downsample' ? columnsWithoutNulls(selected, fields) : undefined,
        fieldsInFiles: fieldsInFiles?.(selected, fields),
      };
      return { input, files: input.files, partitions, catalogMs };
    },
    statement(input, files) {
      const built = buildQuery(files ? { ...input, files } : input);
      return { sql: built.sql, params: built.params.map((p) => ({ type: p.type, value: typeof p.value === 'bigint' ? p.value.toString() : p.value })) };
    },
    async allPartitions(slug) {
      const dataset = await findDataset(sql, slug);
      if (!dataset) throw new Error(`dataset ${slug} not found`);
      const all = await listActivePartitions(sql, { datasetId: dataset.id, version: dataset.manifestVersion });
      return all.map((p) => ({ ...toFile(p), rows: p.rowCount }));
    },
    close: () => catalog.close(),
  };
}
