import pino, { type Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Operational log on stderr, so stdout stays the audit stream. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'gatehouse' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 2, sync: true }));
}
