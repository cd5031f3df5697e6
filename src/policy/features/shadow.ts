import type { SpiffePattern } from '../../identity/spiffe';
import type { PathPattern } from './path-pattern';

/** A rule as shadowing judges it: compiled patterns, null for any method or path. */
export interface ShadowCandidate {
  readonly methods: ReadonlySet<string> | null;
  readonly paths: readonly PathPattern[] | null;
  readonly allow: readonly SpiffePattern[];
  readonly deny: readonly SpiffePattern[];
  readonly conditional: boolean;
}

/**
 * Finds rules that can never decide a request: every request they would allow matches an
 * earlier rule whose allow list already names the caller, so the earlier rule decides (and
 * its limit applies). A rule with deny entries is never shadowed: refusals count from every
 * matching rule. The check is conservative: it may miss a shadowed rule, never invent one.
 */
export function findShadowedRules(
  rules: readonly ShadowCandidate[],
): { index: number; by: number }[] {
  const out: { index: number; by: number }[] = [];
  rules.forEach((rule, index) => {
    if (rule.deny.length > 0 || rule.allow.length === 0) return;
    for (let by = 0; by < index; by++) {
      const earlier = rules[by]!;
      // A conditional rule lets what its condition rejects through to later rules.
      if (earlier.conditional) continue;
      if (
        methodsCover(earlier.methods, rule.methods) &&
        pathsCover(earlier.paths, rule.paths) &&
        rule.allow.every((p) => earlier.allow.some((q) => callerCovers(q.source, p.source)))
      ) {
        out.push({ index, by });
        return;
      }
    }
  });
  return out;
}

function methodsCover(
  outer: ReadonlySet<string> | null,
  inner: ReadonlySet<string> | null,
): boolean {
  if (outer === null) return true;
  return inner !== null && [...inner].every((m) => outer.has(m));
}

function pathsCover(
  outer: readonly PathPattern[] | null,
  inner: readonly PathPattern[] | null,
): boolean {
  if (outer === null) return true;
  if (inner === null) return outer.some((q) => q.source === '/**');
  return inner.every((p) => outer.some((q) => pathCovers(q, p.source)));
}

function pathCovers(outer: PathPattern, inner: string): boolean {
  if (outer.source === inner || outer.source === '/**') return true;
  if (!inner.includes('*')) return outer.matches(inner);
  return prefixCovers(outer.source, inner);
}

function callerCovers(outer: string, inner: string): boolean {
  if (outer === inner) return true;
  if (outer.endsWith('/*') && !outer.endsWith('/**')) {
    const base = outer.slice(0, -1); // keeps the trailing slash
    return (
      !inner.includes('*') && inner.startsWith(base) && !inner.slice(base.length).includes('/')
    );
  }
  return prefixCovers(outer, inner);
}

/** `X/**` covers everything at or below X. */
function prefixCovers(outer: string, inner: string): boolean {
  if (!outer.endsWith('/**')) return false;
  const base = outer.slice(0, -3);
  if (base.includes('*')) return false;
  return inner === base || inner.startsWith(`${base}/`);
}
