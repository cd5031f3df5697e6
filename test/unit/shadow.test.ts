import { compileSpiffePattern } from '../../src/identity/spiffe';
import { compilePathPattern } from '../../src/policy/features/path-pattern';
import { findShadowedRules, type ShadowCandidate } from '../../src/policy/features/shadow';
import type { RuleDoc } from '../../src/policy/document/schema';
import { loadPolicyDir } from '../../src/policy/load';
import { formatProblem } from '../../src/policy/document/problems';
import { isHostOnlyWarning, policyDir, servicePolicy } from '../helpers/policies';

const rule = (name: string, extra: Partial<RuleDoc>): RuleDoc => ({
  name,
  allow: ['spiffe://td/ns/a/sa/x'],
  ...extra,
});

function candidate(doc: RuleDoc): ShadowCandidate {
  const value = <T>(r: { ok: true; value: T } | { ok: false; error: string }): T => {
    if (!r.ok) throw new Error(r.error);
    return r.value;
  };
  return {
    methods: doc.methods ? new Set(doc.methods) : null,
    paths: doc.paths ? doc.paths.map((p) => value(compilePathPattern(p))) : null,
    allow: (doc.allow ?? []).map((p) =>
      value(compileSpiffePattern(typeof p === 'string' ? p : p.caller)),
    ),
    deny: (doc.deny ?? []).map((p) => value(compileSpiffePattern(p))),
    conditional: doc.when !== undefined,
  };
}

describe('shadowed rules', () => {
  test.each<[string, RuleDoc, RuleDoc, boolean]>([
    ['identical', rule('a', { paths: ['/x'] }), rule('b', { paths: ['/x'] }), true],
    [
      'any method and path covers specific ones',
      rule('a', {}),
      rule('b', { methods: ['GET'], paths: ['/x/*'] }),
      true,
    ],
    [
      '/** covers exact and wildcard paths below it',
      rule('a', { paths: ['/v1/**'] }),
      rule('b', { paths: ['/v1/a', '/v1/b/*', '/v1'] }),
      true,
    ],
    [
      '/v1/* covers an exact one-segment path',
      rule('a', { paths: ['/v1/*'] }),
      rule('b', { paths: ['/v1/a'] }),
      true,
    ],
    [
      '/v1/* does not cover /v1/**',
      rule('a', { paths: ['/v1/*'] }),
      rule('b', { paths: ['/v1/**'] }),
      false,
    ],
    [
      'methods must be a subset',
      rule('a', { methods: ['GET'] }),
      rule('b', { methods: ['GET', 'POST'] }),
      false,
    ],
    ['a path outside', rule('a', { paths: ['/v1/**'] }), rule('b', { paths: ['/v2'] }), false],
    [
      'callers under a ** prefix',
      rule('a', { allow: ['spiffe://td/ns/**'] }),
      rule('b', { allow: ['spiffe://td/ns/a/sa/*', 'spiffe://td/ns/b'] }),
      true,
    ],
    [
      'callers under a /* prefix',
      rule('a', { allow: ['spiffe://td/ns/a/sa/*'] }),
      rule('b', { allow: ['spiffe://td/ns/a/sa/y'] }),
      true,
    ],
    [
      '/* does not cover deeper IDs',
      rule('a', { allow: ['spiffe://td/ns/a/sa/*'] }),
      rule('b', { allow: ['spiffe://td/ns/a/sa/y/z'] }),
      false,
    ],
    [
      'prefix boundary',
      rule('a', { allow: ['spiffe://td/ns/a/**'] }),
      rule('b', { allow: ['spiffe://td/ns/ab'] }),
      false,
    ],
    [
      'one caller not covered',
      rule('a', {}),
      rule('b', { allow: ['spiffe://td/ns/a/sa/x', 'spiffe://td/other'] }),
      false,
    ],
    [
      'a rule with refusals is never shadowed',
      rule('a', {}),
      rule('b', { deny: ['spiffe://td/ns/a/sa/z'] }),
      false,
    ],
  ])('%s', (_name, earlier, later, shadowed) => {
    expect(findShadowedRules([candidate(earlier), candidate(later)])).toEqual(
      shadowed ? [{ index: 1, by: 0 }] : [],
    );
  });

  test('validate reports it as a warning at the rule name; the set still loads', async () => {
    const dir = policyDir({
      'p.yaml': servicePolicy(
        'p',
        ['p'],
        `    - name: everything
      allow: [spiffe://td/ns/**]
    - name: limited-reads
      methods: [GET]
      allow: [spiffe://td/ns/a/sa/x]
      rateLimit: { capacity: 1, refillPerSecond: 1 }`,
      ),
    });
    const result = await loadPolicyDir(dir);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(
      result.warnings
        .filter((w) => !isHostOnlyWarning(w))
        .map((w) => formatProblem(w).slice(dir.length + 1)),
    ).toEqual([
      "p.yaml:10:13 warning: rule 'limited-reads' is shadowed by rule 'everything' (rules[0]): every request it allows is decided by 'everything' first, so it never applies",
    ]);
  });
});
