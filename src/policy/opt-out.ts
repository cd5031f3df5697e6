import { hasBody, jsonBody } from '../request/body';
import type { NormalizedRequest } from '../request/normalize';
import type { PathPattern } from './path-pattern';
import type { PolicyMode } from './types';

/** A compiled `refuse:` entry of a WorkloadPolicy. */
export interface CompiledRefusal {
  readonly name: string;
  readonly hosts: ReadonlySet<string> | null;
  readonly methods: ReadonlySet<string> | null;
  readonly paths: readonly PathPattern[] | null;
  readonly headers: readonly string[] | null;
  /** Each field as its path segments. */
  readonly fields: readonly (readonly string[])[] | null;
}

export interface CompiledWorkloadPolicy {
  readonly name: string;
  readonly workload: string;
  readonly mode: PolicyMode;
  readonly refusals: readonly CompiledRefusal[];
  readonly file: string;
  readonly label: string;
}

export interface OptOutHit {
  readonly policy: CompiledWorkloadPolicy;
  readonly refusal: CompiledRefusal;
  readonly reason: string;
}

/**
 * Stage between identity and authorisation: what the caller itself declared it never sends
 * or does. Checked before the destination's rules, so no allow there can outvote it.
 */
export function findOptOut(policy: CompiledWorkloadPolicy, request: NormalizedRequest): OptOutHit | undefined {
  for (const refusal of policy.refusals) {
    const reason = refusalApplies(refusal, request);
    if (reason !== undefined) return { policy, refusal, reason };
  }
  return undefined;
}

function refusalApplies(r: CompiledRefusal, request: NormalizedRequest): string | undefined {
  if (r.hosts !== null && !r.hosts.has(request.host)) return undefined;
  if (r.methods !== null && !r.methods.has(request.method)) return undefined;
  if (r.paths !== null && !r.paths.some((p) => p.matches(request.path))) return undefined;
  let what = r.hosts !== null || r.methods !== null || r.paths !== null ? 'this route' : 'this request';
  if (r.headers !== null) {
    const sent = r.headers.find((h) => request.headers[h] !== undefined);
    if (sent === undefined) return undefined;
    what = `header ${sent}`;
  }
  if (r.fields !== null) {
    if (!hasBody(request)) return undefined;
    const body = jsonBody(request);
    // A body that cannot be read cannot be shown to be free of the refused fields.
    if (!body.ok) return `it refuses to send fields ${r.fields.map((f) => f.join('.')).join(', ')} and ${body.reason}`;
    const field = r.fields.find((f) => hasField(body.value, f, 0));
    if (field === undefined) return undefined;
    what = `field ${field.join('.')}`;
  }
  return `it declared it never sends ${what} (refusal ${r.name})`;
}

function hasField(value: unknown, path: readonly string[], depth: number): boolean {
  if (depth === path.length) return true;
  if (Array.isArray(value)) return value.some((item) => hasField(item, path, depth));
  if (value === null || typeof value !== 'object') return false;
  if (!Object.prototype.hasOwnProperty.call(value, path[depth]!)) return false;
  return hasField((value as Record<string, unknown>)[path[depth]!], path, depth + 1);
}
