/**
 * Prometheus remote write 1.0 (POST /api/v1/write) as timestore batches: one batch per metric name.
 *
 *   metric name (`__name__`)  → the dataset `<datasetPrefix><name>` (`:` becomes `.`: slugs have no
 *                                colon, metric names no dot), created by its first request
 *   each other label           → a string field; together they are the series key (a dataset made
 *                                by ingestion orders its rows by its string fields)
 *   each sample                → a row: `timestamp` (the sample's milliseconds), `value` (double)
 *
 * A metric per dataset rather than one dataset with the name as a column: a metric's labels are its
 * own (one wide table would hold the union of every metric's labels, and hit the field limit on a
 * large Prometheus), a query names the metric as it names any dataset, and retention, storage
 * target and write scopes can differ per metric. InfluxDB and GreptimeDB map metrics the same way.
 *
 * Values: the staleness marker (a special NaN sent when a series disappears) is dropped: it marks
 * the end of a series, not a measurement. Any other NaN and ±Inf is stored as a null `value`:
 * timestore stores finite numbers only, and the row keeps the fact that a sample was taken.
 * Labels named `timestamp` or `value` (in any case) would collide with the sample's columns: they
 * are stored as `label_timestamp` and `label_value`. An empty label value is no label (Prometheus
 * treats both alike).
 *
 * Everything that depends only on the request is checked here, before any batch is accepted; a
 * batch's `validate` then checks its rows against the dataset, as for every format.
 */
import { createHash } from 'node:crypto';
import { refuse } from '../../model/constraints.ts';
import type { SchemaField } from '../../model/records.ts';
import { FIELD_NAME } from '../../model/schema.ts';
import { isStorableTime } from '../../model/timestamps.ts';
import { validateRows } from '../validation.ts';
import type { DecodedBatch } from './batch.ts';
import { decodeWriteRequest, RemoteWriteDecodeError, type RemoteWriteSeries, uncompressSnappy } from './remote-write-protobuf.ts';

export interface RemoteWriteOptions {
  /** Prepended to every dataset slug (`?datasetPrefix=prom.`); empty for none. */
  datasetPrefix: string;
  /** The largest uncompressed WriteRequest decoded (TIMESTORE_INGEST_MAX_BODY_BYTES). */
  maxUncompressedBytes: number;
}

/** One metric's samples, as a batch for its dataset. */
export interface MetricBatch {
  metric: string;
  slug: string;
  batch: DecodedBatch;
  /** Rows of the batch: the metric's samples less its staleness markers. */
  rows: number;
  /** Same key for the same request body: a retried request replays the metrics already queued. */
  idempotencyKey: string;
}

export interface DecodedRemoteWrite {
  metrics: MetricBatch[];
  series: number;
  /** Samples stored as rows (all metrics). */
  samples: number;
  /** Staleness markers, dropped. */
  staleMarkers: number;
}

const SLUG = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const PREFIX = /^[A-Za-z0-9_.-]{0,64}$/;
/** Sample columns; labels with these names (case-insensitively, as field names compare) are renamed. */
const TIMESTAMP = 'timestamp';
const VALUE = 'value';
const RENAMED = new Map([
  [TIMESTAMP, `label_${TIMESTAMP}`],
  [VALUE, `label_${VALUE}`],
]);

export function checkDatasetPrefix(prefix: string): void {
  if (!PREFIX.test(prefix)) {
    throw refuse('query_parameter', `datasetPrefix "${prefix}" may hold letters, digits and _ . - (at most 64)`, { parameter: 'datasetPrefix' });
  }
}

/** The dataset a metric's samples go to. */
export function metricDataset(metric: string, prefix: string): string {
  return `${prefix}${metric.replaceAll(':', '.')}`;
}

export function decodeRemoteWrite(raw: Uint8Array, options: RemoteWriteOptions): DecodedRemoteWrite {
  checkDatasetPrefix(options.datasetPrefix);
  let series: RemoteWriteSeries[];
  try {
    series = decodeWriteRequest(uncompressSnappy(raw, options.maxUncompressedBytes));
  } catch (err) {
    if (err instanceof RemoteWriteDecodeError) {
      throw refuse('remote_write_body', `the body is not a snappy-compressed Prometheus WriteRequest: ${err.message}`);
    }
    throw err;
  }

  const byMetric = new Map<string, { fields: Map<string, string>; rows: Record<string, unknown>[] }>();
  let samples = 0;
  let staleMarkers = 0;
  for (let index = 0; index < series.length; index++) {
    const { labels, metric } = seriesLabels(series[index]!, index);
    let entry = byMetric.get(metric);
    if (!entry) {
      entry = { fields: new Map(), rows: [] };
      byMetric.set(metric, entry);
    }
    for (const name of Object.keys(labels)) {
      const known = entry.fields.get(name.toLowerCase());
      if (known !== undefined && known !== name) {
        throw seriesError(index, metric, `the label "${name}" differs only in case from the label "${known}" of another series: field names are case-insensitive`);
      }
      entry.fields.set(name.toLowerCase(), name);
    }
    for (const sample of series[index]!.samples) {
      if (sample.stale) {
        staleMarkers++;
        continue;
      }
      if (!isStorableTime(sample.timestamp)) {
        throw seriesError(index, metric, `a sample's timestamp ${sample.timestamp} ms is outside the range timestore stores (years 1 to 9999)`);
      }
      entry.rows.push({
        ...labels,
        [TIMESTAMP]: new Date(sample.timestamp).toISOString(),
        [VALUE]: Number.isFinite(sample.value) ? sample.value : null,
      });
      samples++;
    }
  }

  const bodyHash = createHash('sha256').update(raw).digest('hex');
  const metrics: MetricBatch[] = [];
  for (const [metric, { fields, rows }] of byMetric) {
    if (rows.length === 0) continue; // only staleness markers
    const slug = metricDataset(metric, options.datasetPrefix);
    if (!SLUG.test(slug)) {
      throw refuse(
        'remote_write_series',
        `metric "${metric}" maps to the dataset slug "${slug}", which is not one: a slug starts with a letter or digit and has at most 128 characters; ` +
          'add ?datasetPrefix=<letters> to the remote_write url for metric names that start with _',
        { metric, dataset: slug },
      );
    }
    const declared: SchemaField[] = [
      { name: TIMESTAMP, type: 'timestamp', nullable: false },
      { name: VALUE, type: 'double' },
      ...[...fields.values()].sort().map((name): SchemaField => ({ name, type: 'string' })),
    ];
    metrics.push({
      metric,
      slug,
      rows: rows.length,
      idempotencyKey: `prometheus-remote-write:${bodyHash}`,
      batch: metricBatch(metric, declared, rows, createHash('sha256').update(bodyHash).update(slug).digest('hex')),
    });
  }
  return { metrics, series: series.length, samples, staleMarkers };
}

function metricBatch(metric: string, declared: SchemaField[], rows: Record<string, unknown>[], hash: string): DecodedBatch {
  let staged: Uint8Array | undefined;
  return {
    format: 'prometheus',
    partition: { key: {} },
    datasetName: metric,
    declare: () => declared,
    validate(rules) {
      const summary = validateRows(rows, rules);
      let text = '';
      for (const row of rows) text += `${JSON.stringify(row)}\n`;
      staged = new TextEncoder().encode(text);
      return summary;
    },
    stagesBodyAsReceived: false,
    staged() {
      if (!staged) throw new Error('staged() before validate()');
      return { bytes: staged, format: 'ndjson', extension: 'ndjson' };
    },
    requestHash: () => hash,
  };
}

/** The series' metric name and its other labels as fields (renamed where they collide with the sample columns). */
function seriesLabels(series: RemoteWriteSeries, index: number): { metric: string; labels: Record<string, string> } {
  let metric: string | undefined;
  const labels: Record<string, string> = {};
  const seen = new Set<string>();
  for (const [name, value] of series.labels) {
    if (seen.has(name)) throw seriesError(index, metric, `the label "${name}" appears twice`);
    seen.add(name);
    if (name === '__name__') {
      metric = value;
      continue;
    }
    if (value === '') continue;
    const field = RENAMED.get(name.toLowerCase()) ?? name;
    if (!FIELD_NAME.test(field)) {
      throw seriesError(index, metric, `the label name "${name}" is not a field name timestore stores: letters, digits and _, starting with a letter or _ (at most 63)`);
    }
    if (field !== name && series.labels.some(([other]) => other.toLowerCase() === field)) {
      throw seriesError(index, metric, `the label "${name}" is stored as "${field}", which the series also has as a label`);
    }
    if (value.includes('\0')) throw seriesError(index, metric, `the value of label "${name}" contains U+0000, which the catalog cannot store`);
    labels[field] = value;
  }
  if (!metric) throw seriesError(index, undefined, 'the series has no __name__ label (its metric name)');
  if (series.histograms > 0) {
    throw seriesError(index, metric, 'the series carries native histogram samples, which remote write 1.0 does not define and timestore does not store; turn off send_native_histograms');
  }
  return { metric, labels };
}

function seriesError(index: number, metric: string | undefined, message: string) {
  return refuse('remote_write_series', `timeseries[${index}]${metric ? ` (${metric})` : ''}: ${message}`, { series: index, ...(metric ? { metric } : {}) });
}
