import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as spiffeModule from '../../src/identity/spiffe';
import * as conditionsModule from '../../src/policy/features/conditions';
import * as pathPatternModule from '../../src/policy/features/path-pattern';
import * as payloadModule from '../../src/policy/features/payload';
import { loadPolicyDir } from '../../src/policy/load';
import { formatProblem } from '../../src/policy/document/problems';
import { EXAMPLE_POLICIES, isHostOnlyWarning, policyDir, servicePolicy } from '../helpers/policies';

async function problemsOf(files: Record<string, string>): Promise<string[]> {
  const dir = policyDir(files);
  const result = await loadPolicyDir(dir);
  expect(result.ok).toBe(false);
  return result.ok
    ? []
    : result.problems
        .filter((p) => !isHostOnlyWarning(p))
        .map((p) => formatProblem(p).slice(dir.length + 1));
}

const RULE = `    - name: r
      methods: [GET]
      paths: [/a]
      allow: [spiffe://td/x]`;

describe('policy loading', () => {
  test('the example policies load and index every host', async () => {
    const result = await loadPolicyDir(EXAMPLE_POLICIES);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.set.policies.map((p) => p.name).sort()).toEqual([
      'customers',
      'frontend',
      'inventory',
      'orders',
      'orders-db',
      'payments',
    ]);
    expect(result.set.byWorkload.get('spiffe://shop.example/ns/data/sa/orders-db')?.name).toBe(
      'orders-db',
    );
    expect(result.set.byHost.get('orders')?.name).toBe('orders');
    expect(result.set.byHost.get('orders.shop.svc.cluster.local')?.name).toBe('orders');
    expect(result.set.byHost.get('inventory')?.mode).toBe('dry-run');
    expect(result.set.version).toMatch(/^[0-9a-f]{16}$/);
    expect(result.set.byHost.get('payments')?.label).toBe(`payments@${result.set.version}`);
  });

  test('version is a content hash: formatting, comments and file layout do not change it; content does', async () => {
    const a = await loadPolicyDir(policyDir({ 'p.yaml': servicePolicy('p', ['p'], RULE) }));
    const b = await loadPolicyDir(
      policyDir({
        'sub/other-name.yml': `# comment\nkind: ServicePolicy\napiVersion: gatehouse/v1\nspec:\n  rules:\n    - {allow: ["spiffe://td/x"], paths: ["/a"], methods: [GET], name: r}\n  hosts: [p]\nmetadata: {name: p}\n`,
      }),
    );
    const c = await loadPolicyDir(
      policyDir({ 'p.yaml': servicePolicy('p', ['p'], RULE.replace('/a]', '/b]')) }),
    );
    expect(a.ok && b.ok && c.ok).toBe(true);
    if (!a.ok || !b.ok || !c.ok) return;
    expect(b.set.version).toBe(a.set.version);
    expect(c.set.version).not.toBe(a.set.version);
  });

  test('several documents in one file, test files skipped', async () => {
    const dir = policyDir({
      'all.yaml': `${servicePolicy('a', ['a'], RULE)}\n---\n${servicePolicy('b', ['b'], RULE)}\n`,
      'all.test.yaml': 'this: [is not a policy',
    });
    const result = await loadPolicyDir(dir);
    expect(result.ok && result.set.policies.map((p) => p.name)).toEqual(['a', 'b']);
  });

  test('unknown keys are errors pointing at the key, with the allowed keys listed', async () => {
    const text = servicePolicy(
      'p',
      ['p'],
      `    - name: r
      methods: [GET]
      allwo: [spiffe://td/x]`,
    );
    expect(await problemsOf({ 'p.yaml': text })).toEqual([
      "p.yaml:10:7 spec.rules[0]: unknown key 'allwo' (allowed: name, methods, paths, allow, deny, when, body, residency, require, stripToken, audience, rateLimit)",
    ]);
  });

  test('every problem of every file is reported at once, sorted, with line and column', async () => {
    const problems = await problemsOf({
      'a.yaml': servicePolicy(
        'a',
        ['a:8080', 'Upper'],
        `    - name: r
      paths: [/v1/**/x, v1]
      allow: [spiffe://td/ns/*/sa, "spiffe://TD/x"]
      rateLimit: { capacity: 0, refillPerSecond: -1, per: ip }
    - name: r
      methods: [get]
      allow: [spiffe://td/ok]`,
      ),
      'b.yaml':
        'apiVersion: gatehouse/v1\nkind: ServicePolicy\nmetadata: {name: b}\nspec:\n  hosts: [b]\n  rules: [ {name: x\n',
    });
    // Structural errors do not hide the semantic ones of the same document.
    expect(problems).toEqual([
      "a.yaml:6:11 host 'a:8080': hosts are matched without their port; remove ':8080'",
      "a.yaml:6:19 host 'Upper' must be lower-case",
      "a.yaml:9:15 '**' is only allowed as the last segment (e.g. /v1/**)",
      "a.yaml:9:25 path pattern must start with '/'",
      "a.yaml:10:15 allow[0]: 'spiffe://td/ns/*/sa': a wildcard may only end a pattern, as '/*' (one segment) or '/**' (any depth)",
      "a.yaml:10:36 allow[1]: 'spiffe://TD/x': SPIFFE ID trust domain must be lower-case",
      'a.yaml:11:30 spec.rules[0].rateLimit.capacity: must be >= 1',
      'a.yaml:11:50 spec.rules[0].rateLimit.refillPerSecond: must be >= 0.001',
      "a.yaml:11:59 per must be 'caller' or 'header:<header-name>' (lower-case), not 'ip'",
      "a.yaml:12:13 duplicate rule name 'r' (also rules[0]); rule names must be unique in a policy",
      'a.yaml:13:17 spec.rules[1].methods[0]: must be an upper-case HTTP method such as GET or POST',
      expect.stringMatching(/^b\.yaml:7:1 /),
      expect.stringMatching(/^b\.yaml:7:1 /),
    ]);
  });

  test('semantic problems once the structure is right', async () => {
    const problems = await problemsOf({
      'a.yaml': servicePolicy(
        'a',
        ['a:8080', 'Upper', '"*.shop"'],
        `    - name: r
      paths: [/v1/**/x, v1]
      allow: [spiffe://td/ns/*/sa, "spiffe://TD/x"]
      rateLimit: { capacity: 2, refillPerSecond: 1, per: ip, cost: 3 }
    - name: r
      methods: [GET]
    - name: s
      deny: [spiffe://td/ok]`,
      ),
    });
    expect(problems).toEqual([
      "a.yaml:6:11 host 'a:8080': hosts are matched without their port; remove ':8080'",
      "a.yaml:6:19 host 'Upper' must be lower-case",
      "a.yaml:6:26 host '*.shop': wildcards are not supported; list each host",
      "a.yaml:9:15 '**' is only allowed as the last segment (e.g. /v1/**)",
      "a.yaml:9:25 path pattern must start with '/'",
      "a.yaml:10:15 allow[0]: 'spiffe://td/ns/*/sa': a wildcard may only end a pattern, as '/*' (one segment) or '/**' (any depth)",
      "a.yaml:10:36 allow[1]: 'spiffe://TD/x': SPIFFE ID trust domain must be lower-case",
      "a.yaml:11:58 per must be 'caller' or 'header:<header-name>' (lower-case), not 'ip'",
      'a.yaml:11:68 cost 3 is larger than capacity 2, so no request could ever pass',
      "a.yaml:12:7 rule 'r' lists no callers: add allow (and optionally deny) SPIFFE ID patterns",
      "a.yaml:12:13 duplicate rule name 'r' (also rules[0]); rule names must be unique in a policy",
    ]);
  });

  test('an unquoted * is a YAML alias: the error points at it and says to quote it', async () => {
    expect(await problemsOf({ 'a.yaml': servicePolicy('a', ['a', '*.shop'], RULE) })).toEqual([
      "a.yaml:6:14 cannot read document: Unresolved alias (the anchor must be set before the alias): .shop; '*.shop' is read as a YAML alias: quote values that start with '*'",
    ]);
  });

  test('a host belongs to one policy and policy names are unique', async () => {
    expect(
      await problemsOf({
        'a.yaml': servicePolicy('a', ['shared', 'a'], RULE),
        'b.yaml': servicePolicy('b', ['b', 'shared'], RULE),
        'c.yaml': servicePolicy('a', ['c'], RULE),
      }),
    ).toEqual([
      "b.yaml:6:14 host 'shared' is already guarded by policy a; a host belongs to one policy",
      expect.stringMatching(/^c\.yaml:4:9 duplicate policy name 'a' \(also in .*a\.yaml\)$/),
    ]);
  });

  test('a host claimed twice is reported even when the claiming document has other errors', async () => {
    expect(
      await problemsOf({
        'a.yaml': servicePolicy('a', ['shared'], RULE),
        'b.yaml': servicePolicy(
          'b',
          ['shared'],
          `${RULE}
      colour: red`,
        ),
      }),
    ).toEqual([
      "b.yaml:6:11 host 'shared' is already guarded by policy a; a host belongs to one policy",
      expect.stringMatching(/^b\.yaml:\d+:7 spec\.rules\[0\]: unknown key 'colour'/),
    ]);
  });

  test('hostile and broken files: syntax errors, wrong kinds, non-mappings, duplicate keys, alias bombs', async () => {
    const bomb = [
      'a: &a [x,x,x,x,x,x,x,x,x,x]',
      ...Array.from(
        { length: 12 },
        (_, i) =>
          `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`,
      ),
    ].join('\n');
    const problems = await problemsOf({
      '1-syntax.yaml': 'spec: [unclosed\n',
      '2-kind.yaml': 'apiVersion: gatehouse/v1\nkind: Secret\n',
      '3-list.yaml': '- just\n- a list\n',
      '4-dupkey.yaml': 'kind: ServicePolicy\nkind: ServicePolicy\n',
      '5-bomb.yaml': bomb,
      '6-missing.yaml': 'apiVersion: gatehouse/v2\nkind: ServicePolicy\n',
    });
    expect(problems).toEqual([
      expect.stringMatching(/^1-syntax\.yaml:\d+:\d+ /),
      "2-kind.yaml:2:7 unknown kind 'Secret' (expected one of: ServicePolicy, WorkloadPolicy)",
      '3-list.yaml:1:1 a policy document must be a mapping with apiVersion, kind, metadata and spec',
      expect.stringMatching(/^4-dupkey\.yaml:2:1 .*[Uu]nique/),
      expect.stringMatching(/^5-bomb\.yaml:\d+:\d+ cannot read document: .*alias/i),
      "6-missing.yaml:1:1 missing required key 'metadata'",
      "6-missing.yaml:1:1 missing required key 'spec'",
      "6-missing.yaml:1:13 apiVersion: must be 'gatehouse/v1'",
    ]);
  });

  test('an empty or missing directory is an error, not an empty allow-nothing set', async () => {
    const empty = await loadPolicyDir(policyDir({ 'README.md': '# nothing' }));
    expect(!empty.ok && empty.problems[0]!.message).toContain('no policy files');
    const missing = await loadPolicyDir('/nonexistent/gatehouse');
    expect(!missing.ok && missing.problems[0]!.message).toBe('policy directory does not exist');
  });

  test('oversized files are refused before parsing', async () => {
    const dir = policyDir({ 'ok.yaml': servicePolicy('p', ['p'], RULE) });
    writeFileSync(path.join(dir, 'huge.yaml'), `# ${'x'.repeat(1024 * 1024 + 10)}\n`);
    const result = await loadPolicyDir(dir);
    expect(
      !result.ok && result.problems.filter((p) => !isHostOnlyWarning(p)).map((p) => p.message),
    ).toEqual(['file is larger than 1048576 bytes']);
  });
});

describe('one compile pass', () => {
  test('each condition, pattern and body schema is compiled once per load', async () => {
    const conditions = jest.spyOn(conditionsModule, 'compileCondition');
    const paths = jest.spyOn(pathPatternModule, 'compilePathPattern');
    const callers = jest.spyOn(spiffeModule, 'compileSpiffePattern');
    const bodies = jest.spyOn(payloadModule, 'compileBodyContract');
    try {
      const dir = policyDir({
        'p.yaml': servicePolicy(
          'p',
          ['p'],
          `    - name: r
      paths: [/a/*]
      when: request.method == "POST"
      body: { schema: { type: object } }
      allow: [spiffe://td/ns/a/sa/x]
      deny: [spiffe://td/ns/a/sa/y]`,
        ),
      });
      const result = await loadPolicyDir(dir);
      expect(result.ok).toBe(true);
      expect(conditions).toHaveBeenCalledTimes(1);
      expect(paths).toHaveBeenCalledTimes(1);
      expect(callers).toHaveBeenCalledTimes(2);
      expect(bodies).toHaveBeenCalledTimes(1);
    } finally {
      jest.restoreAllMocks();
    }
  });
});
