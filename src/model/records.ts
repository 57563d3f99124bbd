/** The records of the domain (datasets, schema versions, partitions, storage targets, retention), as the catalog stores them and every layer passes them (camelCase). */
import type { FieldType } from './field-types.ts';

export type DatasetStatus = 'active' | 'inactive' | 'archived';

export interface SchemaField {
  name: string;
  type: FieldType;
  nullable?: boolean;
}

export interface DatasetIam {
  readScopes?: string[];
  writeScopes?: string[];
}

export interface DatasetMetadata {
  iam?: DatasetIam;
  [key: string]: unknown;
}

export interface Dataset {
  id: string;
  slug: string;
  name: string;
  description: string | null;
  status: DatasetStatus;
  timestampColumn: string;
  partitionWindowSeconds: number;
  /** Columns rows are ordered by inside each partition file, before the timestamp (empty: time only). */
  sortColumns: string[];
  defaultStorageTargetId: string | null;
  metadata: DatasetMetadata;
  schemaVersion: number;
  manifestVersion: number;
  createdAt: Date;
  updatedAt: Date;
}

/** `read` when it is the dataset `idOrSlug` names (routes take an id or a slug), else undefined. */
export function ifNamed(read: Dataset | undefined, idOrSlug: string): Dataset | undefined {
  return read && (read.slug === idOrSlug || read.id === idOrSlug) ? read : undefined;
}

/** A dataset row as text: two reads (made the same way, so keys come in one order) found the row unchanged when their texts are equal. */
export function datasetRowText(dataset: Dataset): string {
  return JSON.stringify(dataset);
}

/** Whether two reads of a dataset's row found it unchanged: every column equal. */
export function sameDatasetRow(a: Dataset, b: Dataset): boolean {
  return datasetRowText(a) === datasetRowText(b);
}

export interface SchemaVersion {
  datasetId: string;
  version: number;
  fields: SchemaField[];
  timestampColumn: string;
  checksum: string;
  createdAt: Date;
}

export interface ColumnStatistics {
  min?: string | number | boolean | null;
  max?: string | number | boolean | null;
  nulls?: number;
}

/** A partition key as one string, its entries sorted: equal keys, equal strings. */
export function partitionKeyId(key: Record<string, string>): string {
  return JSON.stringify(Object.entries(key).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export interface Partition {
  id: string;
  datasetId: string;
  storageTargetId: string;
  location: string;
  fileFormat: 'parquet';
  partitionKey: Record<string, string>;
  schemaVersion: number;
  startTime: Date;
  endTime: Date;
  rowCount: number;
  sizeBytes: number;
  checksum: string;
  columnStatistics: Record<string, ColumnStatistics>;
  addedVersion: number;
  removedVersion: number | null;
  /** When the file of a removed partition was deleted from its storage target. */
  fileDeletedAt: Date | null;
  createdAt: Date;
}

/** What a writer knows about a file before it is published. */
export type NewPartition = Pick<
  Partition,
  'storageTargetId' | 'location' | 'partitionKey' | 'schemaVersion' | 'rowCount' | 'sizeBytes' | 'checksum'
> & {
  /** ISO strings keep DuckDB's microseconds, which a Date would round away. */
  startTime: Date | string;
  endTime: Date | string;
  columnStatistics?: Partition['columnStatistics'];
};

export interface ManifestVersion {
  datasetId: string;
  version: number;
  reason: string;
  partitionsAdded: number;
  partitionsRemoved: number;
  partitionCount: number;
  rowCount: number;
  sizeBytes: number;
  summary: Record<string, unknown>;
  createdAt: Date;
}

export type StorageTargetKind = 'local' | 's3';

export interface LocalTargetConfig {
  root: string;
}

export interface S3TargetConfig {
  bucket: string;
  prefix?: string;
  endpoint?: string | null;
  region?: string | null;
  forcePathStyle?: boolean;
}

/** An S3 target's own keys (else the process's TIMESTORE_S3_* credentials are used). Never returned by the API. */
export interface S3TargetCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | null;
}

export interface StorageTarget {
  id: string;
  name: string;
  kind: StorageTargetKind;
  description: string | null;
  config: LocalTargetConfig | S3TargetConfig;
  credentials: S3TargetCredentials | null;
  /** When this catalog wrote its owner marker under the target; null for a target registered before markers existed, until its next boot. */
  ownerMarkedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A rule left out inherits the server default; null means "no limit" for this dataset. */
export interface RetentionRules {
  maxAgeHours?: number | null;
  maxTotalBytes?: number | null;
}

export interface RetentionPolicy {
  rules: RetentionRules;
  deleteGraceMinutes?: number;
}

export interface StoredRetentionPolicy {
  datasetId: string;
  policy: RetentionPolicy;
  updatedBy: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface AuditEvent {
  id: number;
  datasetId: string | null;
  action: string;
  actor: string | null;
  details: Record<string, unknown>;
  createdAt: Date;
}

/** An API token as the catalog keeps it: never its secret, only the secret's hash and first characters. */
export interface ApiToken {
  id: string;
  name: string;
  secretHash: string;
  secretPrefix: string;
  scopes: string[];
  createdBy: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  revokedBy: string | null;
}
