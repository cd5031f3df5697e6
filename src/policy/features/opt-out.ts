import { bodyState, jsonBody } from '../../request/body';
import { foldName } from '../../request/json-scan';
import type { NormalizedRequest } from '../../request/normalize';
import type { CompiledRefusal, CompiledWorkloadPolicy } from '../types';

export interface OptOutHit {
  readonly policy: CompiledWorkloadPolicy;
  readonly refusal: CompiledRefusal;
  readonly reason: string;
  /** The body could not be read without ambiguity: refused as malformed_request. */
  readonly malformed: boolean;
}

/**
 * Stage between identity and authorisation: what the caller itself declared it never sends
 * or does. Checked before the destination's rules, so no allow there can outvote it.
 */
export function findOptOut(
  policy: CompiledWorkloadPolicy,
  request: NormalizedRequest,
): OptOutHit | undefined {
  for (const refusal of policy.refusals) {
    const found = refusalApplies(refusal, request);
    if (found !== undefined)
      return { policy, refusal, reason: found.reason, malformed: found.malformed };
  }
  return undefined;
}

function refusalApplies(
  r: CompiledRefusal,
  request: NormalizedRequest,
): { reason: string; malformed: boolean } | undefined {
  if (r.hosts !== null && !r.hosts.has(request.host)) return undefined;
  if (r.methods !== null && !r.methods.has(request.method)) return undefined;
  if (r.paths !== null && !r.paths.some((p) => p.matches(request.path))) return undefined;
  let what =
    r.hosts !== null || r.methods !== null || r.paths !== null ? 'this route' : 'this request';
  if (r.headers !== null) {
    const sent = r.headers.find((h) => request.headers[h] !== undefined);
    if (sent === undefined) return undefined;
    what = `header ${sent}`;
  }
  if (r.fields !== null && r.foldedFields !== null) {
    if (bodyState(request).kind === 'none') return undefined;
    const body = jsonBody(request);
    // A body that cannot be read cannot be shown to be free of the refused fields.
    if (!body.ok)
      return {
        reason: `it refuses to send fields ${r.fields.map((f) => f.join('.')).join(', ')} and ${body.reason}`,
        malformed: body.malformed,
      };
    const index = r.foldedFields.findIndex((f) => hasField(body.value, f, 0));
    if (index === -1) return undefined;
    what = `field ${r.fields[index]!.join('.')}`;
  }
  return { reason: `it declared it never sends ${what} (refusal ${r.name})`, malformed: false };
}

/** `path` is case-folded; the pre-scan refused bodies with two keys that fold alike, so one key at most matches. */
function hasField(value: unknown, path: readonly string[], depth: number): boolean {
  if (depth === path.length) return true;
  if (Array.isArray(value)) return value.some((item) => hasField(item, path, depth));
  if (value === null || typeof value !== 'object') return false;
  const wanted = path[depth]!;
  for (const key of Object.keys(value)) {
    if (foldName(key) === wanted)
      return hasField((value as Record<string, unknown>)[key], path, depth + 1);
  }
  return false;
}
