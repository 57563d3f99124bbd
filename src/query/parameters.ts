/**
 * GET /datasets/:slug/query: its query string (model/query.ts QueryParametersSchema) as the
 * {@link QueryRequest} of the POST form, so both are planned and answered by the same code and
 * refused with the same errors. Dashboards fill it in with their macros: epoch milliseconds for
 * the range, an interval in milliseconds (Grafana's `${__from}`, `${__to}`, `${__interval_ms}`).
 */
import { errors } from '../model/errors.ts';
import type { AggregationFn, Fill, FilterValue, IntervalUnit, QueryParameters, QueryRequest } from '../model/query.ts';
import type { SchemaField } from '../model/records.ts';

type Downsample = NonNullable<QueryRequest['downsample']>;

const UNITS: Record<string, IntervalUnit> = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week', M: 'month' };
const SECONDS: [IntervalUnit, number][] = [
  ['week', 604_800],
  ['day', 86_400],
  ['hour', 3_600],
  ['minute', 60],
  ['second', 1],
];

/** The items of list parameters, comma-separated or repeated. */
function items(value: string | string[] | undefined): string[] {
  return (Array.isArray(value) ? value : value === undefined ? [] : [value]).flatMap((v) => v.split(',')).filter((v) => v !== '');
}

/** Epoch milliseconds (digits only) as ISO-8601; anything else as given, for the planner to judge. */
function instant(value: string): string {
  if (!/^-?\d+$/.test(value)) return value;
  const date = new Date(Number(value));
  if (Number.isNaN(date.getTime())) throw errors.invalid_time_range(`${value} is not a time: epoch milliseconds or ISO-8601`);
  return date.toISOString();
}

/**
 * A bucket width: `<n><unit>`, or milliseconds rounded up to whole seconds and written in the
 * largest unit that divides them (a dashboard's 30 days is 30 × day, its 200 ms one second).
 */
export function intervalOf(value: string): Pick<Downsample, 'intervalUnit' | 'intervalSize'> {
  const m = /^([1-9]\d*)(ms|s|m|h|d|w|M)?$/.exec(value);
  if (!m) throw errors.validation_failed('query', undefined);
  const size = Number(m[1]);
  if (m[2] && m[2] !== 'ms') return { intervalUnit: UNITS[m[2]]!, intervalSize: size };
  const seconds = Math.ceil(size / 1000);
  const [unit, width] = SECONDS.find(([, w]) => seconds % w === 0)!;
  return { intervalUnit: unit, intervalSize: seconds / width };
}

function aggregation(item: string, index: number): Downsample['aggregations'][number] {
  const where = `agg[${index}] "${item}"`;
  const parts = item.split(':');
  if (parts.length > 3) throw errors.invalid_aggregation(`${where}: an aggregation is fn:column[:alias]`, { index });
  const [fn = '', column, alias] = parts;
  const percentile = /^p(\d+(?:\.\d+)?)$/.exec(fn);
  const named = { ...(column ? { column } : {}), ...(alias ? { alias } : {}) };
  if (percentile) {
    const p = Number(percentile[1]) / 100;
    if (!column) throw errors.invalid_aggregation(`${where}: a percentile needs a column (p95:latency)`, { index });
    return { fn: 'percentile', percentile: p, alias: alias ?? `${fn.replace('.', '_')}_${column}`, column };
  }
  const known: AggregationFn[] = ['avg', 'min', 'max', 'sum', 'median', 'count', 'count_distinct', 'first', 'last'];
  if (!known.includes(fn as AggregationFn)) {
    throw errors.invalid_aggregation(`${where}: "${fn}" is not one of ${known.join(', ')} or p<percent> (p95)`, { index });
  }
  return { fn: fn as AggregationFn, ...named };
}

function fillOf(value: string | undefined): Fill | undefined {
  if (value === undefined) return undefined;
  return value === 'none' || value === 'null' || value === 'previous' || value === 'linear' ? value : Number(value);
}

/** A filter value typed by its column, as the POST body would carry it; 400 `invalid_filter` when it does not convert. */
function typed(value: string, field: SchemaField): FilterValue {
  switch (field.type) {
    case 'integer':
    case 'double': {
      const n = value.trim() === '' ? Number.NaN : Number(value);
      if (!Number.isFinite(n)) throw errors.invalid_filter(`filter ${field.name}:${value}: not a number`, { column: field.name });
      return n;
    }
    case 'boolean':
      if (value !== 'true' && value !== 'false') throw errors.invalid_filter(`filter ${field.name}:${value}: true or false`, { column: field.name });
      return value === 'true';
    default:
      return value;
  }
}

/** The POST body that asks what these parameters ask; `fields` type the filter values. */
export function queryFromParameters(parameters: QueryParameters, fields: SchemaField[]): QueryRequest {
  const request: QueryRequest = { timeRange: { start: instant(parameters.from), end: instant(parameters.to) } };
  const aggs = items(parameters.agg);
  if (parameters.interval !== undefined) {
    request.downsample = {
      ...intervalOf(parameters.interval),
      aggregations: aggs.map(aggregation),
      ...(parameters.groupBy ? { groupBy: items(parameters.groupBy) } : {}),
      ...(parameters.fill !== undefined ? { fill: fillOf(parameters.fill) } : {}),
    };
  } else if (aggs.length > 0 || parameters.groupBy !== undefined || parameters.fill !== undefined) {
    throw errors.invalid_aggregation('agg, groupBy and fill downsample: they need an interval (e.g. interval=${__interval_ms} or interval=1h)');
  }
  if (parameters.columns !== undefined) request.columns = items(parameters.columns);
  const byName = new Map(fields.map((f) => [f.name, f]));
  // `host:a,b` arrives as the items `host:a` and `b` (list parameters are split at commas): an
  // item without a column is one more value of the one before.
  const wanted = new Map<string, FilterValue[]>();
  let field: SchemaField | undefined;
  for (const item of parameters.filter ?? []) {
    const named = /^([A-Za-z_][A-Za-z0-9_]*):/.exec(item);
    let value = item;
    if (named) {
      field = byName.get(named[1]!);
      if (!field) throw errors.unknown_column(`filter: "${named[1]}" is not a column of this dataset (columns: ${fields.map((f) => f.name).join(', ')})`, { column: named[1] });
      value = item.slice(named[0].length);
    } else if (!field) {
      throw errors.invalid_filter(`filter "${item}": a filter is column:value`);
    }
    wanted.set(field.name, [...(wanted.get(field.name) ?? []), typed(value, field)]);
  }
  if (wanted.size > 0) request.filters = { columns: Object.fromEntries([...wanted].map(([name, values]) => [name, values.length === 1 ? { eq: values[0]! } : { in: values }])) };
  if (parameters.limit !== undefined) request.limit = Number(parameters.limit);
  if (parameters.order !== undefined) request.order = parameters.order;
  return request;
}
