/**
 * The types a dataset's field can have, and what each is called where it crosses a boundary:
 * DuckDB's SQL type (the partition writer and the query builder) and the TypeBox schema the routes
 * validate and document.
 */
import { Type } from '@sinclair/typebox';

export type FieldType = 'timestamp' | 'string' | 'double' | 'integer' | 'boolean';

/** DuckDB's column type of each field type. */
export const SQL_TYPES: Readonly<Record<FieldType, string>> = {
  timestamp: 'TIMESTAMPTZ',
  string: 'VARCHAR',
  double: 'DOUBLE',
  integer: 'BIGINT',
  boolean: 'BOOLEAN',
};

/** A field type in a request body (POST /datasets/:slug/ingest, POST /admin/datasets) and in answers. */
export const FieldTypeSchema = Type.Union([
  Type.Literal('timestamp'),
  Type.Literal('string'),
  Type.Literal('double'),
  Type.Literal('integer'),
  Type.Literal('boolean'),
]);
