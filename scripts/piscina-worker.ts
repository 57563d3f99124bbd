/**
 * Piscina's own worker bootstrap, bundled as an extra entry point of the
 * compiled binary (see scripts/build.ts). Piscina spawns its threads on
 * `resolve(__dirname, 'worker.js')`, and `bun build --compile` bakes the build
 * machine's `__dirname` into CommonJS modules, so the build rewrites that
 * expression to this entry's path inside the binary. Not used from source.
 */
import '../node_modules/piscina/dist/worker.js';
