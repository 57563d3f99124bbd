/** DuckDB in the test thread, for reading back what timestore wrote. */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { extractDuckDBLibrary, loadDuckDB } from '../../src/engine/duckdb-runtime.ts';

let connection: Promise<DuckDBConnection> | undefined;

export function testDuckDB(): Promise<DuckDBConnection> {
  connection ??= (async () => {
    const { DuckDBInstance } = await loadDuckDB(await extractDuckDBLibrary(join(tmpdir(), 'timestore-test-runtime')));
    return (await DuckDBInstance.create(':memory:')).connect();
  })();
  return connection;
}
