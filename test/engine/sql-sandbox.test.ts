/**
 * The SQL sandbox's kept connection (engine/sql-statement.ts SqlSandboxes): statements run in UTC
 * with the Parquet footer cache on (settings a plain SET would have given the setting connection
 * only), a view is made again when its files change, and views of datasets a statement does not
 * name are gone before it runs.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { extractDuckDBLibrary, loadDuckDB } from '../../src/engine/duckdb-runtime.ts';
import { SqlSandboxes, type SqlTable } from '../../src/engine/sql-statement.ts';

let dir: string;
let sandboxes: SqlSandboxes;
const files: Record<string, string> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'timestore-sql-sandbox-'));
  const { DuckDBInstance } = await loadDuckDB(await extractDuckDBLibrary(join(dir, 'runtime')));
  const writer = await (await DuckDBInstance.create(':memory:', { threads: '1' })).connect();
  mkdirSync(join(dir, 'data'));
  for (const [name, value] of [['a1', 1], ['a2', 2], ['b1', 10]] as const) {
    files[name] = join(dir, 'data', `${name}.parquet`);
    await writer.run(`COPY (SELECT ${value}::BIGINT AS v) TO '${files[name]}' (FORMAT parquet)`);
  }
  // A later schema version's file (a column added), and a file under a `key=value` directory as
  // partition files are (its name must not become a column's value).
  files.c2 = join(dir, 'data', 'c2.parquet');
  await writer.run(`COPY (SELECT 3::BIGINT AS v, 30::BIGINT AS w) TO '${files.c2}' (FORMAT parquet)`);
  mkdirSync(join(dir, 'data', 'v=99'));
  files.h = join(dir, 'data', 'v=99', 'h.parquet');
  await writer.run(`COPY (SELECT 4::BIGINT AS v) TO '${files.h}' (FORMAT parquet)`);
  writer.closeSync();
  sandboxes = new SqlSandboxes((options) => DuckDBInstance.create(':memory:', options), join(dir, 'tmp'));
});

afterAll(() => {
  sandboxes?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const table = (name: string, ...paths: string[]): SqlTable => ({ name, files: paths, fields: [{ name: 'v', type: 'integer' }], fieldsInFiles: ['v'] });

async function run(tables: SqlTable[], statement: string): Promise<unknown[][]> {
  const held = await sandboxes.connect([join(dir, 'data') + '/'], 64 * 1024 * 1024, tables);
  let ok = false;
  try {
    const rows = (await held.db.runAndReadAll(statement)).getRows();
    ok = true;
    return rows;
  } finally {
    held.release(ok);
  }
}

test('statements run in UTC with the Parquet footer cache on', async () => {
  const rows = await run([], `SELECT current_setting('TimeZone'), current_setting('parquet_metadata_cache')`);
  expect(rows).toEqual([['UTC', true]]);
});

test('a view is made again when its files change, and views not named are dropped', async () => {
  expect(await run([table('a', files.a1!), table('b', files.b1!)], 'SELECT (SELECT sum(v) FROM a), (SELECT sum(v) FROM b)')).toEqual([[1n, 10n]]);
  expect(await run([table('a', files.a1!, files.a2!)], 'SELECT sum(v) FROM a')).toEqual([[3n]]);
  await expect(run([table('a', files.a2!)], 'SELECT * FROM b')).rejects.toThrow(/b/);
  // The failed statement's connection was dropped; the next one is made with its views.
  expect(await run([table('a', files.a2!)], `SELECT sum(v) FROM dataset('a')`)).toEqual([[2n]]);
});

test('the connection is kept between statements', async () => {
  let first: DuckDBConnection | undefined;
  for (let i = 0; i < 2; i++) {
    const held = await sandboxes.connect([join(dir, 'data') + '/'], 64 * 1024 * 1024, [table('a', files.a1!)]);
    if (i === 0) first = held.db;
    else expect(held.db).toBe(first!);
    held.release(true);
  }
});

test('files of two schema versions are combined by name; directory names are not columns', async () => {
  const versions: SqlTable = { name: 'c', files: [files.a1!, files.c2!], fields: [{ name: 'v', type: 'integer' }, { name: 'w', type: 'integer' }], fieldsInFiles: ['v', 'w'], oneSchema: false };
  expect(await run([versions], 'SELECT sum(v), sum(w) FROM c')).toEqual([[4n, 30n]]);
  expect(await run([{ ...table('h', files.h!), oneSchema: true }], 'SELECT v FROM h')).toEqual([[4n]]);
});
