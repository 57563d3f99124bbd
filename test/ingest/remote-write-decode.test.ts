/** Decoding Prometheus remote write bodies (pure: no server), from WriteRequest bytes built by hand. */
import { describe, expect, test } from 'bun:test';
import { compress } from 'snappyjs';
import { AppError } from '../../src/model/errors.ts';
import { decodeWriteRequest, uncompressSnappy } from '../../src/ingest/formats/remote-write-protobuf.ts';
import { decodeRemoteWrite, metricDataset } from '../../src/ingest/formats/remote-write.ts';
import { encodeSample, encodeSeries, encodeWriteRequest, remoteWriteBody, STALE_NAN_BITS } from '../harness/remote-write.ts';

const T = Date.UTC(2026, 0, 1);
const options = { datasetPrefix: '', maxUncompressedBytes: 1 << 20 };
const rules = (fields: { name: string; type: string }[]) => ({ fields: fields as never, timestampColumn: 'timestamp', strict: true });

function refusal(run: () => unknown): { code: string; status: number; message: string } {
  try {
    run();
  } catch (err) {
    if (err instanceof AppError) return { code: err.code, status: err.status, message: err.message };
    throw err;
  }
  throw new Error('not refused');
}

describe('the protobuf reader', () => {
  test('reads a WriteRequest written byte by byte', () => {
    // timeseries { labels { name: "__name__" value: "up" } samples { value: 1 timestamp: 1000 } }
    const bytes = new Uint8Array([
      0x0a, 0x1e, // field 1 (timeseries), 30 bytes
      0x0a, 0x0e, 0x0a, 0x08, ...new TextEncoder().encode('__name__'), 0x12, 0x02, 0x75, 0x70, // labels
      0x12, 0x0c, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0xe8, 0x07, // samples: double 1.0, varint 1000
    ]);
    expect(decodeWriteRequest(bytes)).toEqual([{ labels: [['__name__', 'up']], samples: [{ value: 1, timestamp: 1000, stale: false }], histograms: 0 }]);
    // The test encoder writes the same bytes.
    expect([...encodeWriteRequest([{ labels: [['__name__', 'up']], samples: [{ value: 1, timestamp: 1000 }] }])]).toEqual([...bytes]);
  });

  test('negative and large int64 timestamps, the staleness marker, unknown fields and metadata', () => {
    const series = encodeSeries({ labels: [['__name__', 'm']], samples: [{ value: -2.5, timestamp: -1 }, { value: 3, timestamp: 2 ** 50 + 1 }] }, [
      encodeSample(STALE_NAN_BITS, 5),
      [...encodeSample(7, 6), 0x18, 0x2a], // an unknown field 3 (varint) inside a sample
    ]);
    const [decoded] = decodeWriteRequest(encodeWriteRequest([series], { metadata: true }));
    expect(decoded!.samples.map((s) => [s.value, s.timestamp, s.stale])).toEqual([
      [-2.5, -1, false],
      [3, 2 ** 50 + 1, false],
      [Number.NaN, 5, true],
      [7, 6, false],
    ]);
    // A plain NaN is not the marker.
    const [plain] = decodeWriteRequest(encodeWriteRequest([{ labels: [['__name__', 'm']], samples: [{ value: Number.NaN, timestamp: 1 }] }]));
    expect(plain!.samples[0]!.stale).toBe(false);
  });

  test('truncated and malformed bytes are refused, not misread', () => {
    const good = encodeWriteRequest([{ labels: [['__name__', 'up']], samples: [{ value: 1, timestamp: 1000 }] }]);
    for (const cut of [1, 5, 12, good.length - 1]) expect(() => decodeWriteRequest(good.subarray(0, cut))).toThrow();
    expect(() => decodeWriteRequest(new Uint8Array([0x0b]))).toThrow(/wire type 3/);
    expect(() => decodeWriteRequest(new Uint8Array([0x0a, 0x04, 0x0a, 0x02, 0x0a, 0x80]))).toThrow();
  });

  test('snappy: a block over the limit is refused before it is uncompressed', () => {
    const big = compress(new Uint8Array(10_000));
    expect(uncompressSnappy(big, 10_000).length).toBe(10_000);
    expect(() => uncompressSnappy(big, 9_999)).toThrow(/at most 9999/);
    expect(() => uncompressSnappy(new Uint8Array([0xff, 0xff, 0xff]), 100)).toThrow();
  });
});

describe('metrics as batches', () => {
  test('one batch per metric: labels as string fields, samples as timestamp and value rows', () => {
    const body = remoteWriteBody([
      { labels: [['__name__', 'http_requests_total'], ['code', '200'], ['job', 'api']], samples: [{ value: 10, timestamp: T }, { value: 12, timestamp: T + 15_000 }] },
      { labels: [['__name__', 'http_requests_total'], ['code', '500'], ['job', 'api'], ['zone', '']], samples: [{ value: 1, timestamp: T }] },
      { labels: [['__name__', 'job:up:sum'], ['value', 'x'], ['Timestamp', 'y']], samples: [{ value: Number.POSITIVE_INFINITY, timestamp: T }, { value: Number.NaN, timestamp: T + 1 }] },
    ]);
    const decoded = decodeRemoteWrite(body, options);
    expect(decoded.series).toBe(3);
    expect(decoded.samples).toBe(5);
    expect(decoded.metrics.map((m) => [m.metric, m.slug, m.rows])).toEqual([
      ['http_requests_total', 'http_requests_total', 3],
      ['job:up:sum', 'job.up.sum', 2],
    ]);
    const [requests, recorded] = decoded.metrics;
    const declared = requests!.batch.declare(null)!;
    expect(declared).toEqual([
      { name: 'timestamp', type: 'timestamp', nullable: false },
      { name: 'value', type: 'double' },
      { name: 'code', type: 'string' },
      { name: 'job', type: 'string' },
    ]);
    expect(requests!.batch.validate(rules(declared))).toEqual({ rowCount: 3, minTime: T, maxTime: T + 15_000 });
    const lines = new TextDecoder().decode(requests!.batch.staged().bytes).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual([
      { code: '200', job: 'api', timestamp: '2026-01-01T00:00:00.000Z', value: 10 },
      { code: '200', job: 'api', timestamp: '2026-01-01T00:00:15.000Z', value: 12 },
      { code: '500', job: 'api', timestamp: '2026-01-01T00:00:00.000Z', value: 1 },
    ]);
    // Labels named like the sample columns are renamed; ±Inf and NaN are null values.
    const recordedFields = recorded!.batch.declare(null)!;
    expect(recordedFields.map((f) => f.name)).toEqual(['timestamp', 'value', 'label_timestamp', 'label_value']);
    recorded!.batch.validate(rules(recordedFields));
    const recordedRows = new TextDecoder().decode(recorded!.batch.staged().bytes).trim().split('\n').map((l) => JSON.parse(l));
    expect(recordedRows.map((r) => [r.value, r.label_value, r.label_timestamp])).toEqual([
      [null, 'x', 'y'],
      [null, 'x', 'y'],
    ]);
    expect(recorded!.batch.datasetName).toBe('job:up:sum');
  });

  test('staleness markers are dropped; a metric with nothing else makes no batch', () => {
    const stale = encodeSeries({ labels: [['__name__', 'gone']], samples: [] }, [encodeSample(STALE_NAN_BITS, T)]);
    const mixed = encodeSeries({ labels: [['__name__', 'up']], samples: [{ value: 1, timestamp: T }] }, [encodeSample(STALE_NAN_BITS, T + 1)]);
    const decoded = decodeRemoteWrite(compress(encodeWriteRequest([stale, mixed])), options);
    expect(decoded.staleMarkers).toBe(2);
    expect(decoded.metrics.map((m) => [m.slug, m.rows])).toEqual([['up', 1]]);
  });

  test('a request of metadata only is no batch at all', () => {
    expect(decodeRemoteWrite(remoteWriteBody([], { metadata: true }), options).metrics).toEqual([]);
  });

  test('the same body gives the same idempotency key and request hashes; another body other ones', () => {
    const series = [{ labels: [['__name__', 'up']] as [string, string][], samples: [{ value: 1, timestamp: T }] }];
    const a = decodeRemoteWrite(remoteWriteBody(series), options).metrics[0]!;
    const b = decodeRemoteWrite(remoteWriteBody(series), options).metrics[0]!;
    const c = decodeRemoteWrite(remoteWriteBody([{ ...series[0]!, samples: [{ value: 2, timestamp: T }] }]), options).metrics[0]!;
    expect([b.idempotencyKey, b.batch.requestHash()]).toEqual([a.idempotencyKey, a.batch.requestHash()]);
    expect(c.idempotencyKey).not.toBe(a.idempotencyKey);
  });

  test('datasetPrefix names the datasets', () => {
    expect(metricDataset('node:cpu:rate5m', 'prom.')).toBe('prom.node.cpu.rate5m');
    const decoded = decodeRemoteWrite(remoteWriteBody([{ labels: [['__name__', '__internal']], samples: [{ value: 1, timestamp: T }] }]), { ...options, datasetPrefix: 'p_' });
    expect(decoded.metrics[0]!.slug).toBe('p___internal');
  });

  test('malformed requests are refused whole with 400 invalid_remote_write', () => {
    const sample = [{ value: 1, timestamp: T }];
    const cases: [string, Uint8Array, RegExp][] = [
      ['not snappy', new Uint8Array([0xff, 0xff, 0xff, 0xff]), /snappy/],
      ['not protobuf', compress(new Uint8Array([0x0a, 0x7f, 0x01])), /WriteRequest/],
      ['no __name__', remoteWriteBody([{ labels: [['job', 'x']], samples: sample }]), /no __name__/],
      ['a label twice', remoteWriteBody([{ labels: [['__name__', 'up'], ['job', 'a'], ['job', 'b']], samples: sample }]), /twice/],
      ['a label name that is no field name', remoteWriteBody([{ labels: [['__name__', 'up'], ['x'.repeat(64), 'a']], samples: sample }]), /field name/],
      ['labels differing in case', remoteWriteBody([{ labels: [['__name__', 'up'], ['Job', 'a']], samples: sample }, { labels: [['__name__', 'up'], ['job', 'b']], samples: sample }]), /only in case/],
      ['a renamed label that collides', remoteWriteBody([{ labels: [['__name__', 'up'], ['label_value', 'a'], ['value', 'b']], samples: sample }]), /label_value/],
      ['a metric name that makes no slug', remoteWriteBody([{ labels: [['__name__', '_hidden']], samples: sample }]), /datasetPrefix/],
      ['a timestamp beyond year 9999', remoteWriteBody([{ labels: [['__name__', 'up']], samples: [{ value: 1, timestamp: 253402300800000 }] }]), /outside the range/],
      ['native histograms', remoteWriteBody([{ labels: [['__name__', 'h']], samples: [], histograms: 1 }]), /native histogram/],
      ['U+0000 in a label value', remoteWriteBody([{ labels: [['__name__', 'up'], ['job', 'a\0b']], samples: sample }]), /U\+0000/],
    ];
    for (const [title, body, message] of cases) {
      const refused = refusal(() => {
        decodeRemoteWrite(body, options);
        throw new Error(`${title}: not refused`);
      });
      expect({ title, code: refused.code, status: refused.status }).toEqual({ title, code: 'invalid_remote_write', status: 400 });
      expect(refused.message).toMatch(message);
    }
    expect(refusal(() => decodeRemoteWrite(remoteWriteBody([]), { ...options, datasetPrefix: 'a/b' })).code).toBe('invalid_query_parameter');
  });
});
