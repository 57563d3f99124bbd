/**
 * The direction of imports between the folders of src/ (docs/architecture.md, "Layers"):
 *
 *   main.ts, server.ts → http/ → services (ingest/, query/, admin/, lifecycle/, tokens/)
 *     → catalog/, jobs/, engine/, storage/ → model/
 *
 * Every relative import of every src/**\/*.ts file counts, type-only and dynamic ones included
 * (TypeScript's own pre-processor lists them, so comments and strings are not mistaken for imports).
 * A violation is reported with its file and import. Exceptions are listed with their reason and
 * must still exist, so the list can only shrink.
 */
import { expect, test } from 'bun:test';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const SRC = resolve(import.meta.dir, '../src');

const SERVICES = ['ingest', 'query', 'admin', 'lifecycle', 'tokens'];
const LOWER = ['catalog', 'jobs', 'engine', 'storage', 'model'];
const HTTP_USERS = ['http', 'server.ts', 'main.ts'];

/** `from → to` (paths under src/) that break a rule for a reason that is not ours to fix here. */
const EXCEPTIONS: readonly { from: string; to: string; why: string }[] = [
  {
    from: 'model/constraints.ts',
    to: 'errors.ts',
    why: 'the refusal list builds AppErrors; where the one error catalogue lives is issue 15, item 3',
  },
];

interface Edge {
  /** Importing file, relative to src/. */
  from: string;
  /** Imported file, relative to src/. */
  to: string;
  specifier: string;
}

/** The folder under src/ a path belongs to, or the file name for a file directly in src/. */
function areaOf(path: string): string {
  return path.split('/')[0]!;
}

function sourceFiles(): string[] {
  return readdirSync(SRC, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.split('\\').join('/'))
    .sort();
}

function importsOf(file: string): Edge[] {
  const text = readFileSync(join(SRC, file), 'utf8');
  const edges: Edge[] = [];
  for (const { fileName: specifier } of ts.preProcessFile(text, true, true).importedFiles) {
    if (!specifier.startsWith('.')) continue;
    const to = relative(SRC, resolve(SRC, dirname(file), specifier)).split('\\').join('/');
    if (to.startsWith('..')) continue; // node_modules assets, migrations
    edges.push({ from: file, to, specifier });
  }
  return edges;
}

/** The rule an import breaks, or null. */
function brokenRule(edge: Edge): string | null {
  const from = areaOf(edge.from);
  const to = areaOf(edge.to);
  if (from === to) return null;
  if (to === 'http' && !HTTP_USERS.includes(from)) return 'only http/, server.ts and main.ts import http/';
  if (SERVICES.includes(from) && SERVICES.includes(to)) return 'services do not import each other';
  if (LOWER.includes(from) && (SERVICES.includes(to) || HTTP_USERS.includes(to))) return 'catalog, jobs, engine, storage and model import no service';
  if ((from === 'engine' || from === 'storage') && to === 'catalog') return `${from}/ imports nothing from catalog/`;
  if (from === 'model') return 'model/ imports nothing from the rest of src/';
  return null;
}

function violations(): { broken: string[]; unusedExceptions: string[] } {
  const broken: string[] = [];
  const used = new Set<number>();
  for (const file of sourceFiles()) {
    for (const edge of importsOf(file)) {
      const rule = brokenRule(edge);
      if (rule === null) continue;
      const exception = EXCEPTIONS.findIndex((e) => e.from === edge.from && e.to === edge.to);
      if (exception >= 0) {
        used.add(exception);
        continue;
      }
      broken.push(`src/${edge.from} imports '${edge.specifier}': ${rule}`);
    }
  }
  const unusedExceptions = EXCEPTIONS.filter((_, i) => !used.has(i)).map((e) => `src/${e.from} → src/${e.to} no longer needs its exception`);
  return { broken, unusedExceptions };
}

test('the import scanner sees type-only, re-exported and dynamic imports, and not comments', () => {
  const text = [
    "/** import('./in-a-comment.ts') */",
    "import type { A } from './a.ts';",
    "import {\n  B,\n  type C,\n} from '../b.ts';",
    "export * from './c.ts';",
    "const d = await import('./d.ts');",
    "type E = typeof import('./e.ts');",
  ].join('\n');
  expect(ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName)).toEqual(['./a.ts', '../b.ts', './c.ts', './d.ts', './e.ts']);
});

test('imports run one way between the folders of src/', () => {
  const { broken, unusedExceptions } = violations();
  for (const line of broken) console.error(line);
  expect(broken).toEqual([]);
  expect(unusedExceptions).toEqual([]);
});
