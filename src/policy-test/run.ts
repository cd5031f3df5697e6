import type { CheckInput } from '../envoy/check-input';
import { DecisionEngine } from '../pipeline/engine';
import type { Decision } from '../pipeline/decision';
import { loadPolicyDir } from '../policy/load';
import { isPolicyTestFile, listFiles, readSources } from '../policy/document/source';
import { POLICY_CONTEXT_KEY, policyForDestination } from '../policy/features/select';
import { tooLargeErrors, wholeFileError, type PolicyProblem } from '../policy/document/problems';
import type { CompiledPolicy, PolicySet } from '../policy/types';
import { compileSchema, schemaProblems } from '../policy/compile/validate';
import { parseYamlDocuments, type LocatedDoc } from '../policy/document/yaml-docs';
import { MemoryGrantTracker } from '../grants/memory';
import { parseDuration } from '../policy/duration';
import { MemoryQuarantineState } from '../quarantine/memory';
import { MemoryBucketStore } from '../ratelimit/memory-store';
import { TestCredentials } from './credentials';
import { policyTestSchema, type CaseDoc, type ExpectDoc, type PolicyTestDoc } from './schema';

export interface CaseResult {
  readonly file: string;
  readonly line: number;
  readonly suite: string;
  readonly name: string;
  readonly passed: boolean;
  /** What happened, e.g. "deny 403 caller_refused (rule create-order)". */
  readonly actual: string;
  readonly expected: string;
  readonly dryRun: boolean;
  readonly ms: number;
}

export interface CoverageGap {
  readonly policy: string;
  readonly file: string;
  readonly rule: string;
  /** undefined: the rule never decided a case; else the entry that never matched. */
  readonly entry?: { list: 'allow' | 'deny'; index: number; pattern: string };
}

export type TestRun =
  | {
      ok: true;
      results: CaseResult[];
      coverage: CoverageGap[];
      totalEntries: number;
      policyVersion: string;
    }
  | { ok: false; problems: PolicyProblem[] };

let validator: ReturnType<typeof compileSchema> | undefined;

/**
 * `gatehouse test`: every case runs through the server's own decision engine, on a fresh
 * in-process limiter (so cases do not leak budget into each other).
 */
export async function runPolicyTests(
  dir: string,
  options: { trustDomains?: readonly string[] } = {},
): Promise<TestRun> {
  const loaded = await loadPolicyDir(dir);
  if (!loaded.ok) return { ok: false, problems: loaded.problems };
  const files = await listFiles(dir, isPolicyTestFile);
  if (files.length === 0) {
    return { ok: false, problems: [wholeFileError(dir, 'no policy tests (*.test.yaml) found')] };
  }
  const { sources, tooLarge } = await readSources(files);
  const problems = tooLargeErrors(tooLarge, 'file is too large');
  const suites: { located: LocatedDoc; doc: PolicyTestDoc }[] = [];
  validator ??= compileSchema(policyTestSchema);
  for (const source of sources) {
    const parsed = parseYamlDocuments(source);
    problems.push(...parsed.problems);
    for (const located of parsed.docs) {
      const docProblems = schemaProblems(located, validator);
      const doc = located.value as PolicyTestDoc;
      if (docProblems.length === 0) {
        doc.spec.cases.forEach((c, i) => {
          const r = c.request;
          if (
            (r.workload === undefined) === (r.host === undefined || r.path === undefined) ||
            (r.workload !== undefined && (r.host ?? r.path ?? r.method) !== undefined)
          ) {
            docProblems.push(
              located.problem(
                ['spec', 'cases', i, 'request'],
                'a request names host and path (HTTP) or workload (a TCP connection), not both',
              ),
            );
          }
          if (r.workload !== undefined && r.destination !== undefined) {
            docProblems.push(
              located.problem(
                ['spec', 'cases', i, 'request', 'destination'],
                'a TCP connection names its destination as workload; destination is for HTTP requests',
              ),
            );
          }
          if (
            typeof c.expect === 'object' &&
            (c.expect.allow === undefined) === (c.expect.deny === undefined)
          ) {
            docProblems.push(
              located.problem(
                ['spec', 'cases', i, 'expect'],
                'expect must say allow: true or deny: 401|403|429 (exactly one)',
              ),
            );
          }
        });
      }
      problems.push(...docProblems);
      if (docProblems.length === 0) suites.push({ located, doc });
    }
  }
  if (problems.some((p) => p.severity === 'error')) return { ok: false, problems };

  const set = loaded.set;
  const credentials = new TestCredentials();
  const used = new Set<string>();
  const results: CaseResult[] = [];
  for (const { located, doc } of suites) {
    const trustDomains = doc.spec.trustDomains ?? options.trustDomains ?? trustDomainsOf(set);
    for (const [i, testCase] of doc.spec.cases.entries()) {
      const start = performance.now();
      const decision = await runCase(
        set,
        testCase,
        {
          trustDomains,
          trustXfcc: doc.spec.trustXfcc === true,
          jwtAudience: doc.spec.jwtAudience ?? DEFAULT_JWT_AUDIENCE,
        },
        credentials,
      );
      if (decision.policy && decision.entry) {
        // A TCP decision has no rule: its entries belong to the policy's `tcp` lists.
        const rule = decision.rule?.name ?? TCP_RULE;
        used.add(ruleKey(decision.policy.name, rule));
        used.add(entryKey(decision.policy.name, rule, decision.entry.list, decision.entry.index));
      } else if (decision.policy && decision.rule) {
        used.add(ruleKey(decision.policy.name, decision.rule.name));
      }
      results.push({
        file: located.file,
        line: located.lineOf(['spec', 'cases', i]),
        suite: doc.metadata.name,
        name: testCase.name,
        ...judge(decision, testCase.expect),
        dryRun: decision.policy?.mode === 'dry-run',
        ms: performance.now() - start,
      });
    }
  }
  const { gaps, total } = coverage(set, used);
  return { ok: true, results, coverage: gaps, totalEntries: total, policyVersion: set.version };
}

/** The server's audience in policy tests unless a suite sets `jwtAudience`. */
const DEFAULT_JWT_AUDIENCE = 'gatehouse-test';

interface SuiteIdentity {
  readonly trustDomains: readonly string[];
  readonly trustXfcc: boolean;
  readonly jwtAudience: string;
}

/** Cases run at a fixed instant, so a grant's age is exactly what the case says. */
const CASE_EPOCH = Date.UTC(2030, 0, 1);

async function runCase(
  set: PolicySet,
  testCase: CaseDoc,
  suite: SuiteIdentity,
  credentials: TestCredentials,
): Promise<Decision> {
  const store = new MemoryBucketStore();
  const quarantine = new MemoryQuarantineState({ onEvent: () => undefined, now: () => CASE_EPOCH });
  const grants = new MemoryGrantTracker();
  grants.setGrants(set.grants, CASE_EPOCH);
  const unusedFor =
    testCase.state?.grantUnusedFor !== undefined
      ? parseDuration(testCase.state.grantUnusedFor)!
      : 0;
  const now = CASE_EPOCH + unusedFor;
  if (testCase.state?.quarantined && testCase.request.caller !== undefined) {
    quarantine.seed({
      caller: testCase.request.caller,
      policy: 'policy-test',
      since: CASE_EPOCH,
      until: now + 3_600_000,
      denials: 0,
      dryRun: false,
    });
  }
  let last: Decision | undefined;
  let token: string | undefined;
  const jwt = testCase.request.jwt;
  if (jwt !== undefined) {
    // Unless the case says otherwise, the token is for the audience its host's policy expects.
    const policyAudience = casePolicy(set, testCase.request)?.audience;
    token = await credentials.jwt(jwt, policyAudience ?? suite.jwtAudience);
  }
  const engine = new DecisionEngine({
    policies: () => set,
    identity: {
      trustDomains: new Set(suite.trustDomains),
      trustXfcc: suite.trustXfcc,
      trustBundles: credentials.trustBundles(),
      jwt: { audience: suite.jwtAudience, leewaySeconds: 0 },
    },
    store,
    sink: { record: (d) => void (last = d) },
    quarantine,
    grants,
    now: () => now,
  });
  const request = checkRequestFor(testCase, token);
  for (let n = 0; n < (testCase.repeat ?? 1); n++) await engine.decide(request);
  await Promise.all([store.close(), quarantine.close(), grants.close()]);
  return last!;
}

/** The policy a case's request is meant for: its destination's, else its route's, else its host's. */
function casePolicy(set: PolicySet, r: CaseDoc['request']): CompiledPolicy | undefined {
  if (r.destination !== undefined) return policyForDestination(set.destinations, r.destination);
  const named = r.context?.[POLICY_CONTEXT_KEY];
  if (named !== undefined) return set.byName.get(named);
  return r.host !== undefined ? set.byHost.get(r.host.toLowerCase()) : undefined;
}

/** The CheckRequest Envoy would send for the case. */
function checkRequestFor(testCase: CaseDoc, token: string | undefined): CheckInput {
  const r = testCase.request;
  if (r.workload !== undefined) {
    // Istio's network-level check: peers only, no HTTP attributes.
    return {
      attributes: {
        source: r.caller !== undefined ? { principal: r.caller } : {},
        destination: { principal: r.workload },
      },
    };
  }
  const method = r.method ?? 'GET';
  const headers: Record<string, string> = {
    ':authority': r.host!,
    ':method': method,
    ':path': r.path!,
    ...r.headers,
  };
  if (r.xfcc !== undefined) headers['x-forwarded-client-cert'] = r.xfcc;
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
  const http: Record<string, unknown> = { host: r.host, method, path: r.path, headers };
  if (r.body !== undefined) {
    http['body'] = typeof r.body === 'string' ? r.body : JSON.stringify(r.body);
    headers['content-type'] ??= 'application/json';
    headers['content-length'] ??= String(Buffer.byteLength(http['body'] as string));
  }
  return {
    attributes: {
      source: r.caller !== undefined ? { principal: r.caller } : {},
      ...(r.labels || r.destination
        ? {
            destination: {
              ...(r.destination ? { principal: r.destination } : {}),
              ...(r.labels ? { labels: r.labels } : {}),
            },
          }
        : {}),
      ...(r.context ? { contextExtensions: r.context } : {}),
      ...(r.metadata ? { metadataContext: { filterMetadata: r.metadata } } : {}),
      request: { http },
    },
  };
}

/** Tests judge the policy's verdict: in dry-run that is the denial it would have made. */
function judge(
  d: Decision,
  expect: ExpectDoc,
): { passed: boolean; actual: string; expected: string } {
  const verdict = d.wouldDeny ?? d;
  const actual = verdict.allowed
    ? `allow${d.rule ? ` (rule ${d.rule.name})` : ''}`
    : `deny ${verdict.status} ${verdict.code}${d.rule ? ` (rule ${d.rule.name})` : ''}: ${verdict.reason}`;
  const want =
    typeof expect === 'string'
      ? { allow: expect === 'allow' ? true : undefined, deny: undefined, any: expect === 'deny' }
      : { ...expect, any: false };
  let passed: boolean;
  let expected: string;
  if (want.allow) {
    passed = verdict.allowed;
    expected = 'allow';
  } else {
    passed = !verdict.allowed && (want.any || verdict.status === want.deny);
    expected = want.any ? 'deny' : `deny ${want.deny}`;
  }
  if (typeof expect === 'object' && expect.reason !== undefined) {
    passed &&= verdict.code === expect.reason || verdict.reason.includes(expect.reason);
    expected += ` reason ${expect.reason}`;
  }
  if (typeof expect === 'object' && expect.rule !== undefined) {
    passed &&= d.rule?.name === expect.rule;
    expected += ` (rule ${expect.rule})`;
  }
  return { passed, actual, expected };
}

function coverage(
  set: PolicySet,
  used: ReadonlySet<string>,
): { gaps: CoverageGap[]; total: number } {
  const gaps: CoverageGap[] = [];
  let total = 0;
  for (const policy of set.policies) {
    const rules: {
      name: string;
      allow: readonly { source: string }[];
      deny: readonly { source: string }[];
    }[] = [...policy.rules];
    if (policy.tcp) rules.push({ name: TCP_RULE, ...policy.tcp });
    for (const rule of rules) {
      if (!used.has(ruleKey(policy.name, rule.name)))
        gaps.push({ policy: policy.name, file: policy.file, rule: rule.name });
      for (const list of ['allow', 'deny'] as const) {
        rule[list].forEach((pattern, index) => {
          total++;
          if (!used.has(entryKey(policy.name, rule.name, list, index))) {
            gaps.push({
              policy: policy.name,
              file: policy.file,
              rule: rule.name,
              entry: { list, index, pattern: pattern.source },
            });
          }
        });
      }
    }
  }
  return { gaps, total };
}

/** The pseudo-rule name of a policy's connection-level lists. */
const TCP_RULE = 'tcp';

const ruleKey = (policy: string, rule: string): string => `${policy}/${rule}`;
const entryKey = (policy: string, rule: string, list: string, index: number): string =>
  `${policy}/${rule}/${list}/${index}`;

/** Without an explicit list, the trust domains the policies name are trusted. */
function trustDomainsOf(set: PolicySet): string[] {
  const domains = new Set<string>();
  for (const p of set.policies)
    for (const r of p.rules)
      for (const pattern of [...r.allow, ...r.deny]) domains.add(pattern.trustDomain);
  return [...domains];
}
