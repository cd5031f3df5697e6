import { DecisionEngine } from '../pipeline/engine';
import type { Decision } from '../pipeline/decision';
import { loadPolicyDir } from '../policy/load';
import { formatProblem } from '../policy/types';
import { MemoryBucketStore } from '../ratelimit/memory-store';
import type { CheckInput } from '../envoy/check-input';
import { checkRequestFromJson } from '../envoy/proto-json';
import { toCheckResponse } from '../respond/check-response';
import { auditRecord } from '../audit/audit-log';
import { explainRules } from '../policy/explain';

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
  const decision = await engine.decide(request);
  await store.close();
  const rules = ruleExplanations(decision);
  process.stdout.write(
    options.json
      ? `${JSON.stringify({ decision: auditRecord(decision), rules, response: toCheckResponse(decision) }, null, 2)}\n`
      : explain(decision, rules),
  );
  return 0;
}

/** Per-rule explanation, when the request got as far as a policy. */
function ruleExplanations(decision: Decision): ReturnType<typeof explainRules> {
  return decision.policy && decision.method && decision.path
    ? explainRules(decision.policy, decision.method, decision.path, decision.caller)
    : [];
}

function explain(d: Decision, rules: ReturnType<typeof explainRules>): string {
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
