/**
 * A real Prometheus server (Debian's `prometheus` package) for tests: its own process with a
 * temporary configuration and data directory on a free port (never the package's service), which
 * scrapes a target every second and remote-writes what it scrapes. Stopped by its pid.
 */
import { type Subprocess, spawn } from 'bun';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePortAsync } from './ports.ts';

export interface PrometheusOptions {
  /** host:port whose /metrics is scraped every second. */
  scrapeTarget: string;
  /** Where samples are remote-written (a URL with path, and query string if any). */
  remoteWriteUrl: string;
  /** Sent as `Authorization: Bearer <token>` (the remote_write `authorization` block). */
  bearerToken?: string;
}

export interface PrometheusServer {
  url: string;
  /** Prometheus's own HTTP API: GET /api/v1/query; the `data` of its answer. */
  query(expression: string, time: number): Promise<{ resultType: string; result: { metric: Record<string, string>; value?: [number, string]; values?: [number, string][] }[] }>;
  /** Everything it logged so far. */
  output(): string;
  stop(): Promise<void>;
}

export function prometheusAvailable(): boolean {
  return Bun.which('prometheus') !== null;
}

export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'timestore-prometheus-'));
  const port = await freePortAsync();
  const authorization = options.bearerToken ? `    authorization:\n      credentials: ${options.bearerToken}\n` : '';
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: timestore',
      '    static_configs:',
      `      - targets: ['${options.scrapeTarget}']`,
      'remote_write:',
      `  - url: ${options.remoteWriteUrl}`,
      '    remote_timeout: 10s',
      authorization.trimEnd(),
      '    queue_config:',
      '      batch_send_deadline: 1s',
      '      min_backoff: 100ms',
      '      max_backoff: 1s',
      '    metadata_config:',
      '      send_interval: 2s',
      '',
    ]
      .filter((line) => line !== '')
      .join('\n')
      .concat('\n'),
  );
  let log = '';
  const proc: Subprocess = spawn({
    cmd: [
      'prometheus',
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) log += decoder.decode(chunk);
  };
  void collect(proc.stdout as ReadableStream<Uint8Array>);
  void collect(proc.stderr as ReadableStream<Uint8Array>);

  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGTERM');
      const killed = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await proc.exited;
      clearTimeout(killed);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  for (const deadline = Date.now() + 30_000; ; await Bun.sleep(100)) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited with ${proc.exitCode}:\n${log.slice(-4000)}`);
    }
    const ready = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus was not ready within 30 s:\n${log.slice(-4000)}`);
    }
  }

  return {
    url,
    async query(expression, time) {
      const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: expression, time: String(time / 1000) })}`);
      const body = (await res.json()) as { status: string; data: never; error?: string };
      if (body.status !== 'success') throw new Error(`prometheus query ${expression}: ${body.error}`);
      return body.data;
    },
    output: () => log,
    stop,
  };
}
