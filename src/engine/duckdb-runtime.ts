/**
 * Loads DuckDB's native library so that `@duckdb/node-api` can be imported,
 * from source and inside the compiled binary alike.
 *
 * The compiled binary embeds the `duckdb.node` addon but not the
 * `libduckdb.so` it links against, so the library is embedded as a file asset,
 * written once to `<storage root>/.runtime/` and loaded with bun:ffi before the
 * bindings load. The addon's dependency on `libduckdb.so` is then satisfied by
 * the copy already in the process (matched by its soname), so one load serves
 * every thread. From source the copy in node_modules is loaded in place.
 */
import { dlopen, FFIType } from 'bun:ffi';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import bindings from '../../node_modules/@duckdb/node-bindings-linux-x64/package.json' with { type: 'json' };
import embeddedLibrary from '../../node_modules/@duckdb/node-bindings-linux-x64/libduckdb.so' with { type: 'file' };

let loaded: { close(): void } | undefined;

/** The path of a loadable libduckdb.so: the embedded one written under `runtimeDir` when compiled. */
export async function extractDuckDBLibrary(runtimeDir: string): Promise<string> {
  if (!embeddedLibrary.startsWith('/$bunfs/')) return embeddedLibrary;
  const source = Bun.file(embeddedLibrary);
  const target = join(runtimeDir, `libduckdb-${bindings.version}.so`);
  if (existsSync(target) && statSync(target).size === source.size) return target;
  mkdirSync(runtimeDir, { recursive: true });
  const partial = `${target}.${process.pid}.tmp`;
  await Bun.write(partial, source);
  renameSync(partial, target);
  return target;
}

/** Loads libduckdb (once per process) and returns the DuckDB API module. */
export async function loadDuckDB(libraryPath: string): Promise<typeof import('@duckdb/node-api')> {
  loaded ??= dlopen(libraryPath, { duckdb_library_version: { args: [], returns: FFIType.cstring } });
  return import('@duckdb/node-api');
}
