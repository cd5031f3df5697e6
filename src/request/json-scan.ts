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
  // The folded keys of every open object, one run per object on one shared stack: most objects
  // have a few keys, and a linear look through them costs less than a Set each. An object that
  // grows past LINEAR_KEYS gets a Set.
  const keys: string[] = [];
  /** Per open container: where its keys start in `keys`, or -1 for an array. */
  const starts: number[] = [];
  const sets: (Set<string> | undefined)[] = [];
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
      const depth = starts.length - 1;
      const from = starts[depth]!;
      const key = escaped ? decodeString(text.slice(start, i + 1)) : text.slice(start + 1, i);
      if (key === undefined) return undefined;
      const folded = foldName(key);
      const set = sets[depth];
      if (set === undefined) {
        for (let k = from; k < keys.length; k++) if (keys[k] === folded) return DUPLICATE;
        keys.push(folded);
        if (keys.length - from > LINEAR_KEYS) sets[depth] = new Set(keys.slice(from));
      } else {
        if (set.has(folded)) return DUPLICATE;
        set.add(folded);
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (starts.length >= MAX_BODY_DEPTH)
        return `the JSON body nests deeper than ${MAX_BODY_DEPTH} levels`;
      expectKey = c === 0x7b;
      starts.push(expectKey ? keys.length : -1);
      sets.push(undefined);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      const from = starts.pop();
      sets.pop();
      if (from !== undefined && from >= 0) keys.length = from;
      expectKey = false;
    } else if (c === 0x2c /* , */) {
      expectKey = starts.length > 0 && starts[starts.length - 1]! >= 0;
    }
  }
  return undefined;
}

const LINEAR_KEYS = 16;
const DUPLICATE =
  'the JSON body repeats a key (or has two differing only in case), which parsers read differently';

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
  let plain = true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c > 0x7e) {
      plain = false;
      break;
    }
  }
  if (plain) return name;
  const lower = name.toLowerCase();
  return lower.includes('\u017f') ? lower.replaceAll('\u017f', 's') : lower;
}
