import pino, { type Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Operational log on stderr, so stdout stays the audit stream. */
export function createLogger(level: string): Logger {
  return pino(
    // Level names ("level":"warn"), as log pipelines and people read them, not pino's numbers.
    {
      level,
      base: { service: 'gatehouse' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ dest: 2, sync: true }),
  );
}
