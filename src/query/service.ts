/**
 * Answering a query: one manifest version from start to end, the catalog's
 * pruning (time range, partition key, column statistics) before any file is
 * opened, remote files through the bounded cache, and DuckDB in a worker
 * thread for the scan itself.
 */
import type { Sql } from 'postgres';
import { datasetExtents } from '../catalog/dataset-extents.ts';
import { findDataset, listDatasets, listRecentlyWrittenDatasets } from '../catalog/datasets.ts';
import { encodeCreatedCursor } from '../catalog/keyset.ts';
import { activePartitionCount, listActivePartitions, listPartitionChanges, listRemovingVersions } from '../catalog/manifests.ts';
import type { CatalogCache } from '../catalog/lookup-cache.ts';
import { aggregationType, EVERY_INSTANT, type LatestRequest, type QueryParameters, type QueryRequest } from '../model/query.ts';
import { type Dataset, ifNamed, type Partition, sameDatasetRow, type SchemaField } from '../model/records.ts';
import { seriesKey } from '../model/series.ts';
import type { QueryStream, WorkerPool } from '../engine/pool.ts';
import { QueryError, type QueryInput, type QueryOutput, type QueryRow, type StatementTiming } from '../engine/query.ts';
import { AppError, errors, isRequestFault } from '../model/errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics, QueryMode } from '../observability/metrics.ts';
import { type Context, contextWith, failSpan, inSpan, NOOP_TRACER, type Span, type Tracer } from '../observability/tracing.ts';
import type { PartitionCache } from '../storage/partition-cache.ts';
import type { StorageDrivers } from '../storage/index.ts';
import { columnsWithoutNulls, fieldsInFiles, prunePartitions } from './prune.ts';
import { type LatestPlan, planLatest, planQuery, type QueryLimits, type QueryPlan, type ScanPlan } from './request.ts';
import type { ReaderPins } from './reader-pins.ts';
import { ManifestSnapshots, selectPartitions, type SnapshotStats } from './manifest-snapshots.ts';
import { type CachedAnswer, answerLastpoint, answerLatest, lastpointForm, latestFromCache } from './latest-answer.ts';
import { LatestCache, type LatestCacheStats, type LatestDataset, type LatestTable } from './latest-cache.ts';
import { type DatasetDescription, describeDataset } from './dataset-description.ts';
import { queryFromParameters } from './parameters.ts';
import { countsFromStatistics } from './statistics-answer.ts';

/** A query as the POST body asks it, or as the query string of the GET form does. */
export type QueryAsked = QueryRequest | { parameters: QueryParameters };

/** What the request brings besides its question: its trace, and the dataset's row if its scope check already read it. */
export interface RequestContext {
  trace?: Context;
  dataset?: Dataset;
  /**
   * When `dataset` is the row as this process read it for an earlier request: the catalog's row
   * now (null: the dataset is gone), or the scope check's refusal. A query runs on `dataset` while
   * this is read, and again on the catalog's row if the two differ.
   */
  confirmed?: Promise<Dataset | null>;
}

function modeOf(asked: QueryAsked): QueryMode {
  return ('parameters' in asked ? asked.parameters.interval !== undefined : asked.downsample !== undefined) ? 'downsampled' : 'raw';
}

export interface DatasetListRequest {
  /** Case-insensitive substring of the slug or name. */
  search?: string;
  /** `nextCursor` of the previous page. */
  cursor?: string;
  limit: number;
}
import { SqlStatements } from './sql.ts';

export interface QueryServiceOptions {
  sql: Sql;
  drivers: StorageDrivers;
  cache: PartitionCache;
  pool: WorkerPool;
  limits: QueryLimits;
  /** Most partitions and partition file bytes one query may read once pruned (0: no limit). */
  scanLimits?: { maxPartitions: number; maxBytes: number };
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
  /** Most series whose latest rows the process keeps across datasets (latest-cache.ts); 0 turns the cache off. */
  latestCacheSeries: number;
  /** Where failures of the latest-value cache's background work are reported. */
  log?: Logger;
}

/** Datasets whose latest rows are read into the latest-value cache at start (see `seedLatest`). */
const SEEDED_DATASETS = 100;

/** The span and clock of one query, ended once with its outcome. */
interface Measured {
  mode: QueryMode;
  span: Span;
  trace: Context;
  started: number;
  partitions?: { scanned: number; pruned: number };
}

export interface QueryResult {
  mode: QueryMode;
  columns: QueryOutput['columns'];
  truncated: boolean;
  rowCount: number;
  /** The rows as a UTF-8 JSON array of row objects: sent on as they are, never parsed here. */
  rowsJson: Uint8Array;
  manifestVersion: number;
  partitions: { scanned: number; pruned: number };
  source: AnswerSource;
}

/**
 * `cache`: answered from the latest-value cache; `statistics`: from the partitions' statistics in
 * the catalog (statistics-answer.ts); neither reads a file. `files`: by a scan.
 */
export type AnswerSource = 'cache' | 'statistics' | 'files';

/**
 * A prepared query: answered without a scan (`cached`, from `source`; `dataset.manifestVersion` is
 * the version the answer reflects), or with the files it reads held until `release()`.
 */
interface Prepared {
  dataset: Dataset;
  fields: SchemaField[];
  plan: ScanPlan;
  source: AnswerSource;
  cached: CachedAnswer | null;
  input: QueryInput | null;
  scanned: number;
  pruned: number;
  release(): void;
}

/** How one kind of request is planned, and answered from the latest-value cache when it can be. */
interface Planner<P extends ScanPlan> {
  plan(dataset: Dataset, fields: SchemaField[]): P;
  fromCache(dataset: Dataset, fields: SchemaField[], plan: P): Promise<{ answer: CachedAnswer; version: number } | null>;
  /** The answer from the statistics of the partitions the query would read, when they give it. */
  fromStatistics?(plan: P, partitions: readonly Partition[]): QueryRow[] | null;
}

export class QueryService {
  private readonly tracer: Tracer;
  private readonly snapshots: ManifestSnapshots;
  private readonly latestCache: LatestCache;
  /** Read-only SQL over datasets (sql.ts), on this service's pins, snapshots and partition cache. */
  readonly statements: SqlStatements;

  constructor(private readonly o: QueryServiceOptions) {
    this.tracer = o.tracer ?? NOOP_TRACER;
    this.snapshots = new ManifestSnapshots(o.sql, o.snapshotPartitions);
    this.statements = new SqlStatements({
      sql: o.sql,
      pool: o.pool,
      pins: o.pins,
      snapshots: this.snapshots,
      catalogCache: o.catalogCache,
      acquire: (partitions) => this.acquire(partitions),
      maxRows: o.limits.maxRows,
      timeoutMs: o.timeoutMs,
      memoryLimitBytes: o.memoryLimitBytes,
      tracer: o.tracer,
    });
    this.latestCache = new LatestCache(
      {
        pinned: async (datasetId, atLeast, read) => {
          const pin = await o.pins.pin(datasetId, atLeast);
          try {
            return await read(pin.version);
          } finally {
            pin.release();
          }
        },
        active: async (datasetId, version) => (await this.snapshots.active(datasetId, version)) ?? listActivePartitions(o.sql, { datasetId, version }),
        changes: async (datasetId, after, upTo) => {
          const [partitions, removals] = await Promise.all([
            listPartitionChanges(o.sql, datasetId, after, upTo),
            listRemovingVersions(o.sql, datasetId, after, upTo),
          ]);
          return { partitions, removals };
        },
        latestRows: (dataset, partitions, limit) => this.latestRows(dataset, partitions, limit),
      },
      o.latestCacheSeries,
    );
  }

  /** How long a query may run before it is stopped (TIMESTORE_QUERY_TIMEOUT_MS). */
  get timeoutMs(): number {
    return this.o.timeoutMs;
  }

  /** How the per-process snapshots of active partitions are serving (for /metrics). */
  snapshotStats(): SnapshotStats {
    return this.snapshots.stats();
  }

  /** How the latest-value cache is serving (for /metrics). */
  latestCacheStats(): LatestCacheStats {
    return this.latestCache.stats();
  }

  /** `context.trace`: the request's trace context, the parent of the query's span. */
  query(slug: string, request: QueryAsked, context: RequestContext = {}): Promise<QueryResult> {
    return this.answer(slug, modeOf(request), this.queryPlanner(request), context);
  }

  /** The latest row of every series (POST /datasets/:slug/latest): from the latest-value cache when it can answer, else from the files. */
  latest(slug: string, request: LatestRequest, context: RequestContext = {}): Promise<QueryResult> {
    return this.answer(slug, 'latest', this.latestPlanner(request), context);
  }

  /** A dataset as its readers see it: schema, series key, time range and totals; 404 unknown, 409 archived. */
  async describe(slug: string): Promise<DatasetDescription> {
    const { found } = await this.lookup(slug);
    const extents = await datasetExtents(this.o.sql, [found.id]);
    return describeDataset(found, await this.schemaFields(found), extents.get(found.id));
  }

  /**
   * The datasets that `mayRead` accepts, archived ones left out, oldest first, `limit` at a time:
   * the catalog is read page by page until the page is full, so no page tells about the others.
   */
  async datasets(mayRead: (dataset: Dataset) => boolean, request: DatasetListRequest): Promise<{ datasets: DatasetDescription[]; nextCursor: string | null }> {
    const chosen: Dataset[] = [];
    let cursor: string | null = request.cursor ?? null;
    let nextCursor: string | null = null;
    scan: for (;;) {
      const page = await listDatasets(this.o.sql, { search: request.search, cursor, limit: 200 });
      for (const [index, dataset] of page.datasets.entries()) {
        if (dataset.status === 'archived' || !mayRead(dataset)) continue;
        chosen.push(dataset);
        if (chosen.length === request.limit) {
          const more = index < page.datasets.length - 1 || page.nextCursor !== null;
          nextCursor = more ? encodeCreatedCursor('dataset', dataset) : null;
          break scan;
        }
      }
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
    }
    const extents = await datasetExtents(this.o.sql, chosen.map((d) => d.id));
    const datasets = await Promise.all(chosen.map(async (d) => describeDataset(d, await this.schemaFields(d), extents.get(d.id))));
    return { datasets, nextCursor };
  }

  /**
   * A manifest version this process has just published (the ingest writer calls this): a dataset
   * whose latest rows the cache keeps has them brought forward now, not by the next query.
   */
  published(datasetId: string, version: number): void {
    if (!this.latestCache.holds(datasetId)) return;
    this.refreshLatest(datasetId, version).catch((err) =>
      this.o.log?.warn({ err, datasetId, version }, 'latest-value cache: not brought forward after a publish; the next query does it'),
    );
  }

  /**
   * Seeds the latest-value cache from the files of the datasets written most recently (at most
   * {@link SEEDED_DATASETS}), one at a time and the most recent last, so that the cache's bound
   * drops older ones first: the first latest-per-series query after a start finds its rows ready.
   * Run in the background at start; a dataset that fails is left to its first query.
   */
  async seedLatest(): Promise<LatestCacheStats> {
    if (this.latestCache.enabled) {
      const recent = await listRecentlyWrittenDatasets(this.o.sql, SEEDED_DATASETS);
      for (const dataset of recent.reverse()) {
        await this.refreshLatest(dataset.id, dataset.manifestVersion).catch((err) =>
          this.o.log?.warn({ err, dataset: dataset.slug }, 'latest-value cache: not seeded at start; the first query seeds it'),
        );
      }
    }
    return this.latestCache.stats();
  }

  private async answer<P extends ScanPlan>(slug: string, mode: QueryMode, planner: Planner<P>, context: RequestContext): Promise<QueryResult> {
    const m = this.measure(slug, mode, context.trace);
    let result: QueryResult;
    try {
      result = await this.onConfirmedRow(m, context, (read) => this.answerOn(m, slug, planner, read));
    } catch (err) {
      this.finish(m, err);
      throw err;
    }
    this.finish(m, null);
    return result;
  }

  /**
   * `attempt` on the row the request's scope check passed on. A recent row (`context.confirmed`) is
   * used while the catalog's current row is read; what `attempt` gave on it (answer or error) is
   * kept when the two rows are equal, else `attempt` runs again on the current row.
   */
  private async onConfirmedRow<T>(m: Measured, context: RequestContext, attempt: (read: Dataset | undefined) => Promise<T>): Promise<T> {
    const { dataset: recent, confirmed } = context;
    if (!confirmed || !recent) {
      m.span.setAttribute('timestore.query.dataset_row', 'read');
      return attempt(recent);
    }
    const outcome = await attempt(recent).then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
    const current = await confirmed;
    const same = current !== null && sameDatasetRow(current, recent);
    m.span.setAttribute('timestore.query.dataset_row', same ? 'recent' : 'outdated');
    if (!same) return attempt(current ?? undefined);
    if ('error' in outcome) throw outcome.error;
    return outcome.value;
  }

  private async answerOn<P extends ScanPlan>(m: Measured, slug: string, planner: Planner<P>, read: Dataset | undefined): Promise<QueryResult> {
    const prepared = await this.prepareIn(m, slug, planner, read);
    try {
      const input = prepared.input;
      const output = prepared.cached
        ? encoded(prepared.cached)
        : input
          ? await inSpan(this.tracer, 'query.scan', m.trace, async (scan, scanContext) => {
              const scanned = await this.o.pool.queryEncoded(input);
              m.span.setAttribute('timestore.query.threads', scanned.threads);
              if (scan.isRecording()) {
                scan.setAttribute('timestore.query.scan.on_thread_ms', scanned.onThreadMs);
                this.traceStatements(scanned.statements, scanContext);
              }
              return scanned;
            })
          : encoded({ rows: [], truncated: false });
      m.span.setAttribute('timestore.query.rows', output.rowCount);
      return {
        mode: m.mode,
        rowsJson: output.rowsJson,
        rowCount: output.rowCount,
        truncated: output.truncated,
        columns: resultColumns(prepared.plan, prepared.fields),
        manifestVersion: prepared.dataset.manifestVersion,
        partitions: { scanned: prepared.scanned, pruned: prepared.pruned },
        source: prepared.source,
      };
    } finally {
      prepared.release();
    }
  }

  /**
   * The same query as batches of rows, for CSV and NDJSON answers that are never built in memory.
   * Its span and metrics end, and its files and manifest version are released, with the last
   * batch, or when the caller calls `batches.return()` (the client went away), started or not.
   */
  async stream(
    slug: string,
    request: QueryAsked,
    context: RequestContext = {},
  ): Promise<{ columns: { name: string; type: string }[]; batches: AsyncGenerator<Record<string, unknown>[], void, undefined> }> {
    const m = this.measure(slug, modeOf(request), context.trace);
    let prepared: Prepared;
    try {
      // Rows streamed cannot be taken back: a recent row is confirmed before the first is read.
      const read = context.confirmed ? ((await context.confirmed) ?? undefined) : context.dataset;
      prepared = await this.prepareIn(m, slug, this.queryPlanner(request), read);
    } catch (err) {
      this.finish(m, err);
      throw err;
    }
    const columns = resultColumns(prepared.plan, prepared.fields);
    if (!prepared.input) {
      prepared.release();
      this.finish(m, null);
      const rows = prepared.cached?.rows ?? [];
      return {
        columns,
        batches: (async function* () {
          if (rows.length > 0) yield rows;
        })(),
      };
    }
    // Started now, not at the first read, so that a full stream lane is refused (503 queue_full)
    // before the answer's status is sent.
    let stream: QueryStream;
    try {
      stream = this.o.pool.queryStream(prepared.input, 4096);
    } catch (err) {
      prepared.release();
      this.finish(m, err);
      throw err;
    }
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
        yield* stream;
      } catch (err) {
        failure = err;
        throw err;
      } finally {
        end(failure);
      }
    })();
    // A generator returned before its first next() skips its finally: cancel and release here as well.
    const returnBatches = batches.return.bind(batches);
    batches.return = async (value) => {
      try {
        return await returnBatches(value);
      } finally {
        stream.cancel();
        end(null);
      }
    };
    return { columns, batches };
  }

  private measure(slug: string, mode: QueryMode, trace: Context | undefined): Measured {
    const span = this.tracer.startSpan('query', { attributes: { 'timestore.dataset.slug': slug, 'timestore.query.mode': mode } }, trace);
    return { mode, span, trace: contextWith(span, trace), started: performance.now() };
  }

  private async prepareIn<P extends ScanPlan>(m: Measured, slug: string, planner: Planner<P>, read: Dataset | undefined): Promise<Prepared> {
    const prepared = await inSpan(this.tracer, 'query.prepare', m.trace, () => this.prepare(slug, planner, read));
    m.partitions = { scanned: prepared.scanned, pruned: prepared.pruned };
    m.span.setAttributes({
      'timestore.query.partitions_scanned': prepared.scanned,
      'timestore.query.partitions_pruned': prepared.pruned,
      'timestore.manifest_version': prepared.dataset.manifestVersion,
      'timestore.query.source': prepared.source,
    });
    return prepared;
  }

  /**
   * A `query.statement` span per statement the query thread ran, from its times there: what is
   * left of `query.scan` around them is the trip to that thread and back. The times go to the SDK
   * as this thread's `performance.now()` values, which it places on the clock of every other span.
   */
  private traceStatements(statements: StatementTiming[], scan: Context): void {
    const here = (at: number) => at - performance.timeOrigin;
    for (const s of statements) {
      const attributes = { 'timestore.query.statement': s.role, 'timestore.query.statement.execute_ms': s.executedAt - s.startedAt };
      this.tracer.startSpan('query.statement', { startTime: here(s.startedAt), attributes }, scan).end(here(s.endedAt));
    }
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

  /** The dataset named `slug` (`read`: its row as this request already read it, if it did). */
  private async lookup(slug: string, read?: Dataset): Promise<{ found: Dataset; fields: SchemaField[] }> {
    const found = ifNamed(read, slug) ?? (await findDataset(this.o.sql, slug));
    if (!found) throw errors.not_found('dataset', slug);
    if (found.status === 'archived') throw errors.dataset_archived(`dataset "${slug}" is archived and answers no queries`);
    return { found, fields: (await this.schemaFields(found)) ?? [{ name: found.timestampColumn, type: 'timestamp', nullable: false }] };
  }

  /** The fields of the dataset's current schema version; null before its first batch. */
  private async schemaFields(dataset: Dataset): Promise<SchemaField[] | null> {
    if (dataset.schemaVersion === 0) return null;
    return (await this.o.catalogCache.schemaVersion(dataset.id, dataset.schemaVersion))?.fields ?? null;
  }

  private async prepare<P extends ScanPlan>(slug: string, planner: Planner<P>, read: Dataset | undefined): Promise<Prepared> {
    const { found, fields } = await this.lookup(slug, read);
    const plan = planner.plan(found, fields);
    const cached = await planner.fromCache(found, fields, plan);
    if (cached) {
      const { version, answer } = cached;
      return { dataset: { ...found, manifestVersion: version }, fields, plan, source: 'cache', cached: answer, input: null, scanned: 0, pruned: 0, release() {} };
    }

    // One manifest version for the whole query, pinned until the query (or stream) ends: the
    // collector keeps the files of a pinned version even after a newer version removed them.
    const pin = await this.o.pins.pin(found.id, found.manifestVersion);
    try {
      const dataset = { ...found, manifestVersion: pin.version };
      const version = pin.version;
      const selection = { datasetId: dataset.id, version, from: plan.from ?? undefined, to: plan.to ?? undefined, partitionKey: plan.partitionKey };
      const snapshot = await this.snapshots.active(dataset.id, version);
      const [overlapping, active] = snapshot
        ? [selectPartitions(snapshot, selection), snapshot.length]
        : await Promise.all([listActivePartitions(this.o.sql, selection), activePartitionCount(this.o.sql, dataset.id, version)]);
      const selected = prunePartitions(overlapping, plan.filters, fields);
      const counted = planner.fromStatistics?.(plan, selected);
      if (counted) {
        pin.release();
        return { dataset, fields, plan, source: 'statistics', cached: { rows: counted, truncated: false }, input: null, scanned: 0, pruned: active - selected.length, release() {} };
      }
      this.checkScanSize(dataset.slug, selected);
      const base = { dataset, fields, plan, source: 'files' as const, cached: null, scanned: selected.length, pruned: active - selected.length };
      // Without rows, only a gap-filled downsample without groupBy has an answer: its empty buckets.
      const mode = plan.mode;
      const emptyBuckets = mode.kind === 'downsample' && mode.fillGaps === true && mode.groupBy.length === 0;
      if (selected.length === 0 && !emptyBuckets) {
        pin.release();
        return { ...base, input: null, release() {} };
      }

      const held = selected.length > 0 ? await this.acquire(selected) : { paths: [], release() {} };
      return {
        ...base,
        input: {
          files: held.paths,
          fields,
          timestampColumn: plan.timestampColumn,
          timeRange: { start: plan.from?.toISOString() ?? EVERY_INSTANT.start, end: plan.to?.toISOString() ?? EVERY_INSTANT.end },
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

  /** Refuses a query that would read more partitions or bytes than allowed, before any file is fetched. */
  private checkScanSize(slug: string, selected: readonly Partition[]): void {
    const { maxPartitions = 0, maxBytes = 0 } = this.o.scanLimits ?? {};
    const bytes = selected.reduce((n, p) => n + Number(p.sizeBytes), 0);
    const overPartitions = maxPartitions > 0 && selected.length > maxPartitions;
    const overBytes = maxBytes > 0 && bytes > maxBytes;
    if (!overPartitions && !overBytes) return;
    const what = overPartitions ? `${selected.length} partitions (at most ${maxPartitions})` : `${bytes} bytes of partition files (at most ${maxBytes})`;
    throw errors.query_too_large(`the query of dataset "${slug}" would read ${what}: narrow its time range, partition key or filters`, {
      partitions: selected.length,
      bytes,
      maxPartitions,
      maxBytes,
    });
  }

  private queryPlanner(asked: QueryAsked): Planner<QueryPlan> {
    return {
      plan: (dataset, fields) => planQuery('parameters' in asked ? queryFromParameters(asked.parameters, fields) : asked, fields, dataset.timestampColumn, this.o.limits),
      fromCache: async (dataset, fields, plan) => {
        // Only a downsample in the lastpoint form; other queries never ask the cache.
        if (!this.latestCache.enabled) return null;
        const key = seriesKey(dataset, fields);
        const form = lastpointForm(plan, key, fields);
        return form ? this.fromLatestCache(dataset, fields, key, `lastpoint ${JSON.stringify(plan)}`, (table) => answerLastpoint(table, plan, form, fields)) : null;
      },
      fromStatistics: countsFromStatistics,
    };
  }

  private latestPlanner(request: LatestRequest): Planner<LatestPlan> {
    return {
      plan: (dataset, fields) => planLatest(request, fields, dataset, this.o.limits),
      fromCache: async (dataset, fields, plan) => {
        const key = seriesKey(dataset, fields);
        if (this.latestCache.enabled && !latestFromCache(plan, key, fields)) {
          this.latestCache.fellBack('request');
          return null;
        }
        return this.fromLatestCache(dataset, fields, key, `latest ${JSON.stringify(plan)}`, (table) => answerLatest(table, plan, fields));
      },
    };
  }

  /**
   * The answer from the latest-value cache, or null (counted with its reason) when the files must
   * answer; `request` names what `answer` computes, for the cache to keep its answer (the plan
   * says everything it depends on besides the rows and the schema, which an entry never changes).
   */
  private async fromLatestCache(
    dataset: Dataset,
    fields: SchemaField[],
    key: string[],
    request: string,
    answer: (table: LatestTable) => CachedAnswer | null,
  ): Promise<{ answer: CachedAnswer; version: number } | null> {
    const cache = this.latestCache;
    let outcome: Awaited<ReturnType<LatestCache['table']>>;
    try {
      outcome = await cache.table(latestDataset(dataset, fields, key));
    } catch (err) {
      this.o.log?.warn({ err, dataset: dataset.slug }, 'latest-value cache: could not be brought up to date; answering from the files');
      cache.fellBack('error');
      return null;
    }
    if ('declined' in outcome) {
      cache.fellBack(outcome.declined);
      return null;
    }
    const { table } = outcome;
    const answered = table.remembered(request, () => answer(table));
    if (!answered) {
      cache.fellBack('request');
      return null;
    }
    cache.answered(outcome.waited);
    return { answer: answered, version: table.version };
  }

  private async refreshLatest(datasetId: string, version: number): Promise<void> {
    const found = await findDataset(this.o.sql, datasetId);
    if (!found || found.status === 'archived') return;
    const fields = await this.schemaFields(found);
    if (!fields) return;
    const dataset = { ...found, manifestVersion: Math.max(found.manifestVersion, version) };
    await this.latestCache.table(latestDataset(dataset, fields, seriesKey(found, fields)));
  }

  /** The latest row of every series in these partitions, every field, for the latest-value cache. */
  private async latestRows(dataset: LatestDataset, partitions: readonly Partition[], limit: number): Promise<{ rows: QueryRow[]; truncated: boolean }> {
    const held = await this.acquire([...partitions]);
    try {
      const ts = dataset.timestampColumn;
      const output = await this.o.pool.query({
        files: held.paths,
        fields: dataset.fields,
        timestampColumn: ts,
        timeRange: EVERY_INSTANT,
        filters: [],
        mode: {
          kind: 'latest',
          by: dataset.key,
          columns: dataset.fields.map((f) => f.name).filter((n) => n !== ts && !dataset.key.includes(n)),
          order: 'asc',
          limit,
        },
        timeoutMs: this.o.timeoutMs,
        memoryLimitBytes: this.o.memoryLimitBytes,
        fieldsInFiles: fieldsInFiles([...partitions], dataset.fields),
      });
      return { rows: output.rows, truncated: output.truncated };
    } finally {
      held.release();
    }
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
export function resultColumns(plan: ScanPlan, fields: SchemaField[]): { name: string; type: string }[] {
  const typeOf = new Map(fields.map((f) => [f.name, f.type as string]));
  const ts = { name: plan.timestampColumn, type: 'timestamp' };
  if (plan.mode.kind === 'raw') return [ts, ...plan.mode.columns.map((name) => ({ name, type: typeOf.get(name) ?? 'string' }))];
  if (plan.mode.kind === 'latest') return [ts, ...[...plan.mode.by, ...plan.mode.columns].map((name) => ({ name, type: typeOf.get(name) ?? 'string' }))];
  return [
    ts,
    ...plan.mode.groupBy.map((name) => ({ name, type: 'string' })),
    ...plan.mode.aggregations.map((a) => ({ name: a.alias, type: aggregationType(a.fn, typeOf.get(a.column) ?? 'double', a.fill) })),
  ];
}

function latestDataset(dataset: Dataset, fields: SchemaField[], key: string[]): LatestDataset {
  return {
    id: dataset.id,
    manifestVersion: dataset.manifestVersion,
    schemaVersion: dataset.schemaVersion,
    timestampColumn: dataset.timestampColumn,
    fields,
    key,
  };
}

/** An answer built here (from the cache, or empty) in the form of a scan's; encoded once, as the cache may keep the answer. */
function encoded(answer: CachedAnswer): { rowsJson: Uint8Array; rowCount: number; truncated: boolean } {
  answer.json ??= new TextEncoder().encode(JSON.stringify(answer.rows));
  return { rowsJson: answer.json, rowCount: answer.rows.length, truncated: answer.truncated };
}
