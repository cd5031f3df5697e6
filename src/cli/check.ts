import { DecisionEngine } from '../pipeline/engine';
import type { Decision } from '../pipeline/decision';
import { loadPolicyDir } from '../policy/load';
import { formatProblem } from '../policy/types';
import { MemoryBucketStore } from '../ratelimit/memory-store';
import { checkRequestFromJson } from '../request/proto-json';
import { toCheckResponse } from '../respond/check-response';
import { auditRecord } from '../audit/audit-log';

export interface CheckOptions {
  trustDomains: readonly string[];
  trustXfcc: boolean;
  json: boolean;
}

/** `gatehouse check`: the server's own decision function on one request. Returns the exit code. */
export async function runCheck(dir: string, inputText: string, options: CheckOptions): Promise<number> {
  const loaded = await loadPolicyDir(dir);
  if (!loaded.ok) {
    for (const p of loaded.problems) process.stderr.write(`${formatProblem(p)}\n`);
    return 1;
  }
  let request: unknown;
  try {
    request = checkRequestFromJson(JSON.parse(inputText));
  } catch (err) {
    process.stderr.write(`gatehouse: input is not a CheckRequest in proto3 JSON: ${(err as Error).message}\n`);
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
  process.stdout.write(options.json ? `${JSON.stringify({ decision: auditRecord(decision), response: toCheckResponse(decision) }, null, 2)}\n` : explain(decision));
  return 0;
}

function explain(d: Decision): string {
  const lines = [
    `decision: ${d.allowed ? 'ALLOW' : 'DENY'} ${d.status}${d.wouldDeny ? ` (dry-run: would deny ${d.wouldDeny.status} ${d.wouldDeny.code})` : ''}`,
    `reason:   ${d.wouldDeny ? d.wouldDeny.reason : d.reason} [${d.wouldDeny ? d.wouldDeny.code : d.code}]`,
    `request:  ${d.method ?? '-'} ${d.host ?? '-'}${d.path ?? ''}`,
    `identity: ${d.caller ? `${d.caller} (from ${d.identitySource})` : 'none verified'}`,
    `policy:   ${d.policy ? `${d.policy.label} (${d.policy.mode}, ${d.policy.file})` : `none for this host (policy set ${d.policyVersion})`}`,
    `rule:     ${d.rule ? d.rule.name : 'none'}`,
  ];
  if (d.rule?.rateLimit) {
    const l = d.rule.rateLimit;
    lines.push(
      `limit:    capacity ${l.capacity}, refill ${l.refillPerSecond}/s per ${l.per.kind === 'caller' ? 'caller' : `header ${l.per.name}`}` +
        (d.limit ? `; ${d.limit.remaining} left, full in ${d.limit.resetSeconds}s` : ''),
    );
  }
  return `${lines.join('\n')}\n`;
}
