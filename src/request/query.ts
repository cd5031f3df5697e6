/**
 * The query as `when:` conditions see it. A condition must see every pair the upstream sees,
 * or `"debug" in request.query` is a check the caller can step around: a query with more pairs
 * than are read, or with a pair that does not percent-decode (Express, PHP and Python keep it
 * raw), is refused rather than read in part.
 */

/** Pairs read at most; a query with more is refused. The path bound (8 KiB) bounds the text. */
export const MAX_QUERY_PAIRS = 100;

export type QueryResult =
  { ok: true; value: ReadonlyMap<string, string> } | { ok: false; reason: string };

/**
 * application/x-www-form-urlencoded query text → name → value. The first value of a
 * repeated name wins: which of two values a policy sees must not depend on how a caller
 * orders them after the one the upstream is most likely to read.
 */
export function readQuery(raw: string): QueryResult {
  // `??debug=1`: URLSearchParams drops one leading '?' from its text, URL's own parse keeps it.
  if (raw.charCodeAt(0) === 0x3f)
    return {
      ok: false,
      reason: "the query starts with '?', which some readers drop and others keep",
    };
  const out = new Map<string, string>();
  let start = 0;
  let pairs = 0;
  while (start < raw.length) {
    let amp = raw.indexOf('&', start);
    if (amp === -1) amp = raw.length;
    if (amp > start) {
      if (++pairs > MAX_QUERY_PAIRS)
        return {
          ok: false,
          reason: `the query has more than ${MAX_QUERY_PAIRS} pairs, more than a condition reads`,
        };
      const eq = raw.indexOf('=', start);
      const split = eq !== -1 && eq < amp;
      const name = formDecode(raw.slice(start, split ? eq : amp));
      const value = split ? formDecode(raw.slice(eq + 1, amp)) : '';
      if (name === undefined || value === undefined)
        return {
          ok: false,
          reason:
            'the query has an escape that does not percent-decode, which upstreams read differently',
        };
      if (!out.has(name)) out.set(name, value);
    }
    start = amp + 1;
  }
  return { ok: true, value: out };
}

function formDecode(text: string): string | undefined {
  const s = text.includes('+') ? text.replaceAll('+', ' ') : text;
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}
