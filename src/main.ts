#!/usr/bin/env bun
/**
 * The `timestore` command: serve (the default), lifecycle, migrate, token, version, help; and as a
 * client of a running server: ingest, query, sql.
 */
import pino from 'pino';
import { runClientCommand } from './client/command.ts';
import { openCatalog } from './catalog/connection.ts';
import { CONFIG_VARIABLES, ConfigError, loadConfig, type Config } from './config.ts';
import { createLogger, type Logger } from './log.ts';
import { startLifecycleProcess, startServer } from './server.ts';
import { runTokenCommand, TOKEN_USAGE, TokenUsageError } from './tokens/command.ts';
import { VERSION } from './version.ts';

const USAGE = `timestore ${VERSION}: a time-series store in one executable

Usage: timestore [command]

Commands:
  serve      start the HTTP server (the default)
  lifecycle  run retention, compaction and garbage collection without serving HTTP
             (with --once: one round for every dataset, then exit)
  migrate    apply pending catalog migrations, then exit
  token      create, list or revoke API tokens (TIMESTORE_AUTH=tokens); see timestore token --help
  version    print the version
  help       print this help (also --help, -h)

Client commands (talk to a running server; see timestore ingest --help):
  ingest     send NDJSON, CSV, line-protocol, Arrow or Parquet files (or stdin) in batches, resumable
  query      read a time range of a dataset, raw or downsampled, as a table, CSV or JSON
  sql        run one read-only SQL statement over the datasets

Configuration comes from environment variables:
${CONFIG_VARIABLES.map((v) => `  ${v.name.padEnd(32)} ${v.description.replace(/`/g, '')}`).join('\n')}
`;

type Command = 'serve' | 'lifecycle' | 'migrate' | 'token' | 'ingest' | 'query' | 'sql' | 'version' | 'help';
const COMMANDS: Record<string, Command> = {
  serve: 'serve',
  lifecycle: 'lifecycle',
  migrate: 'migrate',
  token: 'token',
  ingest: 'ingest',
  query: 'query',
  sql: 'sql',
  version: 'version',
  '--version': 'version',
  help: 'help',
  '--help': 'help',
  '-h': 'help',
};

async function main(argv: string[]): Promise<number> {
  const command = argv.length === 0 ? 'serve' : COMMANDS[argv[0] as string];
  if (!command) return usageError(`unknown command or flag "${argv[0]}"`);
  if (command === 'token') return token(argv.slice(1));
  if (command === 'ingest' || command === 'query' || command === 'sql') {
    const output = { out: (text: string) => process.stdout.write(text), err: (text: string) => process.stderr.write(text) };
    return runClientCommand(command, argv.slice(1), output);
  }
  const once = command === 'lifecycle' && argv[1] === '--once';
  if (argv.length > (once ? 2 : 1)) return usageError(`unexpected argument "${argv[once ? 2 : 1]}"`);
  if (command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }

  if (command === 'serve') execWithAllocatorOptions();
  const config = configOrExitCode();
  if (typeof config === 'number') return config;
  const log = createLogger(config.logLevel);
  try {
    if (command === 'migrate') return await migrate(config, log);
    if (command === 'lifecycle') return await untilStopped(await startLifecycleProcess(config, log, { once }), config, log, once);
    return await untilStopped(await startServer(config, log), config, log, false);
  } catch (err) {
    log.fatal({ err }, `timestore ${command} failed: ${(err as Error).message}`);
    return 1;
  }
}

/** mimalloc's delay before it returns freed memory to the kernel, in ms (its default: 10). */
const ALLOCATOR_PURGE_DELAY = 'MIMALLOC_PURGE_DELAY';

/**
 * Bun's allocator returns freed memory to the kernel 10 ms after it is freed, so a server that
 * buffers multi-megabyte ingest bodies faults fresh pages in for every one (about 2 ms of the HTTP
 * thread per 2.7 MiB body on 2 cores; docs/performance.md). The allocator reads its options from
 * the environment before any JavaScript runs, so the server replaces itself (same process id, same
 * arguments) with a 1 s delay, unless the environment already sets one.
 */
function execWithAllocatorOptions(): void {
  if (process.env[ALLOCATOR_PURGE_DELAY] !== undefined) return;
  // The compiled binary's argv[1] is its embedded entry point, which it finds again by itself.
  const script = process.argv[1]?.startsWith('/$bunfs/') ? [] : process.argv.slice(1, 2);
  const args = [process.execPath, ...process.execArgv, ...script, ...process.argv.slice(2)];
  process.execve?.(process.execPath, args, { ...process.env, [ALLOCATOR_PURGE_DELAY]: '1000' });
}

/** The configuration, or the exit code after printing what is wrong with it. */
function configOrExitCode(): Config | number {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`timestore: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

async function token(args: string[]): Promise<number> {
  if (args.length === 0) {
    process.stderr.write(`timestore: token needs a command\n\n${TOKEN_USAGE}\n`);
    return 2;
  }
  if (['help', '--help', '-h'].includes(args[0] as string)) {
    process.stdout.write(`${TOKEN_USAGE}\n`);
    return 0;
  }
  const config = configOrExitCode();
  if (typeof config === 'number') return config;
  // stdout carries what the command prints (a token's secret); the log goes to stderr, warnings only.
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, pino.destination({ fd: 2, sync: true }));
  const output = { out: (line: string) => process.stdout.write(`${line}\n`), err: (line: string) => process.stderr.write(`${line}\n`) };
  try {
    return await runTokenCommand(args, config, log, output);
  } catch (err) {
    if (err instanceof TokenUsageError) {
      process.stderr.write(`timestore: ${err.message}\n\n${TOKEN_USAGE}\n`);
      return 2;
    }
    log.fatal({ err }, `timestore token failed: ${(err as Error).message}`);
    return 1;
  }
}

async function migrate(config: Config, log: Logger): Promise<number> {
  const catalog = await openCatalog({ databaseUrl: config.databaseUrl, schema: config.pgSchema, storageRoot: config.storageRoot, log });
  try {
    await catalog.migrate();
  } finally {
    await catalog.close();
  }
  return 0;
}

/** Runs until SIGTERM/SIGINT (or, with `untilFinished`, until the process's work is done), then shuts down. */
async function untilStopped(
  server: { shutdown(reason: string): Promise<void>; finished?: Promise<void> },
  config: Config,
  log: Logger,
  untilFinished: boolean,
): Promise<number> {
  return new Promise<number>((resolve) => {
    let shuttingDown = false;
    const stop = (reason: string, code: number) => {
      shuttingDown = true;
      const force = setTimeout(() => {
        log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out: exiting now');
        resolve(1);
      }, config.shutdownTimeoutMs);
      server.shutdown(reason).then(
        () => {
          clearTimeout(force);
          resolve(code);
        },
        (err) => {
          clearTimeout(force);
          log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    const onSignal = (signal: NodeJS.Signals) => {
      // A second signal during shutdown forces the exit.
      if (shuttingDown) {
        log.warn({ signal }, 'second signal: exiting now');
        resolve(1);
        return;
      }
      stop(signal, 0);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    if (untilFinished && server.finished) {
      server.finished.then(
        () => shuttingDown || stop('work finished', 0),
        (err: Error) => {
          log.error({ err }, `lifecycle round failed: ${err.message}`);
          if (!shuttingDown) stop('work failed', 1);
        },
      );
    }
  });
}

function usageError(message: string): number {
  process.stderr.write(`timestore: ${message}\n\n${USAGE}`);
  return 2;
}

const code = await main(process.argv.slice(2));
process.exit(code);
