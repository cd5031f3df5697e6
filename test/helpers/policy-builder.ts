import { compileSources, type LoadResult } from '../../src/policy/load';
import { formatProblem } from '../../src/policy/document/problems';
import type { PolicySet } from '../../src/policy/types';

/** A policy document as a file would hold it, written as a JS object. */
export interface PolicyDocument {
  readonly apiVersion?: string;
  readonly kind: string;
  readonly metadata: { readonly name: string } & Record<string, unknown>;
  readonly spec: Record<string, unknown>;
}

export type CompileResult = LoadResult;

/**
 * The one place the builders meet src/policy: documents in, problems or a compiled set out,
 * through the same compile pass a policy directory gets (checks across documents included).
 * Each document is handed over as JSON text (YAML's subset), so problems still carry a line
 * and column.
 */
export function compileDocuments(documents: readonly PolicyDocument[]): CompileResult {
  const sources = documents.map((document, i) => ({
    file: `memory/${i}-${document.metadata.name}.yaml`,
    text: JSON.stringify({ apiVersion: 'gatehouse/v1', ...document }, null, 2),
  }));
  return compileSources(
    sources,
    sources.map((s) => s.file),
  );
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
