import { loadPolicyDir } from '../../src/policy/load';
import { compileBodyContract } from '../../src/policy/features/payload';
import { formatProblem } from '../../src/policy/document/problems';
import { EXAMPLE_POLICIES, isHostOnlyWarning, policyDir, servicePolicy } from '../helpers/policies';

/**
 * Validation of the policy features added with `when:`, `body:`, `residency:`, expiring allow
 * entries, `quarantine:` and `kind: WorkloadPolicy`: every error as `file:line:col message`,
 * all of them at once, as `gatehouse validate` prints them.
 */

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

async function warningsOf(files: Record<string, string>): Promise<string[]> {
  const dir = policyDir(files);
  const result = await loadPolicyDir(dir);
  expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual([]);
  return result.ok
    ? result.warnings
        .filter((p) => !isHostOnlyWarning(p))
        .map((p) => formatProblem(p).slice(dir.length + 1))
    : [];
}

/**
 * One rule; `extra` lines follow line 11, so its first line is line 12. Column 13 is the first
 * character after `      when: `.
 */
function withRule(extra: string): Record<string, string> {
  return {
    'p.yaml': servicePolicy(
      'p',
      ['p'],
      `    - name: r
      methods: [GET]
      paths: [/a]
      allow: [spiffe://td/x]
${extra}`,
    ),
  };
}

const WHEN_TYPE_ERROR = 'when: no such overload: string == int';

function workloadPolicy(name: string, spec: string): string {
  return `apiVersion: gatehouse/v1\nkind: WorkloadPolicy\nmetadata:\n  name: ${name}\nspec:\n${spec}`;
}

/** A policy with a quarantine block at line 6 and one rule. */
function withQuarantine(quarantine: string): Record<string, string> {
  return {
    'p.yaml': `apiVersion: gatehouse/v1\nkind: ServicePolicy\nmetadata: {name: p}\nspec:\n  hosts: [p]\n  quarantine: ${quarantine}\n  rules:\n    - {name: r, allow: ["spiffe://td/x"]}\n`,
  };
}

describe('when: CEL conditions are located inside the expression', () => {
  test('a type error in a plain scalar points at the comparison, not at the start of the value', async () => {
    expect(await problemsOf(withRule('      when: request.method == 1'))).toEqual([
      `p.yaml:12:13 ${WHEN_TYPE_ERROR}`,
    ]);
    expect(
      await problemsOf(withRule('      when: request.method == "GET" && request.method == 1')),
    ).toEqual([`p.yaml:12:40 ${WHEN_TYPE_ERROR}`]);
  });

  test('single- and double-quoted scalars: the opening quote is counted', async () => {
    expect(
      await problemsOf(withRule(`      when: 'request.method == "GET" && request.method == 1'`)),
    ).toEqual([`p.yaml:12:41 ${WHEN_TYPE_ERROR}`]);
    expect(
      await problemsOf(withRule(`      when: "request.method == 'GET' && request.method == 1"`)),
    ).toEqual([`p.yaml:12:41 ${WHEN_TYPE_ERROR}`]);
  });

  test("quoted scalars with escapes: '' and \\\" before the error still give its column", async () => {
    // Value: request.headers['x'] == "a" && request.method == 1 (error at value offset 31).
    expect(
      await problemsOf(
        withRule(`      when: 'request.headers[''x''] == "a" && request.method == 1'`),
      ),
    ).toEqual([`p.yaml:12:47 ${WHEN_TYPE_ERROR}`]);
    expect(
      await problemsOf(
        withRule(`      when: "request.headers[\\"x\\"] == \\"a\\" && request.method == 1"`),
      ),
    ).toEqual([`p.yaml:12:49 ${WHEN_TYPE_ERROR}`]);
  });

  test('a block literal over two lines: the error on the second line, at the block indent and deeper', async () => {
    expect(
      await problemsOf(
        withRule(`      when: |
        request.method == "GET" &&
        request.method == 1`),
      ),
    ).toEqual([`p.yaml:14:9 ${WHEN_TYPE_ERROR}`]);
    // The second line is indented two more than the block: those spaces are part of the value.
    expect(
      await problemsOf(
        withRule(`      when: |
        request.method == "GET" &&
          request.method == 1`),
      ),
    ).toEqual([`p.yaml:14:11 ${WHEN_TYPE_ERROR}`]);
  });

  test('a folded block and a plain scalar over two lines: the line breaks are folded, the location is not', async () => {
    expect(
      await problemsOf(
        withRule(`      when: >
        request.method == "GET" &&
        request.method == 1`),
      ),
    ).toEqual([`p.yaml:14:9 ${WHEN_TYPE_ERROR}`]);
    expect(
      await problemsOf(
        withRule(`      when: request.method == "GET" &&
        request.method == 1`),
      ),
    ).toEqual([`p.yaml:13:9 ${WHEN_TYPE_ERROR}`]);
  });

  test('syntax errors: at the unexpected character, or just past the end', async () => {
    expect(await problemsOf(withRule('      when: request.method =='))).toEqual([
      'p.yaml:12:30 when: Unexpected token: EOF',
    ]);
    expect(await problemsOf(withRule('      when: request.method == "GET" && @'))).toEqual([
      'p.yaml:12:40 when: Unexpected character: @',
    ]);
  });

  test('unknown fields and variables', async () => {
    expect(await problemsOf(withRule('      when: request.nope == "x"'))).toEqual([
      'p.yaml:12:21 when: No such key: nope',
    ]);
    expect(await problemsOf(withRule('      when: nope == 1'))).toEqual([
      'p.yaml:12:13 when: Unknown variable: nope',
    ]);
  });

  test('a condition must be a bool', async () => {
    expect(await problemsOf(withRule('      when: request.method'))).toEqual([
      'p.yaml:12:13 when: condition must be a bool expression, not string',
    ]);
  });

  test('matches() is refused, pointing at matches (not at its receiver, not at a string that says "matches")', async () => {
    const refused =
      'matches() is not available (regular expressions can backtrack on hostile input); use startsWith, endsWith, contains or a path pattern';
    expect(await problemsOf(withRule('      when: request.path.matches("^/a")'))).toEqual([
      `p.yaml:12:26 when: ${refused}`,
    ]);
    expect(await problemsOf(withRule('      when: matches(request.path, "^/a")'))).toEqual([
      `p.yaml:12:13 when: ${refused}`,
    ]);
    expect(
      await problemsOf(withRule(`      when: 'request.headers["matches"].matches("^a")'`)),
    ).toEqual([`p.yaml:12:41 when: ${refused}`]);
    // Inside a macro's body too.
    expect(
      await problemsOf(withRule(`      when: 'caller.segments.exists(s, s.matches("^a"))'`)),
    ).toEqual([`p.yaml:12:42 when: ${refused}`]);
  });

  test('an over-long expression is refused before it is parsed', async () => {
    expect(await problemsOf(withRule(`      when: ${'true && '.repeat(600)}true`))).toEqual([
      'p.yaml:12:13 when: condition is longer than 4096 characters',
    ]);
  });

  test('an identifier echoed by CEL is clipped: a long name does not flood the output', async () => {
    const problems = await problemsOf(withRule(`      when: ${'x'.repeat(3000)} == 1`));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^p\.yaml:12:13 when: Unknown variable: x+…$/);
    expect(problems[0]!.length).toBeLessThan(200);
  });

  test('expressions too deep or too large are refused, not run', async () => {
    expect(
      await problemsOf(withRule(`      when: ${'('.repeat(100)}true${')'.repeat(100)}`)),
    ).toEqual([expect.stringMatching(/^p\.yaml:12:\d+ when: Exceeded maxDepth \(32\)$/)]);
    expect(
      await problemsOf(withRule(`      when: ${Array(400).fill('1').join(' + ')} > 0`)),
    ).toEqual([expect.stringMatching(/^p\.yaml:12:\d+ when: Exceeded maxAstNodes \(512\)$/)]);
  });
});

describe('body: contracts', () => {
  test('pattern nested under properties is refused at its key; with an unknown key and a negative maxBytes, all reported', async () => {
    expect(
      await problemsOf(
        withRule(`      body:
        maxBytes: -1
        colour: red
        schema:
          type: object
          properties:
            a: { type: string, pattern: "^a+$" }`),
      ),
    ).toEqual([
      'p.yaml:13:19 spec.rules[0].body.maxBytes: must be >= 0',
      "p.yaml:14:9 spec.rules[0].body: unknown key 'colour' (allowed: maxBytes, contentTypes, schema)",
      "p.yaml:18:32 body: 'pattern' is not available in body schemas (regular expressions can backtrack on hostile input)",
    ]);
  });

  test('patternProperties is refused; so is a pattern in the schema of a property named "properties"', async () => {
    expect(
      await problemsOf(
        withRule(`      body:
        schema:
          type: object
          patternProperties: { "^x": { type: string } }`),
      ),
    ).toEqual([
      "p.yaml:15:11 body: 'patternProperties' is not available in body schemas (regular expressions can backtrack on hostile input)",
    ]);
    expect(
      await problemsOf(
        withRule(`      body:
        schema:
          type: object
          properties:
            properties:
              type: string
              pattern: "^(a+)+$"`),
      ),
    ).toEqual([
      "p.yaml:18:15 body: 'pattern' is not available in body schemas (regular expressions can backtrack on hostile input)",
    ]);
  });

  test('an invalid JSON Schema is refused at the bad keyword, with the allowed values', async () => {
    expect(
      await problemsOf(
        withRule(`      body:
        schema:
          type: strin`),
      ),
    ).toEqual([
      'p.yaml:14:17 body: invalid JSON Schema: type must be one of: array, boolean, integer, null, number, object, string',
    ]);
    expect(
      await problemsOf(
        withRule(`      body:
        schema:
          type: object
          properties:
            a: { type: string, minLength: -1 }`),
      ),
    ).toEqual(['p.yaml:16:43 body: invalid JSON Schema: properties.a.minLength must be >= 0']);
  });

  test('unknown keywords and remote references are refused at load (strict, nothing fetched)', async () => {
    expect(
      await problemsOf(
        withRule(`      body:
        schema:
          type: object
          requird: [a]`),
      ),
    ).toEqual(['p.yaml:14:11 body: invalid JSON Schema: strict mode: unknown keyword: "requird"']);
    expect(
      await problemsOf(
        withRule(`      body:
        schema:
          $ref: "https://schemas.example/order.json"`),
      ),
    ).toEqual([
      "p.yaml:14:11 body: invalid JSON Schema: can't resolve reference https://schemas.example/order.json from id #",
    ]);
  });

  test('an empty body says what to add; contentTypes must be a non-empty list', async () => {
    expect(await problemsOf(withRule('      body: {}'))).toEqual([
      'p.yaml:12:13 spec.rules[0].body: says nothing to check: add at least one of maxBytes, contentTypes, schema',
    ]);
    expect(await problemsOf(withRule('      body: { contentTypes: [] }'))).toEqual([
      'p.yaml:12:29 spec.rules[0].body.contentTypes: must NOT have fewer than 1 items',
    ]);
  });
});

describe('residency:', () => {
  const message = (from: string): string =>
    `regionFrom must be 'label:<key>', 'context:<key>' or 'header:<lower-case-name>', not '${from}'`;

  test('empty regions and an unknown region source, both reported', async () => {
    expect(
      await problemsOf(
        withRule(`      residency:
        regions: []
        regionFrom: zone:x`),
      ),
    ).toEqual([
      'p.yaml:13:18 spec.rules[0].residency.regions: must NOT have fewer than 1 items',
      `p.yaml:14:21 ${message('zone:x')}`,
    ]);
  });

  test('header sources must be header names: not upper case, not empty, no spaces', async () => {
    for (const from of ['header:X-Upper', 'header:', 'header:x region', 'label:']) {
      expect(
        await problemsOf(
          withRule(`      residency:
        regions: [eu-west-1]
        regionFrom: "${from}"`),
        ),
      ).toEqual([`p.yaml:14:21 ${message(from)}`]);
    }
  });

  test('regions and regionFrom are both required; unknown keys are errors', async () => {
    expect(
      await problemsOf(
        withRule(`      residency:
        region: [eu-west-1]`),
      ),
    ).toEqual([
      "p.yaml:13:9 spec.rules[0].residency: missing required key 'regions'",
      "p.yaml:13:9 spec.rules[0].residency: missing required key 'regionFrom'",
      "p.yaml:13:9 spec.rules[0].residency: unknown key 'region' (allowed: regions, regionFrom)",
    ]);
  });
});

describe('allow entries with expiresAfterUnused', () => {
  test('a bad caller pattern, a bad duration, an unknown key and a missing caller: each said once, without "must be a string"', async () => {
    expect(
      await problemsOf({
        'p.yaml': servicePolicy(
          'p',
          ['p'],
          `    - name: r
      allow:
        - caller: spiffe://td/ns/*/sa
          expiresAfterUnused: 30days
        - caller: spiffe://td/y
          colour: red
        - expiresAfterUnused: 1d
        - spiffe://td/plain`,
        ),
      }),
    ).toEqual([
      "p.yaml:10:19 allow[0]: 'spiffe://td/ns/*/sa': a wildcard may only end a pattern, as '/*' (one segment) or '/**' (any depth)",
      'p.yaml:11:31 spec.rules[0].allow[0].expiresAfterUnused: must be a duration such as 90s, 15m, 12h or 30d',
      "p.yaml:13:11 spec.rules[0].allow[1]: unknown key 'colour' (allowed: caller, expiresAfterUnused)",
      "p.yaml:14:11 spec.rules[0].allow[2]: missing required key 'caller'",
    ]);
  });

  test('an entry that is neither a pattern nor a mapping says both forms', async () => {
    expect(
      await problemsOf({
        'p.yaml': servicePolicy('p', ['p'], '    - name: r\n      allow: [[spiffe://td/x]]'),
      }),
    ).toEqual([
      'p.yaml:9:15 spec.rules[0].allow[0]: must be a string',
      'p.yaml:9:15 spec.rules[0].allow[0]: must be an object',
    ]);
  });
});

describe('quarantine:', () => {
  test('missing keys', async () => {
    expect(await problemsOf(withQuarantine('{ denials: 3 }'))).toEqual([
      "p.yaml:6:15 spec.quarantine: missing required key 'window'",
      "p.yaml:6:15 spec.quarantine: missing required key 'duration'",
    ]);
  });

  test('denials 0, a window over 7d and a duration over 30d, all reported', async () => {
    expect(await problemsOf(withQuarantine('{ denials: 0, window: 8d, duration: 31d }'))).toEqual([
      'p.yaml:6:26 spec.quarantine.denials: must be >= 1',
      'p.yaml:6:37 window is longer than 7d; denials are counted over a sliding window held in memory or Redis',
      'p.yaml:6:51 duration is longer than 30d; use a deny entry for a permanent refusal',
    ]);
  });

  test('bad durations and unknown keys', async () => {
    expect(
      await problemsOf(withQuarantine('{ denials: 3, window: 1 minute, duration: 0s, after: 2 }')),
    ).toEqual([
      'p.yaml:6:37 spec.quarantine.window: must be a duration such as 90s, 15m, 12h or 30d',
      'p.yaml:6:57 spec.quarantine.duration: must be a duration such as 90s, 15m, 12h or 30d',
      "p.yaml:6:61 spec.quarantine: unknown key 'after' (allowed: denials, window, duration, countReasons, scope)",
    ]);
  });

  test('exactly 7d and 30d (in other units) are accepted', async () => {
    expect(
      await warningsOf(withQuarantine('{ denials: 3, window: 168h, duration: 720h }')),
    ).toEqual([]);
  });

  test('countReasons adds content-driven denials to the identity-decided ones; scope: mesh is an opt-in', async () => {
    const dir = policyDir(
      withQuarantine(
        '{ denials: 3, window: 1m, duration: 5m, countReasons: [payload_rejected], scope: mesh }',
      ),
    );
    const result = await loadPolicyDir(dir);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const rule = result.set.byName.get('p')!.quarantine!;
    expect([...rule.countReasons].sort()).toEqual([
      'caller_not_allowed',
      'caller_refused',
      'host_mismatch',
      'mtls_required',
      'payload_rejected',
    ]);
    expect(rule.scope).toBe('mesh');
  });

  test('an unknown count reason or scope is an error', async () => {
    const problems = await problemsOf(
      withQuarantine(
        '{ denials: 3, window: 1m, duration: 5m, countReasons: [rate_limited], scope: everywhere }',
      ),
    );
    expect(problems).toEqual([
      expect.stringMatching(
        /spec\.quarantine\.countReasons\[0\]: must be one of: caller_not_allowed, .*payload_rejected/,
      ),
      expect.stringMatching(/spec\.quarantine\.scope: must be one of: policy, mesh/),
    ]);
  });
});

describe('kind: WorkloadPolicy', () => {
  const REFUSE = '  refuse:\n    - name: a\n      headers: [cookie]\n';

  test('the workload must be one exact SPIFFE ID, not a pattern', async () => {
    expect(
      await problemsOf({
        'w.yaml': workloadPolicy('w', `  workload: reports-exporter\n${REFUSE}`),
      }),
    ).toEqual([
      'w.yaml:6:13 workload: SPIFFE ID must start with spiffe:// (lower-case scheme) (a WorkloadPolicy names one exact SPIFFE ID)',
    ]);
    expect(
      await problemsOf({
        'w.yaml': workloadPolicy('w', `  workload: spiffe://td/ns/reports/sa/*\n${REFUSE}`),
      }),
    ).toEqual([
      "w.yaml:6:13 workload: 'spiffe://td/ns/reports/sa/*' is a pattern; a WorkloadPolicy names one exact SPIFFE ID",
    ]);
  });

  test('refusals: only a name, duplicate names, a bad header, an empty field segment, a bad host and path, unknown keys: all at once', async () => {
    expect(
      await problemsOf({
        'w.yaml': workloadPolicy(
          'w',
          `  workload: spiffe://td/ns/reports/sa/exporter
  colour: red
  refuse:
    - name: only-name
    - name: dup
      headers: [Cookie]
    - name: dup
      fields: [card..number, .x]
      hosts: ["a:80"]
      paths: [v1]
      rules: x
`,
        ),
      }),
    ).toEqual([
      "w.yaml:7:3 spec: unknown key 'colour' (allowed: workload, mode, refuse)",
      'w.yaml:9:7 spec.refuse[0]: says nothing to check: add at least one of hosts, methods, paths, headers, fields',
      "w.yaml:11:17 'Cookie' is not a lower-case header name",
      "w.yaml:12:13 duplicate refusal name 'dup'",
      "w.yaml:13:16 field 'card..number' has an empty segment; write dotted names such as card.number",
      "w.yaml:13:30 field '.x' has an empty segment; write dotted names such as card.number",
      "w.yaml:14:15 host 'a:80': hosts are matched without their port; remove ':80'",
      "w.yaml:15:15 path pattern must start with '/'",
      "w.yaml:16:7 spec.refuse[2]: unknown key 'rules' (allowed: name, hosts, methods, paths, headers, fields)",
    ]);
  });

  test('a refusal with a selector but no name is told about the name only; an empty refuse list is an error', async () => {
    expect(
      await problemsOf({
        'w.yaml': workloadPolicy(
          'w',
          '  workload: spiffe://td/x\n  refuse:\n    - headers: [cookie]\n',
        ),
      }),
    ).toEqual(["w.yaml:8:7 spec.refuse[0]: missing required key 'name'"]);
    expect(
      await problemsOf({
        'w.yaml': workloadPolicy('w', '  workload: spiffe://td/x\n  refuse: []\n'),
      }),
    ).toEqual(['w.yaml:7:11 spec.refuse: must NOT have fewer than 1 items']);
  });

  test('rule-only keys (allow, rules) are unknown in a WorkloadPolicy', async () => {
    expect(
      await problemsOf({
        'w.yaml': workloadPolicy('w', `  workload: spiffe://td/x\n  rules: []\n${REFUSE}`),
      }),
    ).toEqual(["w.yaml:7:3 spec: unknown key 'rules' (allowed: workload, mode, refuse)"]);
  });

  test('two WorkloadPolicies for one workload: the error is on the second, in the same file or another', async () => {
    const first = workloadPolicy('w1', `  workload: spiffe://td/x\n${REFUSE}`);
    const second = workloadPolicy('w2', `  workload: spiffe://td/x\n${REFUSE}`);
    expect(await problemsOf({ 'w.yaml': `${first}---\n${second}` })).toEqual([
      "w.yaml:16:13 workload 'spiffe://td/x' already has WorkloadPolicy w1; one per workload",
    ]);
    expect(await problemsOf({ 'a.yaml': first, 'b.yaml': second })).toEqual([
      "b.yaml:6:13 workload 'spiffe://td/x' already has WorkloadPolicy w1; one per workload",
    ]);
  });
});

describe('all problems at once', () => {
  test('one file with errors in every new feature reports every one of them, sorted', async () => {
    const problems = await problemsOf({
      'p.yaml': `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: {name: p}
spec:
  hosts: [p]
  quarantine: { denials: 0, window: 8d, duration: 15m }
  rules:
    - name: r
      allow:
        - caller: spiffe://td/x
          expiresAfterUnused: 30days
      when: request.method == 1
      body:
        schema: { type: object, properties: { a: { type: string, pattern: "x" } } }
      residency: { regions: [eu], regionFrom: "header:X-Region" }
---
${workloadPolicy('w', '  workload: spiffe://td/ns/*/sa\n  refuse:\n    - name: a\n      headers: [Cookie]\n')}`,
    });
    expect(problems).toEqual([
      'p.yaml:6:26 spec.quarantine.denials: must be >= 1',
      'p.yaml:6:37 window is longer than 7d; denials are counted over a sliding window held in memory or Redis',
      'p.yaml:11:31 spec.rules[0].allow[0].expiresAfterUnused: must be a duration such as 90s, 15m, 12h or 30d',
      `p.yaml:12:13 ${WHEN_TYPE_ERROR}`,
      "p.yaml:14:66 body: 'pattern' is not available in body schemas (regular expressions can backtrack on hostile input)",
      "p.yaml:15:47 regionFrom must be 'label:<key>', 'context:<key>' or 'header:<lower-case-name>', not 'header:X-Region'",
      "p.yaml:22:13 workload: 'spiffe://td/ns/*/sa' is a pattern; a WorkloadPolicy names one exact SPIFFE ID",
      "p.yaml:25:17 'Cookie' is not a lower-case header name",
    ]);
  });
});

describe('a valid document with every new feature', () => {
  const ALL = `apiVersion: gatehouse/v1
kind: ServicePolicy
metadata: {name: customers}
spec:
  hosts: [customers]
  quarantine: { denials: 5, window: 7d, duration: 30d }
  rules:
    - name: export
      methods: [GET]
      paths: [/v1/export]
      allow:
        - caller: spiffe://td/ns/reports/sa/exporter
          expiresAfterUnused: 30d
        - spiffe://td/ns/admin/sa/cli
      residency: { regions: [eu-west-1, eu-central-1], regionFrom: "label:topology.kubernetes.io/region" }
    - name: update
      methods: [PUT]
      paths: [/v1/customers/*]
      allow: [spiffe://td/ns/support/sa/*]
      when: |
        request.headers[?"x-tenant"].orValue("") ==
          caller.segments[3]
      body:
        maxBytes: 4096
        contentTypes: [application/json]
        schema:
          type: object
          additionalProperties: false
          required: [street]
          properties:
            street: { type: string, maxLength: 200 }
            pattern: { type: string, enum: [plain, striped] }
---
apiVersion: gatehouse/v1
kind: WorkloadPolicy
metadata: {name: exporter}
spec:
  workload: spiffe://td/ns/reports/sa/exporter
  mode: dry-run
  refuse:
    - name: never-payments
      hosts: [payments]
      methods: [POST]
      paths: [/v1/**]
    - name: no-card-data
      fields: [card.number]
    - name: no-cookies
      headers: [cookie]
`;

  test('loads and compiles: grants, quarantine, opt-outs, conditions, contracts and residency', async () => {
    const result = await loadPolicyDir(policyDir({ 'customers.yaml': ALL }));
    expect(
      result.ok
        ? result.warnings.filter((p) => !isHostOnlyWarning(p))
        : result.problems.map(formatProblem),
    ).toEqual([]);
    if (!result.ok) return;
    const set = result.set;
    const policy = set.byHost.get('customers')!;
    expect(policy.quarantine).toEqual({
      policy: 'customers',
      denials: 5,
      windowMs: 7 * 86_400_000,
      durationMs: 30 * 86_400_000,
      dryRun: false,
      countReasons: new Set([
        'caller_not_allowed',
        'caller_refused',
        'mtls_required',
        'host_mismatch',
      ]),
      scope: 'policy',
    });
    expect(set.grants).toEqual([
      {
        policy: 'customers',
        version: policy.contentHash,
        rule: 'export',
        entry: 0,
        pattern: 'spiffe://td/ns/reports/sa/exporter',
        maxIdleMs: 30 * 86_400_000,
      },
    ]);
    const [exportRule, updateRule] = policy.rules;
    expect(exportRule!.grants.map((g) => g !== null)).toEqual([true, false]);
    expect(exportRule!.residency?.from).toEqual({
      kind: 'label',
      name: 'topology.kubernetes.io/region',
    });
    expect([...exportRule!.residency!.regions]).toEqual(['eu-west-1', 'eu-central-1']);
    expect(exportRule!.when).toBeNull();

    const when = updateRule!.when!;
    const activation = (tenant: string | undefined) => ({
      request: {
        method: 'PUT',
        path: '/v1/customers/1',
        host: 'customers',
        query: {},
        headers: tenant === undefined ? {} : { 'x-tenant': tenant },
      },
      caller: {
        id: 'spiffe://td/ns/support/sa/acme',
        trustDomain: 'td',
        path: '/ns/support/sa/acme',
        segments: ['ns', 'support', 'sa', 'acme'],
      },
      context: {},
      destination: { labels: {} },
      metadata: {},
    });
    expect(when.evaluate(activation('acme'))).toBe(true);
    expect(when.evaluate(activation('other'))).toBe(false);
    expect(when.evaluate(activation(undefined))).toBe(false);

    const body = updateRule!.body!;
    expect(body.maxBytes).toBe(4096);
    expect([...body.contentTypes!]).toEqual(['application/json']);
    // A property named `pattern` is a name, not the keyword: allowed, and the schema works.
    expect(body.schema!({ street: 'Main St 1', pattern: 'plain' })).toBe(true);
    expect(body.schema!({ street: 'Main St 1', pattern: 'dotted' })).toBe(false);
    expect(body.schema!({ city: 'x' })).toBe(false);

    const optOut = set.optOuts.get('spiffe://td/ns/reports/sa/exporter')!;
    expect(optOut.name).toBe('exporter');
    expect(optOut.mode).toBe('dry-run');
    expect(optOut.refusals.map((r) => r.name)).toEqual([
      'never-payments',
      'no-card-data',
      'no-cookies',
    ]);
    expect([...optOut.refusals[0]!.hosts!]).toEqual(['payments']);
    expect(optOut.refusals[0]!.paths!.map((p) => p.matches('/v1/charges/1'))).toEqual([true]);
    expect(optOut.refusals[1]!.fields).toEqual([['card', 'number']]);
    expect(optOut.refusals[2]!.headers).toEqual(['cookie']);
    // A WorkloadPolicy guards no host and is not a ServicePolicy.
    expect(set.policies.map((p) => p.name)).toEqual(['customers']);
  });

  test('loading twice (validate, then reload) gives working contracts each time', async () => {
    const dir = policyDir({ 'customers.yaml': ALL });
    for (let i = 0; i < 3; i++) {
      const result = await loadPolicyDir(dir);
      expect(result.ok).toBe(true);
      if (result.ok)
        expect(result.set.byHost.get('customers')!.rules[1]!.body!.schema!({ street: 'x' })).toBe(
          true,
        );
    }
  });

  test('a compiled contract keeps working after compile (ajv does not keep it cached)', () => {
    const schema = {
      $id: 'https://gatehouse.test/same-id',
      type: 'object',
      properties: { a: {} },
      required: ['a'],
    };
    const a = compileBodyContract({ schema });
    const b = compileBodyContract({ schema: { ...schema } });
    expect(a.ok && b.ok).toBe(true);
    if (!a.ok || !b.ok) return;
    expect(a.value.schema!({ a: 1 })).toBe(true);
    expect(b.value.schema!({})).toBe(false);
  });

  test('the example policies with these features load: customers and the reports exporter', async () => {
    const result = await loadPolicyDir(EXAMPLE_POLICIES);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(
      result.set.optOuts
        .get('spiffe://shop.example/ns/reports/sa/exporter')
        ?.refusals.map((r) => r.name),
    ).toEqual(['never-payments', 'no-card-data', 'no-session-cookies']);
    expect(result.set.grants.map((g) => `${g.policy}/${g.rule}/${g.pattern}`)).toEqual([
      'customers/export/spiffe://shop.example/ns/reports/sa/exporter',
    ]);
    expect(result.set.byHost.get('customers')?.quarantine).toMatchObject({
      denials: 5,
      windowMs: 60_000,
      durationMs: 900_000,
    });
  });
});

describe('shadowing and when:', () => {
  const LATER = `    - name: later
      methods: [GET]
      paths: [/a]
      allow: [spiffe://td/x]`;

  test('a rule after a conditional rule that covers it is not shadowed: what the condition rejects falls through', async () => {
    expect(
      await warningsOf({
        'p.yaml': servicePolicy(
          'p',
          ['p'],
          `    - name: earlier
      allow: [spiffe://td/x]
      when: request.headers[?"x-canary"].hasValue()
${LATER}`,
        ),
      }),
    ).toEqual([]);
  });

  test('without when: it is shadowed (a warning, the set still loads)', async () => {
    expect(
      await warningsOf({
        'p.yaml': servicePolicy(
          'p',
          ['p'],
          `    - name: earlier
      allow: [spiffe://td/x]
${LATER}`,
        ),
      }),
    ).toEqual([
      "p.yaml:10:13 warning: rule 'later' is shadowed by rule 'earlier' (rules[0]): every request it allows is decided by 'earlier' first, so it never applies",
    ]);
  });

  test('an earlier rule whose allow entry can go dormant still decides first (a dormant grant denies), so it shadows', async () => {
    expect(
      await warningsOf({
        'p.yaml': servicePolicy(
          'p',
          ['p'],
          `    - name: earlier
      allow: [{ caller: spiffe://td/x, expiresAfterUnused: 30d }]
${LATER}`,
        ),
      }),
    ).toEqual([
      expect.stringMatching(/^p\.yaml:10:13 warning: rule 'later' is shadowed by rule 'earlier'/),
    ]);
  });

  test('a later rule with its own when: is still shadowed by an unconditional earlier rule', async () => {
    expect(
      await warningsOf({
        'p.yaml': servicePolicy(
          'p',
          ['p'],
          `    - name: earlier
      allow: [spiffe://td/x]
${LATER}
      when: request.method == "GET"`,
        ),
      }),
    ).toEqual([
      expect.stringMatching(/^p\.yaml:10:13 warning: rule 'later' is shadowed by rule 'earlier'/),
    ]);
  });
});
