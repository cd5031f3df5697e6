import { compilePathPattern } from '../../src/policy/features/path-pattern';

function matcher(pattern: string): (path: string) => boolean {
  const compiled = compilePathPattern(pattern);
  if (!compiled.ok) throw new Error(compiled.error);
  return (p) => compiled.value.matches(p);
}

describe('path patterns', () => {
  test.each([
    ['/v1/orders', '/v1/orders', true],
    ['/v1/orders', '/v1/orders/', false],
    ['/v1/orders', '/v1/order', false],
    ['/v1/orders', '/v1/ordersX', false],
    ['/v1/orders/', '/v1/orders/', true],
    ['/', '/', true],
    ['/', '/a', false],
    ['/v1/orders/*', '/v1/orders/42', true],
    ['/v1/orders/*', '/v1/orders', false],
    ['/v1/orders/*', '/v1/orders/', false],
    ['/v1/orders/*', '/v1/orders/42/items', false],
    ['/v1/*/items', '/v1/42/items', true],
    ['/v1/*/items', '/v1//items', false],
    ['/v1/*/items', '/v1/42/items/x', false],
    ['/v1/**', '/v1', true],
    ['/v1/**', '/v1/', true],
    ['/v1/**', '/v1/a', true],
    ['/v1/**', '/v1/a/b/c', true],
    ['/v1/**', '/v10', false],
    ['/v1/**', '/v2/a', false],
    ['/**', '/', true],
    ['/**', '/anything/at/all', true],
    ['/v1/*/**', '/v1/x/y/z', true],
    ['/v1/*/**', '/v1', false],
  ])('%s against %s → %s', (pattern, path, expected) => {
    expect(matcher(pattern)(path)).toBe(expected);
  });

  test('matching never needs the path to start with the literal prefix only', () => {
    expect(matcher('/a/*')('a/b')).toBe(false);
    expect(matcher('/a/**')('')).toBe(false);
  });

  test.each([
    ['', 'non-empty'],
    ['v1/orders', "start with '/'"],
    ['/v1/**/items', "'**' is only allowed as the last segment"],
    ['/v1/ord*', 'whole segment'],
    ['/v1//orders', 'empty segment'],
    ['/v1/../admin', "'..' segment"],
    ['/v1/orders?x=1', 'query string'],
    ['/v1/or ders', 'not allowed in a path'],
    ['/' + 'a'.repeat(1100), 'longer than 1024'],
  ])('rejects %j (%s)', (pattern, message) => {
    const compiled = compilePathPattern(pattern);
    expect(compiled.ok).toBe(false);
    if (!compiled.ok) expect(compiled.error).toContain(message);
  });
});
