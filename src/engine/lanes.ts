/**
 * Workload lanes: each kind of DuckDB work has threads of its own and a bounded queue in front
 * of them, so no workload can hold the threads another one needs (a slow reader of a streamed
 * answer keeps its stream thread busy for as long as it reads, but never an ingest writer's).
 *
 * A lane admits a task while fewer than `threads + maxQueue` of its tasks are in flight (running
 * or waiting for a thread); past that it refuses at once with a {@link WorkloadBusyError}
 * instead of queueing without bound. The count is the lane's own, not Piscina's queue, so a
 * task waiting for a thread that is still starting counts too.
 *
 * Closing waits for every admitted task to settle before the threads stop. Piscina's own close
 * does not: with two threads busy, the first task to finish let it terminate the other thread in
 * the middle of a DuckDB call, which aborts the whole process (exit 134).
 */
import Piscina from 'piscina';

/** The workloads that get a lane; `health` runs only the readiness ping. */
export type Workload = 'ingest' | 'query' | 'stream' | 'lifecycle' | 'health';

export interface LaneLimits {
  /** Threads (each with its own DuckDB instance). */
  threads: number;
  /** Tasks that may wait for a thread; one more is refused. */
  maxQueue: number;
  /** Start every thread now rather than on first use. */
  eager?: boolean;
}

/** A lane refused a task: its threads are busy and its queue is full. */
export class WorkloadBusyError extends Error {
  override name = 'WorkloadBusyError';
  constructor(
    readonly workload: Workload,
    readonly limits: { threads: number; maxQueue: number },
    /** How long a client should wait before it tries again. */
    readonly retryAfterSeconds: number,
  ) {
    super(`the ${workload} workload is at its limit: ${limits.threads} running and ${limits.maxQueue} waiting`);
  }
}

/**
 * What a refused client is told to wait: a query or a write frees its thread within seconds; a
 * stream holds its thread while its reader reads, so a free one is further off.
 */
const RETRY_AFTER_SECONDS: Record<Workload, number> = { ingest: 1, query: 1, stream: 5, lifecycle: 5, health: 1 };

export interface LaneStats {
  threads: number;
  maxQueue: number;
  running: number;
  queued: number;
  /** Tasks refused since start because the lane was full. */
  refused: number;
}

export class Lane {
  private inFlight = 0;
  private refused = 0;
  private readonly piscina: Piscina;
  private closing: Promise<void> | null = null;
  /** Called when the last task in flight settles, while the lane closes. */
  private onIdle: (() => void) | null = null;

  constructor(
    readonly workload: Workload,
    private readonly limits: LaneLimits,
    worker: { filename: string; workerData: unknown },
  ) {
    this.piscina = new Piscina({
      filename: worker.filename,
      workerData: { ...(worker.workerData as object), workload },
      name: workload,
      minThreads: limits.eager ? limits.threads : 0,
      maxThreads: limits.threads,
      idleTimeout: Number.POSITIVE_INFINITY,
    });
  }

  /**
   * Runs the worker's task `name` when the lane admits it; throws {@link WorkloadBusyError} at
   * once (before anything is started) when it does not.
   */
  run<R>(task: unknown, options: { name: string; transferList?: never }): Promise<R> {
    if (this.closing) throw new Error(`the worker pool is closing: the ${this.workload} lane takes no new task (${options.name})`);
    if (this.inFlight >= this.limits.threads + this.limits.maxQueue) {
      this.refused++;
      throw new WorkloadBusyError(this.workload, { threads: this.limits.threads, maxQueue: this.limits.maxQueue }, RETRY_AFTER_SECONDS[this.workload]);
    }
    this.inFlight++;
    const settled = () => {
      this.inFlight--;
      if (this.inFlight === 0) this.onIdle?.();
    };
    const running = this.piscina.run(task, options) as Promise<R>;
    running.then(settled, settled);
    return running;
  }

  /** Whether a task is running or waiting for a thread. */
  get busy(): boolean {
    return this.inFlight > 0;
  }

  stats(): LaneStats {
    const running = Math.min(this.inFlight, this.limits.threads);
    return { threads: this.limits.threads, maxQueue: this.limits.maxQueue, running, queued: this.inFlight - running, refused: this.refused };
  }

  /** Share of the lane's thread time spent running tasks since it started (0 to 1). */
  get utilization(): number {
    return this.piscina.utilization;
  }

  /** Refuses new tasks, waits for those in flight (running or queued) to settle, then stops the threads (once, however often called). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.inFlight > 0) await new Promise<void>((resolve) => (this.onIdle = resolve));
      await this.piscina.close();
    })();
    return this.closing;
  }
}
