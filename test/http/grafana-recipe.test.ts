/**
 * docs/grafana.md, tried: the URL the recipe gives, with Grafana's macros substituted as Grafana
 * substitutes them (epoch milliseconds, the interval in milliseconds), sent with the bearer token
 * the data source holds (TIMESTORE_AUTH=tokens), answers every column the recipe names, under the
 * root selector it names; and the dataset variable's query lists the dataset.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TokenService } from '../../src/tokens/service.ts';
import { silentLog } from '../harness/catalog.ts';
import { REPO_ROOT } from '../harness/server-process.ts';
import { postJson, startTestServer, type TestServer } from '../harness/server.ts';

const RECIPE = readFileSync(join(REPO_ROOT, 'docs/grafana.md'), 'utf8');
/** The code block after `<!-- grafana-url -->`. */
const RECIPE_URL = /<!-- grafana-url -->\s*```text\n(.+)\n```/.exec(RECIPE)?.[1] ?? '';
/** The selectors of the table after `<!-- grafana-columns -->`. */
const RECIPE_COLUMNS = [...(/<!-- grafana-columns -->\n((?:\|.*\n)+)/.exec(RECIPE)?.[1] ?? '').matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]!);

let ts: TestServer;
let grafanaToken = '';
const START = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;
const HOSTS = ['host_0', 'host_1', 'host_2'];
const FIELDS = [
  { name: 'timestamp', type: 'timestamp' },
  { name: 'hostname', type: 'string' },
  { name: 'usage_user', type: 'double' },
  { name: 'usage_system', type: 'double' },
];

beforeAll(async () => {
  ts = await startTestServer({ TIMESTORE_AUTH: 'tokens' });
  const tokens = new TokenService({ sql: ts.sql, log: silentLog, cacheMs: 0 });
  const writer = (await tokens.create({ name: 'loader', scopes: ['write'] }, 'test')).secret;
  grafanaToken = (await tokens.create({ name: 'grafana', scopes: ['read:cpu'] }, 'test')).secret;
  // Every host reports every minute for an hour, except host_1 in minutes 20–29.
  const rows = Array.from({ length: 60 }, (_, minute) =>
    HOSTS.filter((host) => host !== 'host_1' || minute < 20 || minute >= 30).map((hostname, i) => ({
      timestamp: new Date(START + minute * MINUTE + i * 1000).toISOString(),
      hostname,
      usage_user: (minute * 7 + i * 13) % 100,
      usage_system: i,
    })),
  ).flat();
  for (const slug of ['cpu', 'mem']) {
    const res = await postJson(`${ts.url}/datasets/${slug}/ingest?wait=true`, { schema: { fields: FIELDS }, partition: { key: {} }, rows }, { authorization: `Bearer ${writer}` });
    expect(res.status).toBe(201);
  }
}, 120_000);

afterAll(async () => {
  await ts?.stop();
});

/** The URL as Grafana sends it: the server's address for the example host, each macro replaced by its value. */
function substituted(url: string, macros: Record<string, string | number>): string {
  let out = url.replace('http://timestore:4100', ts.url);
  for (const [name, value] of Object.entries(macros)) out = out.replaceAll(`\${${name}}`, String(value));
  expect(out).not.toContain('${');
  return out;
}

describe('the Grafana recipe (docs/grafana.md)', () => {
  test('the recipe names a URL with the three macros and four columns', () => {
    expect(RECIPE_URL).toStartWith('http://timestore:4100/datasets/cpu/query?');
    for (const macro of ['${__from}', '${__to}', '${__interval_ms}']) expect(RECIPE_URL).toContain(macro);
    expect(RECIPE_COLUMNS).toEqual(['timestamp', 'hostname', 'avg_usage_user', 'max_usage_user']);
  });

  test('the URL, macros substituted, answers the named columns under `rows`, one row per host and bucket, gaps as nulls', async () => {
    // A 1-hour dashboard range that starts mid-minute; Grafana's interval for it: 1 minute.
    const from = START + 30_000;
    const to = START + 60 * MINUTE + 30_000;
    const res = await fetch(substituted(RECIPE_URL, { __from: from, __to: to, __interval_ms: 60_000 }), {
      headers: { authorization: `Bearer ${grafanaToken}` },
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { rows: Record<string, unknown>[]; columns: string[] };
    expect(body.columns).toEqual(RECIPE_COLUMNS);
    expect(body.rows.length).toBe(61 * HOSTS.length);
    for (const row of body.rows) {
      for (const column of RECIPE_COLUMNS) expect(row).toHaveProperty(column);
      expect(Number.isNaN(Date.parse(row.timestamp as string))).toBe(false);
    }
    const host1 = body.rows.filter((r) => r.hostname === 'host_1');
    // The first minute (its row is before the range's start), the 10-minute gap, the minute after the data.
    expect(host1.filter((r) => r.avg_usage_user === null).length).toBe(1 + 10 + 1);
    const first = body.rows.find((r) => r.hostname === 'host_2' && r.timestamp === new Date(START + 5 * MINUTE).toISOString());
    expect(first).toEqual({ timestamp: new Date(START + 5 * MINUTE).toISOString(), hostname: 'host_2', avg_usage_user: (5 * 7 + 26) % 100, max_usage_user: (5 * 7 + 26) % 100 });
  });

  test('a sub-second interval (short ranges) is rounded up to one second', async () => {
    const res = await fetch(substituted(RECIPE_URL, { __from: START, __to: START + 5_000, __interval_ms: 200 }), {
      headers: { authorization: `Bearer ${grafanaToken}` },
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { rows: unknown[] }).rows.length).toBe(5 * HOSTS.length);
  });

  test('the token of the recipe reads only its dataset; the variable query lists only it', async () => {
    const headers = { authorization: `Bearer ${grafanaToken}` };
    const other = substituted(RECIPE_URL.replace('/datasets/cpu/', '/datasets/mem/'), { __from: START, __to: START + MINUTE, __interval_ms: 60_000 });
    expect((await fetch(other, { headers })).status).toBe(403);
    expect((await fetch(substituted(RECIPE_URL, { __from: START, __to: START + MINUTE, __interval_ms: 60_000 }))).status).toBe(401);
    const list = (await (await fetch(`${ts.url}/datasets`, { headers })).json()) as { datasets: { slug: string }[] };
    expect(list.datasets.map((d) => d.slug)).toEqual(['cpu']);
  });
});
