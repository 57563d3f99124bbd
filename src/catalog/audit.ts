/** Audit events: who changed what, newest first. */
import type { Db } from './db.ts';
import type { AuditEvent } from '../model/records.ts';

export interface NewAuditEvent {
  datasetId: string | null;
  action: string;
  actor: string | null;
  details?: Record<string, unknown>;
}

export async function recordAuditEvent(sql: Db, event: NewAuditEvent): Promise<AuditEvent> {
  const [row] = await sql<AuditEvent[]>`
    INSERT INTO audit_events (dataset_id, action, actor, details)
    VALUES (${event.datasetId}, ${event.action}, ${event.actor}, ${sql.json((event.details ?? {}) as never)})
    RETURNING *`;
  return row as AuditEvent;
}

/** A page of a dataset's events, newest first; `beforeId` continues after the last one seen. */
export async function listAuditEvents(sql: Db, datasetId: string, limit: number, beforeId?: number): Promise<AuditEvent[]> {
  return sql<AuditEvent[]>`
    SELECT * FROM audit_events
    WHERE dataset_id = ${datasetId} AND (${beforeId ?? null}::int8 IS NULL OR id < ${beforeId ?? null})
    ORDER BY id DESC
    LIMIT ${limit}`;
}
