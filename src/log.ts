/**
 * Structured JSON logs (one object per line) through pino, at TIMESTORE_LOG_LEVEL. Writes are
 * synchronous: an asynchronous destination lost its last lines ("shutdown complete", a fatal
 * error) when the process exited, and one line per request costs microseconds.
 */
import pino, { type Logger } from 'pino';
import type { LogLevel } from './config.ts';

export type { Logger };

export function createLogger(level: LogLevel, destination: pino.DestinationStream = pino.destination({ fd: 1, sync: true })): Logger {
  return pino(
    {
      level,
      base: { service: 'timestore', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
