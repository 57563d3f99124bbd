/**
 * Schema rules of a dataset (ingestion and POST /admin/datasets): which field is the timestamp, and how a batch's
 * declared fields combine with the dataset's latest schema version. Evolution
 * is additive: new fields (nullable) make a new version; changing the type of
 * a field that a version defines is refused with 409. Names are compared
 * without case as DuckDB does: `Temp` next to `temp` is refused, whether in one
 * declaration (400) or against the dataset (409). Versions only grow, so the
 * latest version holds every name any version of the dataset holds.
 */
import type { SchemaField, SchemaVersion } from './records.ts';
import { MAX_FIELDS, refuse } from './constraints.ts';

/** A field name: a safe identifier (letters, digits and _, starting with a letter or _, at most 63). */
export const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export const DEFAULT_TIMESTAMP_COLUMN = 'timestamp';

/**
 * Field names are safe identifiers, unique even without regard to case, and at most `maxFields`
 * of them (TIMESTORE_INGEST_MAX_FIELDS; never more than MAX_FIELDS).
 */
export function checkDeclaredFields(fields: SchemaField[], maxFields = MAX_FIELDS): void {
  if (fields.length > maxFields) {
    throw refuse('field_count_in_declaration', `the batch declares ${fields.length} fields; a dataset holds at most ${maxFields}`, {
      fields: fields.length,
      limit: maxFields,
    });
  }
  const seen = new Map<string, string>();
  for (const [index, field] of fields.entries()) {
    if (!FIELD_NAME.test(field.name)) {
      throw refuse(
        'field_name',
        `schema.fields[${index}].name "${field.name}" is not a safe identifier: use letters, digits and _, starting with a letter or _ (at most 63)`,
        { index, field: field.name },
      );
    }
    const folded = field.name.toLowerCase();
    const earlier = seen.get(folded);
    if (earlier === field.name) throw refuse('duplicate_field', `schema.fields declares "${field.name}" twice`, { index, field: field.name });
    if (earlier !== undefined) {
      throw refuse(
        'field_case_in_declaration',
        `schema.fields declares "${earlier}" and "${field.name}", which differ only in case: field names are case-insensitive, so rename one`,
        { index, field: field.name, conflictsWith: earlier },
      );
    }
    seen.set(folded, field.name);
  }
}

/** A timestamp column named up front (POST /admin/datasets) must be a field name a first batch can declare. */
export function checkTimestampColumnName(name: string): void {
  if (!FIELD_NAME.test(name)) {
    throw refuse('field_name', `timestampColumn "${name}" is not a safe identifier: use letters, digits and _, starting with a letter or _ (at most 63)`, {
      field: name,
    });
  }
}

/** The dataset's timestamp column for a first batch: `timestamp` when declared so, else the first timestamp field. */
export function chooseTimestampColumn(fields: SchemaField[]): string {
  const named = fields.find((f) => f.name === DEFAULT_TIMESTAMP_COLUMN);
  if (named?.type === 'timestamp') return named.name;
  const first = fields.find((f) => f.type === 'timestamp');
  if (!first) throw refuse('timestamp_field', 'schema.fields must declare a field of type "timestamp" (the time of each row)');
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
 * `declared` has passed checkDeclaredFields.
 */
export function mergeSchema(latest: SchemaVersion | null, declared: SchemaField[], timestampColumn: string, maxFields = MAX_FIELDS): MergedSchema {
  const normalize = (f: SchemaField): SchemaField => ({
    name: f.name,
    type: f.type,
    nullable: f.name === timestampColumn ? false : (f.nullable ?? true),
  });
  const ts = declared.find((f) => f.name === timestampColumn);
  if (latest === null) {
    if (!ts || ts.type !== 'timestamp') throw refuse('timestamp_field', `schema.fields must declare "${timestampColumn}" with type "timestamp"`);
    const fields = declared.map(normalize);
    return { fields, added: fields };
  }

  const existing = new Map(latest.fields.map((f) => [f.name, f]));
  const folded = new Map(latest.fields.map((f) => [f.name.toLowerCase(), f.name]));
  const added: SchemaField[] = [];
  for (const field of declared) {
    const current = existing.get(field.name);
    if (!current) {
      const variant = folded.get(field.name.toLowerCase());
      if (variant !== undefined) {
        throw refuse(
          'field_case_with_dataset',
          `field "${field.name}" differs only in case from the dataset's field "${variant}": field names are case-insensitive, ` +
            `so send it as "${variant}" (or under another name)`,
          { field: field.name, conflictsWith: variant, schemaVersion: latest.version },
        );
      }
      if (field.nullable === false) {
        throw refuse(
          'nullable_addition',
          `field "${field.name}" is new, so rows already stored have no value for it; declare it nullable to add it`,
          { field: field.name },
        );
      }
      added.push(normalize(field));
    } else if (current.type !== field.type) {
      throw refuse(
        'field_type',
        `field "${field.name}" is ${current.type} in schema version ${latest.version} but the batch declares it ${field.type}; ` +
          'types cannot change: send it as a new field instead',
        { field: field.name, existingType: current.type, declaredType: field.type, schemaVersion: latest.version },
      );
    }
  }
  if (added.length > 0 && latest.fields.length + added.length > maxFields) {
    throw refuse(
      'field_count_with_dataset',
      `the batch adds ${added.length} field(s) to the ${latest.fields.length} of the dataset; a dataset holds at most ${maxFields}`,
      { fields: latest.fields.length, added: added.length, limit: maxFields },
    );
  }
  return { fields: [...latest.fields, ...added], added };
}
