import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import pino, { type Logger } from 'pino';
import { Gatehouse, type GatehouseOptions } from '../../src/app';
import { DEFAULT_SHEDDING } from '../../src/server/shedding';

export interface TestServer {
  app: Gatehouse;
  port: number;
  auditFile: string;
  /** Audit records written so far (flushes first). */
  auditRecords(): Promise<Record<string, unknown>[]>;
  stop(): Promise<void>;
}

/** Starts the real Gatehouse in this process on a free loopback port. */
export async function startTestServer(
  overrides: Partial<GatehouseOptions> & { policiesDir: string; log?: Logger },
): Promise<TestServer> {
  const { log, ...options } = overrides;
  const auditFile = path.join(mkdtempSync(path.join(tmpdir(), 'gatehouse-audit-')), 'audit.log');
  const app = await Gatehouse.start(
    {
      grpcHost: '127.0.0.1',
      grpcPort: 0,
      trustDomains: ['shop.example'],
      trustXfcc: false,
      auditLog: auditFile,
      drainTimeoutMs: 5000,
      // A test machine that is busy lags its event loop; only the tests of shedding ask for it.
      shedding: { ...DEFAULT_SHEDDING, maxEventLoopLagMs: 0 },
      ...options,
    },
    log ?? pino({ level: 'silent' }),
  );
  return {
    app,
    port: app.grpc.port,
    auditFile,
    auditRecords: async () => {
      await (app as unknown as { audit: { flush(): Promise<void> } }).audit.flush();
      return readJsonLines(auditFile);
    },
    stop: () => app.stop(),
  };
}

/** A logger whose JSON lines are kept in memory, for asserting what was logged. */
export function memoryLogger(): { log: Logger; lines: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const log = pino({ level: 'debug' }, { write: (chunk: string) => void lines.push(chunk) });
  return { log, lines: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

export function readJsonLines(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
