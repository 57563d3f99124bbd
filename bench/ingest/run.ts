/**
 * bench/ingest: TSBS cpu-only rows → timestore over HTTP, against DuckDB alone as the ceiling.
 *
 *   node_modules/.bin/bun bench/ingest/run.ts [--hosts 1000] [--hours 24] [--batch 5000] [--clients 2]
 *       [--rows N] [--half-rows N] [--poll-ms 25] [--key k=v,…] [--cpu-prof]
 *       [--worker-threads N] [--ingest-concurrency N] [--skip-half] [--skip-duckdb] [--ndjson] [--body json|ndjson]
 *       [--server-env NAME=value,…] [--settle-seconds N] [--warm-batches N]
 *       [--data-dir /tmp/timestore-bench-data] [--out bench/results] [--at <git rev> [--patch a.patch,b.patch]]
 *
 * 1. Generates (or reuses, keyed by the parameters) the request bodies under --data-dir.
 * 2. Starts a throwaway PostgreSQL cluster with stock durability (`createBenchDatabase` in
 *    test/harness/postgres.ts) and, per run, a fresh database and a fresh `bun src/main.ts serve`
 *    process (loopback, temp storage root, log level warn, default worker threads and ingest
 *    concurrency unless overridden).
 *    --at runs the server from `git archive <rev>` instead of the working tree (source.ts), and
 *    --patch applies proposed changes to that copy (bench/ingest/patches/) to measure them.
 * 3. Max load: --clients closed-loop clients send every batch; then half load: the first
 *    --half-rows rows paced at half the max run's end-to-end rows/s (the p99 target's load).
 *    --body ndjson sends timestore the same rows as NDJSON (one row per line; the first batch goes
 *    as a JSON document before the clock starts, to create the dataset and its schema).
 *    --server-env sets server variables (e.g. TIMESTORE_COMPACTION_DELAY_SECONDS=5, or
 *    TIMESTORE_LIFECYCLE_ENABLED=false to measure ingest without compaction); --settle-seconds
 *    keeps each run's server up that long after its load, counting the dataset's active partitions
 *    every 5 s (how soon its own compaction reaches the compacted layout).
 *    --warm-batches sends that many of the bodies (cycled) to another dataset before each run, with
 *    the same clients, and waits until all are queryable: the server's and the clients' JIT
 *    compilers have then done most of their work, as in a server that has been up a while (without
 *    it, each run measures a process's first requests; the default, 0, sends one batch).
 * 4. DuckDB alone on the same bodies (bench/ingest/duckdb-alone.ts, per-batch and hourly).
 * 5. Prints a summary and writes it as JSON to --out/ingest-<date>-<rows>.json.
 */
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { runLoad, type LoadResult } from './load.ts';
import { BUN, cpuBetween, postmasterOnPort, REPO_ROOT, round, snapshotCpu, startServer, type CpuUse } from './server.ts';
import { resolveSource } from './source.ts';
import { asNdjson, generate } from './tsbs.ts';

// ---------------------------------------------------------------------------------------------
// Arguments

const defaults = {
  hosts: 1000,
  hours: 24,
  batch: 5000,
  clients: 2,
  rows: Number.POSITIVE_INFINITY,
  'half-rows': 3_000_000,
  'poll-ms': 25,
  key: '',
  'data-dir': '/tmp/timestore-bench-data',
  out: join(REPO_ROOT, 'bench/results'),
  'worker-threads': '',
  'ingest-concurrency': '',
  at: '',
  patch: '',
  body: 'json',
  'server-env': '',
  'settle-seconds': 0,
  'warm-batches': 0,
};
const flags = new Set<string>();
const opts: Record<string, string | number> = { ...defaults };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const name = argv[i]!.replace(/^--/, '');
  if (['cpu-prof', 'skip-half', 'skip-duckdb', 'ndjson', 'help'].includes(name)) {
    flags.add(name);
    continue;
  }
  if (!(name in defaults)) {
    console.error(`unknown option --${name}; see the comment at the top of bench/ingest/run.ts`);
    process.exit(2);
  }
  const value = argv[++i];
  if (value === undefined) {
    console.error(`--${name} needs a value`);
    process.exit(2);
  }
  opts[name] = typeof defaults[name as keyof typeof defaults] === 'number' ? Number(value) : value;
}
if (flags.has('help')) {
  console.log((await Bun.file(import.meta.path).text()).split('*/')[0]);
  process.exit(0);
}
const hosts = opts.hosts as number;
const hours = opts.hours as number;
const batch = opts.batch as number;
const clients = opts.clients as number;
const pollMs = opts['poll-ms'] as number;
const partitionKey = Object.fromEntries(
  String(opts.key)
    .split(',')
    .filter(Boolean)
    .map((kv) => kv.split('=') as [string, string]),
);
const serverEnv: Record<string, string> = {};
if (opts['worker-threads']) serverEnv.TIMESTORE_WORKER_THREADS = String(opts['worker-threads']);
if (opts['ingest-concurrency']) serverEnv.TIMESTORE_INGEST_CONCURRENCY = String(opts['ingest-concurrency']);
for (const assignment of String(opts['server-env']).split(',').filter(Boolean)) {
  const [name, ...value] = assignment.split('=');
  serverEnv[name!] = value.join('=');
}

const source = resolveSource(String(opts.at) || undefined, String(opts.patch).split(',').filter(Boolean));
if (source.root !== REPO_ROOT) process.on('exit', () => rmSync(source.root, { recursive: true, force: true }));
const log = (message: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
const mib = (bytes: number) => round(bytes / 2 ** 20, 1);

// ---------------------------------------------------------------------------------------------
// Data

const data = generate({ hosts, hours, batch, rows: opts.rows as number, partitionKey, cacheRoot: String(opts['data-dir']), log });
log(`loading ${data.files.length} bodies (${mib(data.totalBytes)} MiB, ${round(data.totalBytes / data.totalRows)} bytes/row) into memory`);
const bodies = await Promise.all(data.files.map((f) => Bun.file(f).bytes()));
if (!['json', 'ndjson'].includes(String(opts.body))) {
  console.error('--body is json or ndjson');
  process.exit(2);
}
const ndjson = opts.body === 'ndjson';
if (ndjson && Object.keys(partitionKey).length > 0) {
  console.error('--body ndjson sends no partition key: leave --key out');
  process.exit(2);
}
/** The bodies timestore is sent: as generated (JSON documents), or their rows as NDJSON. */
const sent = ndjson
  ? bodies.map((body) => new TextEncoder().encode(asNdjson(new TextDecoder().decode(body))))
  : bodies;

// ---------------------------------------------------------------------------------------------
// One timestore run: fresh database, fresh server, one load.

interface RunSummary {
  label: string;
  rows: number;
  batches: number;
  pacedRowsPerSecond: number | null;
  load: Omit<LoadResult, 'records'>;
  server: {
    /** Peak RSS during the load (sampled every 100 ms) and the process high-water mark. */
    peakRssMiB: number;
    vmHWMMiB: number;
    rssBeforeMiB: number;
    rssAfterMiB: number;
  };
  cpu: CpuUse;
  catalog: { partitions: number; rows: number; bytes: number; manifestVersions: number };
  files: { count: number; bytes: number; meanMiB: number };
  warmupWaitMs: number;
  warmupFailures: string[];
  cpuProfile?: string;
  /** --settle-seconds: the dataset's active partitions every 5 s after the load, from its end. */
  settle?: Array<{ seconds: number; partitions: number }>;
}

/** The tsbs dataset's active partitions every 5 s for `seconds` (logged as they change). */
async function settlePartitions(sql: postgres.Sql, seconds: number): Promise<Array<{ seconds: number; partitions: number }>> {
  const timeline: Array<{ seconds: number; partitions: number }> = [];
  for (let at = 0; at <= seconds; at += 5) {
    if (at > 0) await Bun.sleep(5000);
    const [row] = await sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM timestore.partitions p JOIN timestore.datasets d ON d.id = p.dataset_id
      WHERE d.slug = 'tsbs' AND p.removed_version IS NULL`;
    if (timeline.at(-1)?.partitions !== row!.n) log(`settle: ${at} s after the load, ${row!.n} active partitions`);
    timeline.push({ seconds: at, partitions: row!.n });
  }
  return timeline;
}

async function timestoreRun(label: string, count: number, rate?: number): Promise<RunSummary> {
  const databaseUrl = await createBenchDatabase('bench');
  const profileDir = flags.has('cpu-prof') ? join(String(opts['data-dir']), `cpu-prof-${label}-${Date.now()}`) : undefined;
  const server = await startServer({
    databaseUrl,
    root: source.root,
    env: serverEnv,
    bunArgs: profileDir ? ['--cpu-prof', '--cpu-prof-md', `--cpu-prof-dir=${profileDir}`] : [],
  });
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  /** The clients send these of the bodies to `dataset`, paced at `rate` rows/s if given. */
  const sendTo = (dataset: string, indices: number[], rate?: number) =>
    runLoad({
      url: server.url,
      dataset,
      contentType: ndjson ? 'application/x-ndjson' : 'application/json',
      bodies: indices.map((i) => sent[i]!),
      batchRows: indices.map((i) => data.batchRows[i]!),
      clients,
      rate,
      sql,
      schema: 'timestore',
      pollMs,
      log,
    });
  try {
    // Warm-up: one batch to another dataset, waiting for it to be published (Prefer: wait).
    // A refused warm-up is retried (twice) and recorded in warmupFailures.
    const warmupFailures: string[] = [];
    let warmupWaitMs = 0;
    for (let attempt = 0; ; attempt++) {
      const warmStart = performance.now();
      const warm = await fetch(`${server.url}/datasets/warmup/ingest`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', prefer: 'wait=60' },
        body: bodies[0]!,
      });
      const warmBody = await warm.text();
      warmupWaitMs = Math.round(performance.now() - warmStart);
      if (warm.status === 201) break;
      warmupFailures.push(`${warm.status} ${warmBody.slice(0, 200)}`);
      log(`${label}: warm-up batch answered ${warm.status}: ${warmBody.slice(0, 200)}`);
      if (attempt >= 2) throw new Error(`warm-up batch answered ${warm.status}: ${warmBody}\n${server.output()}`);
    }

    const warmBatches = opts['warm-batches'] as number;
    if (warmBatches > 0) {
      // The batch above created the warm-up dataset, so NDJSON bodies go too.
      const warm = await sendTo('warmup', Array.from({ length: warmBatches }, (_, i) => i % sent.length));
      if (warm.errors.length > 0 || warm.failedJobs > 0) throw new Error(`warm-up batches failed: ${warm.errors.join('; ')}`);
      log(`${label}: ${warmBatches} warm-up batches, ${Math.round(warm.ackRowsPerSecond / batch)} batches/s acknowledged`);
    }

    const rssBefore = server.memory().vmRSS;
    server.resetPeak();
    const postmaster = postmasterOnPort(Number(new URL(databaseUrl).port));
    const before = snapshotCpu(server.pid, postmaster);
    log(`${label}: ${count} batches, ${clients} clients${rate ? `, paced at ${Math.round(rate)} rows/s` : ', as fast as acknowledged'}`);
    // NDJSON needs the dataset and its schema: the first batch creates them, before the clock.
    const first = ndjson ? 1 : 0;
    if (ndjson) {
      const created = await fetch(`${server.url}/datasets/tsbs/ingest`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'wait=60' }, body: bodies[0]! });
      if (created.status !== 201) throw new Error(`the first batch answered ${created.status}: ${await created.text()}`);
    }
    const result = await sendTo('tsbs', Array.from({ length: count - first }, (_, i) => first + i), rate);
    const after = snapshotCpu(server.pid, postmaster);
    const memory = server.memory();

    const [catalog] = await sql<{ partitions: number; rows: string; bytes: string; versions: number }[]>`
      SELECT count(*)::int AS partitions, coalesce(sum(p.row_count), 0)::text AS rows, coalesce(sum(p.size_bytes), 0)::text AS bytes,
             (SELECT manifest_version FROM timestore.datasets WHERE slug = 'tsbs')::int AS versions
      FROM timestore.partitions p JOIN timestore.datasets d ON d.id = p.dataset_id
      WHERE d.slug = 'tsbs' AND p.removed_version IS NULL`;
    const files = parquetFiles(join(server.storageRoot, 'partitions/datasets/tsbs'));
    // The API agrees with the catalog for the last batch.
    const last = result.records.filter((r) => r.jobId).at(-1);
    if (last) {
      const view = (await (await fetch(`${server.url}/ingestion/jobs/${last.jobId}`)).json()) as { state: string };
      if (view.state !== 'succeeded') result.errors.push(`GET /ingestion/jobs/${last.jobId}: ${view.state}`);
    }
    const expected = data.batchRows.slice(0, count).reduce((a, b) => a + b, 0);
    if (Number(catalog!.rows) !== expected) result.errors.push(`catalog holds ${catalog!.rows} rows, expected ${expected}`);

    const settle = await settlePartitions(sql, Number(opts['settle-seconds']));
    const { records: _records, ...load } = result;
    const summary: RunSummary = {
      label,
      rows: result.rows,
      batches: count,
      pacedRowsPerSecond: rate ? Math.round(rate) : null,
      load,
      server: {
        peakRssMiB: mib(memory.sampledPeakRss),
        vmHWMMiB: mib(memory.vmHWM),
        rssBeforeMiB: mib(rssBefore),
        rssAfterMiB: mib(memory.vmRSS),
      },
      cpu: cpuBetween(before, after, availableParallelism()),
      catalog: { partitions: catalog!.partitions, rows: Number(catalog!.rows), bytes: Number(catalog!.bytes), manifestVersions: catalog!.versions },
      files: { ...files, meanMiB: files.count ? mib(files.bytes / files.count) : 0 },
      warmupWaitMs,
      warmupFailures,
      ...(profileDir ? { cpuProfile: profileDir } : {}),
      ...(settle.length ? { settle } : {}),
    };
    log(
      `${label}: ${result.endToEndRowsPerSecond} rows/s end to end, ${result.ackRowsPerSecond} rows/s acknowledged, ` +
        `ack→queryable p50 ${result.latencyMs.p50} ms p99 ${result.latencyMs.p99} ms, peak RSS ${summary.server.peakRssMiB} MiB, ` +
        `${files.count} files${result.errors.length ? `, ERRORS: ${result.errors.join('; ')}` : ''}`,
    );
    return summary;
  } finally {
    await sql.end();
    const code = await server.stop();
    if (code !== 0) log(`${label}: server exited ${code}:\n${server.output().slice(-4000)}`);
  }
}

function parquetFiles(dir: string): { count: number; bytes: number } {
  let count = 0;
  let bytes = 0;
  const walk = (d: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.parquet')) {
        count += 1;
        bytes += statSync(p).size;
      }
    }
  };
  walk(dir);
  return { count, bytes };
}

// ---------------------------------------------------------------------------------------------
// DuckDB alone

interface DuckDBAlone {
  mode: string;
  format: string;
  duckdbThreads: string;
  rows: number;
  rowsWritten: number;
  seconds: number;
  rowsPerSecond: number;
  spoolSeconds: number;
  duckdbSeconds: number;
  cpuSeconds: number;
  cpuMsPerBatch: number;
  files: number;
  bytes: number;
  peakRssBytes: number;
}

async function duckdbAlone(mode: string, format: string): Promise<DuckDBAlone> {
  log(`duckdb alone: ${mode}, ${format}`);
  const proc = Bun.spawn([BUN, join(REPO_ROOT, 'bench/ingest/duckdb-alone.ts'), '--data', data.dir, '--mode', mode, '--format', format], {
    cwd: REPO_ROOT,
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`duckdb-alone ${mode} exited ${code}: ${err}`);
  const result = JSON.parse(out.trim().split('\n').at(-1)!) as DuckDBAlone;
  log(`duckdb alone: ${mode}, ${format}: ${result.rowsPerSecond} rows/s, ${result.files} files, peak RSS ${mib(result.peakRssBytes)} MiB`);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Main

const startedAt = new Date();
const loadAverageAtStart = loadavg().map((n) => round(n, 2));
const max = await timestoreRun('max', bodies.length);
let half: RunSummary | undefined;
if (!flags.has('skip-half')) {
  const halfCount = Math.max(1, Math.min(bodies.length, Math.ceil((opts['half-rows'] as number) / batch)));
  half = await timestoreRun('half', halfCount, max.load.endToEndRowsPerSecond / 2);
}
const ceiling: DuckDBAlone[] = [];
if (!flags.has('skip-duckdb')) {
  ceiling.push(await duckdbAlone('per-batch', 'document'));
  ceiling.push(await duckdbAlone('hourly', 'document'));
  if (flags.has('ndjson')) {
    ceiling.push(await duckdbAlone('per-batch', 'ndjson'));
    ceiling.push(await duckdbAlone('hourly', 'ndjson'));
  }
}

const best = Math.max(0, ...ceiling.map((c) => c.rowsPerSecond));
// On a shared machine rows/s depends on what else runs; CPU time per batch much less. The server's
// and its PostgreSQL's CPU per batch, against DuckDB alone's, is the efficiency ratio, and cores ×
// batch / CPU per batch the rate a dedicated machine could reach if every core stayed busy.
const cores = availableParallelism();
const efficiency = (r: RunSummary) => {
  const cpuMsPerBatch = round(((r.cpu.serverTotal + r.cpu.postgres) * 1000) / r.batches, 1);
  return {
    cpuMsPerBatch,
    mainThreadMsPerBatch: round(((r.cpu.serverThreads.find((t) => t.name === 'main')?.seconds ?? 0) * 1000) / r.batches, 1),
    duckdbThreadsMsPerBatch: round((r.cpu.serverThreads.filter((t) => t.name.startsWith('Bun Pool')).reduce((n, t) => n + t.seconds, 0) * 1000) / r.batches, 1),
    postgresMsPerBatch: round((r.cpu.postgres * 1000) / r.batches, 1),
    dedicatedRowsPerSecondEstimate: Math.round((cores * batch * 1000) / cpuMsPerBatch),
    sharedMachine: r.cpu.otherProcesses > 0.1 * r.cpu.available,
  };
};
const maxEfficiency = efficiency(max);
const bestCpu = ceiling.length ? Math.min(...ceiling.map((c) => c.cpuMsPerBatch)) : 0;
const ratio = (c: DuckDBAlone) => round(max.load.endToEndRowsPerSecond / c.rowsPerSecond, 3);
const GiB = 1024;
const targets = {
  sustainedRowsPerSecond: { target: '>= 500000', measured: max.load.endToEndRowsPerSecond, met: max.load.endToEndRowsPerSecond >= 500_000 },
  ratioToDuckDBAlone: {
    target: '>= 0.65 (against the faster DuckDB-alone variant)',
    measured: best ? round(max.load.endToEndRowsPerSecond / best, 3) : null,
    met: best ? max.load.endToEndRowsPerSecond / best >= 0.65 : null,
  },
  cpuRatioToDuckDBAlone: {
    target: '>= 0.65: DuckDB alone CPU per batch / timestore (server + PostgreSQL) CPU per batch; unaffected by other programs',
    measured: bestCpu ? round(bestCpu / maxEfficiency.cpuMsPerBatch, 3) : null,
    met: bestCpu ? bestCpu / maxEfficiency.cpuMsPerBatch >= 0.65 : null,
  },
  ackToQueryableP99AtHalfLoadMs: { target: '< 1000', measured: half?.load.latencyMs.p99 ?? null, met: half ? half.load.latencyMs.p99 < 1000 : null },
  serverPeakRssMiB: {
    target: `< 1024 while ingesting 10 M rows (this run: ${max.rows} rows)`,
    measured: max.server.peakRssMiB,
    met: max.server.peakRssMiB < GiB,
  },
};

const cpuModel = cpus()[0]?.model ?? 'unknown';
for (const r of [max, half]) {
  if (r && r.cpu.otherProcesses > 0.1 * r.cpu.available) {
    log(`WARNING: during the ${r.label} run other programs used ${r.cpu.otherProcesses} of ${r.cpu.available} CPU seconds: the machine was shared`);
  }
}
const report = {
  startedAt: startedAt.toISOString(),
  machine: { cpus: availableParallelism(), cpuModel, loadAverageAtStart, memoryGiB: round(totalmem() / 2 ** 30, 1), bun: Bun.version, platform: `${process.platform} ${process.arch}` },
  source: source.description,
  parameters: {
    hosts, hours, batch, clients, rows: data.totalRows, batches: data.files.length, bytesPerRow: round(data.totalBytes / data.totalRows), body: opts.body,
    partitionKey, pollMs, serverEnv, warmBatches: opts['warm-batches'],
  },
  timestore: { max, half },
  efficiency: { max: maxEfficiency, ...(half ? { half: efficiency(half) } : {}) },
  duckdbAlone: ceiling.map((c) => ({ ...c, peakRssMiB: mib(c.peakRssBytes), timestoreRatio: ratio(c) })),
  targets,
};

// Summary table
const row = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;
const lines = [
  `timestore ${source.description}`,
  `TSBS cpu-only: ${hosts} hosts, ${data.totalRows} rows (${round(data.totalBytes / data.totalRows)} B/row JSON), batches of ${batch} sent as ${ndjson ? 'NDJSON' : 'JSON documents'}, ${clients} clients${opts['warm-batches'] ? `, after ${opts['warm-batches']} warm-up batches` : ''}; ${availableParallelism()} × ${cpuModel}`,
  '',
  row(['run', 'rows/s end to end', 'rows/s acked', 'ack→queryable p50 / p99 ms', 'POST p50 / p99 ms', 'peak RSS MiB', 'files', 'MiB', 'jobs/publish', 'CPU ms/batch']),
  row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']),
  ...[max, half].filter((r): r is RunSummary => !!r).map((r) =>
    row([
      `timestore ${r.label}${r.pacedRowsPerSecond ? ` (paced ${r.pacedRowsPerSecond}/s)` : ''}`,
      r.load.endToEndRowsPerSecond,
      r.load.ackRowsPerSecond,
      `${r.load.latencyMs.p50} / ${r.load.latencyMs.p99}`,
      `${r.load.ackRoundTripMs.p50} / ${r.load.ackRoundTripMs.p99}`,
      r.server.peakRssMiB,
      r.files.count,
      mib(r.files.bytes),
      r.load.coalescedJobs.mean,
      efficiency(r).cpuMsPerBatch,
    ]),
  ),
  ...ceiling.map((c) =>
    row([`DuckDB alone ${c.mode} (${c.format})`, c.rowsPerSecond, '', '', '', mib(c.peakRssBytes), c.files, mib(c.bytes), `ratio ${ratio(c)}`, c.cpuMsPerBatch]),
  ),
  '',
  `CPU seconds during the max run (${max.cpu.wallSeconds.toFixed(1)} s wall): server ${max.cpu.serverTotal} (${max.cpu.serverThreads
    .slice(0, 6)
    .map((t) => `${t.name}×${t.threads} ${t.seconds}`)
    .join(', ')}), postgres ${max.cpu.postgres}, bench client ${max.cpu.benchClient}, other processes on the machine ${max.cpu.otherProcesses} (of ${max.cpu.available} available)`,
  `CPU per ${batch}-row batch in the max run: ${maxEfficiency.cpuMsPerBatch} ms (main thread ${maxEfficiency.mainThreadMsPerBatch}, DuckDB threads ${maxEfficiency.duckdbThreadsMsPerBatch}, PostgreSQL ${maxEfficiency.postgresMsPerBatch}): ~${maxEfficiency.dedicatedRowsPerSecondEstimate} rows/s if ${cores} cores were all timestore's`,
  '',
  ...Object.entries(targets).map(([name, t]) => `${t.met === null ? 'n/a ' : t.met ? 'MET ' : 'MISS'} ${name}: ${t.measured} (target ${t.target})`),
];
console.log(`\n${lines.join('\n')}\n`);

mkdirSync(String(opts.out), { recursive: true });
const rowsLabel = data.totalRows >= 1e6 ? `${round(data.totalRows / 1e6, 2)}M` : `${round(data.totalRows / 1e3)}k`;
const suffix = opts.patch ? '-patched' : '';
const outFile = join(String(opts.out), `ingest-${startedAt.toISOString().slice(0, 10)}-${rowsLabel}-${source.commit}${suffix}.json`);
writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);
log(`wrote ${outFile}`);
process.exit(max.load.errors.length || half?.load.errors.length ? 1 : 0);
