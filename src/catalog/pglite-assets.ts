/**
 * PGlite's WebAssembly modules and file-system bundle, imported as file assets
 * so `bun build --compile` embeds them. PGlite would otherwise look for them
 * beside its own module, which inside a compiled binary does not exist.
 */
import { readFile } from 'node:fs/promises';
import initdbWasmPath from '../../node_modules/@electric-sql/pglite/dist/initdb.wasm' with { type: 'file' };
import fsBundlePath from '../../node_modules/@electric-sql/pglite/dist/pglite.data' with { type: 'file' };
import pgliteWasmPath from '../../node_modules/@electric-sql/pglite/dist/pglite.wasm' with { type: 'file' };

export async function pgliteAssets(): Promise<{
  pgliteWasmModule: WebAssembly.Module;
  initdbWasmModule: WebAssembly.Module;
  fsBundle: Blob;
}> {
  const [pglite, initdb, bundle] = await Promise.all([readFile(pgliteWasmPath), readFile(initdbWasmPath), readFile(fsBundlePath)]);
  const [pgliteWasmModule, initdbWasmModule] = await Promise.all([WebAssembly.compile(pglite), WebAssembly.compile(initdb)]);
  return { pgliteWasmModule, initdbWasmModule, fsBundle: new Blob([bundle]) };
}
