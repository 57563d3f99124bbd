/**
 * TSBS "cpu-only" rows as timestore ingest request bodies.
 *
 * Like TSBS's `cpu-only` use case: `hosts` hosts, one row per host every 10 s from
 * 2016-01-01T00:00:00Z, rows ordered by time then host (as TSBS emits them). Each row has
 * the timestamp, `hostname` (host_0 … host_N-1) plus 9 string tags fixed per host (region,
 * datacenter, rack, os, arch, team, service, service_version, service_environment), and 10
 * usage fields (doubles in [0, 100], a bounded random walk per host and field, as TSBS does).
 * A seeded PRNG makes the data identical from run to run.
 *
 * Bodies are `{schema, partition, rows}` (IngestBody in src/http/routes/ingest.ts), built as
 * strings (no per-row JSON.stringify) and written under a cache directory keyed by the
 * parameters, so a second run with the same parameters reuses them.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { prng } from '../../test/harness/prng.ts';

export const TAGS = [
  'hostname', 'region', 'datacenter', 'rack', 'os', 'arch', 'team', 'service', 'service_version', 'service_environment',
] as const;
export const FIELDS = [
  'usage_user', 'usage_system', 'usage_idle', 'usage_nice', 'usage_iowait',
  'usage_irq', 'usage_softirq', 'usage_steal', 'usage_guest', 'usage_guest_nice',
] as const;

export const SCHEMA = {
  fields: [
    { name: 'timestamp', type: 'timestamp' },
    ...TAGS.map((name) => ({ name, type: 'string' })),
    ...FIELDS.map((name) => ({ name, type: 'double' })),
  ],
};

export const START_MS = Date.UTC(2016, 0, 1);
export const INTERVAL_MS = 10_000;

// TSBS's tag vocabularies (pkg/data/usecases/devops/host.go).
const REGIONS: Record<string, string[]> = {
  'us-east-1': ['us-east-1a', 'us-east-1b', 'us-east-1c', 'us-east-1e'],
  'us-west-1': ['us-west-1a', 'us-west-1b'],
  'us-west-2': ['us-west-2a', 'us-west-2b', 'us-west-2c'],
  'eu-west-1': ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'],
  'eu-central-1': ['eu-central-1a', 'eu-central-1b'],
  'ap-southeast-1': ['ap-southeast-1a', 'ap-southeast-1b'],
  'ap-southeast-2': ['ap-southeast-2a', 'ap-southeast-2b'],
  'ap-northeast-1': ['ap-northeast-1a', 'ap-northeast-1c'],
  'sa-east-1': ['sa-east-1a', 'sa-east-1b', 'sa-east-1c'],
};
const OSES = ['Ubuntu16.10', 'Ubuntu16.04LTS', 'Ubuntu15.10'];
const ARCHS = ['x64', 'x86'];
const TEAMS = ['SF', 'NYC', 'LON', 'CHI'];
const ENVIRONMENTS = ['production', 'staging', 'test'];

export interface GenerateOptions {
  hosts: number;
  hours: number;
  batch: number;
  /** Cap on the rows generated (the first `rows` of the hosts × hours series). */
  rows: number;
  partitionKey: Record<string, string>;
  cacheRoot: string;
  log?: (message: string) => void;
}

export interface Dataset {
  dir: string;
  files: string[];
  /** Rows in each batch (the last may be short). */
  batchRows: number[];
  totalRows: number;
  totalBytes: number;
  /** First and last timestamp (ms) of each batch. */
  batchTimes: Array<[number, number]>;
}


/** The `"hostname":…,"service_environment":…` fragment of each host. */
function hostTags(hosts: number, random: () => number): string[] {
  const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)]!;
  const regions = Object.keys(REGIONS);
  const out: string[] = [];
  for (let h = 0; h < hosts; h++) {
    const region = pick(regions);
    const tags: Record<string, string> = {
      hostname: `host_${h}`,
      region,
      datacenter: pick(REGIONS[region]!),
      rack: String(Math.floor(random() * 100)),
      os: pick(OSES),
      arch: pick(ARCHS),
      team: pick(TEAMS),
      service: String(Math.floor(random() * 20)),
      service_version: String(Math.floor(random() * 2)),
      service_environment: pick(ENVIRONMENTS),
    };
    out.push(TAGS.map((t) => `${JSON.stringify(t)}:${JSON.stringify(tags[t])}`).join(','));
  }
  return out;
}

export function generate(o: GenerateOptions): Dataset {
  const total = Math.min(o.rows, o.hosts * Math.floor((o.hours * 3600_000) / INTERVAL_MS));
  const key = `tsbs-cpu-h${o.hosts}-t${o.hours}-b${o.batch}-r${total}-k${Object.entries(o.partitionKey).map(([k, v]) => `${k}=${v}`).join(',') || '_'}`;
  const dir = join(o.cacheRoot, key);
  const manifestPath = join(dir, 'manifest.json');
  if (existsSync(manifestPath)) {
    o.log?.(`data: reusing ${dir}`);
    return { dir, ...JSON.parse(readFileSync(manifestPath, 'utf8')), files: filesOf(dir, JSON.parse(readFileSync(manifestPath, 'utf8')).batchRows.length) };
  }
  mkdirSync(dir, { recursive: true });
  const started = performance.now();
  const random = prng(0x7553);
  const tags = hostTags(o.hosts, random);
  // Per host and field: a random walk with steps in [-1, 1], clamped to [0, 100] (TSBS's cpu fields).
  const values = new Float64Array(o.hosts * FIELDS.length);
  for (let i = 0; i < values.length; i++) values[i] = random() * 100;
  const fieldKeys = FIELDS.map((f) => `,${JSON.stringify(f)}:`);
  const head = `{"schema":${JSON.stringify(SCHEMA)},"partition":${JSON.stringify({ key: o.partitionKey })},"rows":[`;

  const batchRows: number[] = [];
  const batchTimes: Array<[number, number]> = [];
  let totalBytes = 0;
  let row = 0;
  let tsMs = -1;
  let tsText = '';
  while (row < total) {
    const n = Math.min(o.batch, total - row);
    const parts: string[] = [head];
    let first = 0;
    let last = 0;
    for (let i = 0; i < n; i++, row++) {
      const host = row % o.hosts;
      const ms = START_MS + Math.floor(row / o.hosts) * INTERVAL_MS;
      if (ms !== tsMs) {
        tsMs = ms;
        tsText = new Date(ms).toISOString().replace('.000Z', 'Z');
      }
      if (i === 0) first = ms;
      last = ms;
      let line = `${i === 0 ? '' : ','}{"timestamp":"${tsText}",${tags[host]}`;
      const base = host * FIELDS.length;
      for (let f = 0; f < FIELDS.length; f++) {
        let v = values[base + f]! + (random() * 2 - 1);
        v = v < 0 ? 0 : v > 100 ? 100 : v;
        values[base + f] = v;
        line += fieldKeys[f]! + v;
      }
      parts.push(`${line}}`);
    }
    parts.push(']}');
    const body = parts.join('');
    const file = join(dir, `batch-${String(batchRows.length).padStart(6, '0')}.json`);
    writeFileSync(file, body);
    totalBytes += Buffer.byteLength(body);
    batchRows.push(n);
    batchTimes.push([first, last]);
  }
  const manifest = { batchRows, totalRows: total, totalBytes, batchTimes };
  writeFileSync(`${manifestPath}.tmp`, JSON.stringify(manifest));
  renameSync(`${manifestPath}.tmp`, manifestPath);
  o.log?.(`data: generated ${total} rows in ${batchRows.length} batches (${(totalBytes / 2 ** 20).toFixed(0)} MiB) in ${((performance.now() - started) / 1000).toFixed(1)} s under ${dir}`);
  return { dir, files: filesOf(dir, batchRows.length), ...manifest };
}

function filesOf(dir: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => join(dir, `batch-${String(i).padStart(6, '0')}.json`));
}

/** A generated batch (a JSON document) as timestore's NDJSON body: its rows, one per line. */
export function asNdjson(document: string): string {
  return `${(JSON.parse(document) as { rows: unknown[] }).rows.map((row) => JSON.stringify(row)).join('\n')}\n`;
}
