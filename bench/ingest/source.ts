/**
 * Which timestore source the benchmark runs: the working tree (default), or a commit exported
 * with `git archive` into a temporary directory (`--at <rev>`), with node_modules linked from the
 * working tree. The export keeps a measurement reproducible while others edit the working tree;
 * it only reads the repository.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dir, '../..');

export interface Source {
  /** Directory holding src/ and node_modules/. */
  root: string;
  /** e.g. `1a4517f (working tree, src changes: M src/x.ts …)` or `1a4517f (git archive)`. */
  description: string;
  commit: string;
}

function git(args: string[]): string {
  return execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
}

/**
 * `patches`: unified diffs (paths a/src/… b/src/…) applied to the exported copy, never to the
 * working tree: a way to measure a proposed change to src/ (see bench/ingest/patches/).
 */
export function resolveSource(at: string | undefined, patches: string[] = []): Source {
  if (patches.length > 0 && !at) throw new Error('--patch needs --at <rev>: patches are applied to an exported copy, never to the working tree');
  if (!at) {
    const commit = git(['rev-parse', '--short', 'HEAD']);
    const dirty = git(['status', '--short', '--', 'src', 'migrations', 'package.json'])
      .split('\n')
      .filter(Boolean);
    return {
      root: REPO_ROOT,
      commit,
      description: dirty.length ? `${commit} + uncommitted changes (${dirty.join(', ')})` : `${commit} (clean)`,
    };
  }
  const commit = git(['rev-parse', '--short', `${at}^{commit}`]);
  const root = mkdtempSync(join(tmpdir(), `timestore-bench-src-${commit}-`));
  execFileSync('sh', ['-c', `git archive ${commit} | tar -x -C '${root}'`], { cwd: REPO_ROOT });
  if (!existsSync(join(root, 'node_modules'))) symlinkSync(join(REPO_ROOT, 'node_modules'), join(root, 'node_modules'));
  for (const patch of patches) execFileSync('patch', ['-p1', '--quiet', '-d', root, '-i', resolve(patch)]);
  const applied = patches.length ? ` + ${patches.map((p) => p.split('/').at(-1)).join(' + ')}` : '';
  return { root, commit, description: `${commit} (git archive of ${at})${applied}` };
}
