/**
 * Keyset pages in (created_at, id) order, for listings that stay stable while rows are added or
 * change between pages. created_at is compared at millisecond precision, the precision the
 * opaque cursor carries.
 */
import type { Db } from './db.ts';
import { errors } from '../model/errors.ts';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Position {
  createdAt: string;
  id: string;
}

/** The cursor after `row`; `tag` tells listings apart, so one's cursor is refused by another. */
export function encodeCreatedCursor(tag: string, row: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify([tag, row.createdAt.toISOString(), row.id])).toString('base64url');
}

/** The position a cursor names; 400 `invalid_cursor` for anything this server did not return. */
export function decodeCreatedCursor(tag: string, cursor: string): Position {
  try {
    const [got, createdAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string, string];
    if (got !== tag || typeof createdAt !== 'string' || Number.isNaN(Date.parse(createdAt)) || !UUID.test(id)) throw new Error('bad cursor');
    return { createdAt, id };
  } catch {
    throw errors.invalid_cursor();
  }
}

/** The WHERE condition for rows after `after` (true without one) and the ORDER BY that goes with it. */
export function afterPosition(db: Db, after: Position | null) {
  return {
    where: db`(${after?.createdAt ?? null}::timestamptz IS NULL
      OR (date_trunc('milliseconds', created_at), id) > (${after?.createdAt ?? null}::timestamptz, ${after?.id ?? null}::uuid))`,
    orderBy: db`ORDER BY date_trunc('milliseconds', created_at), id`,
  };
}

/** A page of `limit` rows from `limit + 1` fetched, with the cursor of the next one. */
export function pageOf<T extends { createdAt: Date; id: string }>(tag: string, rows: T[], limit: number): { rows: T[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return { rows: page, nextCursor: rows.length > limit && last ? encodeCreatedCursor(tag, last) : null };
}
