/**
 * Every TIMESTORE_* variable, typed and validated in one place.
 *
 * `loadConfig(env)` reads the environment once at start; a bad value throws a
 * `ConfigError` that names every offending variable and what it accepts, and
 * the CLI turns that into a non-zero exit. `CONFIG_VARIABLES` is the documented
 * table (the README carries the same table; a test keeps them in step).
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import type { RetentionDefaults } from './model/retention.ts';

export type StorageDriver = 'local' | 's3';
export type IngestMode = 'queued' | 'inline';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
/** Where a request's scopes come from: `x-iam-scopes` set by a gateway, an API token, or nowhere (all open). */
export type AuthMode = 'headers' | 'tokens' | 'none';

export interface Config {
  host: string;
  port: number;
  /** Seconds a connection may carry no bytes before the server closes it (Bun's idle timeout). */
  httpIdleTimeoutSeconds: number;
  /** Null selects the embedded catalog kept under the storage root. */
  databaseUrl: string | null;
  pgSchema: string;
  storageDriver: StorageDriver;
  storageRoot: string;
  /** Take the configured targets' prefixes at boot although they hold objects timestore did not write, or another catalog's marker. */
  storageAdoptExisting: boolean;
  s3: {
    bucket: string;
    endpoint: string | null;
    region: string | null;
    accessKeyId: string | null;
    secretAccessKey: string | null;
    sessionToken: string | null;
    forcePathStyle: boolean;
  };
  queryCache: { enabled: boolean; dir: string; maxBytes: number };
  query: {
    maxRows: number;
    defaultRows: number;
    maxBuckets: number;
    timeoutMs: number;
    memoryLimitBytes: number;
    manifestCachePartitions: number;
    latestCacheSeries: number;
    /** Threads that run streamed (CSV, NDJSON) answers, apart from the JSON answers' (workerThreads). */
    streamThreads: number;
    /** Queries (JSON answers) that may wait for a thread; one more is answered 503 queue_full. */
    queueMax: number;
    /** Streamed answers that may wait for a stream thread; one more is answered 503 queue_full. */
    streamQueueMax: number;
    /** Most partitions one query may read after pruning (0: no limit). */
    maxPartitions: number;
    /** Most partition file bytes one query may read after pruning (0: no limit). */
    maxBytes: number;
  };
  logLevel: LogLevel;
  ingest: {
    queueName: string;
    concurrency: number;
    mode: IngestMode;
    maxBodyBytes: number;
    idempotencyTtlSeconds: number;
    /** The coalescing budget (jobs/runner.ts): rows queued for one dataset that start a write at once… */
    coalesceRows: number;
    /** …or the longest a queued batch waits for more; 0 claims every batch at once. */
    coalesceWaitMs: number;
    /** Most staged bytes one coalesced write takes (a single larger batch is written alone). */
    coalesceMaxBytes: number;
    /** Most rows one batch may carry. */
    maxBatchRows: number;
    /** Most fields a dataset's schema may hold (at most 1,024). */
    maxFields: number;
  };
  scopes: { read: string | null; admin: string | null; write: string | null };
  auth: {
    mode: AuthMode;
    /** How long a process trusts what it read about a token (so also how late it sees a revocation made by another process). */
    tokenCacheMs: number;
  };
  /** The server-wide retention policy; a dataset's own policy overrides it rule by rule. Null: no limit. */
  retention: RetentionDefaults;
  lifecycle: {
    /** Run the lifecycle scheduler and jobs inside `serve`. */
    enabled: boolean;
    intervalMs: number;
    compaction: { targetBytes: number; targetRows: number; maxBytesPerRun: number; maxFilesPerRun: number };
    /** A dataset's lifecycle job runs this long after a write published to it; 0: only the rounds. */
    compactionDelayMs: number;
    /** Unreferenced files younger than this are left alone (they may belong to a write in progress). */
    orphanMinAgeMs: number;
    /** Succeeded jobs (and failed lifecycle jobs) are purged after this; failed ingest jobs stay. */
    jobRetentionMs: number;
  };
  /** Retries of failed job attempts (src/jobs/runner.ts). */
  jobs: { retryWindowMs: number; retryMaxDelayMs: number };
  /** Threads that answer queries with JSON answers (each lane's threads: engine/lanes.ts). */
  workerThreads: number;
  /** Most bytes each DuckDB instance may spill to disk (max_temp_directory_size). */
  duckdbMaxSpillBytes: number;
  shutdownTimeoutMs: number;
  /** OTLP/HTTP span export (observability/tracing.ts); `tracesEndpoint` null: tracing off. */
  tracing: { tracesEndpoint: string | null; headers: Record<string, string>; serviceName: string };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

export interface ConfigVariable {
  name: string;
  description: string;
  default: string;
}

export const CONFIG_VARIABLES: ConfigVariable[] = [
  { name: 'TIMESTORE_HOST', description: 'Bind address for the HTTP server.', default: '`127.0.0.1`' },
  { name: 'TIMESTORE_PORT', description: 'Port for HTTP traffic (1–65535).', default: '`4100`' },
  {
    name: 'TIMESTORE_HTTP_IDLE_TIMEOUT_SECONDS',
    description:
      'A connection that carries no bytes for this long is closed (1–255). A request that waits for a job (`?wait=true`, `Prefer: wait`) or a query keeps its own connection open while it waits.',
    default: '`30`',
  },
  {
    name: 'TIMESTORE_DATABASE_URL',
    description:
      'PostgreSQL connection string for the catalog; falls back to `DATABASE_URL`. When neither is set, the catalog runs embedded under the storage root.',
    default: '_(unset: embedded catalog)_',
  },
  {
    name: 'TIMESTORE_PG_SCHEMA',
    description: 'Schema that holds every timestore table (created if missing).',
    default: '`timestore`',
  },
  { name: 'TIMESTORE_STORAGE_DRIVER', description: '`local` or `s3`: where new partitions are written by default.', default: '`local`' },
  { name: 'TIMESTORE_STORAGE_ROOT', description: 'Local root for partitions, the embedded catalog and runtime files.', default: '`./data/timestore`' },
  {
    name: 'TIMESTORE_STORAGE_ADOPT_EXISTING',
    description:
      "At boot, take the configured `local` and `s3` targets although their prefix holds objects timestore did not write (no owner marker) or another catalog's marker (`true`/`false`); this catalog's marker is then written. Without it such a boot is refused. Meant for one start, not to be left set (docs/operations.md, \"Storage that timestore owns\").",
    default: '`false`',
  },
  { name: 'TIMESTORE_S3_BUCKET', description: 'Bucket for partitions when the driver is `s3`.', default: '`timestore-data`' },
  { name: 'TIMESTORE_S3_ENDPOINT', description: 'S3-compatible endpoint URL (e.g. a radosgw or MinIO server).', default: '_(unset: AWS)_' },
  { name: 'TIMESTORE_S3_REGION', description: 'Region used for S3 operations.', default: '_(unset: `us-east-1`)_' },
  { name: 'TIMESTORE_S3_ACCESS_KEY_ID', description: 'Access key for S3 reads and writes.', default: '_(unset: SDK default chain)_' },
  { name: 'TIMESTORE_S3_SECRET_ACCESS_KEY', description: 'Secret key paired with the access key.', default: '_(unset)_' },
  { name: 'TIMESTORE_S3_SESSION_TOKEN', description: 'Session token for temporary credentials.', default: '_(unset)_' },
  { name: 'TIMESTORE_S3_FORCE_PATH_STYLE', description: 'Force path-style S3 URLs (`true`/`false`).', default: '`false`' },
  { name: 'TIMESTORE_QUERY_CACHE_ENABLED', description: 'Cache remote partitions on local disk for queries (`true`/`false`).', default: '`true`' },
  { name: 'TIMESTORE_QUERY_CACHE_DIR', description: 'Directory for cached remote partitions.', default: '`./data/timestore/cache`' },
  { name: 'TIMESTORE_QUERY_CACHE_MAX_BYTES', description: 'Upper bound for cached partition bytes.', default: '`5368709120`' },
  { name: 'TIMESTORE_QUERY_MAX_ROWS', description: 'Largest `limit` a query may ask for.', default: '`100000`' },
  { name: 'TIMESTORE_QUERY_DEFAULT_ROWS', description: 'Rows a query returns when it names no `limit`.', default: '`10000`' },
  { name: 'TIMESTORE_QUERY_MAX_BUCKETS', description: 'Most downsampling buckets one query may span (per series).', default: '`100000`' },
  { name: 'TIMESTORE_QUERY_TIMEOUT_MS', description: 'A query still running after this is stopped with a 503 `query_timeout`.', default: '`30000`' },
  {
    name: 'TIMESTORE_QUERY_MANIFEST_CACHE_PARTITIONS',
    description:
      "Most active partitions (summed over datasets) whose catalog rows a process keeps in memory for planning queries (about 2.3 KiB each with 20 columns); a dataset with more is listed from the catalog per query. `0` turns the cache off.",
    default: '`20000`',
  },
  {
    name: 'TIMESTORE_QUERY_LATEST_CACHE_SERIES',
    description:
      'Most series (summed over datasets) whose latest row a process keeps in memory to answer latest-per-series queries (about 0.4 KiB each with 20 columns); a dataset with more is answered from its files. `0` turns the cache off.',
    default: '`100000`',
  },
  {
    name: 'TIMESTORE_QUERY_STREAM_THREADS',
    description:
      'Threads that run streamed answers (`Accept: text/csv` or `application/x-ndjson`), apart from the JSON answers\' threads: a stream holds its thread for as long as its client reads, so slow readers wait for each other, never for queries, writes or `/ready`.',
    default: 'number of cores',
  },
  {
    name: 'TIMESTORE_QUERY_QUEUE_MAX',
    description: 'Queries with a JSON answer that may wait for a query thread; one more is answered 503 `queue_full` with `Retry-After` (0: none waits).',
    default: '`64`',
  },
  {
    name: 'TIMESTORE_QUERY_STREAM_QUEUE_MAX',
    description: 'Streamed answers that may wait for a stream thread; one more is answered 503 `queue_full` with `Retry-After` (0: none waits).',
    default: '`16`',
  },
  {
    name: 'TIMESTORE_QUERY_MAX_PARTITIONS',
    description: 'Most partitions one query may read once the catalog has pruned them; more is a 400 `query_too_large` (narrow the time range or filters). `0`: no limit.',
    default: '`10000`',
  },
  {
    name: 'TIMESTORE_QUERY_MAX_BYTES',
    description: 'Most partition file bytes (compressed, as stored) one query may read once pruned; more is a 400 `query_too_large`. `0`: no limit.',
    default: '`10737418240` (10 GiB)',
  },
  {
    name: 'TIMESTORE_QUERY_MEMORY_LIMIT_BYTES',
    description: "DuckDB memory limit per worker thread while it runs a query; past it the query fails with `query_memory_limit`.",
    default: '`1073741824` (1 GiB)',
  },
  { name: 'TIMESTORE_LOG_LEVEL', description: 'Log level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`.', default: '`info`' },
  { name: 'TIMESTORE_INGEST_QUEUE_NAME', description: 'Name of the job queue that ingestion jobs are written to and claimed from.', default: '`timestore_ingest_queue`' },
  { name: 'TIMESTORE_INGEST_CONCURRENCY', description: 'Ingestion jobs one process runs at once.', default: '`2`' },
  {
    name: 'TIMESTORE_INGEST_MODE',
    description:
      '`queued`: an ingest request answers 202 once its batch is durable and queued; `inline`: the request waits until the batch is published and answers 201.',
    default: '`queued`',
  },
  {
    name: 'TIMESTORE_INGEST_COALESCE_ROWS',
    description:
      'Rows queued for one dataset that start a write at once (1–1000000; one write takes at most 1000000 rows). Fewer wait for more, up to the wait below, so that one write covers many batches.',
    default: '`250000`',
  },
  {
    name: 'TIMESTORE_INGEST_COALESCE_WAIT_MS',
    description:
      "How long a queued batch waits for more of its dataset before it is written (0–60000), and twice as long while a write of its dataset runs (that write's successor then takes what queued meanwhile): bigger files and less CPU per row, against up to that much more time from acknowledgement to queryable. A batch whose client waits for it (`inline` mode, `?wait=true`, `Prefer: wait`) goes at once. `0` writes every batch as soon as a writer is free.",
    default: '`450`',
  },
  {
    name: 'TIMESTORE_INGEST_COALESCE_MAX_BYTES',
    description: 'Most staged bytes (the batches as received; Arrow as NDJSON) that one coalesced write takes; a single batch larger than this is written alone.',
    default: '`268435456` (256 MiB)',
  },
  { name: 'TIMESTORE_INGEST_MAX_BODY_BYTES', description: 'Largest ingest request body accepted (larger is a 413).', default: '`67108864` (64 MiB)' },
  {
    name: 'TIMESTORE_INGEST_MAX_BATCH_ROWS',
    description:
      'Most rows one batch may carry (1–10000000); more is a 413 `too_many_rows`. An Arrow stream is checked before its rows are decoded, and may declare no more rows than its body has bytes.',
    default: '`1000000`',
  },
  {
    name: 'TIMESTORE_INGEST_MAX_FIELDS',
    description:
      "Most fields a dataset's schema may hold, the timestamp included (2–1024): a declaration with more, or a batch or `POST /admin/datasets` that would take a dataset past it, is refused with `too_many_fields`.",
    default: '`1024`',
  },
  { name: 'TIMESTORE_IDEMPOTENCY_TTL_HOURS', description: 'How long an idempotency key is remembered.', default: '`24`' },
  {
    name: 'TIMESTORE_AUTH',
    description:
      'Where scopes come from. `headers`: the `x-iam-scopes` and `x-iam-user` headers, trusted as sent (behind a gateway that sets them). `tokens`: an API token in `Authorization: Bearer …` (`timestore token create`, `POST /admin/tokens`); `x-iam-*` headers are ignored and every route but `/health`, `/ready`, `/metrics` and the docs needs a token. `none`: every route open.',
    default: '`headers`',
  },
  {
    name: 'TIMESTORE_AUTH_TOKEN_CACHE_SECONDS',
    description:
      'How long a process trusts what it read about an API token (0–300). A token revoked through another process is still accepted here for up to this long; through this process, never.',
    default: '`10`',
  },
  {
    name: 'TIMESTORE_REQUIRE_SCOPE',
    description: 'Scope required for query access (in `x-iam-scopes`, or among a token\'s scopes).',
    default: '_(unset: open; with `TIMESTORE_AUTH=tokens`: `read`)_',
  },
  {
    name: 'TIMESTORE_ADMIN_SCOPE',
    description: 'Scope required for administrative routes; in header mode it falls back to `TIMESTORE_REQUIRE_SCOPE`.',
    default: '_(unset; with `TIMESTORE_AUTH=tokens`: `admin`)_',
  },
  {
    name: 'TIMESTORE_REQUIRE_WRITE_SCOPE',
    description: 'Scope required to create or ingest into datasets whose metadata names no write scopes.',
    default: '_(unset: open; with `TIMESTORE_AUTH=tokens`: `write`)_',
  },
  {
    name: 'TIMESTORE_RETENTION_MAX_AGE_HOURS',
    description: 'Default `maxAgeHours` for datasets whose policy sets none: partitions whose newest row is older are removed (e.g. `720` for 30 days).',
    default: '_(unset: kept forever)_',
  },
  {
    name: 'TIMESTORE_RETENTION_MAX_TOTAL_BYTES',
    description: 'Default `maxTotalBytes` for datasets whose policy sets none: the oldest partitions are removed past it.',
    default: '_(unset: no limit)_',
  },
  {
    name: 'TIMESTORE_RETENTION_DELETE_GRACE_MINUTES',
    description: 'Default `deleteGraceMinutes`: how long the files of partitions removed from the manifest are kept after their removal (files a running query or stream reads are kept until it ends anyway).',
    default: '`5`',
  },
  {
    name: 'TIMESTORE_LIFECYCLE_ENABLED',
    description: '`serve` also runs the lifecycle (retention, compaction, garbage collection); `false` leaves it to `timestore lifecycle`.',
    default: '`true`',
  },
  { name: 'TIMESTORE_LIFECYCLE_INTERVAL_SECONDS', description: 'How often a lifecycle round starts (once per interval across all processes).', default: '`300`' },
  {
    name: 'TIMESTORE_COMPACTION_TARGET_BYTES',
    description: 'Partitions smaller than this (and than the row target) are merged with their neighbours in the same key and window.',
    default: '`134217728` (128 MiB)',
  },
  { name: 'TIMESTORE_COMPACTION_TARGET_ROWS', description: 'Row target of a compacted partition.', default: '`1000000`' },
  {
    name: 'TIMESTORE_COMPACTION_DELAY_SECONDS',
    description:
      "After a write publishes to a dataset, its lifecycle job (and so its compaction) runs this much later rather than at the next round; writes in between share that run. `0`: only the rounds. Needs the lifecycle in this process.",
    default: '`60`',
  },
  { name: 'TIMESTORE_COMPACTION_MAX_BYTES_PER_RUN', description: 'Most input bytes one compaction run merges; the next run continues.', default: '`1073741824` (1 GiB)' },
  { name: 'TIMESTORE_COMPACTION_MAX_FILES_PER_RUN', description: 'Most input files one compaction run merges.', default: '`2000`' },
  {
    name: 'TIMESTORE_GC_ORPHAN_MIN_AGE_MINUTES',
    description: 'Files in a storage target that no manifest and no job short of success (queued, running or failed) references are deleted once older than this.',
    default: '`60`',
  },
  {
    name: 'TIMESTORE_JOB_RETENTION_HOURS',
    description: 'Succeeded jobs (and their results) are kept this long; failed jobs stay until an operator retries or deletes them (failed lifecycle jobs go after this too).',
    default: '`168`',
  },
  {
    name: 'TIMESTORE_JOB_RETRY_WINDOW_HOURS',
    description:
      'A job attempt that fails for a transient reason (storage, catalog, memory) is retried, with backoff from 1 s up to the cap below, until this long after the job was created; then the job fails for good and is kept, with its batch, for an operator.',
    default: '`24`',
  },
  { name: 'TIMESTORE_JOB_RETRY_MAX_DELAY_SECONDS', description: 'The longest wait between two attempts of a job.', default: '`300`' },
  {
    name: 'TIMESTORE_WORKER_THREADS',
    description:
      'Threads that answer queries with a JSON answer (each holds one DuckDB instance); a downsample that arrives while no other DuckDB work runs uses this many DuckDB threads. Streamed answers, ingest writes (`TIMESTORE_INGEST_CONCURRENCY` threads), lifecycle work (one) and the `/ready` check (one) have threads of their own.',
    default: 'number of cores',
  },
  {
    name: 'TIMESTORE_DUCKDB_MAX_SPILL_BYTES',
    description:
      'Most bytes each DuckDB instance (one per worker thread) may spill to disk under the storage root (`.runtime/duckdb-spill`) when a query or write outgrows its memory; past it a query fails with 503 `query_memory_limit` and a write is retried.',
    default: '`8589934592` (8 GiB)',
  },
  {
    name: 'TIMESTORE_SHUTDOWN_TIMEOUT_MS',
    description: 'How long SIGTERM/SIGINT waits for in-flight work before forcing exit.',
    default: '`10000`',
  },
  {
    name: 'OTEL_EXPORTER_OTLP_ENDPOINT',
    description: 'OpenTelemetry collector base URL (OTLP/HTTP); when set, spans are exported as JSON to `<url>/v1/traces`.',
    default: '_(unset: no spans exported)_',
  },
  {
    name: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
    description: 'Full URL spans are sent to; wins over `OTEL_EXPORTER_OTLP_ENDPOINT`.',
    default: '_(unset)_',
  },
  {
    name: 'OTEL_EXPORTER_OTLP_HEADERS',
    description: 'Headers sent with every span export, as `key=value` pairs separated by commas (values URL-encoded), e.g. an API key.',
    default: '_(unset)_',
  },
  { name: 'OTEL_SERVICE_NAME', description: 'The `service.name` of exported spans.', default: '`timestore`' },
];

type Env = Record<string, string | undefined>;

/** Collects every problem instead of stopping at the first, so one start reports them all. */
class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  optional(name: string): string | null {
    return this.raw(name) ?? null;
  }

  /** An integer when set, else null. */
  optionalInteger(name: string, min: number, max: number): number | null {
    return this.raw(name) === undefined ? null : this.integer(name, 0, min, max);
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      this.problems.push(`${name} must be an integer from ${min} to ${max} (got "${value}")`);
      return fallback;
    }
    return n;
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.raw(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if (['true', '1', 'yes', 'on'].includes(value)) return true;
    if (['false', '0', 'no', 'off'].includes(value)) return false;
    this.problems.push(`${name} must be true or false (got "${this.raw(name)}")`);
    return fallback;
  }

  oneOf<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if ((allowed as readonly string[]).includes(value)) return value as T;
    this.problems.push(`${name} must be one of ${allowed.join(', ')} (got "${value}")`);
    return fallback;
  }

  matching(name: string, fallback: string, pattern: RegExp, accepts: string): string {
    const value = this.raw(name) ?? fallback;
    if (!pattern.test(value)) this.problems.push(`${name} must be ${accepts} (got "${value}")`);
    return value;
  }

  url(name: string, protocols: string[]): string | null {
    const value = this.raw(name);
    if (value === undefined) return null;
    let ok = false;
    try {
      ok = protocols.includes(new URL(value).protocol);
    } catch {
      ok = false;
    }
    if (!ok) this.problems.push(`${name} must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}`);
    return value;
  }
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Config {
  const r = new Reader(env);
  const storageRoot = resolve(cwd, r.string('TIMESTORE_STORAGE_ROOT', 'data/timestore'));
  const databaseUrl = r.url('TIMESTORE_DATABASE_URL', ['postgres:', 'postgresql:']) ?? r.url('DATABASE_URL', ['postgres:', 'postgresql:']);
  const authMode = r.oneOf('TIMESTORE_AUTH', 'headers', ['headers', 'tokens', 'none'] as const);
  // With tokens nothing but the health routes is open: every rule has a scope, by default its own name.
  const tokens = authMode === 'tokens';
  const readScope = r.optional('TIMESTORE_REQUIRE_SCOPE') ?? (tokens ? 'read' : null);

  const config: Config = {
    host: r.string('TIMESTORE_HOST', '127.0.0.1'),
    port: r.integer('TIMESTORE_PORT', 4100, 1, 65535),
    httpIdleTimeoutSeconds: r.integer('TIMESTORE_HTTP_IDLE_TIMEOUT_SECONDS', 30, 1, 255),
    databaseUrl,
    pgSchema: r.matching('TIMESTORE_PG_SCHEMA', 'timestore', /^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case SQL identifier (letters, digits, _)'),
    storageDriver: r.oneOf('TIMESTORE_STORAGE_DRIVER', 'local', ['local', 's3'] as const),
    storageRoot,
    storageAdoptExisting: r.boolean('TIMESTORE_STORAGE_ADOPT_EXISTING', false),
    s3: {
      bucket: r.matching('TIMESTORE_S3_BUCKET', 'timestore-data', /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'a valid bucket name'),
      endpoint: r.url('TIMESTORE_S3_ENDPOINT', ['http:', 'https:']),
      region: r.optional('TIMESTORE_S3_REGION'),
      accessKeyId: r.optional('TIMESTORE_S3_ACCESS_KEY_ID'),
      secretAccessKey: r.optional('TIMESTORE_S3_SECRET_ACCESS_KEY'),
      sessionToken: r.optional('TIMESTORE_S3_SESSION_TOKEN'),
      forcePathStyle: r.boolean('TIMESTORE_S3_FORCE_PATH_STYLE', false),
    },
    queryCache: {
      enabled: r.boolean('TIMESTORE_QUERY_CACHE_ENABLED', true),
      dir: resolve(cwd, r.raw('TIMESTORE_QUERY_CACHE_DIR') ?? resolve(storageRoot, 'cache')),
      maxBytes: r.integer('TIMESTORE_QUERY_CACHE_MAX_BYTES', 5 * 1024 ** 3, 0, Number.MAX_SAFE_INTEGER),
    },
    query: {
      maxRows: r.integer('TIMESTORE_QUERY_MAX_ROWS', 100_000, 1, 10_000_000),
      defaultRows: r.integer('TIMESTORE_QUERY_DEFAULT_ROWS', 10_000, 1, 10_000_000),
      maxBuckets: r.integer('TIMESTORE_QUERY_MAX_BUCKETS', 100_000, 1, 100_000_000),
      timeoutMs: r.integer('TIMESTORE_QUERY_TIMEOUT_MS', 30_000, 100, 3_600_000),
      memoryLimitBytes: r.integer('TIMESTORE_QUERY_MEMORY_LIMIT_BYTES', 1024 ** 3, 64 * 1024 ** 2, 1024 ** 4),
      manifestCachePartitions: r.integer('TIMESTORE_QUERY_MANIFEST_CACHE_PARTITIONS', 20_000, 0, 10_000_000),
      latestCacheSeries: r.integer('TIMESTORE_QUERY_LATEST_CACHE_SERIES', 100_000, 0, 10_000_000),
      streamThreads: r.integer('TIMESTORE_QUERY_STREAM_THREADS', availableParallelism(), 1, 256),
      queueMax: r.integer('TIMESTORE_QUERY_QUEUE_MAX', 64, 0, 100_000),
      streamQueueMax: r.integer('TIMESTORE_QUERY_STREAM_QUEUE_MAX', 16, 0, 100_000),
      maxPartitions: r.integer('TIMESTORE_QUERY_MAX_PARTITIONS', 10_000, 0, 100_000_000),
      maxBytes: r.integer('TIMESTORE_QUERY_MAX_BYTES', 10 * 1024 ** 3, 0, Number.MAX_SAFE_INTEGER),
    },
    logLevel: r.oneOf('TIMESTORE_LOG_LEVEL', 'info', LOG_LEVELS),
    ingest: {
      queueName: r.matching('TIMESTORE_INGEST_QUEUE_NAME', 'timestore_ingest_queue', /^[A-Za-z0-9_.:-]{1,128}$/, 'letters, digits and _ . : - (at most 128)'),
      concurrency: r.integer('TIMESTORE_INGEST_CONCURRENCY', 2, 1, 256),
      mode: r.oneOf('TIMESTORE_INGEST_MODE', 'queued', ['queued', 'inline'] as const),
      maxBodyBytes: r.integer('TIMESTORE_INGEST_MAX_BODY_BYTES', 64 * 1024 ** 2, 1024, 1024 ** 3),
      idempotencyTtlSeconds: r.integer('TIMESTORE_IDEMPOTENCY_TTL_HOURS', 24, 1, 24 * 365) * 3600,
      coalesceRows: r.integer('TIMESTORE_INGEST_COALESCE_ROWS', 250_000, 1, 1_000_000),
      coalesceWaitMs: r.integer('TIMESTORE_INGEST_COALESCE_WAIT_MS', 450, 0, 60_000),
      coalesceMaxBytes: r.integer('TIMESTORE_INGEST_COALESCE_MAX_BYTES', 256 * 1024 ** 2, 1024, 1024 ** 4),
      maxBatchRows: r.integer('TIMESTORE_INGEST_MAX_BATCH_ROWS', 1_000_000, 1, 10_000_000),
      maxFields: r.integer('TIMESTORE_INGEST_MAX_FIELDS', 1024, 2, 1024),
    },
    scopes: {
      read: readScope,
      admin: r.optional('TIMESTORE_ADMIN_SCOPE') ?? (tokens ? 'admin' : readScope),
      write: r.optional('TIMESTORE_REQUIRE_WRITE_SCOPE') ?? (tokens ? 'write' : null),
    },
    auth: {
      mode: authMode,
      tokenCacheMs: r.integer('TIMESTORE_AUTH_TOKEN_CACHE_SECONDS', 10, 0, 300) * 1000,
    },
    retention: {
      maxAgeHours: r.optionalInteger('TIMESTORE_RETENTION_MAX_AGE_HOURS', 1, 24 * 365 * 100),
      maxTotalBytes: r.optionalInteger('TIMESTORE_RETENTION_MAX_TOTAL_BYTES', 1, Number.MAX_SAFE_INTEGER),
      deleteGraceMinutes: r.integer('TIMESTORE_RETENTION_DELETE_GRACE_MINUTES', 5, 0, 7 * 24 * 60),
    },
    lifecycle: {
      enabled: r.boolean('TIMESTORE_LIFECYCLE_ENABLED', true),
      intervalMs: r.integer('TIMESTORE_LIFECYCLE_INTERVAL_SECONDS', 300, 1, 7 * 86_400) * 1000,
      compaction: {
        targetBytes: r.integer('TIMESTORE_COMPACTION_TARGET_BYTES', 128 * 1024 ** 2, 1024, 1024 ** 4),
        targetRows: r.integer('TIMESTORE_COMPACTION_TARGET_ROWS', 1_000_000, 2, 1_000_000_000),
        maxBytesPerRun: r.integer('TIMESTORE_COMPACTION_MAX_BYTES_PER_RUN', 1024 ** 3, 1024, 1024 ** 4),
        maxFilesPerRun: r.integer('TIMESTORE_COMPACTION_MAX_FILES_PER_RUN', 2000, 2, 100_000),
      },
      compactionDelayMs: r.integer('TIMESTORE_COMPACTION_DELAY_SECONDS', 60, 0, 86_400) * 1000,
      orphanMinAgeMs: r.integer('TIMESTORE_GC_ORPHAN_MIN_AGE_MINUTES', 60, 0, 30 * 24 * 60) * 60_000,
      jobRetentionMs: r.integer('TIMESTORE_JOB_RETENTION_HOURS', 168, 1, 24 * 3650) * 3_600_000,
    },
    jobs: {
      retryWindowMs: r.integer('TIMESTORE_JOB_RETRY_WINDOW_HOURS', 24, 1, 24 * 365) * 3_600_000,
      retryMaxDelayMs: r.integer('TIMESTORE_JOB_RETRY_MAX_DELAY_SECONDS', 300, 1, 86_400) * 1000,
    },
    workerThreads: r.integer('TIMESTORE_WORKER_THREADS', availableParallelism(), 1, 256),
    duckdbMaxSpillBytes: r.integer('TIMESTORE_DUCKDB_MAX_SPILL_BYTES', 8 * 1024 ** 3, 1024 ** 2, 1024 ** 5),
    shutdownTimeoutMs: r.integer('TIMESTORE_SHUTDOWN_TIMEOUT_MS', 10_000, 0, 600_000),
    tracing: readTracing(r),
  };

  if (config.s3.secretAccessKey && !config.s3.accessKeyId) {
    r.problems.push('TIMESTORE_S3_SECRET_ACCESS_KEY is set but TIMESTORE_S3_ACCESS_KEY_ID is not: set both or neither');
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}

/** The OTLP span endpoint (the signal-specific URL, else the base URL + /v1/traces), its headers and service name. */
function readTracing(r: Reader): Config['tracing'] {
  const base = r.url('OTEL_EXPORTER_OTLP_ENDPOINT', ['http:', 'https:']);
  const traces = r.url('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', ['http:', 'https:']);
  const headers: Record<string, string> = {};
  for (const pair of (r.raw('OTEL_EXPORTER_OTLP_HEADERS') ?? '').split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq).trim() : '';
    let value: string | null = null;
    try {
      value = eq > 0 ? decodeURIComponent(pair.slice(eq + 1).trim()) : null;
    } catch {
      value = null;
    }
    if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(key) || value === null) {
      r.problems.push('OTEL_EXPORTER_OTLP_HEADERS must be key=value pairs separated by commas, with URL-encoded values');
      break;
    }
    headers[key] = value;
  }
  return {
    tracesEndpoint: traces ?? (base ? `${base.replace(/\/+$/, '')}/v1/traces` : null),
    headers,
    serviceName: r.string('OTEL_SERVICE_NAME', 'timestore'),
  };
}

/** The configuration with secrets removed, fit for a log line. */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    databaseUrl: config.databaseUrl ? redactUrl(config.databaseUrl) : 'embedded',
    s3: { ...config.s3, secretAccessKey: config.s3.secretAccessKey ? '***' : null, sessionToken: config.s3.sessionToken ? '***' : null },
    tracing: { ...config.tracing, headers: Object.fromEntries(Object.keys(config.tracing.headers).map((k) => [k, '***'])) },
  };
}

function redactUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = '***';
  return parsed.toString();
}

/**
 * The variables of the client commands (`timestore ingest | query | sql`), which talk to a server
 * and read none of the server's configuration. Their flags (`--url`, `--token`) win.
 */
export const CLIENT_CONFIG_VARIABLES: ConfigVariable[] = [
  { name: 'TIMESTORE_URL', description: 'The server the client commands talk to, e.g. `http://127.0.0.1:4100` (`--url`).', default: 'none' },
  { name: 'TIMESTORE_TOKEN', description: 'An API token the client commands send as `Authorization: Bearer …` (`--token`).', default: 'none' },
];

export interface ClientConfig {
  url: string | null;
  token: string | null;
}

export function loadClientConfig(env: Env = process.env): ClientConfig {
  const url = env.TIMESTORE_URL?.trim() || null;
  if (url !== null && !/^https?:\/\/[^/]/.test(url)) throw new ConfigError([`TIMESTORE_URL must be an http:// or https:// URL (got "${url}")`]);
  return { url, token: env.TIMESTORE_TOKEN?.trim() || null };
}
