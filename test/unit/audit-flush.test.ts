import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { AuditLog } from '../../src/audit/audit-log';
import { ALLOWED, type Decision } from '../../src/pipeline/decision';

function decision(id: string): Decision {
  return {
    ...ALLOWED,
    id,
    host: 'orders',
    method: 'GET',
    path: '/v1/orders',
    requestId: id,
    traceparent: undefined,
    caller: 'spiffe://shop.example/ns/checkout/sa/web',
    identitySource: 'principal',
    policy: undefined,
    policyVersion: 'v1',
    policyCommit: undefined,
    rule: undefined,
    entry: undefined,
    limit: undefined,
    limitBackendError: undefined,
    wouldDeny: undefined,
    spoofedHeaders: [],
    latencyMs: 0.1,
  };
}

describe('audit log flush', () => {
  test('flush() resolves only once every record written before it is on disk', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'gatehouse-flush-')), 'audit.log');
    const audit = new AuditLog(file);
    // Each round starts a write and flushes while it is still in flight: the case that lost
    // records when flush() answered before the write landed.
    for (let i = 0; i < 200; i++) {
      audit.record(decision(`d-${i}`));
      if (i % 3 === 0) audit.record(decision(`e-${i}`));
      await audit.flush();
      const text = readFileSync(file, 'utf8');
      expect(text).toContain(`"request_id":"d-${i}"`);
      if (i % 3 === 0) expect(text).toContain(`"request_id":"e-${i}"`);
    }
  });
});
