/**
 * A pid lock file, taken atomically with link(2): the file is written under a
 * unique name and linked to the lock path, which fails if the lock exists. A
 * lock whose pid is no longer alive (a process that was killed) is taken over.
 */
import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';

/** Locks this process holds: a file naming our own pid that is not in here was left by an earlier process
 * that had the same pid (a restarted container is pid 1 again), so it is stale. */
const held = new Set<string>();

export interface LockFile {
  release(): void;
}

export function acquireLockFile(path: string, inUse: (holderPid: number) => Error): LockFile {
  const candidate = `${path}.${process.pid}.${Date.now()}`;
  writeFileSync(candidate, `${process.pid}\n`);
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        linkSync(candidate, path);
        held.add(path);
        return {
          release() {
            held.delete(path);
            try {
              if (readFileSync(path, 'utf8').trim() === String(process.pid)) unlinkSync(path);
            } catch {
              // already gone
            }
          },
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = readHolder(path);
        const ours = holder === process.pid;
        if (holder !== null && (ours ? held.has(path) : isAlive(holder))) throw inUse(holder);
        // stale: the holder died without releasing it
        try {
          unlinkSync(path);
        } catch {
          // someone else removed it first; try again
        }
      }
    }
    throw inUse(readHolder(path) ?? -1);
  } finally {
    unlinkSync(candidate);
  }
}

function readHolder(path: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    return Number.isFinite(pid) ? pid : null;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
