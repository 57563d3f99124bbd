/**
 * `timestore ingest | query | sql`: the same executable as a client of a running server.
 * Arguments are parsed with node:util's parseArgs (`--name value` and `--name=value`, as the
 * other commands take them).
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { ConfigError, loadClientConfig } from '../config.ts';
import { type Endpoint, send, ServerError } from './http.ts';
import { runIngest } from './ingest.ts';
import { OUTPUT_FORMATS, type OutputFormat, render, type Rows } from './output.ts';
import { describeInput, type Format, FORMATS, formatOf } from './sources.ts';

export const CLIENT_USAGE = `Usage:
  timestore ingest FILE… --url <url> --dataset <slug> [--format ndjson|csv|lp|arrow|parquet]
      [--batch-rows 5000] [--concurrency 4] [--key <name>=<value>]… [--precision ns|us|ms|s]
      FILE '-' reads stdin (give --format). Formats by extension: .ndjson .jsonl .json, .csv,
      .lp .line .txt (line protocol: each measurement is a dataset, --dataset is not needed),
      .arrow .arrows .ipc .feather, .parquet. NDJSON and CSV need an existing dataset; Arrow and
      Parquet create it. Running the same command again after an interruption resumes it: the
      batches the server already holds are replayed, not stored twice.
  timestore query --url <url> --dataset <slug> --from <time> --to <time>
      [--interval <n>s|m|h|d|w|mo --agg <fn>:<column>[,…]] [--group-by <column>[,…]]
      [--limit <n>] [--format table|csv|json]
  timestore sql "<SELECT …>" --url <url> [--param <value>]… [--format table|csv|json]

Every command takes --token <token> (default: TIMESTORE_TOKEN), sent as a Bearer token.
--url defaults to TIMESTORE_URL.`;

/** A mistake on the command line: printed with the usage, exit code 2. */
export class ClientUsageError extends Error {}

interface Output {
  out(text: string): void;
  err(text: string): void;
}

const COMMON = {
  url: { type: 'string' },
  token: { type: 'string' },
  format: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function runClientCommand(command: 'ingest' | 'query' | 'sql', args: string[], output: Output): Promise<number> {
  try {
    if (command === 'ingest') return await ingest(args, output);
    if (command === 'query') return await query(args, output);
    return await sql(args, output);
  } catch (err) {
    if (err instanceof ServerError) {
      output.err(`timestore ${command}: ${err.code}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof ConfigError) {
      output.err(`timestore: ${err.message}\n`);
      return 2;
    }
    if (err instanceof ClientUsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      output.err(`timestore: ${(err as Error).message}\n\n${CLIENT_USAGE}\n`);
      return 2;
    }
    // An unreadable or malformed input file: its reader's message says what is wrong.
    output.err(`timestore ${command}: ${(err as Error).message}\n`);
    return 1;
  }
}

function parse<T extends ParseArgsOptionsConfig>(args: string[], options: T) {
  return parseArgs({ args, options: { ...COMMON, ...options } as typeof COMMON & T, allowPositionals: true as const, strict: true as const });
}

function endpointOf(values: { url?: string; token?: string }): Endpoint {
  const config = loadClientConfig();
  const url = values.url ?? config.url;
  if (!url) throw new ClientUsageError('--url is needed (or TIMESTORE_URL)');
  const token = values.token ?? config.token;
  return token ? { url, token } : { url };
}

function positiveInteger(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new ClientUsageError(`--${name} must be a positive integer (got "${value}")`);
  return n;
}

function outputFormat(value: string | undefined): OutputFormat {
  if (value === undefined) return 'table';
  if (!(OUTPUT_FORMATS as readonly string[]).includes(value)) throw new ClientUsageError(`--format must be one of ${OUTPUT_FORMATS.join(', ')} (got "${value}")`);
  return value as OutputFormat;
}

async function ingest(args: string[], output: Output): Promise<number> {
  const { values, positionals } = parse(args, {
    dataset: { type: 'string' },
    'batch-rows': { type: 'string' },
    concurrency: { type: 'string' },
    key: { type: 'string', multiple: true },
    precision: { type: 'string' },
  });
  if (values.help) return help(output);
  if (positionals.length === 0) throw new ClientUsageError('ingest needs at least one FILE (or - for stdin)');
  const forced = values.format;
  if (forced !== undefined && !(FORMATS as readonly string[]).includes(forced)) {
    throw new ClientUsageError(`--format must be one of ${FORMATS.join(', ')} (got "${forced}")`);
  }
  const inputs = positionals.map((path) => {
    const format = (forced as Format | undefined) ?? formatOf(path);
    if (!format) throw new ClientUsageError(`cannot tell the format of "${path}" from its name: give --format`);
    return describeInput(path, format);
  });
  if (!values.dataset && inputs.some((i) => i.format !== 'lp')) throw new ClientUsageError('ingest needs --dataset');
  const partitionKey: Record<string, string> = {};
  for (const pair of values.key ?? []) {
    const eq = pair.indexOf('=');
    if (eq < 1) throw new ClientUsageError(`--key takes <name>=<value> (got "${pair}")`);
    partitionKey[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const summary = await runIngest({
    endpoint: endpointOf(values),
    dataset: values.dataset,
    inputs,
    batchRows: positiveInteger('batch-rows', values['batch-rows'], 5000),
    concurrency: positiveInteger('concurrency', values.concurrency, 4),
    partitionKey,
    precision: values.precision ?? 'ns',
  });
  const rate = Math.round(summary.rows / Math.max(summary.seconds, 0.001));
  output.out(
    `ingested ${summary.rows} rows in ${summary.batches} batches (${summary.replayed} replayed) in ${summary.seconds.toFixed(1)} s: ${rate} rows/s\n`,
  );
  return 0;
}

const INTERVAL_UNITS: Record<string, string> = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week', mo: 'month' };

async function query(args: string[], output: Output): Promise<number> {
  const { values, positionals } = parse(args, {
    dataset: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    interval: { type: 'string' },
    agg: { type: 'string', multiple: true },
    'group-by': { type: 'string' },
    limit: { type: 'string' },
  });
  if (values.help) return help(output);
  if (positionals.length > 0) throw new ClientUsageError(`unexpected argument "${positionals[0]}"`);
  if (!values.dataset || !values.from || !values.to) throw new ClientUsageError('query needs --dataset, --from and --to');
  const format = outputFormat(values.format);
  const body: Record<string, unknown> = { timeRange: { start: values.from, end: values.to } };
  if (values.limit !== undefined) body.limit = positiveInteger('limit', values.limit, 0);
  if (values.interval !== undefined || values.agg !== undefined) {
    const interval = /^(\d+)(s|m|h|d|w|mo)$/.exec(values.interval ?? '');
    if (!interval) throw new ClientUsageError(`--interval takes <n>s|m|h|d|w|mo, e.g. 5m (got "${values.interval ?? ''}")`);
    const aggregations = (values.agg ?? []).flatMap((a) => a.split(',')).map((spec) => {
      const [fn, column, alias] = spec.split(':');
      return { fn, ...(column ? { column } : {}), ...(alias ? { alias } : {}) };
    });
    if (aggregations.length === 0) throw new ClientUsageError('--interval needs --agg <fn>:<column>, e.g. --agg avg:usage');
    body.downsample = {
      intervalUnit: INTERVAL_UNITS[interval[2]!],
      intervalSize: Number(interval[1]),
      aggregations,
      ...(values['group-by'] ? { groupBy: values['group-by'].split(',') } : {}),
    };
  }
  const res = await send(endpointOf(values), `/datasets/${encodeURIComponent(values.dataset)}/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  output.out(render((await res.json()) as Rows, format));
  return 0;
}

async function sql(args: string[], output: Output): Promise<number> {
  const { values, positionals } = parse(args, { param: { type: 'string', multiple: true } });
  if (values.help) return help(output);
  if (positionals.length !== 1) throw new ClientUsageError('sql takes one statement (quote it)');
  const format = outputFormat(values.format);
  const res = await send(endpointOf(values), '/sql', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sql: positionals[0], ...(values.param ? { params: values.param } : {}) }),
  });
  output.out(render((await res.json()) as Rows, format));
  return 0;
}

function help(output: Output): number {
  output.out(`${CLIENT_USAGE}\n`);
  return 0;
}
