/**
 * Runs `bun src/main.ts serve` as a separate process against a PostgreSQL database, and
 * watches its memory (VmRSS sampled, VmHWM at the end) and CPU time per thread.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnServer } from '../../test/harness/server-process.ts';
import { threadsOf } from '../../test/harness/threads.ts';
import { REPO_ROOT } from './source.ts';

export { REPO_ROOT };
export const BUN = join(REPO_ROOT, 'node_modules/.bin/bun');

export interface BenchServer {
  url: string;
  pid: number;
  storageRoot: string;
  /** Peak and last RSS seen by the sampler and the kernel's high-water mark, in bytes. */
  memory(): { sampledPeakRss: number; vmHWM: number; vmRSS: number };
  /** Resets the sampled peak (VmHWM cannot be reset). */
  resetPeak(): void;
  output(): string;
  stop(): Promise<number>;
}

export interface StartOptions {
  databaseUrl: string;
  /** Directory holding the timestore source to run (src/main.ts); default the working tree. */
  root?: string;
  env?: Record<string, string>;
  /** Extra arguments to bun before the script, e.g. --cpu-prof. */
  bunArgs?: string[];
  keepStorage?: boolean;
}

function statusBytes(pid: number, key: string): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export async function startServer(o: StartOptions): Promise<BenchServer> {
  const storageRoot = mkdtempSync(join(tmpdir(), 'timestore-bench-root-'));
  const root = o.root ?? REPO_ROOT;
  const server = await spawnServer({
    command: [BUN, ...(o.bunArgs ?? []), join(root, 'src/main.ts'), 'serve'],
    cwd: root,
    storageRoot,
    env: {
      TIMESTORE_DATABASE_URL: o.databaseUrl,
      TIMESTORE_LOG_LEVEL: 'warn',
      TIMESTORE_WORKER_THREADS: '', // blank is unset: one DuckDB thread per core, as deployed
      // The allocator's own knobs pass through, to measure them (docs/operations.md, the purge delay).
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('MIMALLOC_')) as [string, string][]),
      ...o.env,
    },
  });
  const pid = server.proc.pid;

  let sampledPeak = 0;
  const sampler = setInterval(() => {
    sampledPeak = Math.max(sampledPeak, statusBytes(pid, 'VmRSS'));
  }, 100);

  return {
    url: server.url,
    pid,
    storageRoot,
    memory: () => ({ sampledPeakRss: sampledPeak, vmHWM: statusBytes(pid, 'VmHWM'), vmRSS: statusBytes(pid, 'VmRSS') }),
    resetPeak: () => {
      sampledPeak = 0;
    },
    output: () => server.output(),
    async stop() {
      clearInterval(sampler);
      const code = await server.stop();
      if (!o.keepStorage) rmSync(storageRoot, { recursive: true, force: true });
      return code;
    },
  };
}

export interface ThreadCpu {
  tid: number;
  name: string;
  /** user + system CPU seconds */
  seconds: number;
}

const CLK_TCK = 100;

/** CPU seconds of every thread of `pid` (test/harness/threads.ts reads /proc). */
export function threadCpu(pid: number): ThreadCpu[] {
  try {
    // The main thread by its id: its name is the executable's, which the server's re-exec changes.
    return threadsOf(pid).map((t) => ({ tid: t.tid, name: t.tid === pid ? 'main' : t.name, seconds: t.cpu / CLK_TCK }));
  } catch {
    return []; // the process has ended
  }
}

/** CPU seconds of a whole process (all threads, ended ones included). */
export function processCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds per component between two snapshots: the server's threads grouped by name, the
 * benchmark's own PostgreSQL cluster (postmaster, its children, and the children that ended, from
 * the postmaster's cutime/cstime), this process, and the whole machine (/proc/stat), so that CPU
 * used by other programs on a shared machine shows up as `otherProcesses`.
 */
export interface CpuSnapshot {
  at: number;
  threads: Map<number, ThreadCpu>;
  postgres: number;
  self: number;
  machineBusy: number;
}

function statFields(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  } catch {
    return null;
  }
}

/** The postmaster listening on `port` (found by its command line). */
export function postmasterOnPort(port: number): number | null {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (cmd[0]?.endsWith('/postgres') && cmd.includes('-p') && cmd[cmd.indexOf('-p') + 1] === String(port)) return Number(entry);
    } catch {
      // gone
    }
  }
  return null;
}

function clusterCpu(postmaster: number | null): number {
  if (postmaster === null) return 0;
  let total = 0;
  const own = statFields(postmaster);
  if (own) total += (Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14])) / CLK_TCK;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(Number(entry));
    if (f && Number(f[1]) === postmaster) total += (Number(f[11]) + Number(f[12])) / CLK_TCK;
  }
  return total;
}

function machineBusySeconds(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = cpu[0]! + cpu[1]! + cpu[2]! + cpu[5]! + cpu[6]! + cpu[7]!;
  return busy / CLK_TCK;
}

export function snapshotCpu(serverPid: number, postmaster: number | null): CpuSnapshot {
  return {
    at: performance.now(),
    threads: new Map(threadCpu(serverPid).map((t) => [t.tid, t])),
    postgres: clusterCpu(postmaster),
    self: processCpu(process.pid),
    machineBusy: machineBusySeconds(),
  };
}

export interface CpuUse {
  wallSeconds: number;
  /** name → CPU seconds (threads of the same name summed, with how many there were). */
  serverThreads: Array<{ name: string; threads: number; seconds: number }>;
  serverTotal: number;
  postgres: number;
  benchClient: number;
  /** Busy CPU seconds of the whole machine, and the part none of the above used. */
  machineBusy: number;
  otherProcesses: number;
  /** Cores × wall seconds. */
  available: number;
}

export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot, cores: number): CpuUse {
  const byName = new Map<string, { threads: number; seconds: number }>();
  let serverTotal = 0;
  for (const [tid, t] of b.threads) {
    const before = a.threads.get(tid)?.seconds ?? 0;
    const used = t.seconds - before;
    serverTotal += used;
    const entry = byName.get(t.name) ?? { threads: 0, seconds: 0 };
    entry.threads += 1;
    entry.seconds += used;
    byName.set(t.name, entry);
  }
  const postgres = b.postgres - a.postgres;
  const client = b.self - a.self;
  const busy = b.machineBusy - a.machineBusy;
  const wall = (b.at - a.at) / 1000;
  return {
    wallSeconds: round(wall, 2),
    serverThreads: [...byName].map(([name, v]) => ({ name, ...v, seconds: round(v.seconds, 2) })).sort((x, y) => y.seconds - x.seconds),
    serverTotal: round(serverTotal, 2),
    postgres: round(postgres, 2),
    benchClient: round(client, 2),
    machineBusy: round(busy, 2),
    otherProcesses: round(Math.max(0, busy - serverTotal - postgres - client), 2),
    available: round(wall * cores, 2),
  };
}

/** POSTs `body` as JSON and reads the whole answer: the client's milliseconds, and the parsed answer (a non-2xx throws). */
export async function timedPost(url: string, body: unknown): Promise<{ ms: number; answer: any }> {
  const started = performance.now();
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  const ms = performance.now() - started;
  if (!res.ok) throw new Error(`${url}: ${res.status} ${text.slice(0, 300)}`);
  return { ms, answer: JSON.parse(text) };
}

/** Runs a dataset's lifecycle (`?wait=true`) until its compaction reports nothing more, as a deployment's rounds would. */
export async function compactFully(url: string, slug: string): Promise<void> {
  for (let run = 0; run < 100; run++) {
    const { answer } = await timedPost(`${url}/admin/datasets/${slug}/lifecycle?wait=true`, {});
    if (answer.state !== 'succeeded') throw new Error(`lifecycle ${answer.state}: ${answer.lastError}`);
    const result = answer.result.compaction ? answer.result : answer.result[answer.id];
    if (!result.compaction.more) return;
  }
}

export const round = (n: number, digits = 0) => Math.round(n * 10 ** digits) / 10 ** digits;
