/**
 * The worker pool: Piscina threads, each with its own DuckDB instance
 * (see worker.ts). All DuckDB work goes through here.
 */
import Piscina from 'piscina';
import { extractDuckDBLibrary } from './duckdb-runtime.ts';
import type { PingResult, WorkerData } from './worker.ts';

export class WorkerPool {
  private constructor(
    private readonly piscina: Piscina,
    readonly threads: number,
  ) {}

  /** Starts `threads` workers; `runtimeDir` receives DuckDB's native library when running compiled. */
  static async start(threads: number, runtimeDir: string): Promise<WorkerPool> {
    const workerData: WorkerData = { duckdbLibraryPath: await extractDuckDBLibrary(runtimeDir) };
    const piscina = new Piscina({
      // Resolves beside this module both from source and inside the compiled binary,
      // where the worker is bundled as an extra entry point.
      filename: new URL('./worker.ts', import.meta.url).href,
      workerData,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Number.POSITIVE_INFINITY,
    });
    return new WorkerPool(piscina, threads);
  }

  ping(): Promise<PingResult> {
    return this.piscina.run(null, { name: 'ping' });
  }

  /** Waits for running tasks, then stops every thread. */
  async close(): Promise<void> {
    await this.piscina.close();
  }
}
