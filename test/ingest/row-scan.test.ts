/**
 * NDJSON rows are checked first straight from the bytes, and that scan may pass a body only where
 * parsing its lines and checking the rows would, with the same summary: whatever the schema and the
 * bytes, its answer is null or the line-by-line check's summary. It must also pass ordinary
 * bodies itself, or it would be no faster.
 */
import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { scanNdjsonRows as scanRows } from '../../src/ingest/formats/row-scan.ts';
import { checkLineByLine } from '../../src/ingest/formats/ndjson.ts';
import { jsonBatch, parseJsonBody } from '../../src/ingest/formats/json.ts';
import { type BatchSummary, type RowRules, validateRows } from '../../src/ingest/validation.ts';
import type { FieldType } from '../../src/model/field-types.ts';
import { FIELD_TYPES, outcome, rowRules } from '../harness/row-rules.ts';

const pause = () => Promise.resolve();
const encoder = new TextEncoder();

async function reference(body: Uint8Array, rules: RowRules): Promise<BatchSummary | null> {
  try {
    return await checkLineByLine(new TextDecoder().decode(body), rules);
  } catch {
    return null;
  }
}

const rules = rowRules(['host', 'v', 'n', 'flag', 'at', 'constructor', 'Region', 'é']);

/** JSON text of values, as clients write them: tokens at the edges of JSON's grammar and of each type. */
const token = fc.constantFrom(
  'null', 'true', 'false', 'nul', 'truex', 'True',
  '0', '-0', '7', '-12', '1.5', '1.', '.5', '01', '-', '+1', '1e5', '1E+2', '2e-3', '1e', '1e400', '-1e400', '1:2', '1/2', '0.5:', '2.5/', '1e2:', '1e/', '-:',
  `1${'0'.repeat(308)}`, `2${'0'.repeat(308)}`, `-2${'0'.repeat(308)}.5`, '123456789012345', '1234567890123456', '9007199254740991', '9007199254740993', '12345678901234567890', '1.0', '3.00', '0.1e1',
  '"text"', '""', '"host_1"', '"a\\"b"', '"a\\\\b"', '"\\u0000"', '"\\u00e9"', '"é"', '"a\tb"', '"a\u0001b"', '"tab\\t"',
  '"\\/\\b\\f\\n\\r"', '"\\x"', '"\\"', '"a\\', '"\\u12"', '"\\u12g4"', '"\\u\u0011000"', '"\\uD83D\\uDE00"', '"\\ud83d\\ude00"',
  '"\\ud800"', '"\\udc00"', '"\\ud800\\u0041"', '"\\ud800x"', '"\\uFFFF"', '"\\u0001"', '"\\"2026-01-01T00:00:10Z"',
  '"2026-01-01T00:00:30Z"', '"2026-01-01T00:02:00Z"', '"2026-01-01"', '"2026-01-01 00:00:10"', '"2026-01-01T00:00+01:00"',
  '"2026-02-30T00:00:00Z"', '"0000-12-31T23:59:59Z"', '"+010000-01-01T00:00:00Z"', '"not a time"', '"2026-01-01T00:00:10.123456Z"',
  '{}', '[1]', '{"a":1}', '',
);

/** Whitespace JSON allows between tokens, and some it does not. */
const space = fc.constantFrom('', '', '', ' ', '\t', '\r', '  ', '\n', '\f');

const key = fc.constantFrom('ts', 'host', 'v', 'n', 'flag', 'at', 'constructor', 'Region', 'é', 'extra', 'HOST', '', 'h\\u006fst', 'v ');

/** A line: an object of key/value pairs with arbitrary spacing, or something else. */
const line = fc.oneof(
  {
    weight: 20,
    arbitrary: fc
      .tuple(fc.array(fc.tuple(space, key, space, space, token, space), { maxLength: 7 }), space, fc.boolean())
      .map(([pairs, end, trailingComma]) => `{${pairs.map(([a, k, b, c, v, d]) => `${a}"${k}"${b}:${c}${v}${d}`).join(',')}${trailingComma ? ',' : ''}${end}}`),
  },
  fc.constantFrom('', '   ', '7', '[]', 'null', '{', '}', '{}{}', '\uFEFF{}'),
);

/** A line of rows that fit the schema, the way most bodies are: every field, in schema order, ts first. */
const fittingText: Record<FieldType, fc.Arbitrary<string>> = {
  string: fc.constantFrom('"a"', '"host_1"', '""', '"é"'),
  double: fc.constantFrom('0', '2.5', '-1e300', '85', '-0'),
  integer: fc.constantFrom('0', '7', '-9007199254740991', '12'),
  boolean: fc.constantFrom('true', 'false'),
  timestamp: fc.constantFrom('"2026-01-01T00:00:10Z"', '"2026-01-01T00:00:20.5+00:00"', '"2026-01-01"', '"2026-01-01 00:00:30"'),
};
const fittingLine = (r: RowRules): fc.Arbitrary<string> =>
  fc.tuple(...r.fields.map((f) => fc.option(fittingText[f.type], { nil: undefined, freq: 8 }))).map(
    (values) => `{${r.fields.flatMap((f, i) => (values[i] === undefined ? [] : [`"${f.name}":${values[i]}`])).join(',')}}`,
  );

/** A body: lines, then maybe a few bytes changed anywhere. */
const bodyFor = (r: RowRules) =>
  fc
    .tuple(
      fc.array(fc.oneof({ weight: 3, arbitrary: fittingLine(r) }, line), { maxLength: 6 }),
      fc.constantFrom('\n', '\r\n'),
      fc.boolean(),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { maxLength: 2 }),
    )
    .map(([lines, eol, trailing, edits]) => {
      let bytes = [...encoder.encode(lines.join(eol) + (trailing ? eol : ''))];
      for (const [at, byte, how] of edits) {
        if (bytes.length === 0) break;
        const i = at % bytes.length;
        if (how === 'set') bytes[i] = byte;
        else if (how === 'insert') bytes.splice(i, 0, byte);
        else bytes.splice(i, 1);
      }
      // The scan's callers pass only valid UTF-8 (checked first); keep what an edit broke out.
      const text = new TextDecoder('utf-8', { fatal: false }).decode(new Uint8Array(bytes));
      bytes = [...encoder.encode(text)];
      return new Uint8Array(bytes);
    });

const EXAMPLE_RULES: RowRules = {
  fields: [
    { name: 'ts', type: 'timestamp', nullable: false },
    { name: 'host', type: 'string' },
    { name: 'v', type: 'double' },
    { name: 'n', type: 'integer' },
    { name: 'ok', type: 'boolean' },
  ],
  timestampColumn: 'ts',
  strict: true,
};

describe('NDJSON rows checked from the bytes', () => {
  test('any schema and body: no answer, or the line-by-line check\'s summary', async () => {
    let passed = 0;
    await fc.assert(
      fc.asyncProperty(rules.chain((r) => fc.tuple(fc.constant(r), bodyFor(r))), async ([r, body]) => {
        const scanned = await scanRows(body, r, 2, pause);
        if (scanned === null) return;
        passed++;
        expect<BatchSummary | null>(scanned).toEqual(await reference(body, r));
      }),
      { numRuns: 20_000 },
    );
    // It passed bodies of its own, not only leaving every body to the other path.
    expect(passed).toBeGreaterThan(1_000);
  });

  test('every token as the value of every type of field, required or not: no answer, or the reference\'s summary', async () => {
    const tokens = [...new Set(fc.sample(token, { numRuns: 5_000 }))];
    let passed = 0;
    for (const type of FIELD_TYPES) {
      for (const nullable of [true, false]) {
        const r: RowRules = { fields: [{ name: 'ts', type: 'timestamp', nullable: false }, { name: 'f', type, nullable }], timestampColumn: 'ts', strict: true };
        for (const t of tokens) {
          for (const text of [`{"ts":"2026-01-01T00:00:10Z","f":${t}}`, `{"f":${t},"ts":"2026-01-01T00:00:10Z"}`, `{"ts":${t}}`]) {
            const body = encoder.encode(text);
            const scanned = await scanRows(body, r, 1_000, pause);
            if (scanned === null) continue;
            passed++;
            expect<[string, BatchSummary | null]>([text, scanned]).toEqual([text, await reference(body, r)]);
          }
        }
      }
    }
    expect(passed).toBeGreaterThan(100);
  });

  test('ordinary bodies pass the scan itself: any key order, blank lines, CRLF, spaces, escapes, nulls where allowed', async () => {
    const r = EXAMPLE_RULES;
    const body = [
      '{"ts":"2026-01-01T00:00:10Z","host":"h1","v":1.5,"n":3,"ok":true}',
      '',
      '{ "n" : -2 , "ts" : "2026-01-01T00:00:05Z", "v": 2e3, "ok": false, "host": "é" }\r',
      '{"ts":"2026-01-01T00:00:20Z","host":null,"v":null}',
      '{"ts":"2026-01-01T00:00:10Z","host":"h2","v":-0,"n":9007199254740991,"ok":null}',
      '{"ts":"2026-01-01T00:00:10Z","host":"a\\"b\\\\c\\/\\n\\u00e9\\ud83d\\ude00","v":54.43396338354796,"n":5.000}',
      '',
    ].join('\n');
    const summary = { rowCount: 5, minTime: Date.parse('2026-01-01T00:00:05Z'), maxTime: Date.parse('2026-01-01T00:00:20Z') };
    expect(await scanRows(encoder.encode(body), r, 1_000, pause)).toEqual(summary);
    expect(await reference(encoder.encode(body), r)).toEqual(summary);
  });

  test.each([
    ['an escape in a key', '{"ts":"2026-01-01T00:00:10Z","h\\u006fst":"a"}'],
    ['an escape in a timestamp', '{"ts":"2026-01-01T00:00:10\\u005a"}'],
    ['U+0000 in a string', '{"ts":"2026-01-01T00:00:10Z","host":"a\\u0000"}'],
    ['a lone surrogate', '{"ts":"2026-01-01T00:00:10Z","host":"\\ud800"}'],
    ['a key that is not a field', '{"ts":"2026-01-01T00:00:10Z","other":1}'],
    ['a key twice', '{"ts":"2026-01-01T00:00:10Z","host":"a","host":"b"}'],
    ['a nested value', '{"ts":"2026-01-01T00:00:10Z","host":{"a":1}}'],
    ['a row over two lines', '{"ts":"2026-01-01T00:00:10Z",\n"host":"a"}'],
    ['two rows on one line', '{"ts":"2026-01-01T00:00:10Z"} {"ts":"2026-01-01T00:00:10Z"}'],
    ['an integer that is not safe', '{"ts":"2026-01-01T00:00:10Z","n":9007199254740993}'],
    ['a fraction for an integer', '{"ts":"2026-01-01T00:00:10Z","n":1.5}'],
    ['a number out of range', '{"ts":"2026-01-01T00:00:10Z","v":1e400}'],
    ['a leading zero', '{"ts":"2026-01-01T00:00:10Z","v":01}'],
    ['no timestamp', '{"host":"a"}'],
    ['a timestamp that is no date', '{"ts":"2026-02-30T00:00:00Z"}'],
    ['nothing', ''],
  ])('leaves %s to the other path', async (_, body) => {
    const r = { ...EXAMPLE_RULES, strict: false };
    expect(await scanRows(encoder.encode(body), r, 1_000, pause)).toBeNull();
  });
});

/** A document's other members, spelled as clients (and mischief) do. */
const member = fc.constantFrom(
  '"schema":{"fields":[{"name":"ts","type":"timestamp"}]}',
  '"schema" : { "fields" : [ { "name" : "ts" , "type" : "timestamp" } ] }',
  '"partition":{"key":{}}',
  '"partition":{"key":{"site":"a]}\\"rows\\":["}}',
  '"datasetName":"n\\u00e9e"',
  '"datasetName":"\\ud800"',
  '"idempotencyKey":"k-1"',
  '"note":{"rows":[1,{"a":"]"}],"x":[[],{}]}',
  '"rows":[]',
  '"r\\u006fws":[{"ts":"2026-01-01T00:00:10Z"}]',
  '"extra":[1,2',
  '"extra":nul',
);

/** A document: its members in any order around its rows (an array of lines, maybe pretty-printed), then maybe a few bytes changed. */
const documentFor = (r: RowRules) =>
  fc
    .tuple(
      fc.array(fc.oneof({ weight: 12, arbitrary: fittingLine(r) }, line), { maxLength: 5 }),
      fc.constantFrom(',', ',\n', ' , ', ',\r\n  '),
      fc.oneof(
        { weight: 8, arbitrary: fc.shuffledSubarray(['"schema":{"fields":[{"name":"ts","type":"timestamp"}]}', '"partition":{"key":{}}'], { minLength: 2 }) },
        fc.subarray(['"schema":{"fields":[{"name":"ts","type":"timestamp"}]}', '"partition":{"key":{}}']),
      ),
      fc.oneof({ weight: 2, arbitrary: fc.constant([]) }, fc.array(member, { maxLength: 2 })),
      fc.nat(4),
      fc.constantFrom('', '', '', '\uFEFF', ' \n'),
      fc.constantFrom('', '', '', '\n', ' 7', '}'),
      fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { maxLength: 1 })),
    )
    .map(([rows, separator, required, others, at, before, after, edits]) => {
      const members = [...required, ...others];
      members.splice(at % (members.length + 1), 0, `"rows":[${rows.join(separator)}]`);
      let bytes = [...encoder.encode(`${before}{${members.join(',')}}${after}`)];
      for (const [position, byte, how] of edits) {
        const i = position % bytes.length;
        if (how === 'set') bytes[i] = byte;
        else if (how === 'insert') bytes.splice(i, 0, byte);
        else bytes.splice(i, 1);
      }
      return encoder.encode(new TextDecoder().decode(new Uint8Array(bytes)));
    });

describe('JSON documents: rows checked from the bytes, the rest parsed', () => {
  test('any schema and document: the outcome of parsing the whole document and checking its rows', async () => {
    let scanned = 0;
    await fc.assert(
      fc.asyncProperty(rules.chain((r) => fc.tuple(fc.constant(r), documentFor(r))), async ([r, body]) => {
        const expected = await outcome(() => validateRows(parseJsonBody(body).rows, r));
        expect(await outcome(() => jsonBatch(body).validate(r))).toEqual(expected);
        if ((expected as { ok?: unknown }).ok) scanned++;
      }),
      { numRuns: 10_000 },
    );
    expect(scanned).toBeGreaterThan(1_000);
  });

  test('a large document is checked from the bytes: its rows are not parsed', async () => {
    const r: RowRules = { fields: [{ name: 'ts', type: 'timestamp', nullable: false }, { name: 'v', type: 'double' }], timestampColumn: 'ts', strict: true };
    const rows = Array.from({ length: 3_000 }, (_, i) => `{"ts":"2026-01-01T00:00:${String(i % 60).padStart(2, '0')}Z","v":${i / 7}}`);
    const body = encoder.encode(`{"schema":{"fields":[{"name":"ts","type":"timestamp"},{"name":"v","type":"double"}]},"partition":{"key":{}},"rows":[\n${rows.join(',\n')}\n]}`);
    // Whatever parses JSON here (JSON.parse, or Bun's parser from the bytes) is sent only the document's other members.
    const { parse } = JSON;
    const { parseChunk } = Bun.JSONL;
    const parsed: number[] = [];
    JSON.parse = (text: string, ...rest: []) => {
      parsed.push(text.length);
      return parse(text, ...rest);
    };
    Bun.JSONL.parseChunk = ((input: Uint8Array, ...rest: []) => {
      parsed.push(input.length);
      return parseChunk(input, ...rest);
    }) as typeof parseChunk;
    try {
      expect(await jsonBatch(body).validate(r)).toEqual({ rowCount: 3_000, minTime: Date.parse('2026-01-01T00:00:00Z'), maxTime: Date.parse('2026-01-01T00:00:59Z') });
    } finally {
      JSON.parse = parse;
      Bun.JSONL.parseChunk = parseChunk;
    }
    expect(parsed.length).toBeGreaterThan(0);
    expect(parsed.every((length) => length < 1_000)).toBe(true);
  });
});
