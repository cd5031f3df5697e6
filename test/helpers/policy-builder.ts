import { compilePolicySet, type ValidDoc } from '../../src/policy/compile';
import { formatProblem, type PolicyProblem, type PolicySet } from '../../src/policy/types';
import { validateDocument } from '../../src/policy/validate';
import { parseYamlDocuments } from '../../src/policy/yaml-docs';

/** A policy document as a file would hold it, written as a JS object. */
export interface PolicyDocument {
  readonly apiVersion?: string;
  readonly kind: string;
  readonly metadata: { readonly name: string } & Record<string, unknown>;
  readonly spec: Record<string, unknown>;
}

export type CompileResult =
  | { readonly ok: true; readonly set: PolicySet; readonly warnings: PolicyProblem[] }
  | { readonly ok: false; readonly problems: PolicyProblem[] };

/**
 * The one place the builders meet src/policy: documents in, problems or a compiled set out,
 * through the same validation and compilation a policy directory gets. Each document is
 * handed over as JSON text (YAML's subset), so problems still carry a line and column.
 * Checks across documents (duplicate names, hosts, workloads) run where a directory is
 * loaded; a set built here must not depend on them.
 */
export function compileDocuments(documents: readonly PolicyDocument[]): CompileResult {
  const problems: PolicyProblem[] = [];
  const valid: ValidDoc[] = [];
  const files = documents.map((d, i) => `memory/${i}-${d.metadata.name}.yaml`);
  documents.forEach((document, i) => {
    const text = JSON.stringify({ apiVersion: 'gatehouse/v1', ...document }, null, 2);
    const parsed = parseYamlDocuments({ file: files[i]!, text });
    problems.push(...parsed.problems);
    for (const located of parsed.docs) {
      const { doc, problems: docProblems } = validateDocument(located);
      problems.push(...docProblems);
      if (doc) valid.push({ file: files[i]!, doc });
    }
  });
  if (problems.some((p) => p.severity === 'error')) return { ok: false, problems };
  return { ok: true, set: compilePolicySet(valid, files), warnings: problems };
}

/** A compiled set of `documents`; throws naming every problem when one is invalid. */
export function buildPolicySet(...documents: PolicyDocument[]): PolicySet {
  const result = compileDocuments(documents);
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.set;
}

/** A ServicePolicy: `spec` adds to (or overrides) the hosts and rules. */
export function servicePolicyDoc(
  name: string,
  hosts: string[],
  rules: Record<string, unknown>[],
  spec: Record<string, unknown> = {},
): PolicyDocument {
  return { kind: 'ServicePolicy', metadata: { name }, spec: { hosts, rules, ...spec } };
}
