import * as grpc from '@grpc/grpc-js';
import { spawnServe } from '../helpers/cli';
import { checkClient } from '../helpers/grpc-client';
import { EXAMPLE_POLICIES, EXAMPLE_POLICY_ARGS } from '../helpers/policies';
import { CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';
import { memoryLogger, startTestServer, type TestServer } from '../helpers/server';
import { waitFor } from '../helpers/wait';

const REQUEST = envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET' });

async function metric(server: TestServer, line: string): Promise<number> {
  const text = await server.app.metrics.registry.metrics();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? NaN : Number(found.slice(line.length + 1));
}

function flushAudit(server: TestServer): Promise<void> {
  return (server.app as unknown as { audit: { flush(): Promise<void> } }).audit.flush();
}

/** An audit target that fails while `broken` is set (the path workers use to hand records to the primary). */
function breakableSink(): {
  sink: (batch: string, done: (err: Error | null) => void) => void;
  lines: string[];
  setBroken(b: boolean): void;
} {
  const lines: string[] = [];
  let broken = false;
  return {
    lines,
    setBroken: (b) => void (broken = b),
    sink: (batch, done) => {
      if (broken)
        return done(
          Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }),
        );
      lines.push(...batch.split('\n').filter((l) => l !== ''));
      done(null);
    },
  };
}

describe('audit loss is counted, logged once per episode, and fail-closed on request', () => {
  test('default: checks keep being answered; lost records are counted in metrics, the closing log line and the log itself', async () => {
    const target = breakableSink();
    const logs = memoryLogger();
    const server = await startTestServer({
      policiesDir: EXAMPLE_POLICIES,
      auditSink: target.sink,
      log: logs.log,
    });
    const client = checkClient(server.port);
    await client.check(REQUEST);
    await flushAudit(server);
    target.setBroken(true);
    for (let i = 0; i < 20; i++) expect((await client.check(REQUEST)).status?.code ?? 0).toBe(0);
    await flushAudit(server);
    expect(await metric(server, 'gatehouse_audit_failing')).toBe(1);
    target.setBroken(false);
    await client.check(REQUEST);
    await flushAudit(server);
    expect(await metric(server, 'gatehouse_audit_failing')).toBe(0);
    expect(await metric(server, 'gatehouse_audit_records_dropped_total')).toBe(20);
    const episode = logs.lines().filter((l) => /^audit log/.test(String(l['msg'])));
    expect(episode).toEqual([
      expect.objectContaining({
        msg: 'audit log cannot be written; records are being lost',
        cause: 'no space left on device',
      }),
      expect.objectContaining({ msg: 'audit log written again', recordsLost: 20 }),
    ]);
    await flushAudit(server);
    expect(
      target.lines.some(
        (l) => l.includes('"event":"audit.records_lost"') && l.includes('"count":20'),
      ),
    ).toBe(true);
    client.close();
    await server.stop();
  });

  test('auditRequired: while the target fails, checks are refused and the replica is not ready; both come back on their own', async () => {
    const target = breakableSink();
    const server = await startTestServer({
      policiesDir: EXAMPLE_POLICIES,
      auditSink: target.sink,
      auditRequired: true,
    });
    const client = checkClient(server.port);
    expect((await client.check(REQUEST)).status?.code ?? 0).toBe(0);
    expect(server.app.readiness().failing).toEqual([]);
    target.setBroken(true);
    await client.check(REQUEST); // decided, then its record fails: from here on, refuse
    await flushAudit(server);
    await expect(client.check(REQUEST)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    expect(server.app.readiness()).toMatchObject({
      failing: ['audit'],
      checks: { audit: 'cannot be written' },
    });
    target.setBroken(false);
    await waitFor(() => server.app.readiness().failing.length === 0, 'audit probe to land', 5000);
    expect((await client.check(REQUEST)).status?.code ?? 0).toBe(0);
    await flushAudit(server);
    expect(target.lines.some((l) => l.includes('"event":"audit.unwritable"'))).toBe(true);
    client.close();
    await server.stop();
  });

  test('serve --audit-required with an audit file on a full device refuses checks and /readyz says why', async () => {
    const serve = await spawnServe([
      ...EXAMPLE_POLICY_ARGS,
      '--no-watch',
      '--audit-log',
      '/dev/full',
      '--audit-required',
    ]);
    const client = checkClient(serve.port);
    await client.check(REQUEST); // decided; its record cannot be written
    await waitFor(
      async () => (await fetch(`http://127.0.0.1:${serve.adminPort}/readyz`)).status === 503,
      'not ready',
    );
    const ready = (await (await fetch(`http://127.0.0.1:${serve.adminPort}/readyz`)).json()) as {
      failing: string[];
    };
    expect(ready.failing).toEqual(['audit']);
    await expect(client.check(REQUEST)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    client.close();
    serve.child.kill('SIGTERM');
    expect(await serve.exited).toBe(0);
  });
});
