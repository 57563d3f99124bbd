/**
 * A/B of a proposed src/ change on the cached bench/query state: two servers, the committed code
 * (`--at`) and the same code with `--patch` applied (an exported copy; the working tree is never
 * touched), each on its own restored copy of the catalog and both on the same storage root, answer
 * the same query instances in alternating order (A B, B A, …), so a busy moment on the shared
 * machine hits both alike.
 *
 *   node_modules/.bin/bun bench/query/ab.ts --at <rev> --patch bench/query/patches/01-….patch
 *       [--reps 60] [--warmup 3] [--budget-s 40] [--shapes a,b] [--seed 1]
 *       [--state /tmp/timestore-bench-query/<key>]   (default: run.ts's full-size state)
 *
 * Runs every TSBS shape on `cpu` and the one-hour single-groupby-1-1-1 on `growth30d` (a random
 * hour anywhere in its 30 days); prints p50/p99 per side and writes
 * bench/results/query-ab-<date>-<commit>-<patch names>.json.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { prng } from '../../test/harness/prng.ts';
import { percentile } from '../ingest/load.ts';
import { REPO_ROOT, round } from '../ingest/server.ts';
import { resolveSource } from '../ingest/source.ts';
import { START_MS } from '../ingest/tsbs.ts';
import { instances, randomRange, SHAPES, type QueryBody, type Shape, type Space } from './shapes.ts';
import { restoreCatalog, startQueryServer, stateKey, type State, type StateInfo } from './state.ts';

const defaults = { at: '', patch: '', reps: 60, warmup: 3, 'budget-s': 40, shapes: '', seed: 1, state: '', out: join(REPO_ROOT, 'bench/results') };
const opts: Record<string, string | number> = { ...defaults };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const name = argv[i]!.replace(/^--/, '');
  if (!(name in defaults) || argv[i + 1] === undefined) {
    console.error(`usage: see the comment at the top of bench/query/ab.ts (bad option --${name})`);
    process.exit(2);
  }
  opts[name] = typeof defaults[name as keyof typeof defaults] === 'number' ? Number(argv[i + 1]) : argv[i + 1]!;
}
if (!opts.at || !opts.patch) {
  console.error('--at <rev> and --patch <file,…> are required');
  process.exit(2);
}
const log = (message: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
const patches = String(opts.patch).split(',').filter(Boolean);

const defaultKey = stateKey(
  [
    { slug: 'cpu', hosts: 1000, hours: 24, dropBodies: false },
    { slug: 'growth1d', hosts: 100, hours: 24, dropBodies: false },
    { slug: 'growth30d', hosts: 100, hours: 720, dropBodies: true },
  ],
  5000,
);
const dir = String(opts.state) || join('/tmp/timestore-bench-query', defaultKey);
if (!existsSync(join(dir, 'state.json'))) {
  console.error(`no cached state at ${dir}: run bench/query/run.ts first`);
  process.exit(2);
}
const info = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as StateInfo;
const state: State = { dir, storageRoot: join(dir, 'root'), dump: join(dir, 'catalog.dump'), info, reused: true };

const sources = { A: resolveSource(String(opts.at)), B: resolveSource(String(opts.at), patches) };
process.on('exit', () => {
  for (const s of Object.values(sources)) rmSync(s.root, { recursive: true, force: true });
});
const servers = {
  A: await startQueryServer({ databaseUrl: await restoreCatalog(state), storageRoot: state.storageRoot, source: sources.A, env: {} }),
  B: await startQueryServer({ databaseUrl: await restoreCatalog(state), storageRoot: state.storageRoot, source: sources.B, env: {} }),
};
log(`A: ${sources.A.description}; B: ${sources.B.description}`);

async function time(side: 'A' | 'B', slug: string, body: QueryBody): Promise<number> {
  const started = performance.now();
  const res = await fetch(`${servers[side].url}/datasets/${slug}/query`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${side} ${slug}: ${res.status} ${text.slice(0, 300)}`);
  return performance.now() - started;
}

const dataset = (slug: string) => info.datasets.find((d) => d.slug === slug)!;
const cpu = dataset('cpu');
const growth = dataset('growth30d');
const cases: Array<{ name: string; slug: string; shape: Shape; space: Space; range?: (r: () => number) => { start: Date; end: Date } }> = [
  ...SHAPES.map((shape) => ({ name: shape.name, slug: 'cpu', shape, space: { hosts: cpu.hosts, startMs: START_MS, hours: cpu.hours } })),
  {
    name: `single-groupby-1-1-1 on growth30d`,
    slug: 'growth30d',
    shape: SHAPES[0]!,
    space: { hosts: growth.hosts, startMs: START_MS, hours: growth.hours },
    range: (r) => randomRange(r, { hosts: growth.hosts, startMs: START_MS, hours: growth.hours }, 1),
  },
];
const wanted = opts.shapes ? new Set(String(opts.shapes).split(',')) : null;
const stats = (v: number[]) => ({ n: v.length, p50: round(percentile(v, 50), 2), p99: round(percentile(v, 99), 2) });
const results = [];
for (const c of cases.filter((x) => !wanted || wanted.has(x.name) || wanted.has(x.shape.name))) {
  const seed = [...c.name].reduce((h, ch) => (Math.imul(h, 31) + ch.charCodeAt(0)) >>> 0, Number(opts.seed) >>> 0);
  const bodies = instances(c.shape, c.space, Number(opts.warmup) + Number(opts.reps), prng(seed), c.range);
  const a: number[] = [];
  const b: number[] = [];
  const started = performance.now();
  for (const [i, body] of bodies.entries()) {
    const order: Array<'A' | 'B'> = i % 2 === 0 ? ['A', 'B'] : ['B', 'A'];
    const t: Record<string, number> = {};
    for (const side of order) t[side] = await time(side, c.slug, body);
    if (i < Number(opts.warmup)) continue;
    a.push(t.A!);
    b.push(t.B!);
    if (a.length >= 6 && performance.now() - started > Number(opts['budget-s']) * 1000) break;
  }
  const r = {
    case: c.name,
    A: stats(a),
    B: stats(b),
    ratioP50: round(percentile(b, 50) / percentile(a, 50), 3),
    pairedRatioMedian: round(percentile(b.map((x, i) => x / a[i]!), 50), 3),
    pairedDifferenceMedianMs: round(percentile(b.map((x, i) => x - a[i]!), 50), 2),
  };
  results.push(r);
  log(`${c.name}: A p50 ${r.A.p50} p99 ${r.A.p99} | B p50 ${r.B.p50} p99 ${r.B.p99} | B/A p50 ${r.ratioP50}, paired ${r.pairedRatioMedian}, B−A median ${r.pairedDifferenceMedianMs} ms (n=${r.A.n})`);
}
for (const s of Object.values(servers)) await s.stop();

mkdirSync(String(opts.out), { recursive: true });
const name = patches.map((p) => p.split('/').at(-1)!.replace(/\.patch$/, '')).join('+');
const out = join(String(opts.out), `query-ab-${new Date().toISOString().slice(0, 10)}-${sources.A.commit}-${name}.json`);
writeFileSync(out, `${JSON.stringify({ startedAt: new Date().toISOString(), A: sources.A.description, B: sources.B.description, state: dir, results }, null, 2)}\n`);
log(`wrote ${out}`);
process.exit(0);
