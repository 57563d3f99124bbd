import { describe, expect, test } from 'bun:test';
import { MIGRATIONS } from '../src/catalog/migrate.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VERSION } from '../src/version.ts';
import { createTestDatabase } from './harness/postgres.ts';
import { REPO_ROOT, spawnServer } from './harness/server-process.ts';

function run(args: string[], env: Record<string, string> = {}) {
  const result = Bun.spawnSync([process.execPath, join(REPO_ROOT, 'src/main.ts'), ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TIMESTORE_STORAGE_ROOT: mkdtempSync(join(tmpdir(), 'ts-cli-')), ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  });
  return { code: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

describe('the timestore command', () => {
  test('version and --help', () => {
    expect(run(['version'])).toMatchObject({ code: 0, stdout: `${VERSION}\n` });
    const help = run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: timestore [command]');
    expect(help.stdout).toContain('TIMESTORE_DATABASE_URL');
  });

  test('an unknown command or flag prints usage and exits non-zero', () => {
    for (const args of [['frobnicate'], ['--verbose'], ['serve', 'extra']]) {
      const result = run(args);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('Usage: timestore [command]');
    }
  });

  test('a bad configuration value exits non-zero naming the variable', () => {
    const result = run(['serve'], { TIMESTORE_PORT: 'eighty', TIMESTORE_STORAGE_DRIVER: 'floppy' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('TIMESTORE_PORT must be an integer from 1 to 65535 (got "eighty")');
    expect(result.stderr).toContain('TIMESTORE_STORAGE_DRIVER must be one of local, s3 (got "floppy")');
  });

  test('migrate applies pending migrations and exits; a second run applies none', async () => {
    const env = { TIMESTORE_DATABASE_URL: await createTestDatabase() };
    const first = run(['migrate'], env);
    expect(first.code).toBe(0);
    expect(first.stdout).toContain(`"applied":${JSON.stringify(MIGRATIONS.map((m) => m.name))}`);
    const second = run(['migrate'], env);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('"applied":[]');
  });

  test('with no database URL it runs the embedded catalog, and refuses a second process on the same storage root', async () => {
    const server = await spawnServer();
    try {
      expect(server.output()).toContain('catalog: embedded PostgreSQL (PGlite) under the storage root');
      const second = run(['serve'], { TIMESTORE_STORAGE_ROOT: server.storageRoot, TIMESTORE_PORT: '65000' }); // refused before it listens
      expect(second.code).toBe(1);
      expect(second.stdout).toContain(`the storage root ${server.storageRoot} is in use by another timestore process (pid ${server.proc.pid})`);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  }, 60_000);
});
