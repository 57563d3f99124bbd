/**
 * The direction of imports between the folders of src/ (docs/architecture.md, "Layers"):
 *
 *   main.ts, server.ts → http/ → services (ingest/, query/, admin/, lifecycle/)
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

const SERVICES = ['ingest', 'query', 'admin', 'lifecycle'];
const LOWER = ['catalog', 'jobs', 'engine', 'storage', 'model'];
const HTTP_USERS = ['http', 'server.ts', 'main.ts'];

/** `from → to` (paths under src/) that break a rule for a reason that is not ours to fix here. */
const EXCEPTIONS: readonly { from: string; to: string; why: string }[] = [];

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

/**
 * Errors are made only by the error catalogue (src/model/errors.ts), and an HTTP status is chosen
 * only there and in src/http/. A status is a number from 100 to 599 in a status position: the value
 * of something named *status*, a side of a comparison with one, or an argument of an *Error
 * constructor. Statuses that are not ours (another server's answer) are listed with their reason.
 */
const ERROR_CATALOGUE = 'model/errors.ts';
const FOREIGN_STATUSES: readonly { file: string; text: string; why: string }[] = [
  { file: 'storage/s3.ts', text: 'e?.$metadata?.httpStatusCode === 404', why: "the object store's answer to a missing object" },
];

function statusFindings(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const findings: string[] = [];
  const where = (node: ts.Node) => `src/${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
  const visit = (node: ts.Node): void => {
    if (ts.isNewExpression(node) && node.expression.getText() === 'AppError' && file !== ERROR_CATALOGUE) {
      findings.push(`${where(node)}: new AppError( outside the catalogue (raise errors.<code>(…))`);
    }
    if (ts.isNumericLiteral(node) && Number(node.text) >= 100 && Number(node.text) <= 599) {
      const position = statusPosition(node);
      if (position && !FOREIGN_STATUSES.some((f) => f.file === file && position.getText() === f.text)) {
        findings.push(`${where(node)}: HTTP status ${node.text} in \`${position.getText().slice(0, 80)}\``);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return findings;
}

const STATUS_NAME = /status/i;
const COMPARISON = new Set([
  ts.SyntaxKind.EqualsEqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsEqualsToken,
  ts.SyntaxKind.EqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsToken,
  ts.SyntaxKind.LessThanToken,
  ts.SyntaxKind.LessThanEqualsToken,
  ts.SyntaxKind.GreaterThanToken,
  ts.SyntaxKind.GreaterThanEqualsToken,
]);

/** The enclosing node that makes a number a status (see above), or null. Stops at the statement or function. */
function statusPosition(literal: ts.Node): ts.Node | null {
  for (let node: ts.Node = literal; node.parent && !ts.isSourceFile(node.parent); node = node.parent) {
    const parent = node.parent;
    if (ts.isBlock(parent) || ts.isFunctionLike(parent)) return null;
    const named = ts.isPropertyAssignment(parent) || ts.isPropertySignature(parent) || ts.isVariableDeclaration(parent) || ts.isParameter(parent);
    if (named && STATUS_NAME.test(parent.name.getText())) return parent;
    if (ts.isBinaryExpression(parent) && COMPARISON.has(parent.operatorToken.kind)) {
      const other = parent.left === node ? parent.right : parent.left;
      if (STATUS_NAME.test(other.getText())) return parent;
    }
    if ((ts.isNewExpression(parent) || ts.isCallExpression(parent)) && parent.arguments?.includes(node as ts.Expression) && /Error$/.test(parent.expression.getText())) {
      return parent;
    }
  }
  return null;
}

test('the status finder sees statuses in status positions, and not other numbers', () => {
  const found = statusFindings(
    'x/y.ts',
    [
      'const STATUS = { a: 500 };',
      'type T = { status: 400 | 404 };',
      'if (err.status === 404) {}',
      'throw new AppError(409, "c", "m");',
      'const PAGE = 500;',
      'const leap = year % 400 === 0;',
      'const limit = { maxRows: 404 };',
    ].join('\n'),
  );
  expect(found.map((f) => f.split(': ')[0])).toEqual(['src/x/y.ts:1', 'src/x/y.ts:2', 'src/x/y.ts:2', 'src/x/y.ts:3', 'src/x/y.ts:4', 'src/x/y.ts:4']);
});

test('errors are made by the catalogue, and HTTP statuses are chosen only there and in http/', () => {
  const findings = sourceFiles()
    .filter((file) => file !== ERROR_CATALOGUE && !file.startsWith('http/'))
    .flatMap((file) => statusFindings(file, readFileSync(join(SRC, file), 'utf8')));
  for (const line of findings) console.error(line);
  expect(findings).toEqual([]);
});
