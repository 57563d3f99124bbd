/**
 * Runs timestore as a separate process, the way users run it, and waits until
 * GET /ready answers 200. Used by the end-to-end tests (CLI, shutdown, the
 * compiled binary, Swagger UI).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePortAsync } from './ports.ts';

export const REPO_ROOT = resolve(import.meta.dir, '../..');

export interface ServerProcess {
  url: string;
  port: number;
  storageRoot: string;
  proc: Bun.Subprocess<'ignore', 'pipe', 'pipe'>;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export interface SpawnOptions {
  /** The command; default: this Bun running src/main.ts. */
  command?: string[];
  env?: Record<string, string>;
  cwd?: string;
  storageRoot?: string;
  /** Default: a free port. */
  port?: number;
  readyTimeoutMs?: number;
}

export async function spawnServer(options: SpawnOptions = {}): Promise<ServerProcess> {
  const port = options.port ?? (await freePortAsync());
  const storageRoot = options.storageRoot ?? mkdtempSync(join(tmpdir(), 'timestore-root-'));
  const proc = Bun.spawn(options.command ?? [process.execPath, join(REPO_ROOT, 'src/main.ts')], {
    cwd: options.cwd ?? REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      TIMESTORE_PORT: String(port),
      TIMESTORE_STORAGE_ROOT: storageRoot,
      TIMESTORE_WORKER_THREADS: '1',
      ...options.env,
    },
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  let printed = '';
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) printed += decoder.decode(chunk, { stream: true });
  };
  const drained = Promise.all([collect(proc.stdout), collect(proc.stderr)]);
  const url = `http://127.0.0.1:${port}`;
  const server: ServerProcess = {
    url,
    port,
    storageRoot,
    proc,
    output: () => printed,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null) proc.kill(signal);
      const code = await proc.exited;
      await drained;
      if (!options.storageRoot) rmSync(storageRoot, { recursive: true, force: true });
      return code;
    },
  };

  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) {
      await drained;
      throw new Error(`timestore exited with ${proc.exitCode} before it was ready:\n${printed}`);
    }
    try {
      const res = await fetch(`${url}/ready`);
      if (res.status === 200) return server;
    } catch {
      // not listening yet
    }
    await Bun.sleep(100);
  }
  await server.stop('SIGKILL');
  throw new Error(`timestore was not ready within ${options.readyTimeoutMs ?? 60_000} ms:\n${printed}`);
}
