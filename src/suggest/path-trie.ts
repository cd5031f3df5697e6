import { compilePathPattern } from '../policy/features/path-pattern';

/**
 * Observed request paths folded into path patterns: at a position where many distinct id-like
 * values appear (`/v1/orders/42`, `/v1/orders/43`, …) they become one `*` segment; other
 * literals stay. A node with more children than MAX_CHILDREN folds them all at once, so the
 * trie stays bounded however many distinct ids the log holds.
 */

export const MAX_CHILDREN = 256;

interface Node {
  readonly children: Map<string, Node>;
  /** Folded: every segment at this position goes to the `*` child. */
  folded: boolean;
}

export interface TrieOptions {
  /** Distinct id-like values at one position that make it a `*` (default 3). */
  readonly minIds?: number;
  /** Distinct values of any kind that make it a `*` (default 50). */
  readonly maxLiterals?: number;
}

const newNode = (): Node => ({ children: new Map(), folded: false });

export class PathTrie {
  private readonly root = newNode();
  private readonly minIds: number;
  private readonly maxLiterals: number;

  constructor(options: TrieOptions = {}) {
    this.minIds = options.minIds ?? 3;
    this.maxLiterals = options.maxLiterals ?? 50;
  }

  add(path: string): void {
    let node = this.root;
    for (const segment of segmentsOf(path)) {
      const key = node.folded ? '*' : segment;
      let child = node.children.get(key);
      if (child === undefined) {
        child = newNode();
        node.children.set(key, child);
        if (node.children.size > MAX_CHILDREN) fold(node, () => true);
        child = node.children.get(node.folded ? '*' : key)!;
      }
      node = child;
    }
  }

  /** Folds the positions that hold many ids (or simply many values); call once, after every add. */
  finish(): void {
    const visit = (node: Node): void => {
      if (!node.folded) {
        const keys = [...node.children.keys()];
        if (keys.length > this.maxLiterals) fold(node, () => true);
        else if (keys.filter(isIdLike).length >= this.minIds) fold(node, isIdLike);
      }
      for (const child of node.children.values()) visit(child);
    };
    visit(this.root);
  }

  /** The pattern a path falls under: a literal segment where the trie kept one, else `*`. */
  patternOf(path: string): string {
    const out: string[] = [];
    let node: Node | undefined = this.root;
    const segments = segmentsOf(path);
    for (let i = 0; i < segments.length; i++) {
      const segment = segments[i]!;
      // '//' cannot be written in a pattern, and '*' never matches an empty segment.
      if (segment === '' && i < segments.length - 1) return `/${[...out, '**'].join('/')}`;
      const literal: Node | undefined = node?.folded ? undefined : node?.children.get(segment);
      const asLiteral = segment === '' || (literal !== undefined && isPatternLiteral(segment));
      out.push(asLiteral ? segment : '*');
      node = literal ?? node?.children.get('*');
    }
    return `/${out.join('/')}`;
  }
}

/** Moves the children `which` selects under one `*` child, merging their subtrees. */
function fold(node: Node, which: (segment: string) => boolean): void {
  const star = node.children.get('*') ?? newNode();
  for (const [segment, child] of [...node.children]) {
    if (segment === '*' || !which(segment)) continue;
    merge(star, child);
    node.children.delete(segment);
  }
  node.children.set('*', star);
  if (node.children.size === 1) node.folded = true;
}

function merge(into: Node, from: Node): void {
  if (from.folded) into.folded = true;
  for (const [segment, child] of from.children) {
    const key = into.folded ? '*' : segment;
    const existing = into.children.get(key);
    if (existing) merge(existing, child);
    else into.children.set(key, child);
  }
  if (into.folded && into.children.size > 1) fold(into, () => true);
}

/** `/a/b/` → ['a', 'b', '']: a trailing slash is a segment of its own, as path patterns treat it. */
function segmentsOf(path: string): string[] {
  return path === '/' ? [''] : path.slice(1).split('/');
}

/** Numbers, UUIDs, long hex, and long mixed letter-digit tokens: values, not names. */
export function isIdLike(segment: string): boolean {
  if (segment.length === 0) return false;
  let digits = 0,
    letters = 0,
    hex = 0,
    dashes = 0;
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) digits++;
    else if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a)) {
      letters++;
      if ((c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)) hex++;
    } else if (c === 0x2d) dashes++;
    else if (c !== 0x5f) return false;
  }
  if (digits === segment.length) return true;
  if (segment.length === 36 && dashes === 4 && digits + hex === 32) return true;
  if (segment.length >= 12 && digits > 0 && digits + hex === segment.length) return true;
  return segment.length >= 16 && digits > 0 && letters > 0;
}

/** A segment a path pattern can hold as written (not a wildcard, no character patterns refuse). */
function isPatternLiteral(segment: string): boolean {
  return segment !== '*' && segment !== '**' && compilePathPattern(`/${segment}`).ok;
}
