/**
 * What the code's structure must satisfy, checked on every run of the suite:
 *
 * - the direction of imports between the folders of src/ (docs/architecture.md, "Layers"), by
 *   dependency-cruiser with the rules in .dependency-cruiser.cjs; a second test plants a violation
 *   of every rule in a scratch tree and expects each one reported, so a rule that stops matching
 *   (a renamed folder, a broken pattern) fails here too;
 * - where errors are made and HTTP statuses chosen, and where catalog statements are written
 *   (below), which import rules cannot express.
 */
import { afterAll, expect, test } from 'bun:test';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(import.meta.dir, '..');
const SRC = join(ROOT, 'src');
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = join(ROOT, 'node_modules/.bin/depcruise');

/** Runs dependency-cruiser (with the Bun running the tests: no Node.js needed) over `dir` of `cwd`. */
function depcruise(cwd: string, dir: string, outputType: 'err' | 'json') {
  const run = Bun.spawnSync([process.execPath, DEPCRUISE, '--config', CONFIG, '--output-type', outputType, dir], { cwd, stderr: 'pipe' });
  return { exitCode: run.exitCode, stdout: run.stdout.toString(), stderr: run.stderr.toString() };
}

function sourceFiles(): string[] {
  return readdirSync(SRC, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.split('\\').join('/'))
    .sort();
}

test('imports run one way between the folders of src/ (dependency-cruiser)', () => {
  const run = depcruise(ROOT, 'src', 'err');
  if (run.exitCode !== 0) console.error(run.stdout, run.stderr);
  expect(run.exitCode).toBe(0);
  expect(run.stdout).toContain('no dependency violations found');
});

const scratch = mkdtempSync(join(tmpdir(), 'timestore-depcruise-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

test('every dependency rule reports a violation planted for it, a cycle of type-only imports included', () => {
  const files: Record<string, string> = {
    'src/server.ts': "import { h } from './http/h.ts';\nexport const server = h;",
    'src/http/h.ts': "import { i } from '../ingest/i.ts';\nexport const h = i;",
    'src/ingest/i.ts': "import { q } from '../query/q.ts';\nexport const i = q;",
    'src/query/q.ts': 'export const q = 1;',
    'src/catalog/c.ts': "import { q } from '../query/q.ts';\nexport const c = q;",
    'src/engine/e.ts': "import { c } from '../catalog/c.ts';\nexport const e = c;",
    'src/storage/s.ts': "import { h } from '../http/h.ts';\nimport { c } from '../catalog/c.ts';\nexport const s = h + c;",
    'src/model/m.ts': "import type { Dirent } from 'node:fs';\nimport { e } from '../engine/e.ts';\nexport const m: Dirent | number = e;",
    'src/jobs/a.ts': "import { b } from './b.ts';\nexport const a = () => b;",
    'src/jobs/b.ts': "import { a } from './a.ts';\nexport const b = () => a;",
    'src/jobs/t1.ts': "import type { T2 } from './t2.ts';\nexport type T1 = T2 | 1;",
    'src/jobs/t2.ts': "import type { T1 } from './t1.ts';\nexport type T2 = T1 | 2;",
    'src/client/k.ts': "import { c } from '../catalog/c.ts';\nexport const k = c;",
  };
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(scratch, path)), { recursive: true });
    writeFileSync(join(scratch, path), `${text}\n`);
  }
  const run = depcruise(scratch, 'src', 'json');
  const violations = (JSON.parse(run.stdout) as { summary: { violations: { rule: { name: string }; from: string; to: string }[] } }).summary.violations;
  const found = violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`).sort();
  expect(found).toEqual(
    [
      'client-speaks-only-http: src/client/k.ts → src/catalog/c.ts',
      'engine-imports-no-catalog: src/engine/e.ts → src/catalog/c.ts',
      'lower-layers-import-no-service: src/catalog/c.ts → src/query/q.ts',
      'model-imports-only-libraries: src/model/m.ts → src/engine/e.ts',
      'no-cycles: src/jobs/a.ts → src/jobs/b.ts',
      'no-cycles: src/jobs/t1.ts → src/jobs/t2.ts',
      'nothing-imports-http: src/storage/s.ts → src/http/h.ts',
      'services-do-not-import-each-other: src/ingest/i.ts → src/query/q.ts',
      'storage-imports-no-catalog: src/storage/s.ts → src/catalog/c.ts',
    ].sort(),
  );
  // Every rule of the configuration is among those exercised here.
  const rules = (require(CONFIG) as { forbidden: { name: string }[] }).forbidden.map((r) => r.name);
  expect([...new Set(violations.map((v) => v.rule.name))].sort()).toEqual([...rules].sort());
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
    // client/ reads the statuses of a server's answers (to retry 429 and 503); it chooses none.
    .filter((file) => file !== ERROR_CATALOGUE && !file.startsWith('http/') && !file.startsWith('client/'))
    .flatMap((file) => statusFindings(file, readFileSync(join(SRC, file), 'utf8')));
  for (const line of findings) console.error(line);
  expect(findings).toEqual([]);
});

/**
 * Every PostgreSQL statement is written in src/catalog/: postgres.js runs statements as tagged
 * templates (sql`…`, tx`…`) or through `.unsafe(…)`, and nothing else in src/ uses either form.
 */
function catalogStatementFindings(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const findings: string[] = [];
  const where = (node: ts.Node) => `src/${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
  const visit = (node: ts.Node): void => {
    if (ts.isTaggedTemplateExpression(node)) findings.push(`${where(node)}: a statement (${node.tag.getText()}\`…\`) outside src/catalog/`);
    if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) && node.expression.name.text === 'unsafe') {
      findings.push(`${where(node)}: a statement (${node.expression.getText()}(…)) outside src/catalog/`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return findings;
}

test('the statement finder sees tagged templates and unsafe calls, and not DuckDB strings', () => {
  const found = catalogStatementFindings(
    'x/y.ts',
    ['await this.o.sql`SELECT 1`;', 'await tx.unsafe("SELECT 1");', 'await db.run(`SELECT ${x}`);', 'const s = `SELECT 1`;'].join('\n'),
  );
  expect(found.map((f) => f.split(': ')[0])).toEqual(['src/x/y.ts:1', 'src/x/y.ts:2']);
});

test('catalog statements are written only in src/catalog/', () => {
  const findings = sourceFiles()
    .filter((file) => !file.startsWith('catalog/'))
    .flatMap((file) => catalogStatementFindings(file, readFileSync(join(SRC, file), 'utf8')));
  for (const line of findings) console.error(line);
  expect(findings).toEqual([]);
});
