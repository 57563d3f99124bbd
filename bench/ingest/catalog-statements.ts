/**
 * What one catalog statement costs PostgreSQL on this machine, apart from what it does: eight
 * postgres.js clients (as the server's pool) send 4,000 statements of each kind, as fast as they
 * are answered, to a throwaway cluster (test/harness/postgres.ts); prints statements a second and
 * PostgreSQL's CPU per statement (every process of the cluster, from /proc).
 *
 *   node_modules/.bin/bun bench/ingest/catalog-statements.ts
 *
 * Kinds: `SELECT 1`; a one-row INSERT of a jsonb value (a job's payload is a few hundred bytes);
 * the same INSERT with a pg_notify, heard by a LISTEN on another connection, as a job's is.
 */
import { execFileSync } from 'node:child_process';
import postgres from 'postgres';
import { createBenchDatabase } from '../../test/harness/postgres.ts';
import { processCpu } from './server.ts';

const STATEMENTS = 4000;
const CLIENTS = 8;

/** CPU seconds of every postgres process (backends, walwriter and the rest). */
function clusterCpu(): number {
  const pids = execFileSync('pgrep', ['-x', 'postgres']).toString().trim().split('\n');
  return pids.reduce((sum, pid) => sum + processCpu(Number(pid)), 0);
}

const sql = postgres(await createBenchDatabase('statements'), { max: CLIENTS, onnotice: () => {} });
await sql`CREATE TABLE t (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`;
let heard = 0;
await sql.listen('bench_statements', () => heard++);
const payload = { location: `file:///staging/${'x'.repeat(200)}.ndjson`, rowCount: 100, minTime: new Date().toISOString() };

const kinds: Record<string, () => Promise<unknown>> = {
  'SELECT 1': () => sql`SELECT 1`,
  'INSERT of a jsonb row': () => sql`INSERT INTO t (payload) VALUES (${sql.json(payload)})`,
  'INSERT of a jsonb row with pg_notify': () =>
    sql`WITH c AS (INSERT INTO t (payload) VALUES (${sql.json(payload)}) RETURNING id) SELECT c.id FROM c CROSS JOIN LATERAL (SELECT pg_notify('bench_statements', 'q')) n`,
};
for (const [name, statement] of Object.entries(kinds)) {
  await statement(); // connections open
  let sent = 0;
  const cpuBefore = clusterCpu();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (sent++ < STATEMENTS) await statement();
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const cpuMs = ((clusterCpu() - cpuBefore) * 1000) / STATEMENTS;
  console.log(`${name}: ${Math.round(STATEMENTS / seconds)} a second, PostgreSQL CPU ${cpuMs.toFixed(3)} ms each`);
}
console.log(`notifications heard: ${heard}`);
await sql.end();
process.exit(0);
