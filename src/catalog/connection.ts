/**
 * Opens the catalog: a real PostgreSQL at TIMESTORE_DATABASE_URL, or the
 * embedded one under the storage root. Either way the caller gets one
 * postgres.js handle whose search_path is the configured schema, so the
 * repositories' SQL is the same in both modes.
 */
import postgres, { type Sql } from 'postgres';
import type { Logger } from '../log.ts';
import { type EmbeddedCatalogServer, startEmbeddedCatalog } from './embedded.ts';
import { JOB_NOTIFICATIONS_SETTING, JOB_NOTIFIER_SETTING } from './job-table.ts';
import { applyMigrations, pendingMigrations } from './migrate.ts';
import { TIMESTAMPTZ_TYPE } from './timestamptz.ts';

export type CatalogMode = 'external' | 'embedded';

export interface Catalog {
  sql: Sql;
  schema: string;
  mode: CatalogMode;
  /** What this catalog's sessions name themselves in the jobs' NOTIFYs they send (job-table.ts); null: they send none. */
  notifier: string | null;
  /** Applies pending migrations under a lock; returns the names applied. */
  migrate(): Promise<string[]>;
  /** Throws unless the catalog answers and every migration is applied. */
  check(): Promise<void>;
  close(): Promise<void>;
}

export interface CatalogOptions {
  databaseUrl: string | null;
  schema: string;
  storageRoot: string;
  log: Logger;
  /** Pool size for an external PostgreSQL (the embedded catalog always uses one connection). */
  maxConnections?: number;
}

export async function openCatalog(options: CatalogOptions): Promise<Catalog> {
  const { schema, log } = options;
  const embedded = options.databaseUrl ? null : await startEmbeddedCatalog(options.storageRoot);
  if (embedded) log.info({ dataDir: embedded.dataDir, socket: embedded.socketPath }, 'catalog: embedded PostgreSQL (PGlite) under the storage root');

  const notifier = embedded ? null : crypto.randomUUID();
  const settings = {
    max: embedded ? 1 : (options.maxConnections ?? 10),
    onnotice: () => {},
    connection: { application_name: 'timestore', search_path: schema, ...(notifier ? { [JOB_NOTIFIER_SETTING]: notifier } : {}) },
    // Column names arrive camelCase (and go out snake_case); JSON values are left alone, because
    // postgres.camel would also rename the top-level keys of every json/jsonb value (user data).
    // int8 (counts, bytes, versions) arrives as a number, exact below 2^53.
    transform: { column: { from: postgres.toCamel, to: postgres.fromCamel }, undefined: null },
    // timestamptz is read without `new Date(text)`'s legacy parsing of years 0001–0099 (timestamptz.ts).
    types: {
      int8: { to: 20, from: [20], serialize: (n: number) => String(n), parse: (s: string) => Number(s) },
      timestamptz: TIMESTAMPTZ_TYPE,
    },
  } satisfies postgres.Options<{}>;
  // The embedded catalog is reached in this process, through its session's queue (embedded-session.ts).
  const sql = embedded
    ? postgres({ ...settings, ...inProcess(embedded), user: 'postgres', database: 'postgres' })
    : postgres(options.databaseUrl as string, settings);

  try {
    await createSchemaIfMissing(sql, schema);
    if (embedded) {
      // PGlite has one session for every connection; set the schema for it once, and say that
      // nobody listens for jobs' notifications (it delivers none).
      await sql`SELECT set_config('search_path', ${schema}, false), set_config(${JOB_NOTIFICATIONS_SETTING}, 'off', false)`;
    }
    const [row] = await sql<{ current: string }[]>`SELECT current_schema() AS current`;
    const current = row?.current;
    if (current !== schema) throw new Error(`catalog search_path resolves to "${current}", expected "${schema}"`);
  } catch (err) {
    await sql.end({ timeout: 1 }).catch(() => {});
    await embedded?.stop().catch(() => {});
    throw err;
  }

  if (!embedded) {
    const url = new URL(options.databaseUrl as string);
    log.info({ host: url.hostname, port: url.port || '5432', database: url.pathname.slice(1), schema }, 'catalog: external PostgreSQL');
  }

  return {
    sql,
    schema,
    mode: embedded ? 'embedded' : 'external',
    notifier,
    async migrate() {
      const applied = await applyMigrations(sql, schema);
      log.info({ applied, schema }, applied.length ? 'catalog: migrations applied' : 'catalog: schema is up to date');
      return applied;
    },
    async check() {
      const pending = await pendingMigrations(sql, schema);
      if (pending.length) throw new Error(`migrations not applied: ${pending.join(', ')}`);
    },
    async close() {
      await sql.end({ timeout: 5 });
      await embedded?.stop();
    },
  };
}

/** postgres.js's `socket` option (a factory of socket-like streams; missing from its types). */
const inProcess = (embedded: EmbeddedCatalogServer) => ({ socket: () => embedded.connect() }) as {};

/** CREATE SCHEMA IF NOT EXISTS still fails when another process creates the schema at the same moment. */
async function createSchemaIfMissing(sql: Sql, schema: string): Promise<void> {
  try {
    await sql`CREATE SCHEMA IF NOT EXISTS ${sql(schema)}`;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== '23505' && code !== '42P06') throw err;
  }
}
