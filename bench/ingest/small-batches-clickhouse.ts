/**
 * The small-batch load of `run.ts --batch 100 --clients 8 --rows 300000` sent to ClickHouse: the
 * same 3,000 TSBS batches of 100 rows as JSON lines (`INSERT … FORMAT JSONEachRow`, timestamps as
 * ClickHouse's `YYYY-MM-DD hh:mm:ss`, converted before the clock), from 8 closed-loop clients, into
 * the peers benchmark's table (MergeTree, ORDER BY (hostname, ts)). Prints batches per second
 * acknowledged and the ClickHouse server's CPU per batch (from /proc), to set beside timestore's on
 * the same machine in the same hour.
 *
 *   node_modules/.bin/bun bench/ingest/small-batches-clickhouse.ts [--url http://127.0.0.1:8123] [--pid <clickhouse-server pid>]
 *
 * ClickHouse must be running; the peers benchmark starts one as it does for its own runs:
 * `bash -c 'source ../shared/peers/lib/servers.sh && start_clickhouse'` (stop it with
 * `stop_clickhouse`). ClickHouse acknowledges an insert once its part is written, without an
 * fsync, where timestore acknowledges a batch once it is durable.
 */
import { execFileSync } from 'node:child_process';
import { closedLoop } from './load.ts';
import { processCpu } from './server.ts';
import { FIELDS, generate, TAGS } from './tsbs.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const url = args.get('url') ?? 'http://127.0.0.1:8123';
const pid = Number(args.get('pid') ?? execFileSync('pgrep', ['-o', '-x', 'clickhouse-serv']).toString().trim());
const CLIENTS = 8;

const query = async (sql: string): Promise<string> => {
  const res = await fetch(url, { method: 'POST', body: sql });
  const text = await res.text();
  if (!res.ok) throw new Error(`clickhouse answered ${res.status}: ${text.slice(0, 500)}`);
  return text;
};

const data = generate({ hosts: 1000, hours: 24, batch: 100, rows: 300_000, partitionKey: {}, cacheRoot: '/tmp/timestore-bench-data' });
const bodies = await Promise.all(
  data.files.map(async (file) => {
    const { rows } = (await Bun.file(file).json()) as { rows: Array<Record<string, unknown>> };
    const lines = rows.map((row) => JSON.stringify({ ...row, timestamp: String(row.timestamp).slice(0, 19).replace('T', ' ') }));
    return `${lines.join('\n')}\n`;
  }),
);

await query('DROP TABLE IF EXISTS small_batches');
await query(`CREATE TABLE small_batches (
  timestamp DateTime, ${TAGS.map((t) => `${t} String`).join(', ')}, ${FIELDS.map((f) => `${f} Float64`).join(', ')}
) ENGINE = MergeTree() PARTITION BY toDate(timestamp) ORDER BY (hostname, timestamp)`);
const insert = `${url}/?query=${encodeURIComponent('INSERT INTO small_batches FORMAT JSONEachRow')}`;

const cpuBefore = processCpu(pid);
const started = performance.now();
await closedLoop(CLIENTS, bodies.length, async (i) => {
  const res = await fetch(insert, { method: 'POST', body: bodies[i]! });
  if (!res.ok) throw new Error(`insert answered ${res.status}: ${(await res.text()).slice(0, 500)}`);
  await res.arrayBuffer();
});
const seconds = (performance.now() - started) / 1000;
const cpuMsPerBatch = ((processCpu(pid) - cpuBefore) * 1000) / bodies.length;
const stored = Number((await query('SELECT count() FROM small_batches')).trim());
const total = data.batchRows.reduce((a, b) => a + b, 0);
if (stored !== total) throw new Error(`ClickHouse holds ${stored} rows of the ${total} sent`);
console.log(
  `ClickHouse: ${bodies.length} batches of 100 rows, ${CLIENTS} clients: ${Math.round(bodies.length / seconds)}/s acknowledged, ` +
    `server CPU ${cpuMsPerBatch.toFixed(2)} ms a batch`,
);
await query('DROP TABLE small_batches');
process.exit(0);
