/**
 * Property-based fuzzing of the HTTP API on a real server (fast-check): random and mutated bodies
 * (JSON, NDJSON, CSV, Arrow, junk), headers and query strings at the ingest, query and admin
 * routes. For every request: no 5xx, every error in the one shape with a code of the catalogue
 * and its status, nothing stored for a refused request (catalog rows, files under the storage
 * root), every accepted batch written (its job never fails), and the server still up afterwards.
 *
 * Bounded: a fixed number of runs from a fixed seed (TIMESTORE_FUZZ_SEED, TIMESTORE_FUZZ_RUNS to
 * change them); a failure prints the seed and the shrunk request, so it can be replayed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERROR_CODES, type ErrorCode, statusesOf } from '../../src/model/errors.ts';
import { TokenService } from '../../src/tokens/service.ts';
import { silentLog } from '../harness/catalog.ts';
import { type AuthChoice, type FuzzRequest, type FuzzWorld, fuzzRequests, VALID_BATCH } from '../harness/fuzz-requests.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const SEED = Number(process.env.TIMESTORE_FUZZ_SEED ?? 20261214);
const RUNS = Number(process.env.TIMESTORE_FUZZ_RUNS ?? 1000);

/** The server's settings for the fuzz: small bodies (413 is reached), writes at once, no timed lifecycle round mid-run. */
const ENV = {
  TIMESTORE_INGEST_MAX_BODY_BYTES: '65536',
  TIMESTORE_INGEST_COALESCE_WAIT_MS: '0',
  TIMESTORE_COMPACTION_DELAY_SECONDS: '0',
  TIMESTORE_LIFECYCLE_INTERVAL_SECONDS: '86400',
};

interface Setup {
  ts: TestServer;
  world: FuzzWorld;
  /** Answers by route family and status (or error code), printed after the runs: what the fuzz reached. */
  tally: Map<string, number>;
}

const count = (setup: Setup, key: string) => setup.tally.set(key, (setup.tally.get(key) ?? 0) + 1);

async function prepare(ts: TestServer, headers: Record<string, string>, tokenId: string): Promise<FuzzWorld> {
  const first = await postJson(`${ts.url}/datasets/fuzz/ingest?wait=true`, VALID_BATCH, headers);
  expect(first.status).toBe(201);
  expect((await postJson(`${ts.url}/datasets/fuzz-admin/ingest?wait=true`, VALID_BATCH, headers)).status).toBe(201);
  const [dataset] = await ts.sql<{ id: string }[]>`SELECT id FROM datasets WHERE slug = 'fuzz'`;
  return { slug: 'fuzz', datasetId: dataset!.id, adminSlug: 'fuzz-admin', jobId: first.body.id, tokenId, scratch: mkdtempSync(join(tmpdir(), 'timestore-fuzz-')) };
}

/** Counts of everything a request can store: catalog rows and files under the storage root. */
async function stored(ts: TestServer, scratch: string): Promise<Record<string, number | string>> {
  const [counts] = await ts.sql<Record<string, number | string>[]>`
    SELECT (SELECT count(*) FROM datasets)::int AS datasets,
           (SELECT count(*) FROM dataset_schema_versions)::int AS schema_versions,
           (SELECT count(*) FROM manifest_versions)::int AS manifest_versions,
           (SELECT count(*) FROM partitions)::int AS partitions,
           (SELECT count(*) FROM jobs)::int AS jobs,
           (SELECT count(*) FROM idempotency_keys)::int AS idempotency_keys,
           (SELECT count(*) FROM audit_events)::int AS audit_events,
           (SELECT count(*) FROM storage_targets)::int AS storage_targets,
           (SELECT count(*) FROM retention_policies)::int AS retention_policies,
           (SELECT count(*) FROM api_tokens)::int AS api_tokens,
           (SELECT md5(coalesce(string_agg(d::text, ',' ORDER BY d.id), '')) FROM datasets d) AS datasets_content,
           (SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r.dataset_id), '')) FROM retention_policies r) AS retention_content,
           (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t.id), '')) FROM storage_targets t) AS targets_content,
           (SELECT md5(coalesce(string_agg(concat_ws('|', a.id, a.name, a.scopes, a.revoked_at), ',' ORDER BY a.id), '')) FROM api_tokens a) AS tokens_content`;
  return { ...counts, files: countFiles(ts.config.storageRoot, ['.runtime', 'cache']), scratchFiles: countFiles(scratch, []) };
}

function countFiles(dir: string, skip: string[]): number {
  let n = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const relative = join(entry.parentPath, entry.name).slice(dir.length + 1);
    if (!skip.some((s) => relative === s || relative.startsWith(`${s}/`))) n++;
  }
  return n;
}

/** Waits until no job is due or running, then fails on any ingest job that failed an attempt: an accepted batch must be writable. */
async function settle(ts: TestServer): Promise<void> {
  for (let i = 0; ; i++) {
    const [row] = await ts.sql<{ busy: number }[]>`SELECT count(*)::int AS busy FROM jobs WHERE state = 'running' OR (state = 'queued' AND run_at <= now())`;
    if (row!.busy === 0) break;
    if (i >= 600) throw new Error('jobs did not settle within 30 s');
    await Bun.sleep(50);
  }
  const failed = await ts.sql<{ id: string; lastError: string }[]>`SELECT id, last_error FROM jobs WHERE kind = 'ingest' AND last_error IS NOT NULL`;
  if (failed.length) throw new Error(`an accepted batch could not be written: ${JSON.stringify(failed)}`);
}

function describeRequest(r: FuzzRequest): string {
  const body = r.body === undefined ? '' : typeof r.body === 'string' ? r.body.slice(0, 400) : `<${r.body.length} bytes>`;
  return `${r.method} ${r.target} ${JSON.stringify(r.headers)} ${JSON.stringify(body)}`;
}

/** One request and every check on its answer; throws (with the request) on the first violation. */
async function check(setup: Setup, r: FuzzRequest): Promise<void> {
  const { ts, world } = setup;
  const before = await stored(ts, world.scratch);
  if (process.env.TIMESTORE_FUZZ_TRACE) appendFileSync(process.env.TIMESTORE_FUZZ_TRACE, `${describeRequest(r)} ${r.body instanceof Uint8Array ? Buffer.from(r.body).toString("base64") : ""}\n`);
  let res: Response;
  try {
    res = await fetch(`${ts.url}${r.target}`, { method: r.method, headers: r.headers, body: r.body, signal: AbortSignal.timeout(20_000) });
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') throw new Error(`no answer within 20 s\n  request: ${describeRequest(r)}`);
    // fetch refusing to send it (a header it will not encode) is not the server's doing.
    if (err instanceof TypeError && !/connect|socket|closed/i.test(err.message)) return void count(setup, `${r.family}: not sent (${err.message})`);
    throw err;
  }
  const text = new TextDecoder().decode(await res.arrayBuffer());
  let code = '';
  try {
    code = res.status >= 400 ? ` ${JSON.parse(text).error.code}` : '';
  } catch {
    // checked below
  }
  count(setup, `${r.family}: ${res.status}${code}`);
  const fail = (what: string) => {
    throw new Error(`${what}\n  request: ${describeRequest(r)}\n  answer: ${res.status} ${text.slice(0, 600)}`);
  };
  if (res.status >= 500) fail(`answered ${res.status}`);
  if (res.status >= 400) {
    let body: { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined;
    try {
      body = JSON.parse(text);
    } catch {
      fail('an error that is not JSON');
    }
    if (!res.headers.get('content-type')?.includes('application/json')) fail(`an error with content-type ${res.headers.get('content-type')}`);
    const error = body?.error;
    if (!body || Object.keys(body).join() !== 'error' || !error || typeof error !== 'object') return fail('an error not in the shape {"error":{…}}');
    if (Object.keys(error).some((k) => !['code', 'message', 'details'].includes(k))) fail('an error with keys beyond code, message, details');
    if (typeof error.message !== 'string' || error.message === '') fail('an error without a message');
    if (typeof error.code !== 'string' || !ERROR_CODES.includes(error.code as ErrorCode)) fail(`an error code outside the catalogue: ${String(error.code)}`);
    if (!statusesOf(error.code as ErrorCode).includes(res.status as never)) fail(`${String(error.code)} answered with status ${res.status}`);
    const after = await stored(ts, world.scratch);
    if (JSON.stringify(after) !== JSON.stringify(before)) fail(`a refused request stored something: before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`);
  } else {
    await settle(ts);
  }
}

async function fuzz(setup: Setup, auth: AuthChoice, runs: number, seed: number): Promise<void> {
  await settle(setup.ts);
  console.log(`fuzz: ${runs} requests, seed ${seed} (TIMESTORE_FUZZ_SEED=${seed} replays them)`);
  await fc.assert(
    fc.asyncProperty(fuzzRequests(setup.world, auth), (r) => check(setup, r)),
    { seed, numRuns: runs, endOnFailure: false, interruptAfterTimeLimit: 150_000, markInterruptAsFailure: false },
  );
  console.log([...setup.tally].sort(([a], [b]) => a.localeCompare(b)).map(([k, n]) => `  ${k} ×${n}`).join('\n'));
  const health = await fetch(`${setup.ts.url}/health`);
  expect(health.status).toBe(200);
  const ready = await fetch(`${setup.ts.url}/ready`);
  expect(ready.status).toBe(200);
}

/** An Arrow IPC file whose footer's record-batch block points at a message that is not one (found by the fuzz, seed 3). */
const ARROW_FILE_LOOPING_FOOTER = 'QVJST1cxAACj/////3AAAAAQAAAAAAAKAA4ADAAHAAgACgAAAAAAAAMQAAAABAAKAAwAAAAIAAQACgAAAAgAAAAsAAAAAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAA/////wAAAAAQAAAADAAUAA4AEAAEAAgADAAAABAAAAAUAAAAAAAEADAAAAAAAAAAAAAAAAEAAAAIAAAAAAAAAHgAAAAAAAAAAAAAAAAAAAAIAAgAAAAEAAgAAAAEAAAAAQAAABQAAAAQABgABAALABMAFAAAAAwAEAAAABQAAAAAAAABGAAAAAAAAAYYAAAABAAAAGhvc3QAAAAAAAAAAAQABAAEAAAAoAAAAEFSUk9XMQ==';
/** An Arrow stream of 391 bytes whose record batch declares billions of rows: decoding it took gigabytes. */
const ARROW_STREAM_HUGE_LENGTH =
  '/////8AAAAAQAAAAAAAKABAADgAHAAgACgAAAAAAAAEQAAAAAAAEAAgACAAAAAQACAAAAAQAAAACAAAASAAAAAQAAADQ////FAAAAAAAAAEYAAAAAAAABhgAAAAGAAAAc2VsZWN0AAAAAAAABAAEAAQAAAAQABgABAALABMAFAAAAAwAEAAAABQAAAAAAAABHAAAAAAAAAIgAAAACgAAACpJYSJOalpDTgAAAAAAAAgADAAIAAcACAAAAAAAAAFAAAAAAAAAAP////+4AAAAFAAAAAAAAAAMABYAFAAPABAABAAMAAAAWAAAAAAAAAAAAAADEAAAAAQACgAYAAwACAAEAAoAAAAUAAAAWAAAAAMAAAAAAAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAYAAAAAAAAABgAAAAAAAAAAAAAAAAAABgAAAAAAAAAQAAAAAAAAAAAAAAAAgAAAAMAAAAAAAAAAAAAAAAAAAADAAAAAAAAAAAAAAAAAAAAAA==';

describe('fuzzing the HTTP API (header mode, no scope configured: every request reaches validation)', () => {
  let setup: Setup;
  beforeAll(async () => {
    const ts = await startTestServer(ENV);
    const { token } = await new TokenService({ sql: ts.sql, log: silentLog, cacheMs: 0 }).create({ name: 'fuzz-read', scopes: ['read'] }, 'fuzz');
    setup = { ts, world: await prepare(ts, {}, token.id), tally: new Map() };
  }, 60_000);
  afterAll(async () => {
    await setup?.ts.stop();
    if (setup) rmSync(setup.world.scratch, { recursive: true, force: true });
  });

  test('random and mutated requests: no 5xx, one error shape, nothing stored when refused, server up', async () => {
    await fuzz(setup, fc.constant({}), RUNS, SEED);
  }, 200_000);
});

describe('fuzzing the HTTP API with API tokens (TIMESTORE_AUTH=tokens)', () => {
  let setup: Setup;
  let bearer: Record<string, string>;
  let reader: Record<string, string>;
  beforeAll(async () => {
    const ts = await startTestServer({ ...ENV, TIMESTORE_AUTH: 'tokens' });
    const tokens = new TokenService({ sql: ts.sql, log: silentLog, cacheMs: 0 });
    const admin = await tokens.create({ name: 'fuzz-admin', scopes: ['admin', 'read', 'write'] }, 'fuzz');
    const read = await tokens.create({ name: 'fuzz-read', scopes: ['read'] }, 'fuzz');
    bearer = { authorization: `Bearer ${admin.secret}` };
    reader = { authorization: `Bearer ${read.secret}` };
    setup = { ts, world: await prepare(ts, bearer, read.token.id), tally: new Map() };
  }, 60_000);
  afterAll(async () => {
    await setup?.ts.stop();
    if (setup) rmSync(setup.world.scratch, { recursive: true, force: true });
  });

  test('found by the fuzz: a slug or search holding U+0000 is refused or finds nothing (it answered 500)', async () => {
    const call = (method: string, path: string, body?: string) =>
      fetch(`${setup.ts.url}${path}`, { method, body, headers: { ...bearer, 'content-type': 'text/csv' } }).then(async (res) => ({ status: res.status, body: await res.json() }));
    expect(await call('POST', '/datasets/a%00b/ingest', '\n')).toMatchObject({ status: 400, body: { error: { code: 'validation_failed' } } });
    expect(await call('POST', '/datasets/a%00b/query', '{}')).toMatchObject({ status: 400 });
    expect(await call('GET', '/admin/datasets/a%00b')).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    expect(await call('GET', '/admin/datasets?search=a%00b')).toMatchObject({ status: 200, body: { datasets: [] } });
  });

  test('found by the fuzz: an Arrow file whose footer points at no record batch is a 400 (it froze the server)', async () => {
    const res = await fetch(`${setup.ts.url}/datasets/fuzz/ingest?wait=true`, {
      method: 'POST',
      headers: { ...bearer, 'content-type': 'application/vnd.apache.arrow.stream' },
      body: Buffer.from(ARROW_FILE_LOOPING_FOOTER, 'base64'),
      signal: AbortSignal.timeout(20_000),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_arrow');
    expect((await fetch(`${setup.ts.url}/health`)).status).toBe(200);
  });

  test('found by the fuzz: an Arrow stream declaring more rows than it has bytes is a 400 before it is decoded (it took gigabytes)', async () => {
    const res = await fetch(`${setup.ts.url}/datasets/fuzz/ingest`, {
      method: 'POST',
      headers: { ...bearer, 'content-type': 'application/vnd.apache.arrow.stream' },
      body: Buffer.from(ARROW_STREAM_HUGE_LENGTH, 'base64'),
      signal: AbortSignal.timeout(20_000),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_arrow');
    expect((await fetch(`${setup.ts.url}/health`)).status).toBe(200);
  });

  test('the same, with valid, read-only, malformed and missing tokens', async () => {
    const auth: AuthChoice = fc.oneof(
      { weight: 6, arbitrary: fc.constant(bearer) },
      { weight: 1, arbitrary: fc.constant(reader) },
      { weight: 1, arbitrary: fc.constant({}) },
      { weight: 1, arbitrary: fc.constantFrom({ authorization: 'Bearer' }, { authorization: 'Basic YTpi' }, { authorization: `Bearer ts_${'A'.repeat(43)}` }, { authorization: `bearer ${bearer.authorization?.slice(7)}x` }) },
    );
    await fuzz(setup, auth, Math.ceil(RUNS / 3), SEED + 1);
  }, 200_000);
});
