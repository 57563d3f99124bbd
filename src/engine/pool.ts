/**
 * The worker pool: Piscina threads, each with its own DuckDB instance
 * (see worker.ts). All DuckDB work goes through here.
 */
import Piscina from 'piscina';
import { extractDuckDBLibrary } from './duckdb-runtime.ts';
import type { WritePartitionsInput, WritePartitionsResult } from './partition-writer.ts';
import type { PingResult, WorkerData } from './worker.ts';

/**
 * The worker module's path inside the compiled binary, defined by scripts/build.ts
 * (undefined from source). Compiled, this module is inlined into the main entry, whose
 * `import.meta.url` is the binary's own (`/$bunfs/root/timestore`), so a URL relative to it
 * would miss the worker, which is bundled as a separate entry point elsewhere in /$bunfs.
 */
declare const TIMESTORE_COMPILED_WORKER: string | undefined;
const WORKER_FILENAME =
  typeof TIMESTORE_COMPILED_WORKER === 'string' ? TIMESTORE_COMPILED_WORKER : new URL('./worker.ts', import.meta.url).href;

export class WorkerPool {
  private constructor(
    private readonly piscina: Piscina,
    readonly threads: number,
  ) {}

  /** Starts `threads` workers; `runtimeDir` receives DuckDB's native library when running compiled. */
  static async start(threads: number, runtimeDir: string): Promise<WorkerPool> {
    const workerData: WorkerData = { duckdbLibraryPath: await extractDuckDBLibrary(runtimeDir) };
    const piscina = new Piscina({
      filename: WORKER_FILENAME,
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

  /** Writes staged inputs as Parquet files, one per (partition key, time window), with their statistics. */
  writePartitions(input: WritePartitionsInput): Promise<WritePartitionsResult> {
    return this.piscina.run(input, { name: 'writePartitions' });
  }

  /** Waits for running tasks, then stops every thread. */
  async close(): Promise<void> {
    await this.piscina.close();
  }
}
