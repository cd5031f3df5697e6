import type { Suggestion, SuggestedPolicy } from './suggest';

/** A YAML double-quoted scalar: JSON's string syntax is valid YAML. */
const q = (text: string): string => JSON.stringify(text);

/** Comment text from log data: one line, so a value can never end the comment and become YAML. */
const c = (text: string): string => text.replace(/[\r\n\u2028\u2029]/g, ' ');

const n = (value: number): string => value.toLocaleString('en-US');
const requests = (count: number): string => `${n(count)} request${count === 1 ? '' : 's'}`;

export function policyYaml(policy: SuggestedPolicy, suggestion: Suggestion): string {
  const lines = [
    `# Suggested by \`gatehouse suggest\` from ${n(policy.records)} allowed requests with a verified caller.`,
    '# Least privilege: only the callers, methods and paths seen. Review it, then roll it out in',
    '# dry-run first and replay the audit log against it (`gatehouse replay`).',
  ];
  if (suggestion.anonymous > 0)
    lines.push(
      `# ${n(suggestion.anonymous)} allowed requests had no verified caller; no rule admits those.`,
    );
  lines.push(
    'apiVersion: gatehouse/v1',
    'kind: ServicePolicy',
    'metadata:',
    `  name: ${policy.name}`,
    'spec:',
  );
  if (policy.workload !== null)
    lines.push(
      "  # the destination workload the requests went to (Envoy's destination.principal)",
      `  workloads: [${q(policy.workload)}]`,
    );
  lines.push('  hosts:');
  for (const [host, count] of policy.hosts) lines.push(`    - ${q(host)}   # ${requests(count)}`);
  lines.push('  mode: enforce', '  rules:');
  for (const rule of policy.rules) {
    lines.push(
      `    # ${requests(rule.evidence.count)} from ${rule.callers.length} caller${rule.callers.length === 1 ? '' : 's'}, ${c(rule.evidence.first)} … ${c(rule.evidence.last)}`,
      `    - name: ${rule.name}`,
      `      methods: [${rule.methods.map(q).join(', ')}]`,
      `      paths: [${q(rule.pattern)}]`,
      '      allow:',
    );
    for (const [caller, e] of rule.callers)
      lines.push(`        - ${q(caller)}   # ${requests(e.count)}`);
  }
  return `${lines.join('\n')}\n`;
}

export function testYaml(policy: SuggestedPolicy): string {
  const domains = [
    ...new Set(
      policy.rules.flatMap((r) =>
        r.callers.map(([caller]) => caller.slice('spiffe://'.length).split('/')[0]!),
      ),
    ),
  ].sort();
  const lines = [
    '# One real request per suggested rule, from the audit log it was suggested from.',
    'apiVersion: gatehouse/v1',
    'kind: PolicyTest',
    'metadata:',
    `  name: ${policy.name}`,
    'spec:',
    `  trustDomains: [${domains.map(q).join(', ')}]`,
    '  cases:',
  ];
  for (const rule of policy.rules) {
    const e = rule.example;
    if (e === undefined) continue;
    lines.push(
      `    - name: ${q(`${e.method} ${e.path} by ${e.caller} (rule ${rule.name})`)}`,
      `      request: { caller: ${q(e.caller)}, host: ${q(e.host)}, ${policy.workload !== null ? `destination: ${q(policy.workload)}, ` : ''}method: ${q(e.method)}, path: ${q(e.path)} }`,
      `      expect: { allow: true, rule: ${rule.name} }`,
    );
  }
  return `${lines.join('\n')}\n`;
}
