/**
 * Answering a query: one manifest version from start to end, the catalog's
 * pruning (time range, partition key, column statistics) before any file is
 * opened, remote files through the bounded cache, and DuckDB in a worker
 * thread for the scan itself.
 */
import type { Sql } from 'postgres';
import { findDataset } from '../catalog/datasets.ts';
import { listActivePartitions } from '../catalog/manifests.ts';
import type { CatalogCache } from '../catalog/lookup-cache.ts';
import type { QueryRequest } from '../model/query.ts';
import type { Dataset, Partition, SchemaField } from '../model/records.ts';
import type { WorkerPool } from '../engine/pool.ts';
import { QueryError, type QueryInput, type QueryOutput } from '../engine/query.ts';
import { AppError, errors, isRequestFault } from '../model/errors.ts';
import type { Metrics, QueryMode } from '../observability/metrics.ts';
import { type Context, contextWith, failSpan, inSpan, NOOP_TRACER, type Span, type Tracer } from '../observability/tracing.ts';
import type { PartitionCache } from '../storage/partition-cache.ts';
import type { StorageDrivers } from '../storage/index.ts';
import { columnsWithoutNulls, fieldsInFiles, prunePartitions } from './prune.ts';
import { planQuery, type QueryLimits, type QueryPlan } from './request.ts';
import type { ReaderPins } from './reader-pins.ts';
import { ManifestSnapshots, selectPartitions, type SnapshotStats } from './manifest-snapshots.ts';


export interface QueryServiceOptions {
  sql: Sql;
  drivers: StorageDrivers;
  cache: PartitionCache;
  pool: WorkerPool;
  limits: QueryLimits;
  timeoutMs: number;
  memoryLimitBytes: number;
  /** Spans `query` (child of the request's) with `query.prepare` and `query.scan`. */
  tracer?: Tracer;
  /** Queries by mode and outcome, their time, and the partitions they scanned and pruned. */
  metrics?: Metrics;
  /** Most active partitions kept in memory across datasets (see manifest-snapshots.ts); 0 lists every query's from the catalog. */
  snapshotPartitions: number;
  /** Schema versions and storage targets, kept across queries (shared with ingestion). */
  catalogCache: CatalogCache;
  /** Pins the manifest version each query reads until it ends, so the collector keeps its files. */
  pins: ReaderPins;
}

/** The span and clock of one query, ended once with its outcome. */
interface Measured {
  mode: QueryMode;
  span: Span;
  trace: Context;
  started: number;
  partitions?: { scanned: number; pruned: number };
}

export interface QueryResult extends QueryOutput {
  mode: 'raw' | 'downsampled';
  manifestVersion: number;
  partitions: { scanned: number; pruned: number };
}

/** A prepared query: the files it reads are held until `release()`. */
interface Prepared {
  dataset: Dataset;
  fields: SchemaField[];
  plan: QueryPlan;
  input: QueryInput | null;
  scanned: number;
  pruned: number;
  release(): void;
}

export class QueryService {
  private readonly tracer: Tracer;
  private readonly snapshots: ManifestSnapshots;

  constructor(private readonly o: QueryServiceOptions) {
    this.tracer = o.tracer ?? NOOP_TRACER;
    this.snapshots = new ManifestSnapshots(o.sql, o.snapshotPartitions);
  }

  /** How long a query may run before it is stopped (TIMESTORE_QUERY_TIMEOUT_MS). */
  get timeoutMs(): number {
    return this.o.timeoutMs;
  }

  /** How the per-process snapshots of active partitions are serving (for /metrics). */
  snapshotStats(): SnapshotStats {
    return this.snapshots.stats();
  }

  /** `trace`: the request's trace context, the parent of the query's span. */
  async query(slug: string, request: QueryRequest, trace?: Context): Promise<QueryResult> {
    const m = this.measure(slug, request, trace);
    let result: QueryResult;
    try {
      const prepared = await this.prepareIn(m, slug, request);
      try {
        const input = prepared.input;
        const output = input
          ? await inSpan(this.tracer, 'query.scan', m.trace, () => this.o.pool.query(input))
          : emptyOutput(prepared);
        m.span.setAttribute('timestore.query.rows', output.rows.length);
        result = {
          mode: m.mode,
          ...output,
          columns: resultColumns(prepared.plan, prepared.fields),
          manifestVersion: prepared.dataset.manifestVersion,
          partitions: { scanned: prepared.scanned, pruned: prepared.pruned },
        };
      } finally {
        prepared.release();
      }
    } catch (err) {
      this.finish(m, err);
      throw err;
    }
    this.finish(m, null);
    return result;
  }

  /**
   * The same query as batches of rows, for CSV and NDJSON answers that are never built in memory.
   * Its span and metrics end, and its files and manifest version are released, with the last
   * batch, or when the caller calls `batches.return()` (the client went away), started or not.
   */
  async stream(
    slug: string,
    request: QueryRequest,
    trace?: Context,
  ): Promise<{ columns: { name: string; type: string }[]; batches: AsyncGenerator<Record<string, unknown>[], void, undefined> }> {
    const m = this.measure(slug, request, trace);
    let prepared: Prepared;
    try {
      prepared = await this.prepareIn(m, slug, request);
    } catch (err) {
      this.finish(m, err);
      throw err;
    }
    const columns = resultColumns(prepared.plan, prepared.fields);
    if (!prepared.input) {
      prepared.release();
      this.finish(m, null);
      return { columns, batches: (async function* () {})() };
    }
    const input = prepared.input;
    const pool = this.o.pool;
    let ended = false;
    const end = (failure: unknown) => {
      if (ended) return;
      ended = true;
      prepared.release();
      this.finish(m, failure);
    };
    const batches = (async function* () {
      let failure: unknown = null;
      try {
        yield* pool.queryStream(input, 4096);
      } catch (err) {
        failure = err;
        throw err;
      } finally {
        end(failure);
      }
    })();
    // A generator returned before its first next() skips its finally: release here as well.
    const returnBatches = batches.return.bind(batches);
    batches.return = async (value) => {
      try {
        return await returnBatches(value);
      } finally {
        end(null);
      }
    };
    return { columns, batches };
  }

  private measure(slug: string, request: QueryRequest, trace: Context | undefined): Measured {
    const mode: QueryMode = request.downsample ? 'downsampled' : 'raw';
    const span = this.tracer.startSpan('query', { attributes: { 'timestore.dataset.slug': slug, 'timestore.query.mode': mode } }, trace);
    return { mode, span, trace: contextWith(span, trace), started: performance.now() };
  }

  private async prepareIn(m: Measured, slug: string, request: QueryRequest): Promise<Prepared> {
    const prepared = await inSpan(this.tracer, 'query.prepare', m.trace, () => this.prepare(slug, request));
    m.partitions = { scanned: prepared.scanned, pruned: prepared.pruned };
    m.span.setAttributes({
      'timestore.query.partitions_scanned': prepared.scanned,
      'timestore.query.partitions_pruned': prepared.pruned,
      'timestore.manifest_version': prepared.dataset.manifestVersion,
    });
    return prepared;
  }

  /** Ends the query's span and records it: ok, rejected (the request was at fault: a 4xx answer) or failed. */
  private finish(m: Measured, error: unknown): void {
    const code = error instanceof AppError || error instanceof QueryError ? error.code : null;
    const outcome = error === null ? 'ok' : code !== null && isRequestFault(code) ? 'rejected' : 'failed';
    if (error !== null) failSpan(m.span, error);
    m.span.setAttribute('timestore.query.outcome', outcome);
    m.span.end();
    this.o.metrics?.query(m.mode, outcome, (performance.now() - m.started) / 1000, m.partitions);
  }

  private async prepare(slug: string, request: QueryRequest): Promise<Prepared> {
    const found = await findDataset(this.o.sql, slug);
    if (!found) throw errors.not_found('dataset', slug);
    if (found.status === 'archived') throw errors.dataset_archived(`dataset "${slug}" is archived and answers no queries`);
    const schema = found.schemaVersion > 0 ? await this.o.catalogCache.schemaVersion(found.id, found.schemaVersion) : null;
    const fields: SchemaField[] = schema?.fields ?? [{ name: found.timestampColumn, type: 'timestamp', nullable: false }];
    const plan = planQuery(request, fields, found.timestampColumn, this.o.limits);

    // One manifest version for the whole query, pinned until the query (or stream) ends: the
    // collector keeps the files of a pinned version even after a newer version removed them.
    const pin = await this.o.pins.pin(found.id, found.manifestVersion);
    try {
      const dataset = { ...found, manifestVersion: pin.version };
      const version = pin.version;
      const selection = { datasetId: dataset.id, version, from: plan.from, to: plan.to, partitionKey: plan.partitionKey };
      const snapshot = await this.snapshots.active(dataset.id, version);
      const [overlapping, active] = snapshot
        ? [selectPartitions(snapshot, selection), snapshot.length]
        : await Promise.all([listActivePartitions(this.o.sql, selection), this.activeCount(dataset.id, version)]);
      const selected = prunePartitions(overlapping, plan.filters, fields);
      const base = { dataset, fields, plan, scanned: selected.length, pruned: active - selected.length };
      if (selected.length === 0) {
        pin.release();
        return { ...base, input: null, release() {} };
      }

      const held = await this.acquire(selected);
      return {
        ...base,
        input: {
          files: held.paths,
          fields,
          timestampColumn: plan.timestampColumn,
          timeRange: { start: plan.from.toISOString(), end: plan.to.toISOString() },
          filters: plan.filters,
          mode: plan.mode,
          timeoutMs: this.o.timeoutMs,
          memoryLimitBytes: this.o.memoryLimitBytes,
          nonNullColumns: plan.mode.kind === 'downsample' ? columnsWithoutNulls(selected, fields) : undefined,
          fieldsInFiles: fieldsInFiles(selected, fields),
          oneSchema: selected.every((p) => p.schemaVersion === selected[0]!.schemaVersion),
        },
        release() {
          held.release();
          pin.release();
        },
      };
    } catch (err) {
      pin.release();
      throw err;
    }
  }

  private async activeCount(datasetId: string, version: number): Promise<number> {
    const [row] = await this.o.sql<{ partitionCount: number }[]>`
      SELECT partition_count FROM manifest_versions WHERE dataset_id = ${datasetId} AND version = ${version}`;
    return row?.partitionCount ?? 0;
  }

  /** Local paths of the partitions' files: in place on local targets, through the cache for remote ones. */
  private async acquire(partitions: Partition[]): Promise<{ paths: string[]; release(): void }> {
    const leases: { release(): void }[] = [];
    const release = () => {
      for (const lease of leases.splice(0)) lease.release();
    };
    try {
      const paths = await Promise.all(
        partitions.map(async (p) => {
          const lease = await this.o.cache.acquire(p, this.o.drivers.forTarget(await this.o.catalogCache.storageTarget(p.storageTargetId)));
          leases.push(lease);
          return lease.path;
        }),
      );
      return { paths, release };
    } catch (err) {
      release();
      throw err;
    }
  }
}

/**
 * The result's columns with their types in the dataset's vocabulary (timestamp, string, double,
 * integer, boolean), the same whether or not any partition was scanned.
 */
export function resultColumns(plan: QueryPlan, fields: SchemaField[]): { name: string; type: string }[] {
  const typeOf = new Map(fields.map((f) => [f.name, f.type as string]));
  const ts = { name: plan.timestampColumn, type: 'timestamp' };
  if (plan.mode.kind === 'raw') return [ts, ...plan.mode.columns.map((name) => ({ name, type: typeOf.get(name) ?? 'string' }))];
  return [
    ts,
    ...plan.mode.groupBy.map((name) => ({ name, type: 'string' })),
    ...plan.mode.aggregations.map((a) => {
      const source = typeOf.get(a.column) ?? 'double';
      const type =
        a.fn === 'count' || a.fn === 'count_distinct'
          ? 'integer'
          : a.fn === 'avg' || a.fn === 'median' || a.fn === 'percentile'
            ? 'double'
            : source;
      return { name: a.alias, type };
    }),
  ];
}

function emptyOutput(prepared: Prepared): QueryOutput {
  return { columns: resultColumns(prepared.plan, prepared.fields), rows: [], truncated: false };
}
