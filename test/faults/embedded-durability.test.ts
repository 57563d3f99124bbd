/**
 * The embedded catalog's commits reach the disk before a batch is acknowledged: the server (from
 * source, or the executable the suites run against) runs under strace, takes one batch with
 * `?wait=true`, and is SIGKILLed (no shutdown checkpoint, which would flush the WAL anyway). The
 * WAL must have been fsynced between the batch's staging and the answer: PGlite as shipped never does
 * (src/catalog/embedded.ts), and a machine crash would then take the acknowledged batch's job and
 * manifest version with it. The files of the new cluster, which PGlite's initdb writes without an
 * fsync, must have been fsynced too. Without strace the test is skipped locally and fails in CI.
 */
import { afterEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { postJson, TEST_BINARY } from '../harness/server.ts';
import { REPO_ROOT, spawnServer, type ServerProcess } from '../harness/server-process.ts';

const HAVE_STRACE = Bun.which('strace') !== null;

const dirs: string[] = [];
let server: ServerProcess | undefined;
/** The server's own pid (strace's tracee): killing strace alone would leave it running. */
let tracee = 0;
afterEach(async () => {
  if (tracee > 0) process.kill(tracee, 'SIGKILL');
  await server?.proc.exited;
  server = undefined;
  tracee = 0;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/**
 * From strace's lines (`<pid> openat(AT_FDCWD, "<path>", …) = <fd>`, `<pid> fsync(<fd>) = 0`, the
 * pid padded with spaces to five columns, a call split across lines as `<unfinished …>` and
 * `<… openat resumed>`): each fsync or fdatasync with the line it is on and the path its
 * descriptor was opened as.
 */
function syncs(lines: string[]): Array<{ line: number; path: string }> {
  const paths = new Map<string, string>();
  const opening = new Map<string, string>();
  const found: Array<{ line: number; path: string }> = [];
  lines.forEach((line, index) => {
    const pid = line.split(/\s/, 1)[0]!;
    const open = /openat\(AT_FDCWD, "([^"]+)"/.exec(line);
    if (open && line.includes('<unfinished')) opening.set(pid, open[1]!);
    const path = open?.[1] ?? (line.includes('<... openat resumed>') ? opening.get(pid) : undefined);
    const fd = / = (\d+)$/.exec(line)?.[1];
    if (path && fd) paths.set(fd, path);
    const synced = /^\d+\s+f(?:data)?sync\((\d+)/.exec(line)?.[1];
    if (synced) found.push({ line: index, path: paths.get(synced) ?? `fd ${synced}` });
  });
  return found;
}

describe('embedded catalog durability', () => {
  test.skipIf(!HAVE_STRACE && !process.env.CI)('a new catalog is on disk before it serves, and a batch acknowledged with ?wait=true has its commits fsynced (the WAL) before the answer', async () => {
    if (!HAVE_STRACE) throw new Error('CI is set but strace is not installed: this test watches the server\'s fsyncs with it (apt-get install -y strace; .ci/run installs it)');
    const work = mkdtempSync(join(tmpdir(), 'timestore-durability-'));
    dirs.push(work);
    const storageRoot = join(work, 'root');
    const log = join(work, 'strace.log');
    const serverCommand = TEST_BINARY ? [TEST_BINARY] : [process.execPath, join(REPO_ROOT, 'src/main.ts')];
    server = await spawnServer({
      command: ['strace', '-f', '-qq', '-e', 'trace=openat,fsync,fdatasync', '-o', log, '--', ...serverCommand],
      storageRoot,
      readyTimeoutMs: 90_000,
    });
    // strace's own pid is the process spawned; the server is its tracee, named first in the log.
    tracee = Number(readFileSync(log, 'utf8').split(/\s/, 1)[0]);
    expect(tracee).toBeGreaterThan(0);
    const answer = await postJson(`${server.url}/datasets/durable/ingest?wait=true`, {
      schema: { fields: [{ name: 'timestamp', type: 'timestamp' }, { name: 'value', type: 'double' }] },
      partition: { key: {} },
      rows: [{ timestamp: '2026-01-01T00:00:00Z', value: 1 }],
    });
    expect(answer.status).toBe(201);
    // strace writes each call as it returns: what the log holds now happened before the answer.
    const answeredAt = readFileSync(log, 'utf8').split('\n').length - 1;
    process.kill(tracee, 'SIGKILL');
    tracee = 0;
    await server.proc.exited;

    const lines = readFileSync(log, 'utf8').split('\n');
    const staged = lines.findIndex((line) => line.includes(`"${storageRoot}/partitions/staging/durable/`));
    expect(staged).toBeGreaterThan(0); // strace saw the batch being staged
    const synced = syncs(lines);
    const wal = `${storageRoot}/catalog/pg_wal/`;
    expect(synced.filter(({ line, path }) => line > staged && line < answeredAt && path.startsWith(wal))).not.toEqual([]);
    // The new cluster's files, which PGlite's initdb wrote without an fsync, reached the disk before it served.
    expect(synced.filter(({ line, path }) => line < staged && path === `${storageRoot}/catalog/PG_VERSION`)).not.toEqual([]);
  }, 180_000);
});
