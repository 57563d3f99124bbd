#!/usr/bin/env bun
/**
 * The `timestore` command: serve (the default), migrate, version, help.
 */
import { openCatalog } from './catalog/connection.ts';
import { CONFIG_VARIABLES, ConfigError, loadConfig, type Config } from './config.ts';
import { createLogger, type Logger } from './log.ts';
import { startServer } from './server.ts';
import { VERSION } from './version.ts';

const USAGE = `timestore ${VERSION}: a time-series store in one executable

Usage: timestore [command]

Commands:
  serve      start the HTTP server (the default)
  migrate    apply pending catalog migrations, then exit
  version    print the version
  help       print this help (also --help, -h)

Configuration comes from environment variables:
${CONFIG_VARIABLES.map((v) => `  ${v.name.padEnd(32)} ${v.description.replace(/`/g, '')}`).join('\n')}
`;

type Command = 'serve' | 'migrate' | 'version' | 'help';
const COMMANDS: Record<string, Command> = {
  serve: 'serve',
  migrate: 'migrate',
  version: 'version',
  '--version': 'version',
  help: 'help',
  '--help': 'help',
  '-h': 'help',
};

async function main(argv: string[]): Promise<number> {
  if (argv.length > 1) return usageError(`unexpected argument "${argv[1]}"`);
  const command = argv.length === 0 ? 'serve' : COMMANDS[argv[0] as string];
  if (!command) return usageError(`unknown command or flag "${argv[0]}"`);
  if (command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }

  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`timestore: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  try {
    return command === 'migrate' ? await migrate(config, log) : await serve(config, log);
  } catch (err) {
    log.fatal({ err }, `timestore ${command} failed: ${(err as Error).message}`);
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

async function serve(config: Config, log: Logger): Promise<number> {
  const server = await startServer(config, log);
  return new Promise<number>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      // A second signal during shutdown forces the exit.
      if (shuttingDown) {
        log.warn({ signal }, 'second signal: exiting now');
        resolve(1);
        return;
      }
      shuttingDown = true;
      const force = setTimeout(() => {
        log.error({ timeoutMs: config.shutdownTimeoutMs }, 'shutdown timed out: exiting now');
        resolve(1);
      }, config.shutdownTimeoutMs);
      server.shutdown(signal).then(
        () => {
          clearTimeout(force);
          resolve(0);
        },
        (err) => {
          clearTimeout(force);
          log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    let shuttingDown = false;
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

function usageError(message: string): number {
  process.stderr.write(`timestore: ${message}\n\n${USAGE}`);
  return 2;
}

const code = await main(process.argv.slice(2));
process.exit(code);
