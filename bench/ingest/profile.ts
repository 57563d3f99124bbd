/**
 * Where the time of one batch goes, measured piece by piece in one process with the real code
 * from src/ (nothing is copied; the database connection handed to the partition writer is wrapped
 * to time each statement).
 *
 *   node_modules/.bin/bun bench/ingest/profile.ts [--batches 40] [--batch 5000] [--at <git rev>] [--out bench/results]
 *
 * Main thread (what the HTTP thread does for every POST of a JSON batch):
 *   - JSON.parse of the body (TextDecoder + JSON.parse);
 *   - the TypeBox check of IngestBody as declared (compiled; `rows` an array of t.Record(t.String(),
 *     t.Unknown())): what the route ran on every row before 3f92625;
 *   - validateRows (src/ingest/validation.ts);
 *   - sha256 of the body (the idempotency hash; computed for every request before 3f92625);
 *   - LocalStorageDriver.putBytes of the body (write, fsync, rename, fsync dir);
 *   - acceptBatch end to end against a real PostgreSQL (validation, staging, the catalog statements,
 *     and the hash where that version computes it); the rest is derived by subtraction.
 * Worker (one DuckDB instance, threads=1, as src/engine/worker.ts opens it):
 *   - writePartitions over k coalesced staged bodies, for several k, split into its statements
 *     (read_json INSERT, statistics query, sorted COPY to Parquet, the rest = sha256 of the file etc).
 * The HTTP framework's own share is not isolated here: see the --cpu-prof option of run.ts.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { percentile } from './load.ts';
import { REPO_ROOT, round } from './server.ts';
import { resolveSource } from './source.ts';
import { generate, SCHEMA } from './tsbs.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const batches = Number(args.get('batches') ?? 40);
const batchSize = Number(args.get('batch') ?? 5000);
const outDir = args.get('out') ?? join(REPO_ROOT, 'bench/results');
const source = resolveSource(args.get('at'));
console.log(`timestore ${source.description}`);
const src = (path: string) => import(join(source.root, 'src', path));
const { openCatalog } = await src('catalog/connection.ts');
const { upsertStorageTarget } = await src('catalog/storage-targets.ts');
const { extractDuckDBLibrary, loadDuckDB } = await src('engine/duckdb-runtime.ts');
const { writePartitions } = await src('engine/partition-writer.ts');
// The JSON body's schema moved from the route to its format's module with decodeBody (2026-12).
const { IngestBody } = await src('ingest/formats/json.ts').then((m) => (m.IngestBody ? m : src('http/routes/ingest.ts')));
const { acceptBatch } = await src('ingest/accept.ts');
const { decodeBody } = await src('ingest/formats/index.ts').catch(() => ({ decodeBody: undefined }));
const { validateRows } = await src('ingest/validation.ts');
const { createLogger } = await src('log.ts');
const { LocalStorageDriver } = await src('storage/local.ts');
const { StorageDrivers } = await src('storage/index.ts');

const data = generate({
  hosts: 1000, hours: 24, batch: batchSize, rows: Math.max(batches, 200) * batchSize, partitionKey: {},
  cacheRoot: '/tmp/timestore-bench-data', log: console.log,
});
const bodies = await Promise.all(data.files.map((f) => Bun.file(f).bytes()));
const work = mkdtempSync(join(tmpdir(), 'timestore-bench-profile-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
if (source.root !== REPO_ROOT) process.on('exit', () => rmSync(source.root, { recursive: true, force: true }));

type Stats = { p50: number; mean: number; min: number; perRowUs: number };
const results: Record<string, Stats> = {};
function stats(samples: number[], rows = batchSize): Stats {
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { p50: round(percentile(samples, 50), 2), mean: round(mean, 2), min: round(Math.min(...samples), 2), perRowUs: round((mean * 1000) / rows, 2) };
}
async function measure(name: string, fn: (i: number) => unknown | Promise<unknown>, n = batches): Promise<Stats> {
  for (let i = 0; i < 3; i++) await fn(i); // warm up the JIT
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await fn(i % bodies.length);
    samples.push(performance.now() - t);
  }
  results[name] = stats(samples);
  console.log(`${name.padEnd(58)} p50 ${results[name]!.p50.toFixed(2).padStart(8)} ms  mean ${results[name]!.mean.toFixed(2).padStart(8)} ms`);
  return results[name]!;
}

// ---------------------------------------------------------------------------------------------
console.log(`\nmain thread, per batch of ${batchSize} rows (${Math.round(data.totalBytes / data.files.length / 1024)} KiB):`);
const parsed = bodies.map((b) => JSON.parse(new TextDecoder().decode(b)) as { rows: unknown[]; schema: { fields: never[] } });
await measure('JSON.parse (TextDecoder + JSON.parse)', (i) => JSON.parse(new TextDecoder().decode(bodies[i]!)));

const check = TypeCompiler.Compile(IngestBody);
await measure('TypeBox Check(IngestBody), per-row t.Record', (i) => {
  if (!check.Check(parsed[i])) throw new Error('invalid');
});
const rules = {
  fields: SCHEMA.fields as never[],
  timestampColumn: 'timestamp',
  strict: true,
};
await measure('validateRows (src/ingest/validation.ts)', (i) => validateRows(parsed[i]!.rows, rules));
await measure('sha256 of the body', (i) => createHash('sha256').update(bodies[i]!).digest('hex'));
const local = new LocalStorageDriver('local', { root: join(work, 'local') });
const stagedLocations: string[] = [];
await measure('LocalStorageDriver.putBytes (write + fsync + rename)', async (i) => {
  stagedLocations.push((await local.putBytes(`staging/tsbs/${crypto.randomUUID()}.json`, bodies[i]!)).location);
});

// acceptBatch against a real PostgreSQL (catalog transaction included); no runner consumes the jobs.
const catalog = await openCatalog({
  databaseUrl: await createBenchDatabase('profile'), schema: 'timestore', storageRoot: join(work, 'root'),
  log: createLogger('silent'),
});
await catalog.migrate();
await upsertStorageTarget(catalog.sql, { name: 'local', kind: 'local', description: 'bench', config: { root: join(work, 'partitions') } });
// Revisions since the catalog cache keep schema versions and storage targets across batches.
// (catalog/cache.ts until 2026-12-03.)
const { CatalogCache } = await src('catalog/lookup-cache.ts')
  .catch(() => src('catalog/cache.ts'))
  .catch(() => ({ CatalogCache: null }));
const acceptDeps = {
  sql: catalog.sql, drivers: new StorageDrivers({} as never), queue: 'timestore_ingest_queue', defaultTargetName: 'local',
  idempotencyTtlSeconds: 3600, wake() {}, catalogCache: CatalogCache ? new CatalogCache(catalog.sql) : undefined,
};
// Since decodeBody, acceptBatch takes the decoded batch (decoded here, outside the measurement, as
// the JSON.parse above is); before, the parsed body and its bytes.
const decoded = decodeBody ? bodies.map((b) => decodeBody('json', b, new URLSearchParams())) : [];
const acceptRequest = (i: number, idempotencyKey: string | null) =>
  decodeBody
    ? { datasetSlug: 'tsbs', batch: decoded[i], idempotencyKey, actor: null, traceParent: null }
    : { datasetSlug: 'tsbs', batch: parsed[i] as never, rawBody: bodies[i]!, idempotencyKey, actor: null, traceParent: null };
await measure('acceptBatch end to end (no idempotency key)', (i) => acceptBatch(acceptDeps, acceptRequest(i, null)));
await measure('  same, with an Idempotency-Key', (i) => acceptBatch(acceptDeps, acceptRequest(i, crypto.randomUUID())));
await catalog.close();
const catalogMs = results['acceptBatch end to end (no idempotency key)']!.mean
  - results['validateRows (src/ingest/validation.ts)']!.mean
  - results['LocalStorageDriver.putBytes (write + fsync + rename)']!.mean;
console.log(`${'  → the rest: catalog statements (+ hash if computed)'.padEnd(58)} mean ${catalogMs.toFixed(2).padStart(8)} ms`);

// ---------------------------------------------------------------------------------------------
console.log('\nworker, writePartitions over k coalesced bodies (DuckDB threads=1):');
const { DuckDBInstance } = await loadDuckDB(await extractDuckDBLibrary(join(work, '.runtime')));
const instance = await DuckDBInstance.create(':memory:', { threads: '1' });
const connection = await instance.connect();
let statementMs: Record<string, number> = {};
const classify = (sql: string) => {
  const s = sql.trimStart();
  if (s.startsWith('INSERT')) return 'read_json → temp table (INSERT)';
  if (s.startsWith('COPY')) return 'sorted COPY → ZSTD Parquet';
  if (s.startsWith('SELECT') && s.includes('GROUP BY')) return 'statistics query';
  return 'other statements';
};
const timed = new Proxy(connection, {
  get(target, prop, receiver) {
    const value = Reflect.get(target, prop, receiver);
    if ((prop === 'run' || prop === 'runAndReadAll') && typeof value === 'function') {
      return async (sql: string, ...rest: unknown[]) => {
        const t = performance.now();
        try {
          return await value.call(target, sql, ...rest);
        } finally {
          const k = classify(sql);
          statementMs[k] = (statementMs[k] ?? 0) + performance.now() - t;
        }
      };
    }
    return typeof value === 'function' ? value.bind(target) : value;
  },
}) as DuckDBConnection;
const stagedPaths = bodies.map((b, i) => {
  const p = join(work, `staged-${i}.json`);
  writeFileSync(p, b);
  return p;
});
const worker: Record<string, unknown> = {};
for (const k of [1, 4, 16, 72, 200].filter((k) => k <= stagedPaths.length)) {
  const rounds = Math.max(1, Math.min(5, Math.floor(stagedPaths.length / k)));
  const out = join(work, `out-${k}`);
  mkdirSync(out);
  statementMs = {};
  let total = 0;
  let rows = 0;
  let files = 0;
  for (let r = 0; r < rounds; r++) {
    const inputs = stagedPaths.slice(r * k, r * k + k).map((path) => ({ path, format: 'json-document' as const, partitionKey: {} }));
    const t = performance.now();
    const written: Array<{ rowCount: number }> = await writePartitions(timed, {
      inputs, fields: SCHEMA.fields as never, timestampColumn: 'timestamp', windowSeconds: 86400, outputDir: out,
    });
    total += performance.now() - t;
    rows += written.reduce((n, w) => n + w.rowCount, 0);
    files += written.length;
  }
  const perBatch = (ms: number) => round(ms / (rounds * k), 2);
  const sqlTotal = Object.values(statementMs).reduce((a, b) => a + b, 0);
  const split = Object.fromEntries([
    ...Object.entries(statementMs).map(([name, ms]) => [name, perBatch(ms)]),
    ['file sha256 + stat + JS', perBatch(total - sqlTotal)],
  ]);
  worker[`k=${k}`] = { msPerBatch: perBatch(total), rowsPerSecondOneThread: Math.round(rows / (total / 1000)), files, split };
  console.log(`k=${String(k).padStart(3)}: ${perBatch(total).toFixed(1).padStart(6)} ms/batch, ${Math.round(rows / (total / 1000))} rows/s on one thread; ${JSON.stringify(split)}`);
}

rmSync(work, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `ingest-profile-${new Date().toISOString().slice(0, 10)}-${source.commit}.json`);
writeFileSync(file, `${JSON.stringify({ source: source.description, batchRows: batchSize, bytesPerBatch: Math.round(data.totalBytes / data.files.length), mainThreadMs: results, catalogMsDerived: round(catalogMs, 2), worker }, null, 2)}\n`);
console.log(`\nwrote ${file}`);
process.exit(0);
