/**
 * How fast the machine's CPU is, moment by moment: a fixed piece of integer work, timed in CPU
 * time (not wall time, so a busy machine that merely delays it does not count) every half second.
 * On a shared VM the same work can cost half as much again in some minutes as in others, and every
 * program's CPU per row grows with it; run this beside a benchmark to tell such a phase from a
 * slower code path. It costs about 4 % of one core, the same for every system measured beside it.
 *
 *   node_modules/.bin/bun bench/machine-speed.ts --out /tmp/speed.txt      # until stopped
 *   node_modules/.bin/bun bench/machine-speed.ts --summarise /tmp/speed.txt --peers-log /tmp/peers/results/run.log
 *
 * The first writes one line per sample, `<unix seconds> <CPU ms of the work>`. The second prints
 * the median and the 10th and 90th percentiles of the samples taken during each ingest repetition
 * of the peers benchmark (from its `[hh:mm:ss] ingest rep N/M: peer` line, UTC, to its next
 * timestamped line).
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { percentile } from './ingest/load.ts';

// Unknown options and missing values are refused by parseArgs itself.
const { values: args } = parseArgs({
  options: { out: { type: 'string' }, summarise: { type: 'string' }, 'peers-log': { type: 'string' } },
});

/** The fixed work: about 18 ms of one core on the project's 2-core VMs at their usual speed. */
function work(): number {
  let s = 0;
  for (let i = 0; i < 2_000_000; i++) s = (s + ((i * i) % 7)) | 0;
  return s;
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

async function sample(out: string): Promise<void> {
  writeFileSync(out, '');
  for (let i = 0; i < 20; i++) work(); // compiled before the first sample
  for (;;) {
    const before = cpuMs();
    work();
    appendFileSync(out, `${(Date.now() / 1000).toFixed(3)} ${(cpuMs() - before).toFixed(2)}\n`);
    await Bun.sleep(500);
  }
}

function summarise(samplesPath: string, logPath: string): void {
  const samples = readFileSync(samplesPath, 'utf8').trim().split('\n').map((line) => line.split(' ').map(Number) as [number, number]);
  const day = new Date(samples[0]![0] * 1000).toISOString().slice(0, 10);
  // Every timestamped line of the log starts a step; an ingest repetition's ends where the next begins.
  const steps = [...readFileSync(logPath, 'utf8').matchAll(/^\[(\d\d:\d\d:\d\d)\] (.*)$/gm)].map((m) => ({
    at: Date.parse(`${day}T${m[1]}Z`) / 1000,
    ingest: /^ingest rep (\d+)\/\d+: (\S+)/.exec(m[2]!),
  }));
  console.log('| ingest repetition | samples | CPU ms of the work: median | p10 | p90 |\n| --- | ---: | ---: | ---: | ---: |');
  steps.forEach((step, i) => {
    if (!step.ingest) return;
    const end = steps[i + 1]?.at ?? Infinity;
    const during = samples.filter(([at]) => at >= step.at && at < end).map(([, ms]) => ms);
    if (during.length === 0) return;
    const p = (q: number) => percentile(during, q).toFixed(1);
    console.log(`| ${step.ingest[2]} rep ${step.ingest[1]} | ${during.length} | ${p(50)} | ${p(10)} | ${p(90)} |`);
  });
}

if (args.out) await sample(args.out);
else if (args.summarise && args['peers-log']) summarise(args.summarise, args['peers-log']);
else {
  console.error('usage: bun bench/machine-speed.ts --out <file> | --summarise <file> --peers-log <run.log>');
  process.exit(2);
}
