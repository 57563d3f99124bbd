import { describe, expect, test } from 'bun:test';
import type { SchemaField, SchemaVersion } from '../../src/catalog/types.ts';
import { checkDeclaredFields, chooseTimestampColumn, mergeSchema } from '../../src/ingest/schema.ts';
import { parseTimestamp } from '../../src/ingest/timestamps.ts';
import { type RowRules, validateRows } from '../../src/ingest/validation.ts';
import { refusal } from '../harness/refusal.ts';


describe('timestamps', () => {
  test.each([
    ['2026-01-01T00:00:00Z', Date.UTC(2026, 0, 1)],
    ['2026-01-01 00:00:00', Date.UTC(2026, 0, 1)],
    ['2026-01-01', Date.UTC(2026, 0, 1)],
    ['2026-01-01T00:00', Date.UTC(2026, 0, 1)],
    ['2026-01-01T00:00:00.123456789Z', Date.UTC(2026, 0, 1, 0, 0, 0, 123)],
    ['2026-01-01T02:00:00+02:00', Date.UTC(2026, 0, 1)],
    ['2025-12-31T19:00:00-05', Date.UTC(2026, 0, 1)],
    ['2024-02-29T00:00:00Z', Date.UTC(2024, 1, 29)],
    ['0001-01-01T00:00:00Z', -62135596800000],
  ])('%s is accepted', (text, millis) => {
    expect(parseTimestamp(text)).toBe(millis);
  });

  test.each(['2026-02-30T00:00:00Z', '2025-02-29', '2026-13-01', '2026-01-01T24:00:00Z', '2026-01-01T00:60', '26-01-01', 'yesterday', '2026-01-01T00:00:00+25:00', '1767225600000'])(
    '%s is refused',
    (text) => {
      expect(parseTimestamp(text)).toBeNaN();
    },
  );
});

const fields: SchemaField[] = [
  { name: 'timestamp', type: 'timestamp', nullable: false },
  { name: 'temperature', type: 'double', nullable: true },
  { name: 'count', type: 'integer', nullable: false },
  { name: 'ok', type: 'boolean', nullable: true },
  { name: 'label', type: 'string', nullable: true },
];
const rules: RowRules = { fields, timestampColumn: 'timestamp', strict: true };
const good = { timestamp: '2026-01-01T00:00:00Z', temperature: 1.5, count: 3, ok: true, label: 'a' };

describe('row validation', () => {
  test('a good batch is summarized: rows and time range', () => {
    const summary = validateRows([good, { ...good, timestamp: '2026-01-02T00:00:00Z', temperature: null, ok: undefined }], rules);
    expect(summary).toEqual({ rowCount: 2, minTime: Date.UTC(2026, 0, 1), maxTime: Date.UTC(2026, 0, 2) });
  });

  test.each([
    ['empty_batch', [], undefined, undefined],
    ['invalid_row', [good, 'nope'], 1, undefined],
    ['missing_timestamp', [good, { ...good, timestamp: undefined }], 1, 'timestamp'],
    ['invalid_timestamp', [{ ...good, timestamp: 1767225600000 }], 0, 'timestamp'],
    ['invalid_timestamp', [good, good, { ...good, timestamp: '2026-02-30T00:00:00Z' }], 2, 'timestamp'],
    ['invalid_type', [{ ...good, temperature: '1.5' }], 0, 'temperature'],
    ['invalid_type', [{ ...good, count: 1.5 }], 0, 'count'],
    ['invalid_type', [{ ...good, ok: 'yes' }], 0, 'ok'],
    ['invalid_type', [{ ...good, label: 7 }], 0, 'label'],
    ['missing_field', [{ ...good, count: null }], 0, 'count'],
    ['non_finite_number', [{ ...good, temperature: Number.NaN }], 0, 'temperature'],
    ['non_finite_number', [{ ...good, temperature: Number.POSITIVE_INFINITY }], 0, 'temperature'],
    ['integer_out_of_range', [{ ...good, count: 2 ** 60 }], 0, 'count'],
    ['unknown_field', [{ ...good, extra: 1 }], 0, 'extra'],
  ])('%s: the first bad row and field are named', (code, rows, index, field) => {
    const error = refusal(() => validateRows(rows as unknown[], rules));
    expect(error.status).toBe(400);
    expect(error.code).toBe(code);
    if (index !== undefined) {
      expect(error.details).toMatchObject({ index });
      expect(error.message).toStartWith(`row ${index}: `);
    }
    if (field !== undefined) expect(error.details).toMatchObject({ field });
  });

  test('unknown fields are ignored when the dataset is not strict', () => {
    expect(validateRows([{ ...good, extra: 1 }], { ...rules, strict: false }).rowCount).toBe(1);
  });

  test('rows outside partition.timeRange are refused', () => {
    const timeRange = { start: Date.UTC(2026, 0, 1), end: Date.UTC(2026, 0, 2) };
    expect(validateRows([good], { ...rules, timeRange }).rowCount).toBe(1);
    const error = refusal(() => validateRows([good, { ...good, timestamp: '2026-01-02T00:00:00Z' }], { ...rules, timeRange }));
    expect(error.code).toBe('timestamp_out_of_range');
    expect(error.details).toMatchObject({ index: 1, field: 'timestamp' });
  });
});

describe('schema rules', () => {
  test('field names must be safe identifiers and unique', () => {
    expect(refusal(() => checkDeclaredFields([{ name: 'bad name', type: 'string' }])).code).toBe('invalid_field_name');
    expect(refusal(() => checkDeclaredFields([{ name: 'x"; DROP', type: 'string' }])).code).toBe('invalid_field_name');
    expect(refusal(() => checkDeclaredFields([{ name: 'a', type: 'string' }, { name: 'a', type: 'double' }])).code).toBe('duplicate_field');
  });

  test('the timestamp column: "timestamp" when declared, else the first timestamp field', () => {
    expect(chooseTimestampColumn([{ name: 'at', type: 'timestamp' }, { name: 'timestamp', type: 'timestamp' }])).toBe('timestamp');
    expect(chooseTimestampColumn([{ name: 'v', type: 'double' }, { name: 'at', type: 'timestamp' }])).toBe('at');
    expect(refusal(() => chooseTimestampColumn([{ name: 'v', type: 'double' }])).code).toBe('missing_timestamp_field');
  });

  const v1: SchemaVersion = {
    datasetId: 'd',
    version: 3,
    fields: [
      { name: 'timestamp', type: 'timestamp', nullable: false },
      { name: 'temperature', type: 'double', nullable: true },
    ],
    timestampColumn: 'timestamp',
    checksum: 'x',
    createdAt: new Date(),
  };

  test('new nullable fields are added after the existing ones; a subset adds nothing', () => {
    const merged = mergeSchema(v1, [{ name: 'humidity', type: 'double' }, { name: 'timestamp', type: 'timestamp' }], 'timestamp');
    expect(merged.added).toEqual([{ name: 'humidity', type: 'double', nullable: true }]);
    expect(merged.fields.map((f) => f.name)).toEqual(['timestamp', 'temperature', 'humidity']);
    expect(mergeSchema(v1, [{ name: 'timestamp', type: 'timestamp' }], 'timestamp').added).toEqual([]);
  });

  test('a type change is a 409 naming the field, both types and the version', () => {
    const error = refusal(() => mergeSchema(v1, [{ name: 'temperature', type: 'string' }], 'timestamp'));
    expect(error.status).toBe(409);
    expect(error.code).toBe('field_type_conflict');
    expect(error.message).toContain('field "temperature" is double in schema version 3 but the batch declares it string');
    expect(error.details).toEqual({ field: 'temperature', existingType: 'double', declaredType: 'string', schemaVersion: 3 });
  });

  test('a new field declared not nullable is refused', () => {
    expect(refusal(() => mergeSchema(v1, [{ name: 'x', type: 'double', nullable: false }], 'timestamp')).code).toBe('non_nullable_addition');
  });
});
