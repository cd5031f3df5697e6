import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { AuditLog, auditRecord } from '../../src/audit/audit-log';
import { verifyAuditText } from '../../src/audit/chain';
import type { Decision } from '../../src/pipeline/decision';
import { sampleDecision } from '../helpers/decision';

const decision = sampleDecision;

describe('audit log records', () => {
  test('each line is the pino-shaped record JSON.stringify would write, sealed in one chain', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'gatehouse-audit-')), 'audit.log');
    const audit = new AuditLog(file);
    const policy = { name: 'or"ders', mode: 'dry-run' } as unknown as Decision['policy'];
    const decisions: Decision[] = [
      decision('plain'),
      decision('escapes', {
        path: '/a"b\\c\n\u0001/ü/😀',
        requestId: 'lone \ud800 surrogate',
        reason: 'tab\there',
        caller: undefined,
        identitySource: undefined,
      }),
      decision('dry', {
        allowed: true,
        policy,
        policyCommit: 'abc123-dirty',
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        wouldDeny: { allowed: false, status: 403, code: 'caller_not_allowed', reason: 'no "way"' },
      }),
      decision('limited', {
        allowed: false,
        status: 429,
        code: 'rate_limited',
        limit: {
          allowed: false,
          limit: 5,
          remaining: 0,
          resetSeconds: 2,
          retryAfterSeconds: Infinity,
        },
        limitBackendError: 'timeout',
        latencyMs: 1.23456789,
      }),
      decision('shape', {
        destination: 'spiffe://shop.example/ns/orders/sa/api',
        query: 'b=1&a=secret-value&b=2&%ZZ=x&e%20x=%41',
        auditHeaders: ['x-debug', 'x-tenant', 'x"odd'],
        headerPresence: 0b101,
        bodyPresent: true,
      }),
    ];
    for (const d of decisions) audit.record(d);
    await audit.flush();
    const text = readFileSync(file, 'utf8');
    expect(verifyAuditText(text)).toMatchObject({ ok: true, records: 5, chains: 1 });
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    lines.forEach((line, i) => {
      const { chain, seq, prev_hash: prev, hash, level, time, msg, ...record } = line;
      expect([chain, seq, typeof prev, typeof hash, level, typeof time]).toEqual([
        audit.chain.id,
        i,
        'string',
        'string',
        30,
        'string',
      ]);
      expect(msg).toBe(decisions[i]!.wouldDeny ? 'would deny (dry-run)' : 'decision');
      expect(JSON.stringify(record)).toBe(JSON.stringify(auditRecord(decisions[i]!)));
    });
  });
});

describe('audit record request shape', () => {
  test('keeps the destination, query keys without values and tracked header presence without values', () => {
    const record = auditRecord(
      decision('shape', {
        destination: 'spiffe://shop.example/ns/orders/sa/api',
        query: 'token=s3cret&page=2&token=x&a+b=1',
        auditHeaders: ['authorization', 'x-debug'],
        headerPresence: 0b01,
      }),
    );
    expect(record.destination).toBe('spiffe://shop.example/ns/orders/sa/api');
    expect(record.query_keys).toEqual(['token', 'page', 'a b']);
    expect(record.query_keys_truncated).toBeUndefined();
    expect(record.header_presence).toEqual({ authorization: true, 'x-debug': false });
    expect(JSON.stringify(record)).not.toContain('s3cret');
  });

  test('a caller cannot grow the record without bound through the query', () => {
    const query = Array.from({ length: 90 }, (_, i) => `${'k'.repeat(900)}${i}=v`).join('&');
    const record = auditRecord(decision('big', { query }));
    expect(record.query_keys).toHaveLength(32);
    expect(record.query_keys!.every((k) => k.length <= 129 && k.endsWith('…'))).toBe(true);
    expect(record.query_keys_truncated).toBe(true);
  });

  test('a query conditions refuse to read (an escape that does not decode) records no keys and says so', () => {
    const record = auditRecord(decision('odd', { query: 'a=1&%ZZ=2' }));
    expect(record.query_keys).toEqual([]);
    expect(record.query_keys_truncated).toBe(true);
  });

  test('no query and no tracked headers add only destination: null', () => {
    const record = auditRecord(decision('bare'));
    expect(record.destination).toBeNull();
    expect('query_keys' in record || 'header_presence' in record).toBe(false);
  });
});

describe('audit records stay one line each', () => {
  test('NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR from a request are escaped, in decisions and in events', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'gatehouse-audit-')), 'audit.log');
    const audit = new AuditLog(file);
    const breaks = 'a\u0085b\u2028c\u2029d';
    audit.record(
      decision('breaks', { path: `/${breaks}`, requestId: breaks, reason: `why ${breaks}` }),
    );
    audit.record(decision('breaks-plain', { path: '/plain\u2028' }));
    audit.event('quarantine_entered', { caller: `spiffe://x/${breaks}` }, 'entered');
    await audit.flush();
    const text = readFileSync(file, 'utf8');
    for (const c of ['\u0085', '\u2028', '\u2029']) expect(text).not.toContain(c);
    // Split the way a line reader that honours Unicode line breaks would.
    const lines = text.split(/\r\n|[\n\r\u0085\u2028\u2029]/).filter((l) => l !== '');
    expect(lines).toHaveLength(3);
    expect((JSON.parse(lines[0]!) as { path: string }).path).toBe(`/${breaks}`);
    expect(verifyAuditText(text)).toMatchObject({ ok: true, records: 3, chains: 1 });
  });
});

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

describe('audit log trouble', () => {
  test('a target that cannot be written is reported once, records are counted as dropped, and the server is not taken down', async () => {
    const troubles: { error?: Error; dropped?: number }[] = [];
    // /dev/full answers every write with ENOSPC: a full disk.
    const audit = new AuditLog('/dev/full', { onTrouble: (t) => troubles.push(t) });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 5; i++) audit.record(decision(`full-${round}-${i}`));
      await audit.flush();
    }
    expect(troubles).toHaveLength(1);
    expect((troubles[0]!.error as NodeJS.ErrnoException).code).toBe('ENOSPC');
    expect(troubles[0]!.dropped).toBe(5);
  });
});
