/**
 * `bun run build`: compiles timestore into one self-contained executable,
 * dist/timestore (see docs: platform-notes "One self-contained binary").
 *
 * Entry points: the CLI, the DuckDB worker (Piscina loads it by URL at run
 * time), the embedded catalog's thread and Piscina's own worker bootstrap. Native and data assets
 * (libduckdb.so, PGlite's wasm/data, Swagger UI, migrations) are embedded by
 * the `with { type: 'file' | 'text' }` imports in src/.
 */
import { rmSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import type { BunPlugin } from 'bun';

const ROOT = resolve(import.meta.dir, '..');
const OUTFILE = resolve(ROOT, 'dist/timestore');

const ENTRY = {
  main: 'src/main.ts',
  worker: 'src/engine/worker.ts',
  catalogThread: 'src/catalog/embedded-thread.ts',
  piscinaWorker: 'scripts/piscina-worker.ts',
};
// Entry points land at /$bunfs/root/<path relative to the entries' common root>.js;
// with entries under both src/ and scripts/ that root is the repository root.
const bunfsPath = (entry: string) => `/$bunfs/root/${entry.replace(/\.ts$/, '.js')}`;

// @duckdb/node-bindings requires every platform's addon in a switch; only linux-x64 is installed.
const OTHER_PLATFORMS = ['linux-x64-musl', 'linux-arm64', 'linux-arm64-musl', 'darwin-arm64', 'darwin-x64', 'win32-arm64', 'win32-x64'];

// Piscina spawns threads on its worker.js beside its own module; compiled, __dirname is the
// build machine's node_modules. Point it at the embedded bootstrap instead.
const PISCINA_SPAWN = "(0, node_path_1.resolve)(__dirname, 'worker.js')";
// Each entry point bundles its own copy of piscina, so the bootstrap that sends a task's result
// and the DuckDB worker that marks it with `move()` hold different `Symbol('Piscina.kMovable')`
// markers: the bootstrap then saw no movable result and sent Piscina's wrapper object instead of
// the buffer (every JSON query answered 500). A registered symbol is one symbol in every copy.
const PISCINA_MOVABLE = "Symbol('Piscina.kMovable')";

/** Replaces `from` (expected exactly once) in a piscina module, failing the build if piscina changed. */
function patchPiscina(build: Bun.PluginBuilder, file: string, from: string, to: string): void {
  const filter = new RegExp(`[\\\\/]node_modules[\\\\/]piscina[\\\\/]dist[\\\\/]${file.replace('.', '\\.')}$`);
  build.onLoad({ filter }, async ({ path }) => {
    const source = await Bun.file(path).text();
    const count = source.split(from).length - 1;
    if (count !== 1) {
      throw new Error(`piscina-embedded: expected ${from} once in ${relative(ROOT, path)}, found it ${count} times (piscina changed?)`);
    }
    return { contents: source.replace(from, to), loader: 'js' };
  });
}

const piscinaEmbedded: BunPlugin = {
  name: 'piscina-embedded',
  setup(build) {
    patchPiscina(build, 'index.js', PISCINA_SPAWN, JSON.stringify(bunfsPath(ENTRY.piscinaWorker)));
    patchPiscina(build, 'symbols.js', PISCINA_MOVABLE, "Symbol.for('Piscina.kMovable')");
  },
};

const started = performance.now();
let result: Bun.BuildOutput;
try {
  result = await Bun.build({
    root: ROOT,
    entrypoints: Object.values(ENTRY).map((e) => resolve(ROOT, e)),
    target: 'bun',
    // Identifiers are kept so stack traces name functions (about 0.5 MiB more).
    minify: { whitespace: true, syntax: true, identifiers: false },
    sourcemap: 'linked',
    external: OTHER_PLATFORMS.map((p) => `@duckdb/node-bindings-${p}/duckdb.node`),
    plugins: [piscinaEmbedded],
    // src/engine/pool.ts starts Piscina on this path when compiled (see the comment there), and
    // src/catalog/embedded.ts the embedded catalog's thread.
    define: {
      TIMESTORE_COMPILED_WORKER: JSON.stringify(bunfsPath(ENTRY.worker)),
      TIMESTORE_COMPILED_CATALOG_THREAD: JSON.stringify(bunfsPath(ENTRY.catalogThread)),
    },
    compile: {
      outfile: OUTFILE,
      // Configuration comes from the environment only: a .env or bunfig.toml in whatever
      // directory the binary is started from must not change its behaviour.
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
  });
} catch (err) {
  // Bun.build throws an AggregateError of build messages when the build fails.
  const errors = err instanceof AggregateError ? err.errors : [err];
  for (const e of errors) console.error(e);
  console.error('build failed');
  process.exit(1);
}
if (!result.success) {
  for (const log of result.logs) console.error(log);
  console.error('build failed');
  process.exit(1);
}
// The source maps are embedded in the executable (stack traces show src/ paths); the copies
// written beside it are redundant, so dist/ holds the one file that ships.
for (const output of result.outputs) if (output.path.endsWith('.map')) rmSync(output.path, { force: true });

const seconds = ((performance.now() - started) / 1000).toFixed(1);
const size = Bun.file(OUTFILE).size;
console.log(`built ${relative(process.cwd(), OUTFILE)}: ${(size / 1024 ** 2).toFixed(1)} MiB in ${seconds} s`);
