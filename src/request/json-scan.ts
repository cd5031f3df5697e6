/**
 * A pre-scan of a JSON body before JSON.parse, where body rules apply. JSON.parse keeps the
 * last of two equal keys while other parsers keep the first or refuse; Go and .NET bind names
 * without regard to case. A `fields` refusal or a schema that read one of them would pass a
 * payload the upstream reads otherwise, so such bodies are refused. The depth bound also bounds
 * the cost of what follows (JSON.parse, the schema, the field walk) on a body of nested arrays.
 */

/** Objects and arrays nested deeper than this are refused; API payloads stay far below it. */
export const MAX_BODY_DEPTH = 32;

/**
 * Why the text is ambiguous, or undefined. Text that is not JSON at all is left to JSON.parse:
 * the scan reads valid JSON exactly and anything else only far enough to give up safely.
 */
export function jsonAmbiguity(text: string): string | undefined {
  // One entry per open container: the folded keys seen so far for an object, null for an array.
  const open: (Set<string> | null)[] = [];
  let expectKey = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      let escaped = false;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x22) break;
        if (d === 0x5c) {
          escaped = true;
          i++;
        }
      }
      if (!expectKey) continue;
      expectKey = false;
      const keys = open[open.length - 1];
      if (!keys) continue;
      const key = escaped ? decodeString(text.slice(start, i + 1)) : text.slice(start + 1, i);
      if (key === undefined) return undefined;
      const folded = foldName(key);
      if (keys.has(folded)) return 'the JSON body repeats a key (or has two differing only in case), which parsers read differently';
      keys.add(folded);
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (open.length >= MAX_BODY_DEPTH) return `the JSON body nests deeper than ${MAX_BODY_DEPTH} levels`;
      const isObject = c === 0x7b;
      open.push(isObject ? new Set() : null);
      expectKey = isObject;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      open.pop();
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = open.length > 0 && open[open.length - 1] !== null;
    }
  }
  return undefined;
}

function decodeString(literal: string): string | undefined {
  try {
    const value: unknown = JSON.parse(literal);
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A property name as case-insensitive binders compare it: lower-cased, with the two letters
 * that Go's simple case folding maps onto ASCII (U+017F long s, U+212A Kelvin sign) folded too.
 */
export function foldName(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('\u017f') ? lower.replaceAll('\u017f', 's') : lower;
}
