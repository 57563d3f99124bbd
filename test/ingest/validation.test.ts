import { describe, expect, test } from 'bun:test';
import type { SchemaField, SchemaVersion } from '../../src/model/records.ts';
import { checkDeclaredFields, chooseTimestampColumn, mergeSchema } from '../../src/model/schema.ts';
import { isStorableTime, parseIngestTimestamp, parseTimestamp, STORABLE_TIME_RANGE } from '../../src/model/timestamps.ts';
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

describe('timestamps of ingested rows', () => {
  test('an offset needs the seconds (DuckDB refuses it after hh:mm or a bare date); queries still take those forms', () => {
    for (const text of ['2026-01-01T00:00Z', '2026-01-01 00:00+01:00', '2026-01-01Z', '2026-01-01+01', '2026-01-01-0130']) {
      expect(parseIngestTimestamp(text)).toBeNaN();
      expect(parseTimestamp(text)).not.toBeNaN();
    }
    for (const text of ['2026-01-01', '2026-01-01T00:00', '2026-01-01 00:00:00', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00.5+0130']) {
      expect(parseIngestTimestamp(text)).toBe(parseTimestamp(text));
    }
  });

  test('the storable range is 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z, offsets applied', () => {
    expect(parseIngestTimestamp(STORABLE_TIME_RANGE.min)).toBe(STORABLE_TIME_RANGE.minMillis);
    expect(parseIngestTimestamp(STORABLE_TIME_RANGE.max)).toBe(STORABLE_TIME_RANGE.maxMillis);
    expect<number>(STORABLE_TIME_RANGE.minMillis).toBe(Date.parse('0001-01-01T00:00:00Z'));
    expect<number>(STORABLE_TIME_RANGE.maxMillis).toBe(Date.parse('9999-12-31T23:59:59.999Z'));
    const inside = ['0001-01-01T00:00:00Z', '0001-01-01T00:30:00+00:30', '9999-12-31T23:59:59.9999999Z', '9999-12-31T22:59:59+01:00'];
    const outside = ['0001-01-01T00:30:00+01:00', '9999-12-31T23:30:00-01:00', '0000-12-31T23:59:59Z', '+010000-01-01T00:00:00.000Z', '-000001-06-01T00:00:00.000Z'];
    for (const text of inside) expect(isStorableTime(parseIngestTimestamp(text))).toBe(true);
    for (const text of outside) {
      expect(parseIngestTimestamp(text)).not.toBeNaN();
      expect(isStorableTime(parseIngestTimestamp(text))).toBe(false);
    }
    expect(parseIngestTimestamp('-000000-01-01T00:00:00Z')).toBeNaN();
  });
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
    ['field_name_conflict', [good, { ...good, Temperature: 2 }], 1, 'Temperature'],
    ['nul_character', [{ ...good, label: 'a\u0000' }], 0, 'label'],
    ['timestamp_out_of_range', [good, { ...good, timestamp: '0001-01-01T00:30:00+01:00' }], 1, 'timestamp'],
    ['invalid_timestamp', [{ ...good, timestamp: '2026-01-01T00:00Z' }], 0, 'timestamp'],
  ])('%s: the first bad row and field are named', (code, rows, index, field) => {
    const error = refusal(() => validateRows(rows as unknown[], rules));
    expect(error.status).toBe(400);
    expect(error.code as string).toBe(code);
    if (index !== undefined) {
      expect(error.details).toMatchObject({ index });
      expect(error.message).toStartWith(`row ${index}: `);
    }
    if (field !== undefined) expect(error.details).toMatchObject({ field });
  });

  test('unknown fields are ignored when the dataset is not strict, except keys that differ only in case from a field', () => {
    expect(validateRows([{ ...good, extra: 1 }], { ...rules, strict: false }).rowCount).toBe(1);
    const error = refusal(() => validateRows([{ ...good, LABEL: 'b' }], { ...rules, strict: false }));
    expect(error).toMatchObject({ status: 400, code: 'field_name_conflict', details: { index: 0, field: 'LABEL', conflictsWith: 'label' } });
  });

  test('every timestamp field is held to the storable range', () => {
    const withAt: RowRules = { ...rules, fields: [...fields, { name: 'at', type: 'timestamp', nullable: true }] };
    const error = refusal(() => validateRows([{ ...good, at: '9999-12-31T23:30:00-01:00' }], withAt));
    expect(error).toMatchObject({ status: 400, code: 'timestamp_out_of_range', details: { index: 0, field: 'at', min: STORABLE_TIME_RANGE.min } });
    expect(refusal(() => validateRows([{ ...good, at: '2026-01-01T00:00+01:00' }], withAt)).code).toBe('invalid_type');
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

  test('names that differ only in case are refused in one declaration (400) and against the dataset (409)', () => {
    const inOne = refusal(() => checkDeclaredFields([{ name: 'temp', type: 'double' }, { name: 'Temp', type: 'double' }]));
    expect(inOne).toMatchObject({ status: 400, code: 'field_name_conflict', details: { index: 1, field: 'Temp', conflictsWith: 'temp' } });
    const against = refusal(() => mergeSchema(v1, [{ name: 'TEMPERATURE', type: 'double' }], 'timestamp'));
    expect(against).toMatchObject({ status: 409, code: 'field_name_conflict', details: { field: 'TEMPERATURE', conflictsWith: 'temperature', schemaVersion: 3 } });
    expect(refusal(() => mergeSchema(v1, [{ name: 'Timestamp', type: 'timestamp' }], 'timestamp')).status).toBe(409);
  });

  test('a dataset holds at most 1,024 fields', () => {
    const many = (n: number, prefix = 'f'): SchemaField[] => Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, type: 'double' }));
    expect(refusal(() => checkDeclaredFields(many(1025))).code).toBe('too_many_fields');
    checkDeclaredFields(many(1024));
    const wide: SchemaVersion = { ...v1, fields: [...v1.fields, ...many(1022)] };
    expect(mergeSchema(wide, [{ name: 'f1', type: 'double' }], 'timestamp').added).toEqual([]);
    const error = refusal(() => mergeSchema(wide, [{ name: 'more', type: 'double' }], 'timestamp'));
    expect(error).toMatchObject({ status: 409, code: 'too_many_fields', details: { fields: 1024, added: 1, limit: 1024 } });
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
