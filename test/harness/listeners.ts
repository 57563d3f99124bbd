/**
 * What a process listens on, read from /proc (Linux): its TCP listening ports
 * and the paths of its listening Unix sockets. A socket belongs to the process
 * when one of its file descriptors links to `socket:[inode]`.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

function socketInodes(pid: number | 'self'): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1] as string);
    } catch {
      // closed while we looked
    }
  }
  return inodes;
}

/** TCP ports (IPv4 and IPv6) the process is listening on. */
export function tcpListeningPorts(pid: number | 'self'): number[] {
  const mine = socketInodes(pid);
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, the inode is the tenth column
      if (cols.length < 10 || cols[3] !== '0A' || !mine.has(cols[9] as string)) continue;
      ports.add(Number.parseInt((cols[1] as string).split(':')[1] as string, 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/** Paths of the Unix sockets the process is listening on. */
export function unixListeningPaths(pid: number | 'self'): string[] {
  const mine = socketInodes(pid);
  const paths: string[] = [];
  for (const line of readFileSync(`/proc/${pid}/net/unix`, 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path; flags 00010000 is __SO_ACCEPTCON (listening)
    if (cols.length < 8 || cols[3] !== '00010000' || !mine.has(cols[6] as string)) continue;
    paths.push(cols.slice(7).join(' '));
  }
  return paths;
}
