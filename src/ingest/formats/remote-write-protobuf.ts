/**
 * The wire format of Prometheus remote write 1.0: a snappy block (snappyjs, pure JavaScript, so
 * it needs nothing native inside the compiled binary) holding a protobuf `prometheus.WriteRequest`.
 *
 * The protobuf is read by hand rather than through protobufjs and the .proto files: the message
 * is five small types (WriteRequest → TimeSeries → Label, Sample), the hand reader makes no
 * intermediate objects per field, ships no schema to load at run time, and needs no code
 * generation step. Only what remote write 1.0 defines is read:
 *
 *   WriteRequest { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
 *   TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2;
 *                  repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
 *   Label        { string name = 1; string value = 2; }
 *   Sample       { double value = 1; int64 timestamp = 2; }
 *
 * Metadata and exemplars are skipped; native histograms are counted so that the caller can
 * refuse them (they are not part of remote write 1.0, and storing their series' float samples
 * alone would lose them without a word). Unknown fields are skipped, as protobuf requires.
 */
import { uncompress } from 'snappyjs';

export interface RemoteWriteSample {
  value: number;
  /** Milliseconds since the epoch. */
  timestamp: number;
  /** Prometheus's staleness marker (the NaN with bits 0x7ff0000000000002): the series ended here. */
  stale: boolean;
}

export interface RemoteWriteSeries {
  /** In the order sent (the spec asks senders to sort them by name). */
  labels: [name: string, value: string][];
  samples: RemoteWriteSample[];
  /** Native histogram samples in this series (not stored; see the module comment). */
  histograms: number;
}

export class RemoteWriteDecodeError extends Error {
  override readonly name = 'RemoteWriteDecodeError';
}

/** Uncompresses a snappy block (the block format, not the framed one), refusing one that would exceed `maxBytes`. */
export function uncompressSnappy(compressed: Uint8Array, maxBytes: number): Uint8Array {
  try {
    return uncompress(compressed, maxBytes);
  } catch (err) {
    throw new RemoteWriteDecodeError(`the body is not a snappy block of at most ${maxBytes} bytes: ${(err as Error).message}`);
  }
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads a protobuf message body; every read is bounds-checked against `end`. */
class Reader {
  at: number;
  readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    at = 0,
    readonly end = bytes.length,
  ) {
    this.at = at;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  more(): boolean {
    return this.at < this.end;
  }

  /** An unsigned varint below 2^53 (tags, lengths); larger ones are refused. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.at >= this.end) throw new RemoteWriteDecodeError('truncated varint');
      const byte = this.bytes[this.at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    throw new RemoteWriteDecodeError('varint too large');
  }

  /** An int64 varint (up to 10 bytes, two's complement for negatives), as a number. */
  int64(): number {
    const start = this.at;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.at >= this.end) throw new RemoteWriteDecodeError('truncated varint');
      const byte = this.bytes[this.at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    // Past 49 bits (a negative timestamp, or one beyond year 10,000): exactly, through BigInt.
    this.at = start;
    let big = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.at >= this.end) throw new RemoteWriteDecodeError('truncated varint');
      const byte = this.bytes[this.at++]!;
      big |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return Number(BigInt.asIntN(64, big));
    }
    throw new RemoteWriteDecodeError('varint longer than 10 bytes');
  }

  /** The end offset of a length-delimited field starting here. */
  length(): number {
    const length = this.varint();
    const end = this.at + length;
    if (end > this.end) throw new RemoteWriteDecodeError('a length-delimited field runs past the end of its message');
    return end;
  }

  string(): string {
    const end = this.length();
    try {
      return utf8.decode(this.bytes.subarray(this.at, end));
    } catch {
      throw new RemoteWriteDecodeError('a label name or value is not valid UTF-8');
    } finally {
      this.at = end;
    }
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.int64();
        return;
      case WIRE_FIXED64:
        this.advance(8);
        return;
      case WIRE_LENGTH:
        this.at = this.length();
        return;
      case WIRE_FIXED32:
        this.advance(4);
        return;
      default:
        throw new RemoteWriteDecodeError(`unsupported protobuf wire type ${wireType}`);
    }
  }

  advance(n: number): number {
    const at = this.at;
    if (at + n > this.end) throw new RemoteWriteDecodeError('truncated fixed-width field');
    this.at = at + n;
    return at;
  }
}

/** Decodes an uncompressed `prometheus.WriteRequest` into its series. */
export function decodeWriteRequest(bytes: Uint8Array): RemoteWriteSeries[] {
  const reader = new Reader(bytes);
  const series: RemoteWriteSeries[] = [];
  while (reader.more()) {
    const tag = reader.varint();
    if (tag === ((1 << 3) | WIRE_LENGTH)) {
      const end = reader.length();
      series.push(timeSeries(new Reader(bytes, reader.at, end)));
      reader.at = end;
    } else {
      reader.skip(tag & 7);
    }
  }
  return series;
}

function timeSeries(reader: Reader): RemoteWriteSeries {
  const out: RemoteWriteSeries = { labels: [], samples: [], histograms: 0 };
  while (reader.more()) {
    const tag = reader.varint();
    const field = tag >>> 3;
    if ((tag & 7) === WIRE_LENGTH && (field === 1 || field === 2)) {
      const end = reader.length();
      const inner = new Reader(reader.bytes, reader.at, end);
      if (field === 1) out.labels.push(label(inner));
      else out.samples.push(sample(inner));
      reader.at = end;
    } else {
      if (field === 4) out.histograms++;
      reader.skip(tag & 7);
    }
  }
  return out;
}

function label(reader: Reader): [string, string] {
  let name = '';
  let value = '';
  while (reader.more()) {
    const tag = reader.varint();
    if (tag === ((1 << 3) | WIRE_LENGTH)) name = reader.string();
    else if (tag === ((2 << 3) | WIRE_LENGTH)) value = reader.string();
    else reader.skip(tag & 7);
  }
  return [name, value];
}

function sample(reader: Reader): RemoteWriteSample {
  const out: RemoteWriteSample = { value: 0, timestamp: 0, stale: false };
  while (reader.more()) {
    const tag = reader.varint();
    if (tag === ((1 << 3) | WIRE_FIXED64)) {
      const at = reader.advance(8);
      out.value = reader.view.getFloat64(at, true);
      out.stale = reader.view.getUint32(at + 4, true) === 0x7ff00000 && reader.view.getUint32(at, true) === 2;
    } else if (tag === ((2 << 3) | WIRE_VARINT)) {
      out.timestamp = reader.int64();
    } else {
      reader.skip(tag & 7);
    }
  }
  return out;
}
