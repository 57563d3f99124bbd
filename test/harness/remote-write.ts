/**
 * Builds Prometheus remote write 1.0 bodies by hand, for tests: protobuf `prometheus.WriteRequest`
 * bytes written field by field (no library shared with the decoder under test), then a snappy block.
 */
import { compress } from 'snappyjs';

export interface SeriesInput {
  labels: [string, string][];
  samples: { value: number; timestamp: number }[];
  /** Native histogram samples: each an empty Histogram message (field 4). */
  histograms?: number;
}

/** The staleness marker's bits, as Prometheus sends it. */
export const STALE_NAN_BITS = 0x7ff0000000000002n;

function varint(value: bigint): number[] {
  let v = BigInt.asUintN(64, value);
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

const tag = (field: number, wireType: number) => varint(BigInt((field << 3) | wireType));

function lengthDelimited(field: number, bytes: number[] | Uint8Array): number[] {
  return [...tag(field, 2), ...varint(BigInt(bytes.length)), ...bytes];
}

function double(field: number, value: number | bigint): number[] {
  const view = new DataView(new ArrayBuffer(8));
  if (typeof value === 'bigint') view.setBigUint64(0, value, true);
  else view.setFloat64(0, value, true);
  return [...tag(field, 1), ...new Uint8Array(view.buffer)];
}

export function encodeLabel(name: string, value: string): number[] {
  const text = new TextEncoder();
  return [...lengthDelimited(1, text.encode(name)), ...lengthDelimited(2, text.encode(value))];
}

/** A Sample message; `value` as a bigint is the raw bits (for the staleness marker). */
export function encodeSample(value: number | bigint, timestamp: number): number[] {
  return [...double(1, value), ...tag(2, 0), ...varint(BigInt(timestamp))];
}

export function encodeSeries(series: SeriesInput, rawSamples: number[][] = []): number[] {
  const out: number[] = [];
  for (const [name, value] of series.labels) out.push(...lengthDelimited(1, encodeLabel(name, value)));
  for (const s of series.samples) out.push(...lengthDelimited(2, encodeSample(s.value, s.timestamp)));
  for (const raw of rawSamples) out.push(...lengthDelimited(2, raw));
  for (let i = 0; i < (series.histograms ?? 0); i++) out.push(...lengthDelimited(4, []));
  return out;
}

/** The uncompressed WriteRequest bytes; `metadata` adds a MetricMetadata entry (field 3), which receivers ignore. */
export function encodeWriteRequest(series: (SeriesInput | number[])[], options: { metadata?: boolean } = {}): Uint8Array {
  const out: number[] = [];
  for (const s of series) out.push(...lengthDelimited(1, Array.isArray(s) ? s : encodeSeries(s)));
  if (options.metadata) out.push(...lengthDelimited(3, [...tag(1, 0), 1, ...lengthDelimited(2, new TextEncoder().encode('up'))]));
  return new Uint8Array(out);
}

/** A remote write body: the WriteRequest in a snappy block. */
export function remoteWriteBody(series: (SeriesInput | number[])[], options: { metadata?: boolean } = {}): Uint8Array {
  return compress(encodeWriteRequest(series, options));
}

export const REMOTE_WRITE_HEADERS = {
  'content-type': 'application/x-protobuf',
  'content-encoding': 'snappy',
  'x-prometheus-remote-write-version': '0.1.0',
};
