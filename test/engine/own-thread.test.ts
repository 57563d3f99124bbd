/**
 * Statements driven on the calling thread (src/engine/own-thread.ts) answer and fail as the
 * asynchronous calls do: the same rows, the same error message.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { extractDuckDBLibrary, loadDuckDB } from '../../src/engine/duckdb-runtime.ts';
import { onThisThread } from '../../src/engine/own-thread.ts';

let dir: string;
let db: DuckDBConnection;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'timestore-own-thread-'));
  const { DuckDBInstance } = await loadDuckDB(await extractDuckDBLibrary(join(dir, 'runtime')));
  db = await (await DuckDBInstance.create(':memory:', { threads: '1' })).connect();
});
afterAll(() => {
  db?.closeSync();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const errorOf = (run: Promise<unknown>) => run.then(() => null, (err: Error) => err.message);

test('rows and parameters as through the asynchronous call', async () => {
  const sql = 'SELECT range AS n, $label AS label FROM range(5) WHERE range >= $from';
  const values = { label: 'x', from: 2 };
  expect((await onThisThread(db).runAndReadAll(sql, values)).getRowObjects()).toEqual((await db.runAndReadAll(sql, values)).getRowObjects());
  await onThisThread(db).run('CREATE TABLE t AS SELECT 42 AS a');
  expect((await db.runAndReadAll('SELECT a FROM t')).getRows()).toEqual([[42]]);
});

test('a failing statement fails with the message the asynchronous call gives', async () => {
  const path = join(dir, 'bad.ndjson');
  writeFileSync(path, '{"a": 1}\n{"a": "x"}\n');
  const sql = `SELECT * FROM read_json('${path}', columns = {'a': 'INTEGER'}, format = 'newline_delimited')`;
  const expected = await errorOf(db.runAndReadAll(sql));
  expect(expected).toContain('line 2');
  expect(await errorOf(onThisThread(db).runAndReadAll(sql))).toBe(expected);
  expect(await errorOf(onThisThread(db).run(sql))).toBe(expected);
});
