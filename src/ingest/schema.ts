/**
 * Schema rules for ingestion: which field is the timestamp, and how a batch's
 * declared fields combine with the dataset's latest schema version. Evolution
 * is additive: new fields (nullable) make a new version; changing the type of
 * a field that a version defines is refused with 409.
 */
import type { SchemaField, SchemaVersion } from '../catalog/types.ts';
import { AppError } from '../errors.ts';
import { FIELD_NAME } from './validation.ts';

export const DEFAULT_TIMESTAMP_COLUMN = 'timestamp';

/** Field names are safe identifiers and unique. */
export function checkDeclaredFields(fields: SchemaField[]): void {
  const seen = new Set<string>();
  for (const [index, field] of fields.entries()) {
    if (!FIELD_NAME.test(field.name)) {
      throw new AppError(
        400,
        'invalid_field_name',
        `schema.fields[${index}].name "${field.name}" is not a safe identifier: use letters, digits and _, starting with a letter or _ (at most 63)`,
        { index, field: field.name },
      );
    }
    if (seen.has(field.name)) {
      throw new AppError(400, 'duplicate_field', `schema.fields declares "${field.name}" twice`, { index, field: field.name });
    }
    seen.add(field.name);
  }
}

/** The dataset's timestamp column for a first batch: `timestamp` when declared so, else the first timestamp field. */
export function chooseTimestampColumn(fields: SchemaField[]): string {
  const named = fields.find((f) => f.name === DEFAULT_TIMESTAMP_COLUMN);
  if (named?.type === 'timestamp') return named.name;
  const first = fields.find((f) => f.type === 'timestamp');
  if (!first) {
    throw new AppError(400, 'missing_timestamp_field', 'schema.fields must declare a field of type "timestamp" (the time of each row)');
  }
  return first.name;
}

export interface MergedSchema {
  fields: SchemaField[];
  /** Fields the batch adds to the latest version (a new version is recorded when there are any). */
  added: SchemaField[];
}

/**
 * The schema a batch is written with: the latest version's fields, in their
 * order, followed by the batch's new fields. Fields are stored with explicit
 * nullability (the timestamp column is never null; others default to nullable).
 */
export function mergeSchema(latest: SchemaVersion | null, declared: SchemaField[], timestampColumn: string): MergedSchema {
  const normalize = (f: SchemaField): SchemaField => ({
    name: f.name,
    type: f.type,
    nullable: f.name === timestampColumn ? false : (f.nullable ?? true),
  });
  const ts = declared.find((f) => f.name === timestampColumn);
  if (latest === null) {
    if (!ts || ts.type !== 'timestamp') {
      throw new AppError(400, 'missing_timestamp_field', `schema.fields must declare "${timestampColumn}" with type "timestamp"`);
    }
    const fields = declared.map(normalize);
    return { fields, added: fields };
  }

  const existing = new Map(latest.fields.map((f) => [f.name, f]));
  const added: SchemaField[] = [];
  for (const field of declared) {
    const current = existing.get(field.name);
    if (!current) {
      if (field.nullable === false) {
        throw new AppError(
          409,
          'non_nullable_addition',
          `field "${field.name}" is new, so rows already stored have no value for it; declare it nullable to add it`,
          { field: field.name },
        );
      }
      added.push(normalize(field));
    } else if (current.type !== field.type) {
      throw new AppError(
        409,
        'field_type_conflict',
        `field "${field.name}" is ${current.type} in schema version ${latest.version} but the batch declares it ${field.type}; ` +
          'types cannot change: send it as a new field instead',
        { field: field.name, existingType: current.type, declaredType: field.type, schemaVersion: latest.version },
      );
    }
  }
  return { fields: [...latest.fields, ...added], added };
}
