/**
 * A pid lock file, taken atomically with link(2): the file is written under a
 * unique name and linked to the lock path, which fails if the lock exists. A
 * lock whose pid is no longer alive (a process that was killed) is taken over.
 */
import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';

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
        return {
          release() {
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
        if (holder !== null && holder !== process.pid && isAlive(holder)) throw inUse(holder);
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
