/** The sweep's test of a key: exactly the shapes timestore writes (model/object-keys.ts), nothing else. */
import { describe, expect, test } from 'bun:test';
import { randomBytes } from 'node:crypto';
import {
  OWNER_MARKER_KEY,
  partitionObjectKey,
  probeObjectKey,
  stagingLogKey,
  stagingObjectKey,
  sweepableKind,
  temporaryObjectName,
} from '../../src/model/object-keys.ts';

const temporary = (key: string) => {
  const slash = key.lastIndexOf('/');
  return `${key.slice(0, slash + 1)}${temporaryObjectName(key.slice(slash + 1), randomBytes(6).toString('hex'))}`;
};

describe('sweepableKind', () => {
  const written = [
    ['staging', stagingObjectKey('weather', 'json')],
    ['staging', stagingObjectKey('a', 'ndjson')],
    ['staging', stagingObjectKey('A-b_c.d', 'csv')],
    ['stagingLog', stagingLogKey('weather', 'ndjson')],
    ['stagingLog', stagingLogKey('A-b_c.d', 'json')],
    ['partition', partitionObjectKey('weather', {}, '2026-01-01T00:00:00.000Z')],
    ['partition', partitionObjectKey('weather', { site: 'north', 'rack.id': 'r:1-a' }, '0000-12-31T23:00:00.000000Z')],
    ['partition', partitionObjectKey('w', Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`k${i}`, `v${i}`])), '9999-12-31T00:00:00Z')],
    ['probe', probeObjectKey()],
  ] as const;

  test('every key timestore writes, and its temporary name, is recognised as its kind', () => {
    for (const [kind, key] of written) {
      expect(sweepableKind(key)).toBe(kind);
      expect(sweepableKind(temporary(key))).toBe(kind);
    }
  });

  test('anything else is not: other names, other extensions, other layouts, the owner marker', () => {
    const foreign = [
      OWNER_MARKER_KEY,
      'datasets/report.csv',
      'datasets/weather/_/2026-01-01T000000Z/orphan.parquet',
      'datasets/weather/_/2026-01-01T000000Z/0f8fad5b-d9cb-469f-a165-70867728950e.csv',
      'datasets/weather/_/2026-01-01/0f8fad5b-d9cb-469f-a165-70867728950e.parquet',
      'datasets/weather/site/2026-01-01T000000Z/0f8fad5b-d9cb-469f-a165-70867728950e.parquet',
      'datasets/weather/_/2026-01-01T000000Z/extra/0f8fad5b-d9cb-469f-a165-70867728950e.parquet',
      'datasets/0f8fad5b-d9cb-469f-a165-70867728950e.parquet',
      'staging/weather/crashed.json',
      'staging/weather/log-crashed.ndjson',
      'staging/weather/log-0f8fad5b-d9cb-469f-a165-70867728950e.csv',
      'staging/weather/0f8fad5b-d9cb-469f-a165-70867728950e.parquet',
      'staging/0f8fad5b-d9cb-469f-a165-70867728950e.json',
      'staging/weather/sub/0f8fad5b-d9cb-469f-a165-70867728950e.json',
      'staging/weather/0F8FAD5B-D9CB-469F-A165-70867728950E.json',
      '.timestore-probe/hello',
      '.timestore-probe/0f8fad5b-d9cb-469f-a165-70867728950e/x',
      'backups/staging/weather/0f8fad5b-d9cb-469f-a165-70867728950e.json',
      'staging/weather/.notes.txt.tmp-0123456789ab',
      'staging/weather/.0f8fad5b-d9cb-469f-a165-70867728950e.json.tmp-short',
    ];
    for (const key of foreign) expect({ key, kind: sweepableKind(key) }).toEqual({ key, kind: null });
  });
});
