/**
 * JSON and NDJSON bodies are parsed from their bytes, and anything unusual is parsed again from
 * the decoded text, which names the problem: whatever the body, the outcome (the summary, or the
 * refusal with its code, message and details) must be the text path's.
 */
import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { jsonBatch } from '../../src/ingest/formats/json.ts';
import { checkLineByLine, ndjsonBatch } from '../../src/ingest/formats/ndjson.ts';
import type { RowRules } from '../../src/ingest/validation.ts';
import { outcome } from '../harness/row-rules.ts';

const rules: RowRules = {
  fields: [
    { name: 'ts', type: 'timestamp' },
    { name: 'host', type: 'string' },
    { name: 'v', type: 'double' },
  ],
  timestampColumn: 'ts',
  strict: true,
};

const viaBatch = (body: string) => outcome(() => ndjsonBatch(new TextEncoder().encode(body), { partition: { key: {} } }).validate(rules));
const lineByLine = (body: string) => outcome(() => checkLineByLine(new TextDecoder().decode(new TextEncoder().encode(body)), rules));

const good = (i: number) => JSON.stringify({ ts: `2026-01-01T00:00:${String(i % 60).padStart(2, '0')}Z`, host: `h${i}`, v: i / 3 });

/** Lines a client might send, good and bad. */
const line = fc.oneof(
  { weight: 12, arbitrary: fc.nat(10_000).map(good) },
  fc.constantFrom(
    '',
    '   ',
    '\t\r',
    '{"ts":"2026-01-01T00:00:00Z",',
    '"host":"a"}',
    '{"ts":"2026-01-01T00:00:00Z","host":"a","v":1} {"ts":"2026-01-01T00:00:00Z","host":"b","v":2}',
    '{"ts":"2026-01-01T00:00:00Z","host":"\\ud800","v":1}',
    '{"ts":"2026-01-01T00:00:00Z","host":"\\u00e9","v":1}',
    '{"ts":"2026-01-01T00:00:00Z","host":"é","v":1}',
    '{"ts":"2026-01-01T00:00:00Z","host":"a","v":"1"}',
    '{"ts":"2026-01-01T00:00:00Z","host":"a","v":1,"extra":2}',
    '{"host":"a","v":1}',
    '[1,2]',
    '7',
    'null',
    '{"ts":"2026-01-01T00:00:00Z","host":"a","v":1}\r',
    '\uFEFF{"ts":"2026-01-01T00:00:00Z","host":"a","v":1}',
    '{"ts":"2026-01-01T00:00:00Z","host":"a","v":1e400}',
    '\f',
  ),
);

describe('NDJSON rows parsed from the bytes', () => {
  test('any body: the same summary or the same refusal as the line-by-line check', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(line, { maxLength: 40 }), fc.constantFrom('\n', '\r\n'), fc.boolean(), async (lines, eol, trailing) => {
        const body = lines.join(eol) + (trailing ? eol : '');
        expect(await viaBatch(body)).toEqual(await lineByLine(body));
      }),
      { numRuns: 400 },
    );
  });

  test('bodies longer than one chunk of lines: counted across chunks, bad rows named by line', async () => {
    const rows = Array.from({ length: 2_500 }, (_, i) => good(i));
    expect(await viaBatch(rows.join('\n'))).toEqual({ ok: { rowCount: 2_500, minTime: Date.parse('2026-01-01T00:00:00Z'), maxTime: Date.parse('2026-01-01T00:00:59Z') } });
    const spanning = [...rows.slice(0, 1_999), '{"ts":"2026-01-01T00:00:00Z",', '"host":"a","v":1}', ...rows.slice(2_000)].join('\n');
    const refused = await viaBatch(spanning);
    expect(refused).toMatchObject({ code: 'invalid_json', details: { line: 2_000 } });
    expect(refused).toEqual(await lineByLine(spanning));
    const wrongType = [...rows.slice(0, 1_500), '{"ts":"2026-01-01T00:00:00Z","host":"a","v":"x"}', ...rows.slice(1_500)].join('\n');
    expect(await viaBatch(wrongType)).toMatchObject({ code: 'invalid_type', details: { index: 1_500, line: 1_501, field: 'v' } });
  });

  test('a body that is not UTF-8 is refused before its rows are looked at', async () => {
    expect(() => ndjsonBatch(new Uint8Array([0x7b, 0xff, 0x7d]), { partition: { key: {} } })).toThrow('not valid UTF-8');
  });
});

describe('JSON documents parsed from the bytes', () => {
  const document = (rows: string) => `{"schema":{"fields":[{"name":"ts","type":"timestamp"}]},"partition":{"key":{}},"rows":${rows}}`;
  const decoded = (body: string | Uint8Array) => outcome(() => jsonBatch(typeof body === 'string' ? new TextEncoder().encode(body) : body).validate(rules));

  test.each([
    ['one line', document(`[${good(1)}]`), { ok: { rowCount: 1 } }],
    ['over several lines', document(`[\n${good(1)},\n${good(2)}\n]`).replaceAll(',', ',\n'), { ok: { rowCount: 2 } }],
    ['after a byte order mark', `\uFEFF${document(`[${good(1)}]`)}`, { ok: { rowCount: 1 } }],
    ['an escaped character', document(`[${good(1).replace('"h1"', '"\\u00e9"')}]`), { ok: { rowCount: 1 } }],
    ['a lone surrogate in a key that is no field', document(`[{"ts":"2026-01-01T00:00:00Z","host":"a","v":1,"\\ud800":1}]`), { code: 'invalid_unicode', details: { index: 0 } }],
    ['a second document after the first', `${document('[]')}\n${document('[]')}`, { code: 'invalid_json' }],
    ['a value after the document', `${document('[]')} 7`, { code: 'invalid_json' }],
    ['nothing', '', { code: 'invalid_json' }],
    ['a cut-off document', document(`[${good(1)}]`).slice(0, -3), { code: 'invalid_json' }],
  ])('%s', async (_, body, expected) => {
    expect(await decoded(body)).toMatchObject(expected);
  });

  test('a body that is not UTF-8 is refused', async () => {
    expect(await decoded(new Uint8Array([0x7b, 0xff, 0x7d]))).toMatchObject({ code: 'invalid_encoding' });
  });
});
