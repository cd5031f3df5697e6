import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { Gatehouse, type GatehouseOptions } from '../app';
import {
  isAdminRequest,
  type AdminReply,
  type AdminRequest,
  type ToWorker,
  type WorkerStatus,
} from './messages';

const STATUS_INTERVAL_MS = 1000;

/** A worker: one Gatehouse on the shared gRPC port, reporting to and taking orders from the primary. */
export async function runWorker(
  options: GatehouseOptions,
  slot: number,
  log: Logger,
): Promise<Gatehouse> {
  const app = await Gatehouse.start(options, log.child({ worker: slot }));
  // The primary's AggregatorRegistry asks every worker for this registry over IPC; prom-client
  // only installs the worker's answering listener when an AggregatorRegistry is constructed.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([app.metrics.registry]);

  const report = (): void => {
    const readiness = app.readiness();
    const status: WorkerStatus = {
      type: 'gatehouse:status',
      slot,
      ready: readiness.failing.length === 0,
      version: app.policies.version,
      checks: readiness.checks,
      failing: readiness.failing,
    };
    if (process.connected) process.send?.(status);
  };
  report();
  const timer = setInterval(report, STATUS_INTERVAL_MS);
  timer.unref();

  process.on('message', (message: ToWorker | AdminRequest) => {
    if (isAdminRequest(message)) void answerAdmin(app, message);
    else if (message?.type === 'gatehouse:reload')
      void (message.dir ? app.switchDirectory(message.dir) : app.reload()).then(report);
    else if (message?.type === 'gatehouse:reopen-audit') app.reopenAudit();
  });
  const stop = (): void => {
    clearInterval(timer);
    app.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The primary is gone: nobody supervises this worker any more.
  process.on('disconnect', stop);
  return app;
}

async function answerAdmin(app: Gatehouse, request: AdminRequest): Promise<void> {
  const providers = app.adminProviders();
  const arg = (request.arg ?? {}) as { caller?: string; policy?: string; rule?: string };
  let reply: AdminReply;
  try {
    let value: unknown;
    if (request.op === 'quarantine.list') value = await providers.quarantine!.list();
    else if (request.op === 'quarantine.release')
      value = (await providers.quarantine!.release(String(arg.caller))) ?? null;
    else if (request.op === 'access.report') value = await providers.access!.report();
    else value = await providers.access!.renew(arg);
    reply = { type: 'gatehouse:admin-reply', id: request.id, ok: true, value };
  } catch (err) {
    reply = {
      type: 'gatehouse:admin-reply',
      id: request.id,
      ok: false,
      error: (err as Error).message,
    };
  }
  if (process.connected) process.send?.(reply);
}
