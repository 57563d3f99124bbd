/**
 * What `timestore ingest` shows while it runs: a bar with rows/s and ETA on a terminal
 * (cli-progress), one plain line every few seconds otherwise (logs, CI, pipes).
 */
import { SingleBar } from 'cli-progress';

export interface Progress {
  /** `position` of `total` bytes read (total null: unknown, stdin); `rows` acknowledged so far. */
  update(position: number, rows: number): void;
  stop(): void;
}

const PLAIN_EVERY_MS = 5_000;

export function startProgress(total: number | null, stream: NodeJS.WriteStream = process.stderr): Progress {
  const started = performance.now();
  const rate = (rows: number) => Math.round(rows / Math.max((performance.now() - started) / 1000, 0.001));
  if (stream.isTTY) {
    const bar = new SingleBar(
      {
        stream,
        format: total === null ? '{rows} rows | {rate} rows/s' : '[{bar}] {percentage}% | {rows} rows | {rate} rows/s | ETA {eta_formatted}',
        hideCursor: true,
        etaBuffer: 50,
      },
    );
    bar.start(total ?? 1, 0, { rows: 0, rate: 0 });
    // Ctrl-C: give the terminal its cursor back (the bar hides it); a re-run resumes the ingest.
    const interrupted = () => {
      bar.stop();
      process.exit(130);
    };
    process.once('SIGINT', interrupted);
    return {
      update: (position, rows) => bar.update(total === null ? 0 : position, { rows, rate: rate(rows) }),
      stop: () => {
        process.off('SIGINT', interrupted);
        bar.stop();
      },
    };
  }
  let last = started;
  return {
    update(position, rows) {
      const now = performance.now();
      if (now - last < PLAIN_EVERY_MS) return;
      last = now;
      const percent = total ? ` (${Math.floor((100 * position) / total)}%)` : '';
      stream.write(`ingest: ${rows} rows${percent}, ${rate(rows)} rows/s\n`);
    },
    stop() {},
  };
}
