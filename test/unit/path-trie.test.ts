import { isIdLike, MAX_CHILDREN, PathTrie } from '../../src/suggest/path-trie';

describe('path patterns from observed paths', () => {
  test('many distinct ids at one position become *, names stay literal', () => {
    const trie = new PathTrie();
    for (const id of ['42', '43', '44', '45']) trie.add(`/v1/orders/${id}`);
    trie.add('/v1/orders/export');
    trie.add('/v1/orders/42/items');
    trie.finish();
    expect(trie.patternOf('/v1/orders/42')).toBe('/v1/orders/*');
    expect(trie.patternOf('/v1/orders/export')).toBe('/v1/orders/export');
    expect(trie.patternOf('/v1/orders/44/items')).toBe('/v1/orders/*/items');
  });

  test('a few ids are not enough evidence to generalise', () => {
    const trie = new PathTrie();
    trie.add('/v1/orders/42');
    trie.add('/v1/orders/43');
    trie.finish();
    expect(trie.patternOf('/v1/orders/42')).toBe('/v1/orders/42');
  });

  test('segments a pattern cannot hold become *; // becomes **; a trailing slash stays', () => {
    const trie = new PathTrie();
    for (const p of ['/files/a%2Bb', '/a//b', '/dir/']) trie.add(p);
    trie.finish();
    expect(trie.patternOf('/files/a%2Bb')).toBe('/files/*');
    expect(trie.patternOf('/a//b')).toBe('/a/**');
    expect(trie.patternOf('/dir/')).toBe('/dir/');
  });

  test('the trie stays bounded however many distinct values a position holds', () => {
    const trie = new PathTrie();
    for (let i = 0; i < 20 * MAX_CHILDREN; i++)
      trie.add(`/u/name${String.fromCharCode(97 + (i % 26))}${i}x/profile`);
    trie.finish();
    expect(trie.patternOf('/u/namea0x/profile')).toBe('/u/*/profile');
  });

  test('id-like values', () => {
    for (const id of [
      '42',
      '7f3c2a9e-1b2c-4d5e-8f90-a1b2c3d4e5f6',
      'deadbeefcafe01',
      'AbC123xyz987QwE456',
    ])
      expect(isIdLike(id)).toBe(true);
    for (const name of ['orders', 'export', 'v1', 'items', 'customer-address', ''])
      expect(isIdLike(name)).toBe(false);
  });
});
