/**
 * The compiled executable is self-contained: copied alone into an empty
 * directory and started there with no configuration, it creates its embedded
 * catalog, runs DuckDB in its worker threads, serves HTTP, stops cleanly on
 * SIGTERM and, started again, reuses the catalog it created.
 *
 * Builds dist/timestore with scripts/build.ts, unless TIMESTORE_TEST_BINARY
 * names an executable to test instead.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import { MIGRATIONS } from '../src/catalog/migrate.ts';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VERSION } from '../src/version.ts';
import { tcpListeningPorts, unixListeningPaths } from './harness/listeners.ts';
import { REPO_ROOT, spawnServer, type ServerProcess } from './harness/server-process.ts';

let dir: string;
let binary: string;

beforeAll(async () => {
  let source = process.env.TIMESTORE_TEST_BINARY;
  if (!source) {
    const build = Bun.spawn([process.execPath, join(REPO_ROOT, 'scripts/build.ts')], { cwd: REPO_ROOT, stdout: 'pipe', stderr: 'pipe' });
    const [code, out, err] = await Promise.all([build.exited, new Response(build.stdout).text(), new Response(build.stderr).text()]);
    if (code !== 0) throw new Error(`scripts/build.ts exited with ${code}:\n${out}${err}`);
    console.log(out.trim());
    source = join(REPO_ROOT, 'dist/timestore');
  }
  dir = mkdtempSync(join(tmpdir(), 'timestore-binary-'));
  binary = join(dir, 'timestore');
  copyFileSync(source, binary);
}, 180_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Nothing but a PATH and a HOME: no TIMESTORE_* variable, no node_modules, no source tree. */
const bareEnv = () => ({ PATH: '/usr/bin:/bin', HOME: dir });

function run(args: string[]) {
  const result = Bun.spawnSync([binary, ...args], { cwd: dir, env: bareEnv(), stdout: 'pipe', stderr: 'pipe' });
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

/** Starts the binary in `dir` with defaults for everything but the port; returns it and the ms it took to be ready. */
async function start(env: Record<string, string> = {}): Promise<{ server: ServerProcess; readyMs: number }> {
  const started = performance.now();
  const server = await spawnServer({
    command: [binary],
    cwd: dir,
    // spawnServer sets TIMESTORE_STORAGE_ROOT and TIMESTORE_WORKER_THREADS for its usual callers;
    // blank values count as unset (src/config.ts), so the defaults apply: ./data/timestore, one thread per core.
    // storageRoot only tells spawnServer where that default lands (it creates no temporary root then).
    storageRoot: join(dir, 'data/timestore'),
    env: { ...bareEnv(), TIMESTORE_STORAGE_ROOT: '', TIMESTORE_WORKER_THREADS: '', ...env },
    readyTimeoutMs: 90_000,
  });
  return { server, readyMs: Math.round(performance.now() - started) };
}

/** SIGTERM, then the exit code, or null when the process has not exited within `ms`. */
async function terminate(server: ServerProcess, ms = 20_000): Promise<number | null> {
  const code = await Promise.race([server.stop('SIGTERM'), Bun.sleep(ms).then(() => null)]);
  if (code === null) server.proc.kill('SIGKILL');
  return code;
}

/** The local storage target's id from the start-up log (its catalog row). */
function localTargetId(output: string): string | undefined {
  const line = output.split('\n').find((l) => l.includes('"msg":"storage targets registered"'));
  return line ? (JSON.parse(line) as { targets: { name: string; id: string }[] }).targets.find((t) => t.name === 'local')?.id : undefined;
}

describe('the compiled binary, alone in an empty directory', () => {
  test('version, --help and an unknown command', () => {
    expect(readdirSync(dir)).toEqual(['timestore']);
    expect(run(['version'])).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    const help = run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: timestore [command]');
    const unknown = run(['frobnicate']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('unknown command or flag "frobnicate"');
  });

  let firstTargetId: string | undefined;
  let pgVersionMtime = 0;

  test('starts with no configuration, serves /ready, /health and embedded assets, and stops on SIGTERM', async () => {
    const { server, readyMs } = await start();
    let code: number | null;
    try {
      console.log(`first start (initdb) to /ready: ${readyMs} ms`);
      const output = server.output();
      expect(output).toContain(`"storageRoot":"${join(dir, 'data/timestore')}"`);
      expect(output).toContain('catalog: embedded PostgreSQL (PGlite) under the storage root');
      expect(output).toContain(`"applied":${JSON.stringify(MIGRATIONS.map((m) => m.name))}`);
      expect(output).toContain('"msg":"worker pool ready"'); // DuckDB answered from a Piscina thread
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
      // It replaced itself with the allocator's purge delay set (src/main.ts), keeping its process id.
      expect(readFileSync(`/proc/${server.proc.pid}/environ`, 'utf8').split('\0')).toContain('MIMALLOC_PURGE_DELAY=1000');
      // The embedded catalog has no TCP port: the HTTP port is the process's only one, and the
      // catalog's Unix socket sits in a directory only the owner can enter.
      expect(tcpListeningPorts(server.proc.pid)).toEqual([server.port]);
      const socket = join(dir, 'data/timestore/.runtime/catalog/.s.PGSQL.5432');
      expect(unixListeningPaths(server.proc.pid)).toEqual([socket]);
      expect(output).toContain(`"socket":"${socket}"`);
      expect(statSync(join(socket, '..')).mode & 0o777).toBe(0o700);
      const css = await fetch(`${server.url}/docs/assets/swagger-ui.css`);
      expect(css.status).toBe(200);
      expect((await css.text()).length).toBeGreaterThan(1000);
      // prom-client inside the binary: the metrics page, with figures read from the embedded catalog.
      const metrics = await fetch(`${server.url}/metrics`);
      expect(metrics.status).toBe(200);
      const text = await metrics.text();
      expect(text).toContain(`timestore_build_info{version="${VERSION}"} 1`);
      expect(text).toContain('timestore_jobs{queue="timestore_ingest_queue",kind="ingest",state="queued"} 0');
      firstTargetId = localTargetId(server.output());
      expect(firstTargetId).toBeString();
    } finally {
      code = await terminate(server);
    }
    expect(code).toBe(0);
    expect(server.output()).toContain('"msg":"shutdown complete"');
    pgVersionMtime = statSync(join(dir, 'data/timestore/catalog/PG_VERSION')).mtimeMs;
  }, 120_000);

  test('on its embedded catalog, a user\'s whole path over HTTP: every ingest format, queries, admin, lifecycle, scopes', async () => {
    const scopes = { TIMESTORE_REQUIRE_SCOPE: 'ts:read', TIMESTORE_REQUIRE_WRITE_SCOPE: 'ts:write', TIMESTORE_ADMIN_SCOPE: 'ts:admin' };
    const { server } = await start(scopes);
    const call = (method: string, path: string, body?: RequestInit['body'], headers: Record<string, string> = {}) =>
      fetch(`${server.url}${path}`, { method, body, headers: { 'x-iam-scopes': 'ts:read, ts:write, ts:admin', 'x-iam-user': 'binary-test', ...headers } });
    const json = (value: unknown) => JSON.stringify(value);
    const JSON_TYPE = { 'content-type': 'application/json' };
    let code: number | null;
    try {
      // Scopes: none is 401, the wrong one 403.
      expect((await fetch(`${server.url}/datasets/walk/query`, { method: 'POST', headers: JSON_TYPE, body: '{}' })).status).toBe(401);
      const wrong = await call('POST', '/datasets/walk/ingest', '{}', { ...JSON_TYPE, 'x-iam-scopes': 'ts:read' });
      expect(wrong.status).toBe(403);

      // Ingest: JSON queued (202, then the job succeeds), NDJSON, CSV and Arrow waiting for the publish (201).
      const queued = await call('POST', '/datasets/walk/ingest', json({
        schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'v', type: 'double' }, { name: 'host', type: 'string' }] },
        partition: { key: { site: 'a' } },
        rows: [{ timestamp: '2026-01-01T00:00:00Z', v: 1, host: 'h1' }, { timestamp: '2026-01-01T00:30:00Z', v: 2, host: 'h2' }],
      }), JSON_TYPE);
      expect(queued.status).toBe(202);
      const { jobId } = (await queued.json()) as { jobId: string };
      let state = '';
      for (let i = 0; i < 300 && state !== 'succeeded' && state !== 'failed'; i++) {
        state = ((await (await call('GET', `/ingestion/jobs/${jobId}`)).json()) as { state: string }).state;
        if (state !== 'succeeded') await Bun.sleep(100);
      }
      expect(state).toBe('succeeded');
      const ndjson = await call('POST', '/datasets/walk/ingest?wait=true&key.site=b', '{"timestamp":"2026-01-01T01:00:00Z","v":3,"host":"h1"}\n', {
        'content-type': 'application/x-ndjson',
      });
      expect(ndjson.status).toBe(201);
      const csv = await call('POST', '/datasets/walk/ingest?wait=true&key.site=b', 'timestamp,v,host\n2026-01-01T01:30:00Z,4,h2\n', { 'content-type': 'text/csv' });
      expect(csv.status).toBe(201);
      const arrow = tableToIPC(tableFromArrays({ timestamp: [Date.parse('2026-01-01T02:00:00Z')].map((t) => new Date(t)), v: Float64Array.from([5]), host: ['h1'] }), 'stream');
      const arrowRes = await call('POST', '/datasets/walk/ingest?wait=true&key.site=c', arrow, { 'content-type': 'application/vnd.apache.arrow.stream' });
      expect(arrowRes.status).toBe(201);

      // Queries: raw JSON (the path that once answered 500 only from the binary), downsampled, streamed.
      const range = { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' };
      const raw = await call('POST', '/datasets/walk/query', json({ timeRange: range }), JSON_TYPE);
      expect(raw.status).toBe(200);
      expect(((await raw.json()) as { rows: { v: number }[] }).rows.map((r) => r.v)).toEqual([1, 2, 3, 4, 5]);
      const hourly = await call('POST', '/datasets/walk/query', json({
        timeRange: range,
        downsample: { intervalUnit: 'hour', aggregations: [{ fn: 'sum', column: 'v' }, { fn: 'count', column: 'v' }] },
      }), JSON_TYPE);
      expect(((await hourly.json()) as { rows: unknown[] }).rows).toEqual([
        { timestamp: '2026-01-01T00:00:00.000Z', sum_v: 3, count_v: 2 },
        { timestamp: '2026-01-01T01:00:00.000Z', sum_v: 7, count_v: 2 },
        { timestamp: '2026-01-01T02:00:00.000Z', sum_v: 5, count_v: 1 },
      ]);
      const streamed = await call('POST', '/datasets/walk/query', json({ timeRange: range, columns: ['v'] }), { ...JSON_TYPE, accept: 'text/csv' });
      expect((await streamed.text()).trim().split(/\r?\n/)).toEqual([
        'timestamp,v',
        '2026-01-01T00:00:00.000Z,1',
        '2026-01-01T00:30:00.000Z,2',
        '2026-01-01T01:00:00.000Z,3',
        '2026-01-01T01:30:00.000Z,4',
        '2026-01-01T02:00:00.000Z,5',
      ]);
      const lines = await call('POST', '/datasets/walk/query', json({ timeRange: range, columns: ['host'] }), { ...JSON_TYPE, accept: 'application/x-ndjson' });
      expect((await lines.text()).trim().split('\n').map((l) => JSON.parse(l).host)).toEqual(['h1', 'h2', 'h1', 'h2', 'h1']);

      // Administration: the dataset, its manifest, a retention policy, a status change and their audit trail.
      const listed = (await (await call('GET', '/admin/datasets?search=walk')).json()) as { datasets: { slug: string }[] };
      expect(listed.datasets.map((d) => d.slug)).toEqual(['walk']);
      const manifest = (await (await call('GET', '/admin/datasets/walk/manifest')).json()) as { partitions: unknown[] };
      expect(manifest.partitions.length).toBeGreaterThanOrEqual(4);
      expect((await call('PUT', '/admin/datasets/walk/retention', json({ rules: { maxAgeHours: 24 * 365 * 100 } }), JSON_TYPE)).status).toBe(200);
      expect((await call('PATCH', '/admin/datasets/walk', json({ description: 'walked through' }), JSON_TYPE)).status).toBe(200);
      const audit = (await (await call('GET', '/admin/datasets/walk/audit')).json()) as { events: { action: string; actor: string }[] };
      expect(audit.events.map((e) => e.action)).toEqual(expect.arrayContaining(['dataset.created', 'retention.updated', 'dataset.updated']));

      // The lifecycle compacts the small files of the dataset into one; the rows are unchanged.
      const lifecycle = await call('POST', '/admin/datasets/walk/lifecycle?wait=true');
      expect(lifecycle.status).toBe(200);
      expect(((await lifecycle.json()) as { state: string }).state).toBe('succeeded');
      const after = await call('POST', '/datasets/walk/query', json({ timeRange: range }), JSON_TYPE);
      expect(((await after.json()) as { rows: { v: number }[] }).rows.map((r) => r.v)).toEqual([1, 2, 3, 4, 5]);
    } finally {
      code = await terminate(server);
    }
    expect(code).toBe(0);
  }, 180_000);

  test('a second start in the same directory reuses the catalog (and exports spans over OTLP)', async () => {
    expect(firstTargetId).toBeString(); // needs the previous test
    // The OpenTelemetry SDK inside the binary: a request's span reaches a collector by shutdown.
    const posted: any[] = [];
    const collector = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: async (req) => (posted.push(await req.json()), Response.json({})) });
    const { server, readyMs } = await start({ OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}` });
    let code: number | null;
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    try {
      expect((await fetch(`${server.url}/health`, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } })).status).toBe(200);
      console.log(`second start to /ready: ${readyMs} ms`);
      const output = server.output();
      expect(output).toContain('catalog: schema is up to date');
      expect(output).not.toContain('catalog: migrations applied');
      expect(localTargetId(output)).toBe(firstTargetId as string); // the row written by the first run
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
    } finally {
      code = await terminate(server);
    }
    expect(code).toBe(0);
    collector.stop(true);
    const spans = posted.flatMap((p) => p.resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans)));
    expect(spans.find((s: any) => s.traceId === traceId)).toMatchObject({ name: 'GET /health', parentSpanId: '00f067aa0ba902b7' });
    // No second initdb: the cluster's PG_VERSION is the one the first run wrote.
    expect(statSync(join(dir, 'data/timestore/catalog/PG_VERSION')).mtimeMs).toBe(pgVersionMtime);
  }, 120_000);
});
