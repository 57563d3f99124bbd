/**
 * A strict parser of the Prometheus text exposition format 0.0.4, for tests: it throws, naming
 * the line, on anything a Prometheus server would refuse or that breaks the format's rules
 * (bad names, label syntax or escapes, values, a TYPE after samples, a family split in two, a
 * duplicate series, a sample that does not belong to its family, a negative counter, and
 * histograms whose buckets are not cumulative or whose +Inf bucket is not `_count`).
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help: string | null;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export class Exposition {
  constructor(readonly families: Map<string, Family>) {}

  family(name: string): Family {
    const family = this.families.get(name);
    if (!family) throw new Error(`no metric family ${name}`);
    return family;
  }

  /** Samples named `name` whose labels include `labels`. */
  samples(name: string, labels: Record<string, string> = {}): Sample[] {
    const out: Sample[] = [];
    for (const family of this.families.values()) {
      for (const s of family.samples) {
        if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) out.push(s);
      }
    }
    return out;
  }

  /** The one sample named `name` with exactly these labels (besides none), or undefined. */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const matches = this.samples(name, labels).filter((s) => Object.keys(s.labels).length === Object.keys(labels).length);
    if (matches.length > 1) throw new Error(`${name}${JSON.stringify(labels)} matches ${matches.length} samples`);
    return matches[0]?.value;
  }

  /** The sum of the samples named `name` whose labels include `labels` (0 when none). */
  sum(name: string, labels: Record<string, string> = {}): number {
    return this.samples(name, labels).reduce((n, s) => n + s.value, 0);
  }
}

export function parsePrometheusText(text: string): Exposition {
  const families = new Map<string, Family>();
  const seriesSeen = new Set<string>();
  let current: Family | null = null;
  const closed = new Set<string>();
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the exposition must end with a line feed');
  const lines = text.split('\n');
  lines.pop();

  const open = (name: string, lineNo: number): Family => {
    if (current?.name === name) return current;
    if (closed.has(name) || (families.has(name) && families.get(name)!.samples.length > 0)) {
      throw new Error(`line ${lineNo}: metric family ${name} appears again after another family`);
    }
    if (current) closed.add(current.name);
    const family = families.get(name) ?? { name, type: 'untyped' as MetricType, help: null, samples: [] };
    families.set(name, family);
    current = family;
    return family;
  };

  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, keyword, name, rest = ''] = m;
      if (!METRIC_NAME.test(name!)) throw new Error(`line ${lineNo}: bad metric name "${name}"`);
      const family = open(name!, lineNo);
      if (keyword === 'HELP') {
        if (family.help !== null) throw new Error(`line ${lineNo}: second HELP for ${name}`);
        family.help = unescape(rest, false, lineNo);
      } else {
        if (family.samples.length > 0) throw new Error(`line ${lineNo}: TYPE for ${name} after its samples`);
        if ((family as Family & { typed?: boolean }).typed) throw new Error(`line ${lineNo}: second TYPE for ${name}`);
        if (!TYPES.has(rest.trim() as MetricType)) throw new Error(`line ${lineNo}: unknown type "${rest}"`);
        family.type = rest.trim() as MetricType;
        (family as Family & { typed?: boolean }).typed = true;
      }
      return;
    }

    const sample = parseSample(line, lineNo);
    const familyName = familyOf(sample.name, current);
    const family = open(familyName, lineNo);
    checkBelongs(family, sample, lineNo);
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seriesSeen.has(key)) throw new Error(`line ${lineNo}: duplicate series ${line}`);
    seriesSeen.add(key);
    family.samples.push(sample);
  });

  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family);
  return new Exposition(families);
}

/** The family a sample belongs to: the current family when the name is one of its sample names. */
function familyOf(name: string, current: Family | null): string {
  if (current) {
    const suffixes = current.type === 'histogram' ? ['_bucket', '_sum', '_count'] : current.type === 'summary' ? ['', '_sum', '_count'] : [''];
    if (suffixes.some((s) => `${current.name}${s}` === name)) return current.name;
  }
  return name;
}

function checkBelongs(family: Family, sample: Sample, lineNo: number): void {
  if (family.type === 'histogram') {
    if (sample.name === `${family.name}_bucket`) {
      if (sample.labels.le === undefined) throw new Error(`line ${lineNo}: ${sample.name} without an le label`);
      parseValue(sample.labels.le, lineNo);
    } else if (sample.name !== `${family.name}_sum` && sample.name !== `${family.name}_count`) {
      throw new Error(`line ${lineNo}: ${sample.name} is not a sample of histogram ${family.name}`);
    }
    if (sample.name !== `${family.name}_bucket` && sample.labels.le !== undefined) throw new Error(`line ${lineNo}: le on ${sample.name}`);
  } else if (sample.name !== family.name && family.type !== 'summary') {
    throw new Error(`line ${lineNo}: ${sample.name} is not a sample of ${family.type} ${family.name}`);
  }
  if (family.type === 'counter' && !(sample.value >= 0)) throw new Error(`line ${lineNo}: counter ${sample.name} is ${sample.value}`);
}

function checkHistogram(family: Family): void {
  const series = new Map<string, { buckets: { le: number; value: number }[]; count?: number; sum?: number }>();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name.endsWith('_bucket')) entry.buckets.push({ le: parseValue(le!, 0), value: s.value });
    else if (s.name.endsWith('_count')) entry.count = s.value;
    else entry.sum = s.value;
  }
  for (const [key, h] of series) {
    const where = `histogram ${family.name}${key}`;
    if (h.count === undefined || h.sum === undefined) throw new Error(`${where} lacks _count or _sum`);
    const sorted = [...h.buckets].sort((a, b) => a.le - b.le);
    if (sorted.at(-1)?.le !== Number.POSITIVE_INFINITY) throw new Error(`${where} has no +Inf bucket`);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]!.value < sorted[i - 1]!.value) throw new Error(`${where}: bucket le=${sorted[i]!.le} is below the one before it`);
    }
    if (sorted.at(-1)!.value !== h.count) throw new Error(`${where}: the +Inf bucket is not _count`);
  }
}

function parseSample(line: string, lineNo: number): Sample {
  let i = 0;
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) throw new Error(`line ${lineNo}: bad sample "${line}"`);
  const name = nameMatch[0];
  i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      if (line[i] === '}') {
        i++;
        break;
      }
      const labelMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i));
      if (!labelMatch || !LABEL_NAME.test(labelMatch[0])) throw new Error(`line ${lineNo}: bad label name at column ${i + 1}`);
      const label = labelMatch[0];
      i += label.length;
      if (line[i] !== '=' || line[i + 1] !== '"') throw new Error(`line ${lineNo}: expected ="…" after label ${label}`);
      i += 2;
      let raw = '';
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new Error(`line ${lineNo}: unterminated label value`);
        if (c === '\\') {
          raw += c + (line[i + 1] ?? '');
          i += 2;
          continue;
        }
        if (c === '"') break;
        raw += c;
        i++;
      }
      i++;
      if (label in labels) throw new Error(`line ${lineNo}: label ${label} twice`);
      labels[label] = unescape(raw, true, lineNo);
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`line ${lineNo}: expected , or } at column ${i + 1}`);
    }
  }
  const rest = line.slice(i);
  const m = /^ +(\S+)(?: +(-?\d+))?$/.exec(rest);
  if (!m) throw new Error(`line ${lineNo}: bad value part "${rest}"`);
  return { name, labels, value: parseValue(m[1]!, lineNo) };
}

function parseValue(text: string, lineNo: number): number {
  if (text === '+Inf' || text === 'Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  if (text === 'NaN') return Number.NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`line ${lineNo}: bad value "${text}"`);
  return Number(text);
}

/** HELP text escapes \\ and \n; label values also \". Anything else after a backslash is an error. */
function unescape(raw: string, quotes: boolean, lineNo: number): string {
  return raw.replace(/\\(.?)/g, (_, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    if (c === '"' && quotes) return '"';
    throw new Error(`line ${lineNo}: bad escape \\${c}`);
  });
}
