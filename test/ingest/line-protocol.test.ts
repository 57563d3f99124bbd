/** The line-protocol parser against the spec's edge cases: escapes, quoting, comments, timestamps, types. */
import { describe, expect, test } from 'bun:test';
import { type MeasurementRows, parseLineProtocol, type Precision, stagedNdjson } from '../../src/ingest/formats/line-protocol.ts';
import { refusal } from '../harness/refusal.ts';

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0, 250);
const T = '1767225600000000000'; // 2026-01-01T00:00:00Z in ns

/** The rows of each measurement as objects, the timestamp column named `time`. */
function parse(text: string, precision: Precision = 'ns'): Record<string, Record<string, unknown>[]> {
  const out: Record<string, Record<string, unknown>[]> = {};
  for (const rows of parseLineProtocol(text, precision, NOW).values()) out[rows.measurement] = objects(rows);
  return out;
}
const objects = (rows: MeasurementRows) =>
  new TextDecoder()
    .decode(stagedNdjson(rows, 'time'))
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
const one = (text: string, precision?: Precision) => Object.values(parse(text, precision))[0]![0]!;
const refused = (text: string, precision: Precision = 'ns') => refusal(() => parseLineProtocol(text, precision, NOW));

describe('line protocol', () => {
  test('measurement, tags, fields of every type, timestamp', () => {
    expect(one(`cpu,host=a,region=eu usage=1.5,count=3i,big=7u,name="x y",up=t ${T}`)).toEqual({
      time: '2026-01-01T00:00:00.000000Z',
      host: 'a',
      region: 'eu',
      usage: 1.5,
      count: 3,
      big: 7,
      name: 'x y',
      up: true,
    });
  });

  test('booleans in all their spellings', () => {
    const spellings = ['t', 'T', 'true', 'True', 'TRUE', 'f', 'F', 'false', 'False', 'FALSE'];
    const rows = parse(spellings.map((b, i) => `m b=${b} ${i}`).join('\n'), 's').m!;
    expect(rows.map((r) => r.b)).toEqual([true, true, true, true, true, false, false, false, false, false]);
  });

  test('floats: integers without a suffix, exponents, signs, leading dot', () => {
    const rows = parse(['m v=1 1', 'm v=-1.25 2', 'm v=1e3 3', 'm v=+2.5E-1 4', 'm v=.5 5', 'm v=-0 6'].join('\n'), 's').m!;
    expect(rows.map((r) => r.v)).toEqual([1, -1.25, 1000, 0.25, 0.5, -0]);
  });

  test('escaped commas, spaces and equals signs in tag values come out as the characters; other backslashes stay', () => {
    expect(one(`m,t=a\\ b\\,c\\=d,u=back\\slash v=1 1`, 's')).toMatchObject({ t: 'a b,c=d', u: 'back\\slash' });
  });

  test('quotes and backslashes in string fields; commas, spaces and = inside quotes', () => {
    expect(one(`m s="say \\"hi\\", a=b c\\\\d\\e" 1`, 's')).toMatchObject({ s: 'say "hi", a=b c\\d\\e' });
    expect(one(`m s="" 1`, 's')).toMatchObject({ s: '' });
    expect(one(`m s="a\\\\" 1`, 's')).toMatchObject({ s: 'a\\' });
  });

  test('comments, blank lines, leading and trailing whitespace, CRLF', () => {
    const text = ['# a comment', '', '   ', `  m v=1 1  `, '\t# indented comment', `m v=2 2\r`, `m v=3\t`, 'm v=4 4 \r', ''].join('\n');
    const rows = parse(text, 's').m!;
    expect(rows.map((r) => r.v)).toEqual([1, 2, 3, 4]);
    expect(rows[2]!.time).toBe('2026-01-01T12:00:00.250000Z');
  });

  test('a missing timestamp is the server time, one for the whole request', () => {
    const rows = parse('m v=1\nm v=2\n').m!;
    expect(rows.map((r) => r.time)).toEqual(['2026-01-01T12:00:00.250000Z', '2026-01-01T12:00:00.250000Z']);
  });

  test('timestamps in every precision, to the microsecond', () => {
    const at = (stamp: string, precision: Precision) => one(`m v=1 ${stamp}`, precision).time;
    expect(at('1767225600123456789', 'ns')).toBe('2026-01-01T00:00:00.123456Z');
    expect(at('1767225600123456', 'us')).toBe('2026-01-01T00:00:00.123456Z');
    for (const stamp of ['1767225600', '1767225600000', '1767225600000000', '1767225600000000000']) expect(at(stamp, 'auto')).toBe('2026-01-01T00:00:00.000000Z');
    expect(at('1767225600123', 'ms')).toBe('2026-01-01T00:00:00.123000Z');
    expect(at('1767225600', 's')).toBe('2026-01-01T00:00:00.000000Z');
    expect(at('29453760', 'm')).toBe('2026-01-01T00:00:00.000000Z');
    expect(at('490896', 'h')).toBe('2026-01-01T00:00:00.000000Z');
    // Before 1970, finer than a microsecond: towards the past.
    expect(at('-1500', 'ns')).toBe('1969-12-31T23:59:59.999998Z');
    expect(at('-1000', 'ns')).toBe('1969-12-31T23:59:59.999999Z');
    expect(at('-500', 'ns')).toBe('1969-12-31T23:59:59.999999Z');
    expect(at('0', 'ns')).toBe('1970-01-01T00:00:00.000000Z');
    // Beyond 2^53 microseconds (year 2255 onwards).
    expect(at('9000000000000000123', 'ns')).toBe('2255-03-14T16:00:00.000000Z');
    expect(at('253402300799999999', 'us')).toBe('9999-12-31T23:59:59.999999Z');
  });

  test('timestamps out of the storable range and not integers are refused with the line', () => {
    expect(refused('m v=1 1\nm v=1 253402300800000000', 'us')).toMatchObject({ code: 'timestamp_out_of_range', details: { line: 2 } });
    expect(refused('m v=1 1.5')).toMatchObject({ code: 'invalid_line_protocol', details: { line: 1 } });
    expect(refused('m v=1 12ab')).toMatchObject({ code: 'invalid_line_protocol' });
    expect(refused('m v=1 1 2')).toMatchObject({ code: 'invalid_line_protocol' });
  });

  test('integers: signed, unsigned, the JSON-safe range', () => {
    expect(one('m a=-5i,b=0u,c=9007199254740991i 1', 's')).toMatchObject({ a: -5, b: 0, c: 9007199254740991 });
    expect(refused('m a=9007199254740992i')).toMatchObject({ code: 'integer_out_of_range', details: { line: 1, field: 'a' } });
    expect(refused('m a=18446744073709551615u')).toMatchObject({ code: 'integer_out_of_range' });
    expect(refused('m a=-1u')).toMatchObject({ code: 'invalid_line_protocol' });
    expect(refused('m a=1.5i')).toMatchObject({ code: 'invalid_line_protocol' });
  });

  test('numbers that are not finite, and words that are no value', () => {
    expect(refused('m v=1e400')).toMatchObject({ code: 'non_finite_number', details: { line: 1 } });
    for (const bad of ['NaN', 'Inf', 'yes', '1e', '--1', '0x10', '1.2.3']) expect(refused(`m v=${bad}`).code).toBe('invalid_line_protocol');
  });

  test('a duplicate field keeps the last value; a duplicate tag is refused', () => {
    expect(one('m,t=a v=1,w=2,v=3 1', 's')).toEqual({ time: '1970-01-01T00:00:01.000000Z', t: 'a', v: 3, w: 2 });
    expect(refused('m,t=a,t=b v=1')).toMatchObject({ code: 'invalid_line_protocol', details: { line: 1 } });
  });

  test('type conflicts between lines are refused with the line number, as InfluxDB does', () => {
    const error = refused(`m v=1 1\n\nm v=2i 2\n`);
    expect(error).toMatchObject({ status: 400, code: 'field_type_conflict', details: { line: 3, field: 'v', type: 'integer', earlierType: 'double', earlierLine: 1 } });
    expect(refused('m v=1\nm v="x"')).toMatchObject({ code: 'field_type_conflict', details: { line: 2 } });
    // Another measurement is another dataset: the same key may have another type there.
    expect(parse('m v=1 1\nn v="x" 1', 's')).toEqual({ m: [{ time: '1970-01-01T00:00:01.000000Z', v: 1 }], n: [{ time: '1970-01-01T00:00:01.000000Z', v: 'x' }] });
    expect(refused('m,v=a x=1\nm v="a"')).toMatchObject({ code: 'invalid_line_protocol', details: { line: 2 } });
  });

  test('several measurements; rows missing a key leave it out', () => {
    const rows = parse(['cpu,host=a u=1 1', 'mem,host=a free=2i 1', 'cpu,host=b s=2 2', 'cpu u=3 3'].join('\n'), 's');
    expect(rows).toEqual({
      cpu: [
        { time: '1970-01-01T00:00:01.000000Z', host: 'a', u: 1 },
        { time: '1970-01-01T00:00:02.000000Z', host: 'b', s: 2 },
        { time: '1970-01-01T00:00:03.000000Z', u: 3 },
      ],
      mem: [{ time: '1970-01-01T00:00:01.000000Z', host: 'a', free: 2 }],
    });
    const cpu = [...parseLineProtocol(['cpu,host=a u=1 1', 'cpu,host=b s=2 2', 'cpu u=3 3'].join('\n'), 's', NOW).values()][0]!;
    const gaps = Object.fromEntries([...cpu.columns.values()].map((c) => [c.name, { tag: c.tag, firstGap: c.firstGap, firstLine: c.firstLine }]));
    expect(gaps).toEqual({ host: { tag: true, firstGap: 2, firstLine: 1 }, u: { tag: false, firstGap: 1, firstLine: 1 }, s: { tag: false, firstGap: 0, firstLine: 2 } });
    expect(cpu.lines).toEqual([1, 2, 3]);
    expect([cpu.minTime, cpu.maxTime]).toEqual([1000, 3000]);
  });

  test('syntax errors name the line', () => {
    for (const [text, line] of [
      ['m', 1],
      ['m\n', 1],
      ['m,t=a', 1],
      ['ok v=1\nm,t v=1', 2],
      ['m,t= v=1', 1],
      ['m,t=a=b v=1', 1],
      ['m v', 1],
      ['m v=', 1],
      ['m v=1,', 1],
      ['m v="open', 1],
      ['m v="a"b', 1],
      ['m ', 1],
      ['# c\n\nm v=1 1 x', 3],
    ] as const) {
      const error = refused(text);
      expect(error.code, text).toBe('invalid_line_protocol');
      expect((error.details as { line: number }).line, text).toBe(line);
    }
  });

  test('lines that repeat the previous line\'s keys give the rows each line gives alone', () => {
    // Lines repeating a layout take a shorter path; values it does not take (escapes, other number
    // forms, a key in another place, a field given twice) must come out as they do on their own.
    const lines = [
      `cpu,host=a,rack=1 u=1.5,v=2 ${T}`,
      `cpu,host=b,rack=2 u=-0.25,v=3 ${T}`,
      `cpu,host=c\\ d,rack=q"t u=007,v=.5 ${T}`,
      `cpu,host=é,rack=3 u=1e3,v=-0 ${T}`,
      `cpu,host=e,rack=4 v=4,u=5 1767225600000001000`,
      `cpu,host=f,rack=5 u=6,v=7,u=8`,
      `cpu,host=g,rack=6 u=9,v=10 1767225600000002000`,
    ];
    const together = parse(lines.join('\n')).cpu!;
    expect(together).toEqual(lines.map((line) => one(line)));
    expect(together[2]).toMatchObject({ host: 'c d', rack: 'q"t', u: 7, v: 0.5 });
    expect(together[5]).toMatchObject({ u: 8, v: 7 });
  });

  test('a conflict on a line that repeats the previous line\'s keys is still refused with its line', () => {
    expect(refused(`m,t=a v=1 1\nm,t=b v=2 2\nm,t=c v=3i 3`)).toMatchObject({ code: 'field_type_conflict', details: { line: 3, field: 'v' } });
    expect(refused(`m,t=a v=1 1\nm,t=b,t=c v=2 2`)).toMatchObject({ code: 'invalid_line_protocol', details: { line: 2 } });
    expect(refused(`m,t=a v=1 1\nm,t=b=c v=2 2`)).toMatchObject({ code: 'invalid_line_protocol', details: { line: 2 } });
    expect(refused(`m,t=a v=1 1\nm,t=b v=1x 2`)).toMatchObject({ code: 'invalid_line_protocol', details: { line: 2 } });
  });

  test('bodies as bytes: a byte-order mark is skipped, bytes that are not UTF-8 are refused', () => {
    const bytes = (...parts: (string | number[])[]) => new Uint8Array(parts.flatMap((p) => (typeof p === 'string' ? [...new TextEncoder().encode(p)] : p)));
    const [rows] = [...parseLineProtocol(bytes([0xef, 0xbb, 0xbf], 'm v=1 1'), 's', NOW).values()];
    expect(objects(rows!)).toEqual([{ time: '1970-01-01T00:00:01.000000Z', v: 1 }]);
    expect(refusal(() => parseLineProtocol(bytes('m,t=', [0xff], ' v=1'), 's', NOW)).code).toBe('invalid_encoding');
  });

  test('the staged rows name the dataset\'s timestamp column', () => {
    const [rows] = [...parseLineProtocol(`m,t=a v=1 1\nm,t=b v=2 2`, 's', NOW).values()];
    const staged = new TextDecoder().decode(stagedNdjson(rows!, 'ts')).trimEnd().split('\n').map((line) => JSON.parse(line));
    expect(staged).toEqual([
      { ts: '1970-01-01T00:00:01.000000Z', t: 'a', v: 1 },
      { ts: '1970-01-01T00:00:02.000000Z', t: 'b', v: 2 },
    ]);
  });

  test('names that cannot be datasets or columns', () => {
    expect(refused('my\\,m v=1')).toMatchObject({ code: 'invalid_line_protocol', details: { measurement: 'my,m' } });
    expect(refused('m\\ x v=1')).toMatchObject({ code: 'invalid_line_protocol', details: { measurement: 'm x' } });
    expect(refused('m,host-name=a v=1')).toMatchObject({ code: 'invalid_field_name', details: { line: 1, field: 'host-name' } });
    expect(refused('m f\\=x=1')).toMatchObject({ code: 'invalid_field_name', details: { field: 'f=x' } });
    expect(refused('m v="a\0b"')).toMatchObject({ code: 'nul_character' });
  });
});
