import { compilePathPattern } from './path-pattern';
import { allowPattern, type RuleDoc } from '../document/schema';

/**
 * Finds rules that can never decide a request: every request they would allow matches an
 * earlier rule whose allow list already names the caller, so the earlier rule decides (and
 * its limit applies). A rule with deny entries is never shadowed: refusals count from every
 * matching rule. The check is conservative: it may miss a shadowed rule, never invent one.
 */
export function findShadowedRules(rules: readonly RuleDoc[]): { index: number; by: number }[] {
  const out: { index: number; by: number }[] = [];
  rules.forEach((rule, index) => {
    if ((rule.deny?.length ?? 0) > 0 || (rule.allow?.length ?? 0) === 0) return;
    for (let by = 0; by < index; by++) {
      const earlier = rules[by]!;
      // A conditional rule lets what its condition rejects through to later rules.
      if (earlier.when !== undefined) continue;
      const earlierAllow = (earlier.allow ?? []).map(allowPattern);
      if (
        methodsCover(earlier.methods, rule.methods) &&
        pathsCover(earlier.paths, rule.paths) &&
        rule.allow!.every((p) => earlierAllow.some((q) => callerCovers(q, allowPattern(p))))
      ) {
        out.push({ index, by });
        return;
      }
    }
  });
  return out;
}

function methodsCover(
  outer: readonly string[] | undefined,
  inner: readonly string[] | undefined,
): boolean {
  if (outer === undefined) return true;
  return inner !== undefined && inner.every((m) => outer.includes(m));
}

function pathsCover(
  outer: readonly string[] | undefined,
  inner: readonly string[] | undefined,
): boolean {
  if (outer === undefined) return true;
  if (inner === undefined) return outer.includes('/**');
  return inner.every((p) => outer.some((q) => pathCovers(q, p)));
}

function pathCovers(outer: string, inner: string): boolean {
  if (outer === inner || outer === '/**') return true;
  if (!inner.includes('*')) {
    const compiled = compilePathPattern(outer);
    return compiled.ok && compiled.value.matches(inner);
  }
  return prefixCovers(outer, inner);
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
