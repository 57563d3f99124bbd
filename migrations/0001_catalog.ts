// The catalog: datasets, schema versions, manifest versions, partitions, storage
// targets, retention policies, audit events, idempotency keys and the job table.
// Runs with search_path set to the configured schema (see src/catalog/migrate.ts),
// so every object lands there. Self-contained: the binary writes this file to a
// temporary directory and imports it, so it may import nothing at run time.
import type { Sql } from 'postgres';

export async function up(sql: Sql): Promise<void> {
  await sql.unsafe(`
    CREATE TABLE storage_targets (
      id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
      kind        text NOT NULL CHECK (kind IN ('local', 's3')),
      description text,
      -- local: { "root": "/abs/path" }; s3: { "bucket", "prefix", "endpoint", "region", "forcePathStyle" }.
      -- Credentials are never stored here.
      config      jsonb NOT NULL DEFAULT '{}',
      created_at  timestamptz NOT NULL DEFAULT now(),
      updated_at  timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE datasets (
      id                        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      slug                      text NOT NULL UNIQUE CHECK (slug ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$'),
      name                      text NOT NULL,
      description               text,
      status                    text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'archived')),
      timestamp_column          text NOT NULL DEFAULT 'timestamp',
      partition_window_seconds  integer NOT NULL DEFAULT 86400 CHECK (partition_window_seconds > 0),
      default_storage_target_id uuid REFERENCES storage_targets (id),
      -- free-form metadata; metadata.iam = { readScopes: [], writeScopes: [] }
      metadata                  jsonb NOT NULL DEFAULT '{}',
      -- highest schema version and published manifest version; the row is locked
      -- (SELECT ... FOR UPDATE) to bump either, so writers serialize per dataset only
      schema_version            integer NOT NULL DEFAULT 0,
      manifest_version          bigint NOT NULL DEFAULT 0,
      created_at                timestamptz NOT NULL DEFAULT now(),
      updated_at                timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX datasets_status_created ON datasets (status, created_at, id);

    CREATE TABLE dataset_schema_versions (
      dataset_id       uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
      version          integer NOT NULL CHECK (version > 0),
      -- ordered [{ "name", "type", "nullable" }]
      fields           jsonb NOT NULL,
      timestamp_column text NOT NULL,
      checksum         text NOT NULL,
      created_at       timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (dataset_id, version),
      UNIQUE (dataset_id, checksum)
    );

    CREATE TABLE manifest_versions (
      dataset_id         uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
      version            bigint NOT NULL CHECK (version > 0),
      reason             text NOT NULL,
      partitions_added   integer NOT NULL DEFAULT 0,
      partitions_removed integer NOT NULL DEFAULT 0,
      -- totals of the partitions active at this version
      partition_count    integer NOT NULL DEFAULT 0,
      row_count          bigint NOT NULL DEFAULT 0,
      size_bytes         bigint NOT NULL DEFAULT 0,
      summary            jsonb NOT NULL DEFAULT '{}',
      created_at         timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (dataset_id, version)
    );

    CREATE TABLE partitions (
      id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      dataset_id        uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
      storage_target_id uuid NOT NULL REFERENCES storage_targets (id),
      -- a URI: file:///abs/path.parquet or s3://bucket/key.parquet
      location          text NOT NULL,
      file_format       text NOT NULL DEFAULT 'parquet' CHECK (file_format IN ('parquet')),
      partition_key     jsonb NOT NULL DEFAULT '{}',
      schema_version    integer NOT NULL,
      start_time        timestamptz NOT NULL,
      end_time          timestamptz NOT NULL,
      row_count         bigint NOT NULL CHECK (row_count >= 0),
      size_bytes        bigint NOT NULL CHECK (size_bytes >= 0),
      checksum          text NOT NULL,
      -- { "<column>": { "min": ..., "max": ..., "nulls": n } }
      column_statistics jsonb NOT NULL DEFAULT '{}',
      -- active at manifest version v when added_version <= v AND (removed_version IS NULL OR removed_version > v)
      added_version     bigint NOT NULL,
      removed_version   bigint,
      created_at        timestamptz NOT NULL DEFAULT now(),
      UNIQUE (location),
      CHECK (end_time >= start_time),
      CHECK (removed_version IS NULL OR removed_version > added_version),
      FOREIGN KEY (dataset_id, added_version) REFERENCES manifest_versions (dataset_id, version),
      FOREIGN KEY (dataset_id, schema_version) REFERENCES dataset_schema_versions (dataset_id, version)
    );
    -- "active partitions of a dataset overlapping [from, to)": end_time >= from AND start_time < to
    CREATE INDEX partitions_active_time ON partitions (dataset_id, end_time, start_time) WHERE removed_version IS NULL;
    -- snapshots at an earlier version, and what a version removed
    CREATE INDEX partitions_added ON partitions (dataset_id, added_version);
    CREATE INDEX partitions_removed ON partitions (dataset_id, removed_version) WHERE removed_version IS NOT NULL;

    CREATE TABLE retention_policies (
      dataset_id uuid PRIMARY KEY REFERENCES datasets (id) ON DELETE CASCADE,
      -- { "rules": { "maxAgeHours"?, "maxTotalBytes"? }, "deleteGraceMinutes"? }
      policy     jsonb NOT NULL,
      updated_by text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE audit_events (
      id         bigserial PRIMARY KEY,
      dataset_id uuid REFERENCES datasets (id) ON DELETE SET NULL,
      action     text NOT NULL,
      actor      text,
      details    jsonb NOT NULL DEFAULT '{}',
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX audit_events_dataset ON audit_events (dataset_id, id DESC);

    CREATE TABLE jobs (
      id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      queue         text NOT NULL,
      kind          text NOT NULL,
      dataset_id    uuid REFERENCES datasets (id) ON DELETE CASCADE,
      -- singleton work: at most one queued or running job per (queue, job_key)
      job_key       text,
      payload       jsonb NOT NULL DEFAULT '{}',
      state         text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
      attempts      integer NOT NULL DEFAULT 0,
      max_attempts  integer NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
      run_at        timestamptz NOT NULL DEFAULT now(),
      locked_by     text,
      locked_until  timestamptz,
      last_error    text,
      result        jsonb,
      actor         text,
      trace_parent  text,
      created_at    timestamptz NOT NULL DEFAULT now(),
      updated_at    timestamptz NOT NULL DEFAULT now(),
      finished_at   timestamptz
    );
    CREATE UNIQUE INDEX jobs_singleton ON jobs (queue, job_key) WHERE job_key IS NOT NULL AND state IN ('queued', 'running');
    CREATE INDEX jobs_claimable ON jobs (queue, run_at) WHERE state = 'queued';
    CREATE INDEX jobs_leases ON jobs (locked_until) WHERE state = 'running';
    CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('succeeded', 'failed');

    CREATE TABLE idempotency_keys (
      dataset_id   uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
      key          text NOT NULL,
      request_hash text NOT NULL,
      job_id       uuid REFERENCES jobs (id) ON DELETE SET NULL,
      response     jsonb,
      created_at   timestamptz NOT NULL DEFAULT now(),
      expires_at   timestamptz NOT NULL,
      PRIMARY KEY (dataset_id, key)
    );
    CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
  `);
}

export async function down(sql: Sql): Promise<void> {
  await sql.unsafe(`
    DROP TABLE IF EXISTS idempotency_keys, jobs, audit_events, retention_policies, partitions,
      manifest_versions, dataset_schema_versions, datasets, storage_targets;
  `);
}
