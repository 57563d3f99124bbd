/**
 * docs/architecture.md, "Catalog entities": its mermaid erDiagram against the schema the migrations
 * build. A fresh database is migrated and read back from information_schema and pg_constraint;
 * every table and column must be in the diagram with its type and keys, the diagram may name no
 * table or column that does not exist, and every foreign key must be drawn as a relationship.
 *
 * Keys are those of constraints: a column is PK, FK or UK for every primary key, foreign key or
 * unique constraint it is part of (a composite key marks each of its columns). Unique indexes
 * (`jobs_singleton`) are not constraints; the text under the diagram lists them.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { openTestCatalog } from '../harness/catalog.ts';
import { createTestDatabase } from '../harness/postgres.ts';

const SCHEMA = 'timestore';
/** ley's list of applied migrations: created by the migration runner, not by a migration. */
const NOT_DRAWN = new Set(['migrations']);

interface Attribute {
  type: string;
  keys: string[];
}

interface Diagram {
  entities: Map<string, Map<string, Attribute>>;
  /** Each relationship as its two entities, sorted. */
  relationships: Set<string>;
  /** Lines of the block that are neither an entity, an attribute nor a relationship. */
  unread: string[];
}

const pair = (a: string, b: string) => [a, b].sort().join(' — ');

/** The one mermaid block of the document that holds an erDiagram. */
function parseErDiagram(markdown: string): Diagram {
  const blocks = [...markdown.matchAll(/```mermaid\n([\s\S]*?)```/g)].map((m) => m[1] as string).filter((b) => /^\s*erDiagram\b/.test(b));
  if (blocks.length !== 1) throw new Error(`expected one mermaid erDiagram block, found ${blocks.length}`);
  const diagram: Diagram = { entities: new Map(), relationships: new Set(), unread: [] };
  let entity: Map<string, Attribute> | null = null;
  for (const raw of (blocks[0] as string).split('\n').slice(1)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('%%')) continue;
    if (entity) {
      if (line === '}') {
        entity = null;
        continue;
      }
      const attribute = /^([A-Za-z_][\w[\]()-]*)\s+([A-Za-z_]\w*)((?:\s*,?\s*\b(?:PK|FK|UK)\b)*)(?:\s+"[^"]*")?$/.exec(line);
      if (!attribute) {
        diagram.unread.push(line);
        continue;
      }
      const [, type, name, keys] = attribute as unknown as [string, string, string, string];
      if (entity.has(name)) diagram.unread.push(`${line} (a second attribute "${name}")`);
      entity.set(name, { type, keys: (keys.match(/PK|FK|UK/g) ?? []).sort() });
      continue;
    }
    const opened = /^([A-Za-z_]\w*)\s*\{$/.exec(line);
    if (opened) {
      const name = opened[1] as string;
      if (diagram.entities.has(name)) diagram.unread.push(`${line} (a second block for "${name}")`);
      entity = new Map();
      diagram.entities.set(name, entity);
      continue;
    }
    const related = /^([A-Za-z_]\w*)\s+[|}][|o](?:--|\.\.)[|o][|{]\s+([A-Za-z_]\w*)\s*:\s*(?:"[^"]*"|\w+)$/.exec(line);
    if (related) {
      diagram.relationships.add(pair(related[1] as string, related[2] as string));
      continue;
    }
    diagram.unread.push(line);
  }
  if (entity) diagram.unread.push('an entity block that is never closed');
  return diagram;
}

/** PostgreSQL's type name as the diagram writes it. */
function typeName(udt: string): string {
  const names: Record<string, string> = { int4: 'int', int8: 'bigint', _text: 'text[]' };
  return names[udt] ?? udt;
}

let sql: postgres.Sql;
let diagram: Diagram;

beforeAll(async () => {
  const databaseUrl = await createTestDatabase('er');
  const catalog = await openTestCatalog({ databaseUrl, schema: SCHEMA });
  await catalog.close();
  sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  diagram = parseErDiagram(readFileSync(join(import.meta.dir, '../../docs/architecture.md'), 'utf8'));
});

afterAll(async () => {
  await sql?.end();
});

async function catalogColumns(): Promise<Map<string, Map<string, Attribute>>> {
  const columns = await sql<{ table: string; column: string; udt: string }[]>`
    SELECT table_name AS table, column_name AS column, udt_name AS udt
    FROM information_schema.columns WHERE table_schema = ${SCHEMA} ORDER BY table_name, ordinal_position`;
  const keys = await sql<{ table: string; column: string; kind: string }[]>`
    SELECT DISTINCT c.relname AS table, a.attname AS column,
           CASE k.contype WHEN 'p' THEN 'PK' WHEN 'f' THEN 'FK' ELSE 'UK' END AS kind
    FROM pg_constraint k
    JOIN pg_namespace n ON n.oid = k.connamespace
    JOIN pg_class c ON c.oid = k.conrelid
    JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
    WHERE n.nspname = ${SCHEMA} AND k.contype IN ('p', 'f', 'u')`;
  const tables = new Map<string, Map<string, Attribute>>();
  for (const c of columns) {
    if (NOT_DRAWN.has(c.table)) continue;
    const table = tables.get(c.table) ?? new Map<string, Attribute>();
    table.set(c.column, { type: typeName(c.udt), keys: [] });
    tables.set(c.table, table);
  }
  for (const k of keys) tables.get(k.table)?.get(k.column)?.keys.push(k.kind);
  for (const table of tables.values()) for (const attribute of table.values()) attribute.keys.sort();
  return tables;
}

describe('docs/architecture.md: the catalog ER diagram', () => {
  test('every line of the diagram is read (an entity, an attribute or a relationship)', () => {
    expect(diagram.unread).toEqual([]);
  });

  test('names exactly the tables the migrations create', async () => {
    const tables = await catalogColumns();
    // A test database that ends up empty would make every other check vacuous.
    expect(tables.size).toBeGreaterThan(10);
    expect([...diagram.entities.keys()].sort()).toEqual([...tables.keys()].sort());
    // mermaid draws an entity for a name that only a relationship uses.
    const related = new Set([...diagram.relationships].flatMap((p) => p.split(' — ')));
    expect([...related].filter((name) => !tables.has(name))).toEqual([]);
  });

  test('shows every column of every table with its type and keys, and no column that does not exist', async () => {
    const tables = await catalogColumns();
    const wrong: string[] = [];
    for (const [table, columns] of tables) {
      const drawn = diagram.entities.get(table) ?? new Map<string, Attribute>();
      for (const [column, actual] of columns) {
        const shown = drawn.get(column);
        const want = `${actual.type}${actual.keys.length ? ` ${actual.keys.join(',')}` : ''}`;
        if (!shown) wrong.push(`${table}.${column}: missing (${want})`);
        else if (shown.type !== actual.type || shown.keys.join(',') !== actual.keys.join(',')) {
          wrong.push(`${table}.${column}: drawn as ${shown.type}${shown.keys.length ? ` ${shown.keys.join(',')}` : ''}, is ${want}`);
        }
      }
      for (const column of drawn.keys()) if (!columns.has(column)) wrong.push(`${table}.${column}: no such column`);
    }
    expect(wrong).toEqual([]);
  });

  test('draws every foreign key as a relationship between its two tables', async () => {
    const references = await sql<{ table: string; referenced: string }[]>`
      SELECT DISTINCT c.relname AS table, r.relname AS referenced
      FROM pg_constraint k
      JOIN pg_namespace n ON n.oid = k.connamespace
      JOIN pg_class c ON c.oid = k.conrelid
      JOIN pg_class r ON r.oid = k.confrelid
      WHERE n.nspname = ${SCHEMA} AND k.contype = 'f'`;
    expect(references.length).toBeGreaterThan(0);
    const undrawn = references.map((r) => pair(r.table, r.referenced)).filter((p) => !diagram.relationships.has(p));
    expect(undrawn).toEqual([]);
  });
});
