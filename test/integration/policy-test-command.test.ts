import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { policyDir, servicePolicy } from '../helpers/policies';

const POLICY = servicePolicy(
  'svc',
  ['svc'],
  `    - name: read
      methods: [GET]
      paths: [/items/*]
      allow: [spiffe://td.example/ns/a/sa/reader, spiffe://td.example/ns/b/**]
      deny: [spiffe://td.example/ns/b/sa/evil]
    - name: write
      methods: [POST]
      paths: [/items]
      allow: [spiffe://td.example/ns/a/sa/writer]
      rateLimit: { capacity: 2, refillPerSecond: 0.01 }
    - name: never-used
      methods: [DELETE]
      allow: [spiffe://td.example/ns/admin/sa/root]`,
);

const tests = (cases: string): string => `apiVersion: gatehouse/v1
kind: PolicyTest
metadata: { name: svc }
spec:
  cases:
${cases}`;

describe('gatehouse test', () => {
  test('passing cases: one line each, a summary, exit 0; trust domains default to those the policies name', () => {
    const dir = policyDir({
      'svc.yaml': POLICY,
      'svc.test.yaml': tests(`    - name: reader reads
      request: { caller: spiffe://td.example/ns/a/sa/reader, host: svc, path: /items/1 }
      expect: allow
    - name: third write is over budget
      request: { caller: spiffe://td.example/ns/a/sa/writer, host: svc, method: POST, path: /items }
      repeat: 3
      expect: { deny: 429, reason: rate_limited, rule: write }
    - name: via a trusted XFCC
      request: { xfcc: 'By=spiffe://td.example/proxy;URI=spiffe://td.example/ns/b/sa/x', host: svc, path: /items/2 }
      expect: allow`).replace('  cases:', '  trustXfcc: true\n  cases:'),
    });
    const r = runCli(['test', dir]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^PASS {2}svc › reader reads {2}.*svc\.test\.yaml:7$/m);
    expect(r.stdout).toContain('PASS  svc › third write is over budget');
    expect(r.stdout).toMatch(/^policy-tests: 3 passed, 0 failed$/m);
  });

  test('a failing case: expected and actual, exit 1, JUnit failure, coverage gaps', () => {
    const dir = policyDir({
      'svc.yaml': POLICY,
      'svc.test.yaml': tests(`    - name: evil is refused
      request: { caller: spiffe://td.example/ns/b/sa/evil, host: svc, path: /items/1 }
      expect: { deny: 403, reason: caller_refused }
    - name: wrongly expects the writer to read
      request: { caller: spiffe://td.example/ns/a/sa/writer, host: svc, path: /items/1 }
      expect: allow`),
    });
    const junit = path.join(dir, 'junit.xml');
    const r = runCli(['test', dir, '--junit', junit, '--coverage']);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('PASS  svc › evil is refused');
    expect(r.stdout).toContain('FAIL  svc › wrongly expects the writer to read');
    expect(r.stdout).toContain('      expected allow\n      got      deny 403 caller_not_allowed');
    expect(r.stdout).toMatch(/^policy-tests: 1 passed, 1 failed$/m);
    expect(r.stdout).toContain('coverage: 1 of 5 allow/deny entries exercised');
    expect(r.stdout).toContain('not exercised: ');
    expect(r.stdout).toMatch(
      /not exercised: \S+svc\.yaml svc\/read allow\[0\] spiffe:\/\/td\.example\/ns\/a\/sa\/reader/,
    );
    expect(r.stdout).toMatch(/never decided a case: \S+svc\.yaml svc\/never-used/);
    expect(r.stdout).not.toMatch(/never decided a case: \S+ svc\/read$/m);
    const xml = readFileSync(junit, 'utf8');
    expect(xml).toContain('<testsuites name="gatehouse" tests="2" failures="1">');
    expect(xml).toMatch(
      /<testcase classname="svc" name="wrongly expects the writer to read"[^>]*>\s*<failure message="expected allow, got deny 403 caller_not_allowed/,
    );
  });

  test('JWT-SVID credentials are really signed and verified: audience, expiry, require: mtls', () => {
    const dir = policyDir({
      'svc.yaml': servicePolicy(
        'svc',
        ['svc'],
        `    - name: export
      paths: [/export]
      allow: [spiffe://td.example/ns/jobs/**]
      audience: svc-export
    - name: pay
      paths: [/pay]
      allow: [spiffe://td.example/ns/jobs/**]
      require: mtls`,
      ),
      'svc.test.yaml': tests(`    - name: right audience
      request: { jwt: { sub: spiffe://td.example/ns/jobs/sa/a, aud: svc-export }, host: svc, path: /export }
      expect: { allow: true, rule: export }
    - name: wrongly expects another audience to pass
      request: { jwt: { sub: spiffe://td.example/ns/jobs/sa/a, aud: billing }, host: svc, path: /export }
      expect: allow
    - name: wrongly expects an expired token to pass
      request: { jwt: { sub: spiffe://td.example/ns/jobs/sa/a, aud: svc-export, expiresIn: -120 }, host: svc, path: /export }
      expect: allow
    - name: a bearer token is not mTLS
      request: { jwt: { sub: spiffe://td.example/ns/jobs/sa/a }, host: svc, path: /pay }
      expect: { deny: 403, reason: mtls_required }`),
    });
    const r = runCli(['test', dir]);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('PASS  svc › right audience');
    expect(r.stdout).toMatch(
      /FAIL {2}svc › wrongly expects another audience to pass[^]*got {6}deny 401 invalid_identity/,
    );
    expect(r.stdout).toMatch(
      /FAIL {2}svc › wrongly expects an expired token to pass[^]*got {6}deny 401 invalid_identity/,
    );
    expect(r.stdout).toContain('PASS  svc › a bearer token is not mTLS');
    expect(r.stdout).toMatch(/^policy-tests: 2 passed, 2 failed$/m);
  });

  test('bad test files are errors with file:line:col, and nothing runs', () => {
    const dir = policyDir({
      'svc.yaml': POLICY,
      'svc.test.yaml': tests(`    - name: typo
      request: { caler: spiffe://td.example/x, host: svc, path: / }
      expect: allow
    - name: both
      request: { host: svc, path: / }
      expect: { allow: true, deny: 403 }
    - name: bad status
      request: { host: svc, path: / }
      expect: { deny: 500 }`),
    });
    const r = runCli(['test', dir]);
    expect(r.status).toBe(1);
    const lines = r.stderr
      .trim()
      .split('\n')
      .map((l) => l.slice(dir.length + 1));
    expect(lines).toContain(
      "svc.test.yaml:7:18 spec.cases[0].request: unknown key 'caler' (allowed: caller, xfcc, jwt, workload, host, destination, method, path, headers, body, context, labels, metadata)",
    );
    expect(lines).toEqual([
      "svc.test.yaml:7:18 spec.cases[0].request: unknown key 'caler' (allowed: caller, xfcc, jwt, workload, host, destination, method, path, headers, body, context, labels, metadata)",
      'svc.test.yaml:14:23 spec.cases[2].expect.deny: must be one of: 401, 403, 429',
    ]);
    expect(r.stdout).toBe('');
  });

  test('no test files, or invalid policies, is an error', () => {
    expect(runCli(['test', policyDir({ 'svc.yaml': POLICY })]).stderr).toContain(
      'no policy tests (*.test.yaml) found',
    );
    const r = runCli([
      'test',
      policyDir({ 'svc.yaml': 'kind: [', 'svc.test.yaml': tests('    - {}') }),
    ]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/svc\.yaml:\d+:\d+ /);
  });
});
