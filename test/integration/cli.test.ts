import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { checkClient } from '../helpers/grpc-client';
import { runCli, runCliAsync, spawnServe, ROOT } from '../helpers/cli';
import {
  EXAMPLE_POLICIES,
  EXAMPLE_SERVE_ARGS,
  policyDir,
  servicePolicy,
  EXAMPLE_POLICY_ARGS,
} from '../helpers/policies';
import { CHECKOUT_WEB, envoyCheckRequest, ORDERS } from '../helpers/requests';
import { readJsonLines } from '../helpers/server';
import { waitFor } from '../helpers/wait';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';

const BROKEN = servicePolicy(
  'p',
  ['p:80'],
  `    - name: r
      allow: [spiffe://td/ns/*/x]
      colour: blue`,
);

describe('gatehouse validate', () => {
  test('exit 0 and a summary for the examples', () => {
    const r = runCli(['validate', 'policies']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ok: 6 policies, version [0-9a-f]{16}$/m);
  });

  test('exit 1 with every error as file:line:col message', () => {
    const dir = policyDir({ 'p.yaml': BROKEN });
    const r = runCli(['validate', dir]);
    expect(r.status).toBe(1);
    // Every problem at once: the unknown key does not hide the bad host and pattern.
    expect(r.stdout.trim().split('\n')).toEqual([
      `${dir}/p.yaml:6:11 host 'p:80': hosts are matched without their port; remove ':80'`,
      `${dir}/p.yaml:9:15 allow[0]: 'spiffe://td/ns/*/x': a wildcard may only end a pattern, as '/*' (one segment) or '/**' (any depth)`,
      `${dir}/p.yaml:10:7 spec.rules[0]: unknown key 'colour' (allowed: name, methods, paths, allow, deny, when, body, residency, require, stripToken, audience, rateLimit)`,
    ]);
    expect(r.stderr).toContain('3 errors');
  });
});

describe('gatehouse check', () => {
  test('explains a decision for a CheckRequest in proto3 JSON', () => {
    const r = runCli([
      'check',
      'policies',
      '--input',
      'examples/check-request.json',
      '--trust-domain',
      'shop.example',
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('decision: DENY 403');
    expect(r.stdout).toContain('[caller_refused]');
    expect(r.stdout).toContain(
      '2 identity: spiffe://shop.example/ns/checkout/sa/batch (from principal)',
    );
    expect(r.stdout).toMatch(/3 policy: {3}orders@[0-9a-f]{16} \(enforce/);
    expect(r.stdout).toContain(
      '    → create-order: route matches; caller REFUSED by deny[0] spiffe://shop.example/ns/checkout/sa/batch',
    );
    // authorize stops at the refusal: the rule after it was never looked at.
    expect(r.stdout).toContain('      read-orders: not evaluated: rule create-order decided first');
    expect(r.stdout).toContain('5 limit:    capacity 20, refill 10/s per caller (not reached)');
  });

  test('explains why no rule matched, and a 401', () => {
    const input = (principal: string | undefined, path: string) =>
      JSON.stringify({
        attributes: {
          source: principal ? { principal } : {},
          destination: { principal: ORDERS },
          request: { http: { method: 'GET', path, host: 'orders' } },
        },
      });
    const none = runCli(
      ['check', 'policies', '--input', '-', '--trust-domain', 'shop.example'],
      input('spiffe://shop.example/ns/payments/sa/x', '/v1/orders/7'),
    );
    expect(none.stdout).toContain('[caller_not_allowed]');
    expect(none.stdout).toContain(
      '      read-orders: route matches; caller in none of allow [spiffe://shop.example/ns/frontend/sa/web, spiffe://shop.example/ns/checkout/**]',
    );
    expect(none.stdout).toContain('      create-order: method GET not in [POST]');
    const path = runCli(
      ['check', 'policies', '--input', '-', '--trust-domain', 'shop.example'],
      input('spiffe://shop.example/ns/frontend/sa/web', '/v2/x'),
    );
    expect(path.stdout).toContain(
      'read-orders: path /v2/x matches none of [/v1/orders, /v1/orders/*]',
    );
    const anon = runCli(
      ['check', 'policies', '--input', '-', '--trust-domain', 'shop.example'],
      input(undefined, '/v1/orders'),
    );
    expect(anon.stdout).toContain('2 identity: REJECTED: no caller identity');
  });

  test('a rule whose condition is false is explained as not applying, as the decision says', () => {
    const dir = policyDir({
      'p.yaml': servicePolicy(
        'p',
        ['p'],
        `    - name: weekday
      when: request.method == "POST"
      allow: [spiffe://shop.example/ns/frontend/sa/web]`,
      ),
    });
    const input = JSON.stringify({
      attributes: {
        source: { principal: 'spiffe://shop.example/ns/frontend/sa/web' },
        request: { http: { method: 'GET', path: '/x', host: 'p' } },
      },
    });
    const r = runCli(['check', dir, '--input', '-', '--trust-domain', 'shop.example'], input);
    expect(r.stdout).toContain('decision: DENY 403');
    expect(r.stdout).toContain('[no_matching_rule]');
    expect(r.stdout).toContain(
      '      weekday: route matches; when request.method == "POST" is false: the rule does not apply',
    );
    expect(r.stdout).not.toContain('allowed by');
  });

  test('--json prints the decision and the CheckResponse; snake_case input is read too', () => {
    const input = JSON.stringify({
      attributes: {
        source: { principal: CHECKOUT_WEB },
        destination: { principal: ORDERS },
        request: {
          http: {
            method: 'POST',
            path: '/v1/orders',
            host: 'orders',
            headers: { x_custom_header: 'kept' },
          },
        },
      },
    });
    const r = runCli(
      ['check', 'policies', '--input', '-', '--trust-domain', 'shop.example', '--json'],
      input,
    );
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.decision).toMatchObject({
      result: 'allow',
      caller: CHECKOUT_WEB,
      rule: 'create-order',
      limit: { limit: 20, remaining: 19 },
    });
    expect(out.rules[0]).toMatchObject({
      rule: 'create-order',
      methodMatches: true,
      pathMatches: true,
      allowedBy: 'spiffe://shop.example/ns/checkout/sa/*',
    });
    expect(
      out.response.okResponse.headers.map((h: { header: { key: string } }) => h.header.key),
    ).toContain('x-gatehouse-caller');
  });

  test('bad input is a clear error, exit 1', () => {
    expect(runCli(['check', 'policies', '--input', '-'], '{not json').status).toBe(1);
    const r = runCli(
      ['check', 'policies', '--input', '-'],
      '{"attributes": {"request": {"http": {"headers": "nope"}}}}',
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('input is not a CheckRequest');
    const missing = runCli(['check', 'policies', '--input', '/nonexistent.json']);
    expect(missing.stderr).toBe('gatehouse: --input /nonexistent.json does not exist\n');
    expect(missing.status).toBe(1);
  });

  test('a misspelt input field is refused with its path, not decided as a request without it', () => {
    const input = JSON.stringify({
      attributes: {
        source: { princpal: 'spiffe://shop.example/ns/checkout/sa/web' },
        request: { http: { method: 'POST', path: '/v1/orders', host: 'orders' } },
      },
    });
    const r = runCli(['check', 'policies', '--input', '-'], input);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /CheckRequest\.attributes\.source\.princpal is not a field of AttributeContext\.Peer \(it has: [^)]*principal/,
    );
    expect(r.stdout).toBe('');
  });
});

describe('gatehouse serve', () => {
  test('refuses to start on invalid policies, with the validate messages', () => {
    const dir = policyDir({ 'p.yaml': BROKEN });
    const r = runCli(['serve', '--policies', dir, '--grpc-port', '0']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('refusing to start');
    expect(r.stderr).toContain(`${dir}/p.yaml:10:7 spec.rules[0]: unknown key 'colour'`);
  });

  test('rejects bad flags clearly', () => {
    expect(runCli(['serve', '--grpc-port', '99999']).stderr).toContain('must be a port number');
    expect(runCli(['serve', '--trust-domain', 'spiffe://x']).stderr).toContain(
      'is not a valid trust domain',
    );
    expect(runCli(['serve', '--jwt-leeway', '86400']).stderr).toContain(
      'must be seconds from 0 to 300',
    );
    expect(runCli(['serve', '--trust-bundle', 'Shop.Example:443=/tmp/x.json']).stderr).toContain(
      'is not a trust domain name',
    );
    expect(
      runCli(['serve', '--trust-bundle', 'shop.example=http://bundles.example/b']).stderr,
    ).toContain('must be https://');
  });

  test('serves, audits to --audit-log, and on SIGTERM finishes checks in flight and exits 0', async () => {
    const audit = path.join(mkdtempSync(path.join(tmpdir(), 'gh-audit-')), 'audit.log');
    // 200 streams on one connection: past the default --grpc-max-streams (8) the client would hold the rest back unsent.
    const server = await spawnServe([
      ...EXAMPLE_POLICY_ARGS,
      '--audit-log',
      audit,
      '--grpc-max-streams',
      '256',
    ]);
    const client = checkClient(server.port);
    try {
      const first = await client.check(
        envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET' }),
      );
      expect(first.status?.code ?? 0).toBe(0);
      const inFlight = Array.from({ length: 200 }, (_, i) =>
        client.check(
          envoyCheckRequest({ principal: CHECKOUT_WEB, method: 'GET', path: `/v1/orders/${i}` }),
        ),
      );
      await Promise.race(inFlight);
      server.child.kill('SIGTERM');
      const settled = await Promise.allSettled(inFlight);
      expect(await server.exited).toBe(0);
      const answered = settled.filter((s) => s.status === 'fulfilled').length;
      expect(answered).toBe(200);
      const records = readJsonLines(audit);
      expect(records.length).toBe(201);
      expect(server.stderr()).toContain('stopped');
    } finally {
      client.close();
      if (server.child.exitCode === null) server.child.kill('SIGKILL');
    }
  });

  test('without Redis the default is one process, and several workers are warned about', async () => {
    const single = await spawnServe([...EXAMPLE_SERVE_ARGS], {}, { defaultWorkers: true });
    try {
      // In-process buckets are per process: N workers by default would multiply every limit.
      expect(single.stderr()).toContain('"limiter":"memory"');
      expect(single.stderr()).not.toContain('gatehouse primary started');
    } finally {
      single.child.kill('SIGTERM');
      await single.exited;
    }
    const two = await spawnServe([...EXAMPLE_SERVE_ARGS, '--workers', '2']);
    try {
      expect(two.stderr()).toContain('in-process rate limits are per worker');
    } finally {
      two.child.kill('SIGTERM');
      await two.exited;
    }
  });

  test('environment twins configure the server', async () => {
    const dir = policyDir({
      'p.yaml': servicePolicy(
        'p',
        ['p'],
        `    - name: r
      allow: [spiffe://env.example/**]`,
      ),
    });
    const server = await spawnServe([], {
      GATEHOUSE_POLICIES: dir,
      GATEHOUSE_TRUST_DOMAIN: 'other.example,env.example',
    });
    const client = checkClient(server.port);
    try {
      const r = await client.check(
        envoyCheckRequest({ principal: 'spiffe://env.example/svc', host: 'p', path: '/' }),
      );
      expect(r.status?.code ?? 0).toBe(0);
    } finally {
      client.close();
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    }
  });

  test('SIGHUP reloads a good version and keeps the last good one on a bad version', async () => {
    const dir = policyDir({
      'p.yaml': servicePolicy(
        'p',
        ['p'],
        `    - name: r
      allow: [spiffe://shop.example/a]`,
      ),
    });
    const server = await spawnServe([
      '--policies',
      dir,
      '--trust-domain',
      'shop.example',
      '--no-watch',
    ]);
    const client = checkClient(server.port);
    const decide = async (caller: string) =>
      (await client.check(envoyCheckRequest({ principal: caller, host: 'p', path: '/' }))).status
        ?.code ?? 0;
    const logged = (text: string) => waitFor(() => server.stderr().includes(text), text, 5000);
    try {
      expect(await decide('spiffe://shop.example/b')).toBe(7);
      writeFileSync(
        path.join(dir, 'p.yaml'),
        servicePolicy(
          'p',
          ['p'],
          `    - name: r
      allow: [spiffe://shop.example/b]`,
        ),
      );
      server.child.kill('SIGHUP');
      await logged('policies reloaded');
      expect(await decide('spiffe://shop.example/b')).toBe(0);
      writeFileSync(path.join(dir, 'p.yaml'), 'kind: [broken');
      server.child.kill('SIGHUP');
      await logged('policy reload rejected');
      expect(await decide('spiffe://shop.example/b')).toBe(0);
    } finally {
      client.close();
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });
});

test('the example CheckRequest in the README exists', () => {
  expect(() => require(path.join(ROOT, 'examples', 'check-request.json'))).not.toThrow();
});

describe('gatehouse --version', () => {
  test('prints the package version and exits 0', () => {
    const version = (
      JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }
    ).version;
    for (const flag of ['--version', '-V']) {
      const r = runCli([flag]);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
    }
  });
});

describe('gatehouse access renew', () => {
  test('a policy or rule that is not served is an error, not a success that renewed nothing', async () => {
    const server = await spawnServe([
      ...EXAMPLE_POLICY_ARGS,
      '--no-watch',
      '--audit-log',
      path.join(mkdtempSync(path.join(tmpdir(), 'gh-renew-')), 'a.log'),
    ]);
    const admin = ['--admin', `http://127.0.0.1:${server.adminPort}`];
    try {
      const nope = await runCliAsync(['access', 'renew', 'nope', ...admin]);
      expect(nope.status).toBe(1);
      expect(nope.stderr).toBe("gatehouse: no policy named 'nope' is being served\n");
      const rule = await runCliAsync(['access', 'renew', 'customers', '--rule', 'nope', ...admin]);
      expect(rule.status).toBe(1);
      expect(rule.stderr).toBe("gatehouse: policy 'customers' has no rule named 'nope'\n");
      const ok = await runCliAsync(['access', 'renew', 'customers', '--rule', 'export', ...admin]);
      expect(ok.stderr).toBe('');
      expect(ok.status).toBe(0);
    } finally {
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    }
  });
});

test('serve with the HTTP mode starts at any accepted --grpc-preface-timeout (it is the HTTP headers timeout too)', async () => {
  const server = await spawnServe([
    ...EXAMPLE_SERVE_ARGS,
    '--http-port',
    '0',
    '--grpc-preface-timeout',
    '600000',
  ]);
  try {
    expect(server.httpPort).toBeGreaterThan(0);
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
  }
});

describe("a switch's environment twin is read as true or false, never by presence", () => {
  // Commander sets a switch when its variable merely exists: GATEHOUSE_TRUST_XFCC=false
  // would have trusted a header any caller can write.
  const xfccOnly = () =>
    envoyCheckRequest({
      method: 'GET',
      headers: { 'x-forwarded-client-cert': `URI=${CHECKOUT_WEB}` },
    });

  test.each(['false', '0'])('GATEHOUSE_TRUST_XFCC=%s leaves XFCC untrusted', async (value) => {
    const server = await spawnServe(
      ['--policies', EXAMPLE_POLICIES, '--trust-domain', 'shop.example'],
      { GATEHOUSE_TRUST_XFCC: value },
    );
    const client = checkClient(server.port);
    try {
      const response = await client.check(xfccOnly());
      expect(response.status?.code).toBe(16); // UNAUTHENTICATED: no identity
    } finally {
      client.close();
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  test('GATEHOUSE_TRUST_XFCC=true trusts it', async () => {
    const server = await spawnServe(
      ['--policies', EXAMPLE_POLICIES, '--trust-domain', 'shop.example'],
      { GATEHOUSE_TRUST_XFCC: 'true' },
    );
    const client = checkClient(server.port);
    try {
      expect((await client.check(xfccOnly())).status?.code ?? 0).toBe(0);
    } finally {
      client.close();
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  test('any other value is refused, naming the variable', () => {
    const r = runCli(['serve', '--policies', EXAMPLE_POLICIES], undefined, {
      GATEHOUSE_AUDIT_REQUIRED: 'maybe',
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('GATEHOUSE_AUDIT_REQUIRED');
    expect(r.stderr).toContain('true or false');
  });
});
