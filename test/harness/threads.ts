/** The threads of a process, as /proc shows them: name, nice value and CPU time. */
import { readdirSync, readFileSync } from 'node:fs';

export interface ThreadState {
  tid: number;
  /** The thread's name (`comm`): `Worker` for worker threads, `Bun Pool <n>` for Bun's native pool. */
  name: string;
  nice: number;
  /** User and system CPU time, in clock ticks. */
  cpu: number;
}

export function threadsOf(pid: number): ThreadState[] {
  const states: ThreadState[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // the thread ended while we read
    }
    // "pid (comm) state …": after the name, state is field 3, utime 14, stime 15, nice 19.
    const open = stat.indexOf('(');
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    states.push({ tid: Number(tid), name: stat.slice(open + 1, close), nice: Number(fields[16]), cpu: Number(fields[11]) + Number(fields[12]) });
  }
  return states;
}

/** CPU ticks each thread of `pid` spent while `run` ran, by thread name (threads of one name summed). */
export async function cpuByThreadName(pid: number, run: () => Promise<void>): Promise<Map<string, number>> {
  const before = new Map(threadsOf(pid).map((t) => [t.tid, t.cpu]));
  await run();
  const spent = new Map<string, number>();
  for (const t of threadsOf(pid)) spent.set(t.name, (spent.get(t.name) ?? 0) + t.cpu - (before.get(t.tid) ?? 0));
  return spent;
}
