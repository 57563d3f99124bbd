// Jobs retry transient failures over a window of time rather than a number of attempts, and a job
// that fails for good is kept (with its staged batch) until an operator retries or deletes it.
// Self-contained, like every migration (see 0001_catalog.ts).
import type { Sql } from 'postgres';

export async function up(sql: Sql): Promise<void> {
  await sql.unsafe(`
    -- A failed attempt is retried only if the retry is due by then. Set when the job is enqueued
    -- with a window of its own, else at its first failed attempt (created_at + the runner's
    -- TIMESTORE_JOB_RETRY_WINDOW_HOURS); an operator's retry starts a new window.
    ALTER TABLE jobs ADD COLUMN retry_until timestamptz;
    -- Claims that took the job from a worker whose lease had expired (its process died or lost the
    -- catalog): bounded by max_attempts, so a job that kills its process cannot do so forever.
    ALTER TABLE jobs ADD COLUMN lease_expiries integer NOT NULL DEFAULT 0;
    COMMENT ON COLUMN jobs.max_attempts IS
      'the most runs that may end with the lease lost; failed attempts retry until retry_until instead';

    -- GET /admin/jobs?state=failed, oldest first
    CREATE INDEX jobs_failed ON jobs (created_at, id) WHERE state = 'failed';
    -- "is this staged batch still needed?" for the orphan sweep
    CREATE INDEX jobs_staged_location ON jobs ((payload -> 'staged' ->> 'location')) WHERE state <> 'succeeded';
  `);
}

export async function down(sql: Sql): Promise<void> {
  await sql.unsafe(`
    DROP INDEX IF EXISTS jobs_staged_location;
    DROP INDEX IF EXISTS jobs_failed;
    COMMENT ON COLUMN jobs.max_attempts IS NULL;
    ALTER TABLE jobs DROP COLUMN IF EXISTS lease_expiries;
    ALTER TABLE jobs DROP COLUMN IF EXISTS retry_until;
  `);
}
