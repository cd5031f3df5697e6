/**
 * Remembers the answers of a pure function of a string for at most `maxEntries` keys of at most
 * `maxKeyLength` characters. Keys may come from requests, so neither the count nor the size of
 * what is kept can grow with what a sender sends: past the cap the oldest key is forgotten
 * (first in, first out; a flood of distinct keys only costs the lookups it would have cost
 * anyway), and longer keys are computed every time and never kept. The keys are the exact
 * strings, so two inputs share an answer only if they are equal.
 */
export class BoundedMemo<V> {
  private readonly answers = new Map<string, V>();

  constructor(
    private readonly compute: (key: string) => V,
    private readonly maxEntries: number,
    private readonly maxKeyLength: number,
  ) {}

  get(key: string): V {
    if (key.length > this.maxKeyLength) return this.compute(key);
    const known = this.answers.get(key);
    if (known !== undefined || this.answers.has(key)) return known as V;
    const value = this.compute(key);
    if (this.answers.size >= this.maxEntries) {
      const oldest = this.answers.keys().next();
      if (!oldest.done) this.answers.delete(oldest.value);
    }
    this.answers.set(key, value);
    return value;
  }

  get size(): number {
    return this.answers.size;
  }
}
