import { DecisionEngine } from '../pipeline/engine';
import type { Decision } from '../pipeline/decision';
import { loadPolicyDir } from '../policy/load';
import { formatProblem } from '../policy/document/problems';
import { MemoryBucketStore } from '../ratelimit/memory-store';
import type { CheckInput } from '../envoy/check-input';
import { checkRequestFromJson } from '../envoy/proto-json';
import { toCheckResponse } from '../respond/check-response';
import { auditRecord } from '../audit/audit-log';
import type { RuleStep } from '../policy/authorize';

export interface CheckOptions {
  trustDomains: readonly string[];
  trustXfcc: boolean;
  json: boolean;
}

/** `gatehouse check`: the server's own decision function on one request. Returns the exit code. */
export async function runCheck(
  dir: string,
  inputText: string,
  options: CheckOptions,
): Promise<number> {
  const loaded = await loadPolicyDir(dir);
  if (!loaded.ok) {
    for (const p of loaded.problems) process.stderr.write(`${formatProblem(p)}\n`);
    return 1;
  }
  let request: CheckInput;
  try {
    request = checkRequestFromJson(JSON.parse(inputText));
  } catch (err) {
    process.stderr.write(
      `gatehouse: input is not a CheckRequest in proto3 JSON: ${(err as Error).message}\n`,
    );
    return 1;
  }
  const store = new MemoryBucketStore();
  const engine = new DecisionEngine({
    policies: () => loaded.set,
    identity: { trustDomains: new Set(options.trustDomains), trustXfcc: options.trustXfcc },
    store,
    sink: { record: () => undefined },
  });
  const trace: RuleStep[] = [];
  const decision = await engine.decide(request, trace);
  await store.close();
  const rules = ruleExplanations(decision, trace);
  process.stdout.write(
    options.json
      ? `${JSON.stringify({ decision: auditRecord(decision), rules, response: toCheckResponse(decision) }, null, 2)}\n`
      : explain(decision, rules),
  );
  return 0;
}

export interface RuleExplanation {
  readonly rule: string;
  /** Absent where authorize did not look: after the deciding rule, or after a method that differs. */
  readonly methodMatches?: boolean;
  readonly pathMatches?: boolean;
  /** Entry that refused the caller. */
  readonly refusedBy?: string;
  /** Entry that allowed the caller. */
  readonly allowedBy?: string;
  readonly summary: string;
}

/**
 * Per-rule explanation, when the request got as far as authorising: the steps authorize
 * recorded while the engine decided this very request.
 */
function ruleExplanations(decision: Decision, trace: readonly RuleStep[]): RuleExplanation[] {
  const { policy, method, path } = decision;
  if (policy === undefined || trace.length === 0 || method === undefined || path === undefined)
    return [];
  const decidedBy = trace[trace.length - 1];
  return policy.rules.map((rule) => {
    const step = trace.find((s) => s.rule === rule);
    return step
      ? describeStep(step, method, path)
      : { rule: rule.name, summary: `not evaluated: rule ${decidedBy?.rule.name} decided first` };
  });
}

function describeStep(step: RuleStep, method: string, path: string): RuleExplanation {
  const rule = step.rule;
  const route = { rule: rule.name, methodMatches: true, pathMatches: true };
  const matched = `route matches${rule.when ? `, when ${rule.when.source}` : ''}`;
  switch (step.step) {
    case 'method-differs':
      return {
        rule: rule.name,
        methodMatches: false,
        summary: `method ${method} not in [${[...rule.methods!].join(', ')}]`,
      };
    case 'path-differs':
      return {
        ...route,
        pathMatches: false,
        summary: `path ${path} matches none of [${rule.paths!.map((x) => x.source).join(', ')}]`,
      };
    case 'condition-false':
      return {
        ...route,
        summary: `route matches; when ${rule.when!.source} is false: the rule does not apply`,
      };
    case 'condition-failed':
      return {
        ...route,
        summary: `route matches; when ${rule.when!.source} could not be evaluated (${step.why}): denied`,
      };
    case 'refused': {
      const entry = rule.deny[step.entry]!.source;
      return {
        ...route,
        refusedBy: entry,
        summary: `${matched}; caller REFUSED by deny[${step.entry}] ${entry}`,
      };
    }
    case 'allowed': {
      const entry = rule.allow[step.entry]!.source;
      return {
        ...route,
        allowedBy: entry,
        summary: `${matched}; caller allowed by allow[${step.entry}] ${entry}`,
      };
    }
    case 'not-allowed':
      return {
        ...route,
        summary: `${matched}; caller in none of allow [${rule.allow.map((x) => x.source).join(', ')}]`,
      };
    case 'not-refused':
      return {
        ...route,
        summary: `${matched}; caller in none of deny (an earlier rule allowed it)`,
      };
  }
}

function explain(d: Decision, rules: readonly RuleExplanation[]): string {
  const verdict = d.wouldDeny ?? d;
  const lines = [
    `decision: ${d.allowed ? 'ALLOW' : 'DENY'} ${d.status}${d.wouldDeny ? ` (dry-run: would deny ${d.wouldDeny.status} ${d.wouldDeny.code})` : ''}`,
    `reason:   ${verdict.reason} [${verdict.code}]`,
    '',
    `1 request:  ${d.method ?? '-'} ${d.host ?? '-'}${d.path ?? ''}`,
    `2 identity: ${d.caller ? `${d.caller} (from ${d.identitySource})` : verdict.status === 401 ? `REJECTED: ${verdict.reason}` : 'not reached'}`,
    `3 policy:   ${d.policy ? `${d.policy.label} (${d.policy.mode}, ${d.policy.file})` : d.code === 'host_mismatch' || d.code === 'route_mismatch' ? `none selected: ${d.reason} (policy set ${d.policyVersion})` : `none guards this host (policy set ${d.policyVersion})`}`,
  ];
  if (rules.length > 0) {
    lines.push('4 rules:');
    for (const r of rules)
      lines.push(`    ${r.rule === d.rule?.name ? '→' : ' '} ${r.rule}: ${r.summary}`);
  }
  if (d.rule?.rateLimit) {
    const l = d.rule.rateLimit;
    lines.push(
      `5 limit:    capacity ${l.capacity}, refill ${l.refillPerSecond}/s per ${l.per.kind === 'caller' ? 'caller' : `header ${l.per.name}`}` +
        (d.limit
          ? `; ${d.limit.remaining} left after this request, full in ${d.limit.resetSeconds}s`
          : d.allowed || d.wouldDeny
            ? ''
            : ' (not reached)'),
    );
  }
  return `${lines.join('\n')}\n`;
}
