/**
 * The partition writer: staged inputs → one sorted LZ4_RAW Parquet v2 file per (partition key, window),
 * through the real worker pool; the files are read back with DuckDB in the test thread.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { extractDuckDBLibrary, loadDuckDB } from '../../src/engine/duckdb-runtime.ts';
import {
  type PartitionField,
  type StagedInput,
  type WritePartitionsInput,
  type WrittenPartition,
  readCsvHeader,
  writePartitions,
} from '../../src/engine/partition-writer.ts';
import { WorkerPool } from '../../src/engine/pool.ts';
import { runQuery } from '../../src/engine/query.ts';

let dir: string;
let pool: WorkerPool;
let db: DuckDBConnection;
let caseNo = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'timestore-partition-writer-'));
  pool = await WorkerPool.start(1, join(dir, 'runtime'));
  const { DuckDBInstance } = await loadDuckDB(await extractDuckDBLibrary(join(dir, 'runtime')));
  db = await (await DuckDBInstance.create(':memory:', { threads: '1' })).connect();
});

afterAll(async () => {
  await pool?.close();
  db?.closeSync();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory with the staged files of one case, and an empty output directory. */
function stage(files: Record<string, string>): { paths: Record<string, string>; outputDir: string } {
  const caseDir = join(dir, `case-${++caseNo}`);
  const outputDir = join(caseDir, 'out');
  mkdirSync(outputDir, { recursive: true });
  const paths: Record<string, string> = {};
  for (const [name, text] of Object.entries(files)) {
    paths[name] = join(caseDir, name);
    writeFileSync(paths[name], text);
  }
  return { paths, outputDir };
}

const document = (rows: object[], indent?: number) =>
  JSON.stringify({ schema: { fields: [{ name: 'x', type: 'string' }] }, partition: { key: { ignored: 'yes' } }, rows }, null, indent);
const ndjson = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

/** The rows of a Parquet file in file order; timestamps as ISO UTC with microseconds, integers as bigint. */
async function readParquet(path: string, fields: PartitionField[]): Promise<Record<string, unknown>[]> {
  const select = fields
    .map((f) =>
      f.type === 'timestamp' ? `strftime("${f.name}" AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') AS "${f.name}"` : `"${f.name}"`,
    )
    .join(', ');
  const reader = await db.runAndReadAll(`SELECT ${select} FROM read_parquet($path)`, { path });
  return reader.getRowObjectsJS() as Record<string, unknown>[];
}

async function parquetTypes(path: string): Promise<Record<string, string>> {
  const reader = await db.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet($path)`, { path });
  return Object.fromEntries(reader.getRowObjectsJS().map((r) => [String(r.column_name), String(r.column_type)]));
}

function sha256(path: string): string {
  return `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
}

const FIELDS: PartitionField[] = [
  { name: 'time', type: 'timestamp' },
  { name: 'host', type: 'string' },
  { name: 'value', type: 'double', nullable: true },
  { name: 'count', type: 'integer', nullable: true },
  { name: 'ok', type: 'boolean', nullable: true },
  { name: 'note', type: 'string', nullable: true },
];

describe('writePartitions through the worker pool', () => {
  const rows = [
    // deliberately not in time order; `extra` and `unknown` are not fields
    { time: '2025-12-31T23:30:00-05:00', host: `quote's "dq"`, value: 12345.678, count: 42, ok: true, note: '' },
    { time: '2026-01-01T02:00:00.123+02:00', host: 'b', value: -0.25, count: -9007199254740991, ok: false, note: null, unknown: 1 },
    { time: '2026-01-01T03:04:05.123456', host: 'c', value: 1e-300, count: 0, ok: null, extra: { nested: [1, 2] } }, // note missing
    { time: '2026-01-01T00:00:00Z', host: 'a', value: 1.5, count: 9007199254740991, ok: true, note: 'héllo wörld 😀 日本語' },
  ];
  const expected = [
    { time: '2026-01-01T00:00:00.000000Z', host: 'a', value: 1.5, count: 9007199254740991n, ok: true, note: 'héllo wörld 😀 日本語' },
    { time: '2026-01-01T00:00:00.123000Z', host: 'b', value: -0.25, count: -9007199254740991n, ok: false, note: null },
    { time: '2026-01-01T03:04:05.123456Z', host: 'c', value: 1e-300, count: 0n, ok: null, note: null },
    { time: '2026-01-01T04:30:00.000000Z', host: `quote's "dq"`, value: 12345.678, count: 42n, ok: true, note: '' },
  ];

  for (const [label, indent] of [
    ['on one line', undefined],
    ['pretty-printed', 2],
  ] as const) {
    test(`a json-document input (${label}) reads back row for row, sorted by time, with its statistics`, async () => {
      const { paths, outputDir } = stage({ 'body.json': document(rows, indent) });
      const result = await pool.writePartitions({
        inputs: [{ path: paths['body.json']!, format: 'json-document', partitionKey: { instrument: 'A' } }],
        fields: FIELDS,
        timestampColumn: 'time',
        windowSeconds: 86400,
        outputDir,
      });
      expect(result).toHaveLength(1);
      const [file] = result as [WrittenPartition];
      expect(file.path).toMatch(new RegExp(`^${outputDir}/[0-9a-f-]{36}\\.parquet$`));
      expect(readdirSync(outputDir)).toEqual([file.path.slice(outputDir.length + 1)]);
      expect(await readParquet(file.path, FIELDS)).toEqual(expected);
      expect(await parquetTypes(file.path)).toEqual({
        time: 'TIMESTAMP WITH TIME ZONE',
        host: 'VARCHAR',
        value: 'DOUBLE',
        count: 'BIGINT',
        ok: 'BOOLEAN',
        note: 'VARCHAR',
      });
      const codecs = await db.runAndReadAll(`SELECT DISTINCT compression FROM parquet_metadata($path)`, { path: file.path });
      expect(codecs.getRows()).toEqual([['LZ4_RAW']]);
      expect(file).toEqual({
        path: file.path,
        partitionKey: { instrument: 'A' },
        windowStart: '2026-01-01T00:00:00.000000Z',
        startTime: '2026-01-01T00:00:00.000000Z',
        endTime: '2026-01-01T04:30:00.000000Z',
        rowCount: 4,
        sizeBytes: statSync(file.path).size,
        checksum: sha256(file.path),
        columnStatistics: {
          time: { min: '2026-01-01T00:00:00.000000Z', max: '2026-01-01T04:30:00.000000Z', nulls: 0 },
          host: { min: 'a', max: `quote's "dq"`, nulls: 0 },
          value: { min: -0.25, max: 12345.678, nulls: 0 },
          count: { min: -9007199254740991, max: 9007199254740991, nulls: 0 },
          ok: { min: false, max: true, nulls: 1 },
          note: { min: '', max: 'héllo wörld 😀 日本語', nulls: 2 },
        },
      });
    });
  }

  test('several inputs, two partition keys, two days → four files with the right rows', async () => {
    const fields: PartitionField[] = [
      { name: 'ts', type: 'timestamp' },
      { name: 'price', type: 'double' },
      { name: 'seq', type: 'integer' },
    ];
    const row = (ts: string, seq: number) => ({ ts, price: seq / 4, seq });
    const { paths, outputDir } = stage({
      'a1.json': document([row('2026-03-02T10:00:00Z', 3), row('2026-03-01T23:59:59.999999Z', 2), row('2026-03-01T00:00:00Z', 1)]),
      'b1.json': document([row('2026-03-02T00:00:00Z', 11), row('2026-03-01T12:00:00Z', 10)]),
      'a2.json': document([row('2026-03-02T01:00:00+02:00', 4), row('2026-03-02T23:00:00Z', 5)]),
      'b2.ndjson': ndjson([row('2026-03-01T06:00:00Z', 9), row('2026-03-02T18:00:00Z', 12)]),
    });
    const keyA = { instrument: 'A', venue: 'X' };
    const result = await pool.writePartitions({
      inputs: [
        { path: paths['a1.json']!, format: 'json-document', partitionKey: keyA },
        { path: paths['b1.json']!, format: 'json-document', partitionKey: { instrument: 'B', venue: 'X' } },
        // the same key with its entries in another order
        { path: paths['a2.json']!, format: 'json-document', partitionKey: { venue: 'X', instrument: 'A' } },
        { path: paths['b2.ndjson']!, format: 'ndjson', partitionKey: { instrument: 'B', venue: 'X' } },
      ],
      fields,
      timestampColumn: 'ts',
      windowSeconds: 86400,
      outputDir,
    });
    expect(readdirSync(outputDir).sort()).toEqual(result.map((f) => f.path.slice(outputDir.length + 1)).sort());
    const summary = await Promise.all(
      result.map(async (f) => ({
        key: f.partitionKey.instrument,
        window: f.windowStart,
        seq: (await readParquet(f.path, fields)).map((r) => Number(r.seq)),
        rowCount: f.rowCount,
        startTime: f.startTime,
        endTime: f.endTime,
        seqStats: f.columnStatistics.seq,
        checksum: f.checksum === sha256(f.path),
      })),
    );
    expect(summary).toEqual([
      // seq 4 is 2026-03-02T01:00:00+02:00, i.e. still 1 March in UTC
      { key: 'A', window: '2026-03-01T00:00:00.000000Z', seq: [1, 4, 2], rowCount: 3, startTime: '2026-03-01T00:00:00.000000Z', endTime: '2026-03-01T23:59:59.999999Z', seqStats: { min: 1, max: 4, nulls: 0 }, checksum: true },
      { key: 'A', window: '2026-03-02T00:00:00.000000Z', seq: [3, 5], rowCount: 2, startTime: '2026-03-02T10:00:00.000000Z', endTime: '2026-03-02T23:00:00.000000Z', seqStats: { min: 3, max: 5, nulls: 0 }, checksum: true },
      { key: 'B', window: '2026-03-01T00:00:00.000000Z', seq: [9, 10], rowCount: 2, startTime: '2026-03-01T06:00:00.000000Z', endTime: '2026-03-01T12:00:00.000000Z', seqStats: { min: 9, max: 10, nulls: 0 }, checksum: true },
      { key: 'B', window: '2026-03-02T00:00:00.000000Z', seq: [11, 12], rowCount: 2, startTime: '2026-03-02T00:00:00.000000Z', endTime: '2026-03-02T18:00:00.000000Z', seqStats: { min: 11, max: 12, nulls: 0 }, checksum: true },
    ]);
    expect(result[0]!.partitionKey).toEqual(keyA);
    expect(result[1]!.columnStatistics.price).toEqual({ min: 0.75, max: 1.25, nulls: 0 });
  });

  test('ndjson and csv inputs; csv columns in any order, extra columns ignored, quoting and nulls', async () => {
    const { paths, outputDir } = stage({
      'rows.ndjson': ndjson([
        { time: '2026-01-01T00:00:01Z', host: 'n1', value: 2, count: 7, ok: true, note: 'x', unknown: [1] },
        { time: '2026-01-01T00:00:02.5+00:00', host: 'n2' },
      ]),
      'rows.csv':
        'extra,note,ok,count,value,host,time\n' +
        'zz,"a, ""quoted"" note",false,-3,0.5,c1,2026-01-01T00:00:03Z\n' +
        ',"two\nlines",,,,c2,2026-01-01T02:00:04+02:00\n' +
        'q,"",true,9007199254740991,1e3,"c3",2026-01-01T00:00:05.25\n',
      'crlf.csv': 'time,host\r\n2026-01-01T00:00:06Z,crlf\r\n',
    });
    const result = await pool.writePartitions({
      inputs: [
        { path: paths['rows.csv']!, format: 'csv', partitionKey: {} },
        { path: paths['rows.ndjson']!, format: 'ndjson', partitionKey: {} },
        { path: paths['crlf.csv']!, format: 'csv', partitionKey: {} },
      ],
      fields: FIELDS,
      timestampColumn: 'time',
      windowSeconds: 3600,
      outputDir,
    });
    expect(result).toHaveLength(1);
    expect(result[0]!.windowStart).toBe('2026-01-01T00:00:00.000000Z');
    expect(await readParquet(result[0]!.path, FIELDS)).toEqual([
      { time: '2026-01-01T00:00:01.000000Z', host: 'n1', value: 2, count: 7n, ok: true, note: 'x' },
      { time: '2026-01-01T00:00:02.500000Z', host: 'n2', value: null, count: null, ok: null, note: null },
      { time: '2026-01-01T00:00:03.000000Z', host: 'c1', value: 0.5, count: -3n, ok: false, note: 'a, "quoted" note' },
      { time: '2026-01-01T00:00:04.000000Z', host: 'c2', value: null, count: null, ok: null, note: 'two\nlines' },
      { time: '2026-01-01T00:00:05.250000Z', host: 'c3', value: 1000, count: 9007199254740991n, ok: true, note: '' },
      { time: '2026-01-01T00:00:06.000000Z', host: 'crlf', value: null, count: null, ok: null, note: null },
    ]);
    expect(result[0]!.columnStatistics.note).toEqual({ min: '', max: 'x', nulls: 2 });
  });

  test('an input of byte ranges reads those bytes only, each range on lines of its own (NDJSON, JSON documents)', async () => {
    const line = (host: string, second: number) => JSON.stringify({ time: `2026-01-01T00:00:0${second}Z`, host });
    // As a staging log holds them: batches one after another, a line break added after one without.
    const batches = [`${line('r1', 1)}\n`, `${line('other batch', 2)}\n`, `${line('r2', 3)}\n${line('r3', 4)}`, '\n', `${line('r4', 5)}\n`];
    const documents = [document([{ time: '2026-01-01T00:00:06Z', host: 'd1' }]), '\n', document([{ time: '2026-01-01T00:00:07Z', host: 'skipped' }]), '\n', document([{ time: '2026-01-01T00:00:08Z', host: 'd2' }], 2)];
    const { paths, outputDir } = stage({ 'log.ndjson': batches.join(''), 'log.json': documents.join('') });
    const rangesOf = (parts: string[], picked: number[]) =>
      picked.map((i) => ({ offset: Buffer.byteLength(parts.slice(0, i).join('')), length: Buffer.byteLength(parts[i]!) }));
    const result = await pool.writePartitions({
      inputs: [
        { path: paths['log.ndjson']!, format: 'ndjson', partitionKey: {}, ranges: rangesOf(batches, [0, 2, 4]) },
        { path: paths['log.json']!, format: 'json-document', partitionKey: {}, ranges: rangesOf(documents, [0, 4]) },
      ],
      fields: FIELDS,
      timestampColumn: 'time',
      windowSeconds: 3600,
      outputDir,
    });
    expect(result).toHaveLength(1);
    expect((await readParquet(result[0]!.path, FIELDS)).map((r) => r.host)).toEqual(['r1', 'r2', 'r3', 'r4', 'd1', 'd2']);
  });

  test('a field that older staged inputs lack is written as nulls', async () => {
    const fields: PartitionField[] = [...FIELDS.slice(0, 2), { name: 'added_later', type: 'double', nullable: true }];
    const { paths, outputDir } = stage({
      'old.json': document([{ time: '2026-01-01T00:00:00Z', host: 'old' }]),
      'old.ndjson': ndjson([{ time: '2026-01-01T00:00:01Z', host: 'old-nd' }]),
      'old.csv': 'time,host\n2026-01-01T00:00:02Z,old-csv\n',
      'new.json': document([{ time: '2026-01-01T00:00:03Z', host: 'new', added_later: 1.25 }]),
    });
    const inputs: StagedInput[] = [
      { path: paths['old.json']!, format: 'json-document', partitionKey: { k: 'v' } },
      { path: paths['old.ndjson']!, format: 'ndjson', partitionKey: { k: 'v' } },
      { path: paths['old.csv']!, format: 'csv', partitionKey: { k: 'v' } },
      { path: paths['new.json']!, format: 'json-document', partitionKey: { k: 'v' } },
    ];
    const [file, ...rest] = await pool.writePartitions({ inputs, fields, timestampColumn: 'time', windowSeconds: 86400, outputDir });
    expect(rest).toEqual([]);
    expect((await readParquet(file!.path, fields)).map((r) => [r.host, r.added_later])).toEqual([
      ['old', null],
      ['old-nd', null],
      ['old-csv', null],
      ['new', 1.25],
    ]);
    expect(file!.columnStatistics.added_later).toEqual({ min: 1.25, max: 1.25, nulls: 3 });
  });

  test("an input's own fields: a key it carried as an unknown field is not read into a field of that name added since", async () => {
    const fields: PartitionField[] = [...FIELDS.slice(0, 2), { name: 'x', type: 'double', nullable: true }];
    const { paths, outputDir } = stage({
      'old.json': document([{ time: '2026-01-01T00:00:00Z', host: 'old', x: 'not a number' }]),
      'old.ndjson': ndjson([{ time: '2026-01-01T00:00:01Z', host: 'old-nd', x: { nested: true } }]),
      'old.csv': 'time,host,x\n2026-01-01T00:00:02Z,old-csv,text\n',
      'new.json': document([{ time: '2026-01-01T00:00:03Z', host: 'new', x: 1.25 }]),
    });
    const own = ['time', 'host'];
    const inputs: StagedInput[] = [
      { path: paths['old.json']!, format: 'json-document', partitionKey: { k: 'v' }, fields: own },
      { path: paths['old.ndjson']!, format: 'ndjson', partitionKey: { k: 'v' }, fields: own },
      { path: paths['old.csv']!, format: 'csv', partitionKey: { k: 'v' }, fields: own },
      { path: paths['new.json']!, format: 'json-document', partitionKey: { k: 'v' } },
    ];
    const [file, ...rest] = await pool.writePartitions({ inputs, fields, timestampColumn: 'time', windowSeconds: 86400, outputDir });
    expect(rest).toEqual([]);
    expect((await readParquet(file!.path, fields)).map((r) => [r.host, r.x])).toEqual([
      ['old', null],
      ['old-nd', null],
      ['old-csv', null],
      ['new', 1.25],
    ]);
    await expect(
      pool.writePartitions({ inputs: [{ ...inputs[0]!, fields: ['host'] }], fields, timestampColumn: 'time', windowSeconds: 86400, outputDir }),
    ).rejects.toThrow(/includes the timestamp column/);
  });

  test('an unreadable input fails with an error naming the file, and leaves no file behind', async () => {
    const { paths, outputDir } = stage({
      'good.json': document([{ time: '2026-01-01T00:00:00Z', host: 'a' }]),
      'broken.json': '{"rows": [{"time": "2026-01-01T00:00:00Z", "host": "a"},',
      'wrong-type.ndjson': ndjson([{ time: '2026-01-01T00:00:00Z', host: 'a', value: 'not a number' }]),
      'bad-time.csv': 'time,host\nyesterday,a\n',
    });
    const base = { fields: FIELDS, timestampColumn: 'time', windowSeconds: 86400, outputDir };
    const good: StagedInput = { path: paths['good.json']!, format: 'json-document', partitionKey: {} };
    const cases: [StagedInput, RegExp][] = [
      [{ path: paths['broken.json']!, format: 'json-document', partitionKey: {} }, /cannot read staged json-document input .*broken\.json: .*JSON/i],
      [{ path: paths['wrong-type.ndjson']!, format: 'ndjson', partitionKey: {} }, /cannot read staged ndjson input .*wrong-type\.ndjson: /],
      [{ path: paths['bad-time.csv']!, format: 'csv', partitionKey: {} }, /cannot read staged csv input .*bad-time\.csv: .*yesterday/],
      [{ path: join(outputDir, 'missing.ndjson'), format: 'ndjson', partitionKey: {} }, /cannot read staged ndjson input .*missing\.ndjson: .*(ENOENT|No such file)/],
      [{ path: join(outputDir, 'missing.csv'), format: 'csv', partitionKey: {} }, /cannot read staged csv input .*missing\.csv: /],
    ];
    for (const [bad, message] of cases) {
      await expect(pool.writePartitions({ ...base, inputs: [good, bad] })).rejects.toThrow(message);
      expect(readdirSync(outputDir)).toEqual([]);
    }
    // the thread's DuckDB is still fine afterwards
    expect(await pool.writePartitions({ ...base, inputs: [good] })).toHaveLength(1);
  });

  test('invalid input is refused before DuckDB sees it', async () => {
    const { outputDir } = stage({});
    const base: WritePartitionsInput = { inputs: [], fields: FIELDS, timestampColumn: 'time', windowSeconds: 86400, outputDir };
    await expect(pool.writePartitions({ ...base, fields: [...FIELDS, { name: 'x"; DROP TABLE t; --', type: 'string' }] })).rejects.toThrow(
      /field name .* is not a valid identifier/,
    );
    await expect(pool.writePartitions({ ...base, fields: [...FIELDS, { name: 'Host', type: 'string' }] })).rejects.toThrow(/appears twice/);
    await expect(pool.writePartitions({ ...base, timestampColumn: 'host' })).rejects.toThrow(/must be a field of type timestamp/);
    await expect(pool.writePartitions({ ...base, windowSeconds: 0.5 })).rejects.toThrow(/windowSeconds/);
    await expect(pool.writePartitions({ ...base, outputDir: join(outputDir, 'nope') })).rejects.toThrow(/not an existing directory/);
    expect(await pool.writePartitions(base)).toEqual([]);
  });

  test('speed: 100k rows × 12 columns, json-document → Parquet (printed, not asserted)', async () => {
    const { file, fields } = benchDocument(100_000, 'bench-100k.json');
    const { outputDir } = stage({});
    await pool.ping(); // the thread's DuckDB is open
    const started = performance.now();
    const result = await pool.writePartitions({
      inputs: [{ path: file, format: 'json-document', partitionKey: { source: 'bench' } }],
      fields,
      timestampColumn: 'time',
      windowSeconds: 86400,
      outputDir,
    });
    const ms = performance.now() - started;
    console.log(
      `partition writer: 100k rows (${(statSync(file).size / 2 ** 20).toFixed(1)} MiB json-document) → ${result.length} file(s), ` +
        `${(result[0]!.sizeBytes / 2 ** 20).toFixed(1)} MiB Parquet in ${ms.toFixed(0)} ms = ${Math.round(100_000 / (ms / 1000))} rows/s`,
    );
    expect(result.reduce((n, f) => n + f.rowCount, 0)).toBe(100_000);
  });

  test.skipIf(!process.env.TIMESTORE_BENCH)('speed: 1M rows × 12 columns as 10 json-documents (TIMESTORE_BENCH=1)', async () => {
    const inputs: StagedInput[] = [];
    let fields: PartitionField[] = [];
    for (let i = 0; i < 10; i++) {
      const doc = benchDocument(100_000, `bench-1m-${i}.json`, i);
      fields = doc.fields;
      inputs.push({ path: doc.file, format: 'json-document', partitionKey: { source: 'bench' } });
    }
    const { outputDir } = stage({});
    const started = performance.now();
    const result = await pool.writePartitions({ inputs, fields, timestampColumn: 'time', windowSeconds: 86400, outputDir });
    const ms = performance.now() - started;
    console.log(`partition writer: 1M rows → ${result.length} file(s) in ${ms.toFixed(0)} ms = ${Math.round(1_000_000 / (ms / 1000))} rows/s`);
    expect(result.reduce((n, f) => n + f.rowCount, 0)).toBe(1_000_000);
  }, 120_000);
});

/** A metrics-like json-document of `n` rows × 12 columns (random walks, 100 hosts, one row per host per second). */
function benchDocument(n: number, name: string, part = 0): { file: string; fields: PartitionField[] } {
  const fields: PartitionField[] = [
    { name: 'time', type: 'timestamp' },
    { name: 'host', type: 'string' },
    { name: 'region', type: 'string' },
    ...['cpu_user', 'cpu_system', 'cpu_idle', 'mem_used', 'disk_io', 'net_in'].map((name) => ({ name, type: 'double' as const })),
    { name: 'requests', type: 'integer' },
    { name: 'errors', type: 'integer' },
    { name: 'healthy', type: 'boolean' },
  ];
  let x = (part + 1) * 2654435761 || 1;
  const random = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
  const walk = Array.from({ length: 100 }, () => [50, 5, 40, 32e9, 500, 5e5]);
  const start = Date.UTC(2026, 0, 1) + part * n * 10;
  const rows = [];
  for (let i = 0; i < n; i++) {
    const w = walk[i % 100]!;
    for (let j = 0; j < w.length; j++) w[j] = Math.abs(w[j]! + (random() - 0.5) * w[j]! * 0.02);
    rows.push({
      time: new Date(start + Math.floor(i / 100) * 1000).toISOString(),
      host: `host_${i % 100}`,
      region: ['eu-west-1', 'us-east-1', 'ap-south-1'][i % 3],
      cpu_user: Math.round(w[0]! * 100) / 100,
      cpu_system: Math.round(w[1]! * 100) / 100,
      cpu_idle: w[2],
      mem_used: Math.round(w[3]!),
      disk_io: w[4],
      net_in: w[5],
      requests: Math.floor(random() * 1e6),
      errors: Math.floor(random() * 3),
      healthy: random() > 0.1,
    });
  }
  const file = join(dir, name);
  writeFileSync(file, document(rows));
  return { file, fields };
}

describe('writePartitions on a connection (cleanup, time zones, edges)', () => {
  test('temp tables are dropped and the session time zone restored, after success and after failure', async () => {
    const { paths, outputDir } = stage({
      'rows.csv': 'time,host\n2026-01-01T00:00:00,a\n',
      'broken.ndjson': '{"time": \n',
    });
    await db.run(`SET TimeZone = 'America/New_York'`);
    const tables = async () => Number((await db.runAndReadAll(`SELECT count(*) FROM duckdb_tables()`)).getRows()[0]![0]);
    const before = await tables();
    const base = { fields: FIELDS, timestampColumn: 'time', windowSeconds: 86400, outputDir };
    const [file] = await writePartitions(db, { ...base, inputs: [{ path: paths['rows.csv']!, format: 'csv', partitionKey: {} }] });
    // no offset means UTC, whatever the session's time zone
    expect(file!.startTime).toBe('2026-01-01T00:00:00.000000Z');
    expect(await tables()).toBe(before);
    await expect(
      writePartitions(db, { ...base, inputs: [{ path: paths['broken.ndjson']!, format: 'ndjson', partitionKey: {} }] }),
    ).rejects.toThrow(/broken\.ndjson/);
    expect(await tables()).toBe(before);
    expect((await db.runAndReadAll(`SELECT current_setting('TimeZone')`)).getRows()).toEqual([['America/New_York']]);
    await db.run(`SET TimeZone = 'UTC'`);
  });

  test('sort columns order rows before the time, in row groups of 16 Ki rows; unknown ones are left out', async () => {
    const hosts = ['c', 'a', 'b'];
    const rows = Array.from({ length: 40_000 }, (_, i) => ({
      time: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
      host: hosts[i % 3]!,
      value: i,
    }));
    const { paths, outputDir } = stage({ 'rows.ndjson': ndjson(rows) });
    const [file] = await writePartitions(db, {
      inputs: [{ path: paths['rows.ndjson']!, format: 'ndjson', partitionKey: {} }],
      fields: FIELDS,
      timestampColumn: 'time',
      windowSeconds: 86400,
      outputDir,
      // `region` is in no field (a batch of an older schema version); the timestamp is always last.
      sortColumns: ['host', 'region', 'time'],
    });
    const back = await readParquet(file!.path, FIELDS.slice(0, 3));
    const expected = [...rows].sort((x, y) => (x.host < y.host ? -1 : x.host > y.host ? 1 : x.time < y.time ? -1 : 1));
    expect(back.map((r) => [r.host, r.value])).toEqual(expected.map((r) => [r.host, r.value]));
    const groups = await db.runAndReadAll(
      `SELECT row_group_num_rows, stats_min, stats_max FROM parquet_metadata($path) WHERE path_in_schema = 'host' ORDER BY row_group_id`,
      { path: file!.path },
    );
    const meta = groups.getRows().map(([n, min, max]) => [Number(n), String(min), String(max)]);
    expect(meta.map(([n]) => n)).toEqual([16_384, 16_384, 40_000 - 2 * 16_384]);
    // Each host's rows sit in at most two row groups, whose statistics let a host filter skip the rest.
    expect(meta.filter(([, min, max]) => String(min) <= 'a' && 'a' <= String(max))).toHaveLength(1);
  });

  test('sortByDistinctValues orders the sort columns by their distinct values, most first', async () => {
    // `note` has 2 values, `host` 500: rows come out by host, then note, then time, whatever the given order.
    const rows = Array.from({ length: 5_000 }, (_, i) => ({
      time: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString(),
      host: `h${String(i % 500).padStart(3, '0')}`,
      note: i % 2 ? 'odd' : 'even',
    }));
    const { paths, outputDir } = stage({ 'rows.ndjson': ndjson(rows) });
    const write = (sortByDistinctValues: boolean) =>
      writePartitions(db, {
        inputs: [{ path: paths['rows.ndjson']!, format: 'ndjson', partitionKey: {} }],
        fields: FIELDS,
        timestampColumn: 'time',
        windowSeconds: 86400,
        outputDir,
        sortColumns: ['note', 'host'],
        sortByDistinctValues,
      });
    const order = async (path: string) => (await readParquet(path, FIELDS)).map((r) => [r.host, r.note, Date.parse(String(r.time))]);
    const key = (r: (typeof rows)[number]) => [r.host, r.note, Date.parse(r.time)];
    const byHost = [...rows].sort((x, y) => (x.host < y.host ? -1 : x.host > y.host ? 1 : Date.parse(x.time) - Date.parse(y.time))).map(key);
    expect(await order((await write(true))[0]!.path)).toEqual(byHost);
    const asGiven = (await order((await write(false))[0]!.path)).map(([, note]) => note);
    expect(asGiven.slice(0, 2_500).every((note) => note === 'even')).toBe(true);
  });

  test("a write runs under the instance's memory limit, not the one a query before it left", async () => {
    const limit = async () => String((await db.runAndReadAll(`SELECT current_setting('memory_limit')`)).getRows()[0]![0]);
    // The instance's own limit: 80 % of the machine's memory, some GiB (read back rounded, so matched loosely).
    const own = /^\d+(\.\d)? GiB$/;
    expect(await limit()).toMatch(own);
    const { paths, outputDir } = stage({ 'rows.csv': 'time,host\n2026-01-01T00:00:00,a\n' });
    const [file] = await writePartitions(db, {
      fields: FIELDS, timestampColumn: 'time', windowSeconds: 86400, outputDir,
      inputs: [{ path: paths['rows.csv']!, format: 'csv', partitionKey: {} }],
    });
    const query = { files: [file!.path], fields: FIELDS, timestampColumn: 'time', timeRange: { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' }, filters: [], mode: { kind: 'raw' as const, columns: ['host'], order: 'asc' as const, limit: 10 }, timeoutMs: 10_000 };
    expect((await runQuery(db, { ...query, memoryLimitBytes: 64 * 1024 * 1024 })).rows).toHaveLength(1);
    expect(await limit()).toBe('64.0 MiB'); // left for the next query: switching costs time
    const again = stage({ 'rows.csv': 'time,host\n2026-01-02T00:00:00,b\n' });
    await writePartitions(db, { fields: FIELDS, timestampColumn: 'time', windowSeconds: 86400, outputDir: again.outputDir, inputs: [{ path: again.paths['rows.csv']!, format: 'csv', partitionKey: {} }] });
    expect(await limit()).toMatch(own);
    expect((await runQuery(db, { ...query, memoryLimitBytes: 64 * 1024 * 1024 })).rows).toHaveLength(1);
    expect(await limit()).toBe('64.0 MiB');
    expect((await runQuery(db, query)).rows).toHaveLength(1);
    expect(await limit()).toMatch(own);
  });

  test('windows are aligned to the epoch, also before 1970 and for hour windows', async () => {
    const fields: PartitionField[] = [{ name: 't', type: 'timestamp' }];
    const { paths, outputDir } = stage({
      'rows.ndjson': ndjson([{ t: '1969-12-31T23:59:59.5Z' }, { t: '1970-01-01T00:00:00Z' }, { t: '2026-05-05T05:59:59.999999Z' }]),
    });
    const result = await writePartitions(db, {
      inputs: [{ path: paths['rows.ndjson']!, format: 'ndjson', partitionKey: {} }],
      fields,
      timestampColumn: 't',
      windowSeconds: 3600,
      outputDir,
    });
    expect(result.map((f) => [f.windowStart, f.startTime, f.rowCount])).toEqual([
      ['1969-12-31T23:00:00.000000Z', '1969-12-31T23:59:59.500000Z', 1],
      ['1970-01-01T00:00:00.000000Z', '1970-01-01T00:00:00.000000Z', 1],
      ['2026-05-05T05:00:00.000000Z', '2026-05-05T05:59:59.999999Z', 1],
    ]);
  });

  test('long strings: a truncated min and no max in the statistics', async () => {
    const fields: PartitionField[] = [
      { name: 't', type: 'timestamp' },
      { name: 's', type: 'string' },
    ];
    const long = 'b'.repeat(255) + '😀' + 'tail';
    const { paths, outputDir } = stage({ 'rows.ndjson': ndjson([{ t: '2026-01-01T00:00:00Z', s: long }]) });
    const [file] = await writePartitions(db, {
      inputs: [{ path: paths['rows.ndjson']!, format: 'ndjson', partitionKey: {} }],
      fields,
      timestampColumn: 't',
      windowSeconds: 86400,
      outputDir,
    });
    expect(file!.columnStatistics.s).toEqual({ min: 'b'.repeat(255), nulls: 0 });
    expect((await readParquet(file!.path, fields))[0]!.s).toBe(long);
  });

  test('the single-file path and the staging table write the same rows and statistics', async () => {
    // Without a time span the writer tries one COPY per partition key; a span naming two windows
    // sends the same inputs through the staging table. Both must give the same file and numbers.
    const fields: PartitionField[] = [...FIELDS, { name: 'seen', type: 'timestamp', nullable: true }, { name: 'empty', type: 'double', nullable: true }];
    const rows = [
      { time: '1969-12-31T23:59:59.999999Z', host: 'b', value: -0.5, count: -9007199254740991, ok: true, note: 'x'.repeat(300), seen: '0001-01-01T00:00:00Z' },
      { time: '1969-12-31T00:00:00.000001Z', host: 'a', value: 1e300, count: 7, ok: false, note: 'ü€😀', seen: '9999-12-31T23:59:59.999999Z' },
      { time: '1969-12-31T12:00:00+05:00', host: 'é', value: null, count: null, ok: null, note: null, seen: null },
    ];
    const { paths, outputDir } = stage({
      'a.ndjson': ndjson(rows.slice(0, 2)),
      'b.json': document(rows.slice(2)),
      'c.csv': 'host,time,note\nz,1969-12-31T06:00:00Z,"q,""r"""\n',
    });
    const inputs: StagedInput[] = [
      { path: paths['a.ndjson']!, format: 'ndjson', partitionKey: { k: '1' } },
      { path: paths['b.json']!, format: 'json-document', partitionKey: { k: '1' } },
      { path: paths['c.csv']!, format: 'csv', partitionKey: { k: '1' } },
    ];
    const statements: string[] = [];
    const recording = new Proxy(db, {
      get: (target, name) =>
        name === 'run' || name === 'runAndReadAll'
          ? (sql: string, ...rest: unknown[]) => (statements.push(sql), (target[name] as (...a: unknown[]) => unknown).call(target, sql, ...rest))
          : Reflect.get(target, name),
    });
    const write = (spans: boolean) =>
      writePartitions(recording, {
        inputs: inputs.map((i) => (spans ? { ...i, timeSpan: { min: '1969-12-30T00:00:00Z', max: '1970-01-01T00:00:00Z' } } : i)),
        fields,
        timestampColumn: 'time',
        windowSeconds: 86400,
        outputDir,
        sortColumns: ['host'],
      });
    const described = async (files: WrittenPartition[]) =>
      Promise.all(files.map(async ({ path, checksum, ...rest }) => ({ ...rest, rows: await readParquet(path, fields), checksum: checksum === sha256(path) })));
    const direct = await described(await write(false));
    expect(statements.some((sql) => sql.includes('CREATE TEMPORARY TABLE'))).toBe(false);
    const staged = await described(await write(true));
    expect(statements.some((sql) => sql.includes('CREATE TEMPORARY TABLE'))).toBe(true);
    expect(direct).toEqual(staged);
    expect(direct).toHaveLength(1);
    expect(direct[0]!.rows.map((r) => r.host)).toEqual(['a', 'b', 'z', 'é']);
    expect(direct[0]!.columnStatistics).toEqual({
      time: { min: '1969-12-31T00:00:00.000001Z', max: '1969-12-31T23:59:59.999999Z', nulls: 0 },
      host: { min: 'a', max: 'é', nulls: 0 },
      value: { min: -0.5, max: 1e300, nulls: 2 },
      count: { min: -9007199254740991, max: 7, nulls: 2 },
      ok: { min: false, max: true, nulls: 2 },
      note: { min: 'q,"r"', max: 'ü€😀', nulls: 1 },
      seen: { min: '0001-01-01T00:00:00.000000Z', max: '9999-12-31T23:59:59.999999Z', nulls: 2 },
      empty: { min: null, max: null, nulls: 4 },
    });
  });

  test('rows of one key that span two windows, with no time span given, are split all the same', async () => {
    const { paths, outputDir } = stage({ 'a.ndjson': ndjson([{ time: '2026-01-01T23:00:00Z', host: 'a' }, { time: '2026-01-02T01:00:00Z', host: 'a' }]) });
    const files = await writePartitions(db, {
      inputs: [{ path: paths['a.ndjson']!, format: 'ndjson', partitionKey: {} }],
      fields: FIELDS,
      timestampColumn: 'time',
      windowSeconds: 86400,
      outputDir,
    });
    expect(files.map((f) => [f.windowStart, f.rowCount])).toEqual([
      ['2026-01-01T00:00:00.000000Z', 1],
      ['2026-01-02T00:00:00.000000Z', 1],
    ]);
    expect(readdirSync(outputDir).sort()).toEqual(files.map((f) => f.path.slice(outputDir.length + 1)).sort());
  });

  test('the csv header reader handles quotes, a BOM and CRLF', async () => {
    const { paths } = stage({ 'h.csv': '\uFEFF"a ""b""",c,"d,\ne"\r\n1,2,3\r\n' });
    expect(await readCsvHeader(paths['h.csv']!)).toEqual(['a "b"', 'c', 'd,\ne']);
  });

  test('the csv header reader reads a header longer than one chunk of the file, and refuses a file without one', async () => {
    const names = Array.from({ length: 3000 }, (_, i) => `column, "${i}" ${'x'.repeat(90)}`);
    const header = names.map((name) => `"${name.replaceAll('"', '""')}"`).join(',');
    const { paths } = stage({ 'long.csv': `${header}\r\n${names.map(() => '1').join(',')}\r\n`, 'empty.csv': '' });
    expect(await readCsvHeader(paths['long.csv']!)).toEqual(names);
    await expect(readCsvHeader(paths['empty.csv']!)).rejects.toThrow('no header line');
  });
});

describe('repeated keys', () => {
  test('a row that repeats a key is written with the last value, as validation (JSON.parse) read it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ts-dupkey-'));
    const doc = join(dir, 'doc.json');
    const nd = join(dir, 'rows.ndjson');
    await Bun.write(doc, '{"rows":[{"timestamp":"2026-01-01T00:00:00Z","v":1,"v":2}]}');
    await Bun.write(nd, '{"timestamp":"2026-01-01T00:00:01Z","v":3,"v":4}\n');
    const written = await pool.writePartitions({
      inputs: [
        { path: doc, format: 'json-document', partitionKey: {} },
        { path: nd, format: 'ndjson', partitionKey: {} },
      ],
      fields: [
        { name: 'timestamp', type: 'timestamp' },
        { name: 'v', type: 'double' },
      ],
      timestampColumn: 'timestamp',
      windowSeconds: 86400,
      outputDir: dir,
    });
    expect(written).toHaveLength(1);
    expect(written[0]?.columnStatistics.v).toMatchObject({ min: 2, max: 4, nulls: 0 });
    expect(readdirSync(dir).filter((f) => f.includes('last-key-wins'))).toEqual([]);
  });

  test('also when the first value does not convert (DuckDB fails on it before it sees the repeat)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ts-dupkey-'));
    const doc = join(dir, 'doc.json');
    const nd = join(dir, 'rows.ndjson');
    await Bun.write(doc, '{"rows":[{"timestamp":"2026-01-01T00:00:00Z","v":"text","v":2}]}');
    await Bun.write(nd, '{"timestamp":"2026-01-01T00:00:01Z","v":{"a":1},"v":4}\n');
    const written = await pool.writePartitions({
      inputs: [
        { path: doc, format: 'json-document', partitionKey: {} },
        { path: nd, format: 'ndjson', partitionKey: {} },
      ],
      fields: [
        { name: 'timestamp', type: 'timestamp' },
        { name: 'v', type: 'double' },
      ],
      timestampColumn: 'timestamp',
      windowSeconds: 86400,
      outputDir: dir,
    });
    expect(written[0]?.columnStatistics.v).toMatchObject({ min: 2, max: 4, nulls: 0 });
  });
});
