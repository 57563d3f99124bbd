/**
 * Everything POST /datasets/:slug/ingest (and POST /admin/datasets, for its schema) refuses, in one
 * list: each entry is a rule a batch must satisfy, the answer when it does not, and what would
 * fail later if the batch were acknowledged anyway. A batch that passes every rule can be written:
 * the partition writer (DuckDB), the catalog (PostgreSQL), the file system and S3 take it.
 *
 * Ingestion builds its refusals only with `refuse` (a test checks that no other AppError is made
 * under src/ingest/), so every code a client can get is here, and test/ingest/constraints.test.ts
 * sends a violating batch for each entry. docs/api.md, "What a batch must satisfy", lists them.
 * Codes, statuses and message factories are the error catalogue's (errors.ts); an entry only says
 * whether its refusal is the code's conflict with what is stored.
 */
import { type AppError, appError, type ConflictCode, type ErrorCode, type HttpStatus, type MessageArgs, statusOf } from './errors.ts';

/** How the request body was sent (chosen by Content-Type). */
export type BodyFormat = 'json' | 'ndjson' | 'csv' | 'arrow';

/** Every way rows arrive: the ingest route's body formats, and other systems' write protocols on routes of their own (InfluxDB line protocol, Prometheus remote write). */
export type IngestFormat = BodyFormat | 'line-protocol' | 'prometheus';

export type ConstraintScope = IngestFormat | 'admin';

/**
 * A rule: `code`, the `error.code` of its refusal, and `conflict` when the refusal is answered with
 * the code's conflict status (the batch conflicts with the dataset, not with itself).
 */
type ConstraintDeclaration = ConstraintText & ({ code: ErrorCode; conflict?: undefined } | { code: ConflictCode; conflict: true });

interface ConstraintText {
  /** Where it applies: the body formats of the ingest route, and `admin` for POST /admin/datasets. */
  scopes: readonly ConstraintScope[];
  /** What a batch must satisfy. */
  rule: string;
  /** What would fail after the acknowledgement if it were accepted (or why it is refused). */
  protects: string;
}

const ROWS: readonly ConstraintScope[] = ['json', 'ndjson', 'csv', 'arrow'];
/** Rules of the rows that line protocol can break too (its lines always carry a time, of their own declared types). */
const ROWS_AND_LINES: readonly ConstraintScope[] = [...ROWS, 'line-protocol'];
const DECLARING: readonly ConstraintScope[] = ['json', 'arrow', 'admin'];
const PARAMETERS: readonly ConstraintScope[] = ['json', 'ndjson', 'csv', 'arrow'];

/** The most fields a dataset's schema may hold (the writer's time per batch grows faster than linearly with them). */
export const MAX_FIELDS = 1024;
/** The most partition windows one batch may span, first to last (each is at least one file and one catalog row). */
export const MAX_BATCH_WINDOWS = 1000;
/** Longest idempotency key (as `idempotencyKey` in a JSON body). */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 200;

const DECLARED = {
  // The request and its body.
  body_size: {
    code: 'payload_too_large', scopes: ROWS_AND_LINES,
    rule: 'the body is at most TIMESTORE_INGEST_MAX_BODY_BYTES',
    protects: 'memory of the process that validates the batch',
  },
  media_type: {
    code: 'unsupported_media_type', scopes: ['ndjson', 'csv'],
    rule: 'Content-Type is one of the accepted formats; NDJSON and CSV in UTF-8',
    protects: 'the batch is read the way it was meant',
  },
  body_shape: {
    code: 'validation_failed', scopes: ['json', 'admin'],
    rule: 'a JSON body has the documented shape (schema.fields of 1 to 1,024 entries, partition, rows); the slug matches [A-Za-z0-9][A-Za-z0-9_.-]{0,127}',
    protects: 'the catalog (datasets.slug CHECK) and the object keys built from the slug',
  },
  line_protocol_syntax: {
    code: 'invalid_line_protocol', scopes: ['line-protocol'],
    rule: 'every line is measurement[,tag=value…] field=value[,field=value…] [timestamp] (InfluxDB line protocol), the timestamp an integer in the request\'s precision',
    protects: 'the batch is read the way it was meant',
  },
  line_measurement: {
    code: 'invalid_line_protocol', scopes: ['line-protocol'],
    rule: 'a measurement names a dataset: 1 to 128 of letters, digits and _ . -, starting with a letter or digit',
    protects: 'the catalog (datasets.slug CHECK) and the object keys built from the slug',
  },
  content_encoding: {
    code: 'unsupported_media_type', scopes: ['line-protocol'],
    rule: 'Content-Encoding is identity or gzip, and a gzip body decompresses (within TIMESTORE_INGEST_MAX_BODY_BYTES)',
    protects: 'the batch is read the way it was meant, and the memory of the process that reads it',
  },
  json_syntax: {
    code: 'invalid_json', scopes: ['json', 'ndjson'],
    rule: 'a JSON body, and each NDJSON line, is valid JSON',
    protects: "DuckDB's JSON reader",
  },
  encoding: {
    code: 'invalid_encoding', scopes: ['json', 'ndjson', 'csv', 'line-protocol'],
    rule: 'the body is valid UTF-8',
    protects: "DuckDB's JSON and CSV readers refuse invalid UTF-8 anywhere in the staged body",
  },
  unicode: {
    code: 'invalid_unicode', scopes: ['json', 'ndjson'],
    rule: 'no string or key in the body holds an unpaired UTF-16 surrogate escape (e.g. "\\ud800" alone), not even in a key that is not a field',
    protects: "DuckDB's JSON reader refuses the whole staged body; PostgreSQL's jsonb refuses such a string",
  },
  csv_syntax: {
    code: 'invalid_csv', scopes: ['csv'],
    rule: 'RFC 4180 with a header line, one kind of line end (\\n, \\r\\n or \\r) for every record, as many fields in each record as in the header',
    protects: "DuckDB's CSV reader (strict mode) refuses a file that mixes line ends",
  },
  arrow_stream: {
    code: 'invalid_arrow', scopes: ['arrow'],
    rule: 'the body is an Arrow IPC stream (or file) with at least one column, whose record batches declare no more rows than the body has bytes',
    protects: 'the batch can be decoded; a stream that declares millions of rows in a few bytes would have each of them materialized',
  },
  arrow_type: {
    code: 'unsupported_arrow_type', scopes: ['arrow'],
    rule: 'every Arrow column has a type timestore stores (Timestamp, Date, Utf8, Float, Int, Bool)',
    protects: 'the five field types the writer and the catalog know',
  },
  query_parameter: {
    code: 'invalid_query_parameter', scopes: [...PARAMETERS, 'line-protocol'],
    rule: 'query parameters are key.<name>, timeRange.start/end, datasetName, storageTargetId and wait (NDJSON, CSV, Arrow), only wait with a JSON body',
    protects: 'a parameter is never silently ignored',
  },
  idempotency_key: {
    code: 'invalid_idempotency_key', scopes: PARAMETERS,
    rule: `the idempotency key (header or body) is 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} characters without U+0000`,
    protects: 'the catalog: the key is a PostgreSQL text in a b-tree index',
  },
  nul_character: {
    code: 'nul_character', scopes: [...PARAMETERS, 'line-protocol'],
    rule: 'no string value of a string field, datasetName or storageTargetId contains U+0000',
    protects: 'PostgreSQL text and jsonb cannot hold U+0000: the column statistics of the written file would fail to publish',
  },

  // Prometheus remote write (POST /api/v1/write, formats/remote-write.ts).
  remote_write_media_type: {
    code: 'unsupported_media_type', scopes: ['prometheus'],
    rule: 'a remote write 1.0 request: Content-Encoding snappy, Content-Type application/x-protobuf (not remote write 2.0\'s io.prometheus.write.v2.Request)',
    protects: 'the body is read the way it was meant (a 2.0 sender falls back to 1.0 on a 415)',
  },
  remote_write_body: {
    code: 'invalid_remote_write', scopes: ['prometheus'],
    rule: 'the body is a snappy block holding a protobuf prometheus.WriteRequest of at most TIMESTORE_INGEST_MAX_BODY_BYTES uncompressed',
    protects: 'the request can be decoded, within bounded memory',
  },
  remote_write_series: {
    code: 'invalid_remote_write', scopes: ['prometheus'],
    rule: 'every series has a __name__ that makes a dataset slug (with datasetPrefix), label names that are field names, each once (also ignoring case), valid timestamps, and no native histograms',
    protects: 'every metric of the request can be stored: nothing is queued from a request with a malformed series',
  },

  // The schema a batch declares (schema.fields of a JSON body, the Arrow schema, POST /admin/datasets).
  field_name: {
    code: 'invalid_field_name', scopes: [...DECLARING, 'line-protocol'],
    rule: 'a field name is letters, digits and _, starting with a letter or _, at most 63 characters',
    protects: 'field names are SQL identifiers in DuckDB and PostgreSQL (63 bytes)',
  },
  duplicate_field: {
    code: 'duplicate_field', scopes: DECLARING,
    rule: 'a declaration names each field once',
    protects: 'one column per name in the written file',
  },
  field_case_in_declaration: {
    code: 'field_name_conflict', scopes: [...DECLARING, 'line-protocol'],
    rule: 'no two declared fields differ only in case (temp and Temp)',
    protects: 'DuckDB identifiers are case-insensitive: the writer and every query refuse such a schema',
  },
  field_case_with_dataset: {
    code: 'field_name_conflict', conflict: true, scopes: ['json', 'arrow', 'line-protocol'],
    rule: "a declared field does not differ only in case from a field of the dataset's schema (any version)",
    protects: 'the same: one such version would make every later batch and query of the dataset fail',
  },
  timestamp_field: {
    code: 'missing_timestamp_field', scopes: DECLARING,
    rule: 'a first declaration has a timestamp field (the timestamp column)',
    protects: 'every row needs its time: files are split and sorted by it',
  },
  field_type: {
    code: 'field_type_conflict', conflict: true, scopes: ['json', 'arrow'],
    rule: 'a field keeps the type the dataset gave it',
    protects: 'files of one dataset are read together (union by name) with one type per column',
  },
  line_field_type: {
    code: 'field_type_conflict', scopes: ['line-protocol'],
    rule: 'a line-protocol key has one type on every line of a measurement, and the type its dataset gave it (refused with the line, 400, as InfluxDB answers a field type conflict)',
    protects: 'files of one dataset are read together (union by name) with one type per column',
  },
  nullable_addition: {
    code: 'non_nullable_addition', scopes: ['json'],
    rule: 'a field added to an existing dataset is nullable',
    protects: 'rows already stored have no value for it',
  },
  field_count_in_declaration: {
    code: 'too_many_fields', scopes: ['arrow', 'line-protocol'],
    rule: `a declaration has at most ${MAX_FIELDS} fields`,
    protects: "the writer's time per batch (superlinear in the number of fields)",
  },
  field_count_with_dataset: {
    code: 'too_many_fields', conflict: true, scopes: ['json', 'arrow', 'line-protocol'],
    rule: `a dataset's schema holds at most ${MAX_FIELDS} fields once the batch's new fields are added`,
    protects: 'the same, for every later batch of the dataset',
  },

  batch_rows: {
    code: 'too_many_rows', scopes: ROWS,
    rule: 'a batch has at most TIMESTORE_INGEST_MAX_BATCH_ROWS rows (an Arrow stream is counted before its rows are decoded)',
    protects: 'memory of the process that validates the batch (every row becomes an object), and the size of one write',
  },

  // The dataset and the request's standing.
  dataset_missing: {
    code: 'dataset_not_found', scopes: ['ndjson', 'csv'],
    rule: 'an NDJSON or CSV batch goes to an existing dataset (their schema is the dataset\'s)',
    protects: 'the rows can be typed',
  },
  dataset_without_schema: {
    code: 'dataset_has_no_schema', scopes: ['ndjson', 'csv'],
    rule: 'an NDJSON or CSV batch goes to a dataset that has a schema',
    protects: 'the rows can be typed',
  },
  dataset_inactive: {
    code: 'dataset_inactive', scopes: ROWS_AND_LINES,
    rule: 'the dataset is active',
    protects: "the operator's decision to stop ingestion",
  },
  dataset_archived: {
    code: 'dataset_archived', scopes: ROWS_AND_LINES,
    rule: 'the dataset is not archived',
    protects: "the operator's decision to stop ingestion",
  },
  concurrent_creation: {
    code: 'schema_changed', scopes: ['json', 'arrow'],
    rule: 'the dataset was not created meanwhile, by another batch, with another timestamp column',
    protects: "the batch was checked against the dataset's real schema (retry it)",
  },
  dataset_changed: {
    code: 'dataset_changed', scopes: ROWS,
    rule: "the dataset's scopes, status and storage target did not change twice while the batch was accepted",
    protects: 'a batch is acknowledged only if the dataset accepts it when its job is queued (send it again)',
  },
  storage_target_choice: {
    code: 'forbidden', scopes: PARAMETERS,
    rule: "storageTargetId names the dataset's own target (a new dataset's: the default); another needs the admin scope",
    protects: "a writer cannot put rows, or a new dataset, on a target the administrator did not choose for them",
  },
  storage_target: {
    code: 'storage_target_not_found', scopes: PARAMETERS,
    rule: 'storageTargetId names a registered storage target',
    protects: 'the batch is staged and written where it asked',
  },
  idempotency_reused: {
    code: 'idempotency_key_reused', scopes: PARAMETERS,
    rule: 'an idempotency key is sent again only with the same request',
    protects: 'a retry never writes a different batch twice, nor drops one',
  },
  idempotency_expired: {
    code: 'idempotency_key_expired', scopes: PARAMETERS,
    rule: "an idempotency key whose job is gone is not reused",
    protects: 'the answer of the first request can no longer be given',
  },

  // The rows.
  empty_batch: {
    code: 'empty_batch', scopes: ROWS_AND_LINES,
    rule: 'the batch has at least one row',
    protects: 'every job writes something',
  },
  invalid_row: {
    code: 'invalid_row', scopes: ['json', 'ndjson'],
    rule: 'a row is a JSON object',
    protects: "DuckDB's JSON reader",
  },
  missing_timestamp: {
    code: 'missing_timestamp', scopes: ROWS,
    rule: 'every row has a value for the timestamp column',
    protects: 'the writer places every row in a time window',
  },
  invalid_timestamp: {
    code: 'invalid_timestamp', scopes: ROWS,
    rule: 'the timestamp column is a string YYYY-MM-DD, YYYY-MM-DD(T| )hh:mm or YYYY-MM-DD(T| )hh:mm:ss[.fraction][Z|±hh[:mm]] naming a real date and time (an offset needs the seconds)',
    protects: "DuckDB's TIMESTAMPTZ cast refuses an offset after hh:mm, and dates that do not exist",
  },
  timestamp_out_of_storable_range: {
    code: 'timestamp_out_of_range', scopes: ROWS_AND_LINES,
    rule: 'every timestamp (of any timestamp field), with its offset applied, is from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z',
    protects: "PostgreSQL refuses year 0 and 5-digit years as written in the partition's time range, and JavaScript's ISO format changes beyond them",
  },
  timestamp_outside_time_range: {
    code: 'timestamp_out_of_range', scopes: ROWS,
    rule: 'with partition.timeRange, every row\'s timestamp is in [start, end)',
    protects: 'the time range the client promised',
  },
  invalid_type: {
    code: 'invalid_type', scopes: ROWS,
    rule: "a value has its field's type: string; number (double); integer; true/false; timestamp string as above",
    protects: "the writer's typed readers (a value that does not convert fails the whole write)",
  },
  missing_field: {
    code: 'missing_field', scopes: ROWS_AND_LINES,
    rule: 'a field declared nullable: false has a value in every row',
    protects: 'the declared schema',
  },
  non_finite_number: {
    code: 'non_finite_number', scopes: ROWS_AND_LINES,
    rule: 'numbers are finite (no NaN, Infinity, or JSON literal beyond ±1.8e308)',
    protects: "JSON cannot carry them to the writer, and DuckDB's JSON reader refuses 1e400",
  },
  integer_out_of_range: {
    code: 'integer_out_of_range', scopes: ROWS_AND_LINES,
    rule: 'integers are within ±(2^53−1)',
    protects: 'they survive JSON and JavaScript exactly (BIGINT holds them)',
  },
  unknown_field: {
    code: 'unknown_field', scopes: ['json', 'ndjson', 'csv'],
    rule: 'a row key or CSV column is a field of the schema (unless the dataset sets metadata.allowUnknownFields)',
    protects: 'no value is dropped silently',
  },
  key_case_conflict: {
    code: 'field_name_conflict', scopes: ['json', 'ndjson', 'csv'],
    rule: 'a row key or CSV column that is not a field does not differ only in case from one (Temp when temp is a field), also with allowUnknownFields',
    protects: "the writer reads keys case-sensitively: the value would be dropped although it was meant for the field",
  },

  // The partition.
  partition_key: {
    code: 'invalid_partition_key', scopes: PARAMETERS,
    rule: 'partition.key has at most 8 entries; names and values are 1 to 128 of letters, digits and _ . : -',
    protects: 'the key is part of object keys and directory names',
  },
  time_range: {
    code: 'invalid_time_range', scopes: PARAMETERS,
    rule: 'partition.timeRange has both bounds, as timestamps in the storable range, start before end',
    protects: 'the check of every row against it',
  },
  object_key_length: {
    code: 'object_key_too_long', scopes: PARAMETERS,
    rule: 'the object keys the batch is written under fit the storage target: S3 prefix + key at most 1,024 bytes; local path components at most 255 bytes, the whole path under 4,096',
    protects: 'the file system (ENAMETOOLONG) and S3 (KeyTooLongError) would refuse the partition file after the acknowledgement',
  },
  window_span: {
    code: 'too_many_partitions', scopes: ROWS_AND_LINES,
    rule: `a batch's rows span at most ${MAX_BATCH_WINDOWS} of the dataset's partition windows (first to last)`,
    protects: 'each window is a file and a catalog row; the write, its publish and its job result stay bounded when batches are written together',
  },
} as const satisfies Record<string, ConstraintDeclaration>;

export type ConstraintId = keyof typeof DECLARED;

export type IngestConstraint<K extends ConstraintId = ConstraintId> = (typeof DECLARED)[K] & {
  /** The status of the refusal, from the error catalogue. */
  status: HttpStatus;
};

export const INGEST_CONSTRAINTS = Object.fromEntries(
  Object.entries(DECLARED as Record<string, ConstraintDeclaration>).map(([id, declared]) => [id, { ...declared, status: statusOf(declared.code, { conflict: declared.conflict }) }]),
) as { readonly [K in ConstraintId]: IngestConstraint<K> };

/** The refusal of a batch that breaks `constraint`; the arguments are its code's message (mostly: what to change, and details). */
export function refuse<K extends ConstraintId>(constraint: K, ...args: MessageArgs<(typeof DECLARED)[K]['code']>): AppError {
  const declared: ConstraintDeclaration = DECLARED[constraint];
  return appError(declared.code, args as never, { conflict: declared.conflict });
}

/** Every code an ingest refusal can carry. */
export const INGEST_REFUSAL_CODES: ReadonlySet<string> = new Set(Object.values(DECLARED).map((c) => c.code));