import { conditionReads } from '../policy/features/condition-reads';
import { isHeaderName } from '../policy/features/header-name';
import type { CompiledPolicy, CompiledWorkloadPolicy } from '../policy/types';
import { clipText } from '../request/normalize';
import { readQuery } from '../request/query';

/**
 * The request attributes an audit record keeps beyond method, host and path, so that replay
 * can re-decide the request: which headers the policy set reads were present (never their
 * values) and the query's keys (never its values).
 */

/** Presence is kept as the bits of one number: no allocation per check. */
export const MAX_TRACKED_HEADERS = 31;
export const MAX_RECORDED_QUERY_KEYS = 32;
const MAX_RECORDED_QUERY_KEY = 128;

/**
 * Every header name the set's rules and WorkloadPolicies read: `when:` conditions
 * (`request.headers['x']`, `'x' in request.headers`), `rateLimit.per: header:`, refused
 * `headers:` and `residency.regionFrom: header:`. Sorted, at most MAX_TRACKED_HEADERS; built once per load.
 */
export function trackedHeaderNames(
  policies: readonly CompiledPolicy[],
  optOuts: Iterable<CompiledWorkloadPolicy>,
): readonly string[] {
  const names = new Set<string>();
  for (const policy of policies) {
    for (const rule of policy.rules) {
      if (rule.when !== null) {
        const reads = conditionReads(rule.when.source);
        if (reads)
          for (const name of [...reads.presence.headers, ...reads.values.headers]) names.add(name);
      }
      if (rule.rateLimit?.per.kind === 'header') names.add(rule.rateLimit.per.name);
      if (rule.residency?.from.kind === 'header') names.add(rule.residency.from.name);
    }
  }
  for (const optOut of optOuts)
    for (const refusal of optOut.refusals)
      for (const name of refusal.headers ?? []) names.add(name);
  // A name no request can carry (upper case in a condition) has no presence worth keeping.
  return [...names].filter(isHeaderName).sort().slice(0, MAX_TRACKED_HEADERS);
}

/** Bit i set when `names[i]` is among the request's headers. */
export function headerPresence(
  names: readonly string[],
  headers: Readonly<Record<string, string>>,
): number {
  let bits = 0;
  for (let i = 0; i < names.length; i++) if (headers[names[i]!] !== undefined) bits |= 1 << i;
  return bits;
}

/**
 * The keys a condition sees in `request.query` (readQuery's), without values: at most
 * MAX_RECORDED_QUERY_KEYS, each clipped (a clipped key ends in '…', so it never equals a
 * policy's key). `truncated` when keys were left out, or the query is one conditions refuse.
 */
export function queryKeys(raw: string): { keys: string[]; truncated: boolean } {
  const keys: string[] = [];
  const query = readQuery(raw);
  if (!query.ok) return { keys, truncated: true };
  const parsed = query.value;
  for (const key of parsed.keys()) {
    if (keys.length === MAX_RECORDED_QUERY_KEYS) break;
    keys.push(clipText(key, MAX_RECORDED_QUERY_KEY));
  }
  return { keys, truncated: parsed.size > keys.length };
}
