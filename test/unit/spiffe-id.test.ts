import { compileSpiffePattern, parseSpiffeId, type SpiffeId } from '../../src/identity/spiffe';

function id(text: string): SpiffeId {
  const parsed = parseSpiffeId(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

describe('SPIFFE ID parsing (SPIFFE-ID standard)', () => {
  test.each([
    ['spiffe://example.org/ns/default/sa/web', 'example.org', '/ns/default/sa/web'],
    ['spiffe://example.org', 'example.org', ''],
    ['spiffe://cluster.local/ns/a-b/sa/c_d.e', 'cluster.local', '/ns/a-b/sa/c_d.e'],
    ['spiffe://td-1_x.y/AbC/123', 'td-1_x.y', '/AbC/123'],
    ['spiffe://a/..x/.y/x..', 'a', '/..x/.y/x..'],
  ])('valid: %s', (text, trustDomain, path) => {
    expect(parseSpiffeId(text)).toEqual({ ok: true, value: { id: text, trustDomain, path } });
  });

  test.each([
    ['', 'empty'],
    ['example.org/ns/a', 'must start with spiffe://'],
    ['SPIFFE://example.org/a', 'must start with spiffe://'],
    ['Spiffe://example.org/a', 'must start with spiffe://'],
    ['spiffe:/example.org/a', 'must start with spiffe://'],
    ['http://example.org/a', 'must start with spiffe://'],
    ['spiffe://', 'trust domain is empty'],
    ['spiffe:///a', 'trust domain is empty'],
    ['spiffe://Example.org/a', 'lower-case'],
    ['spiffe://example.org:443/a', 'port'],
    ['spiffe://user@example.org/a', 'user info'],
    ['spiffe://user:pw@example.org/a', 'port'],
    ['spiffe://example.org?x=1', 'query or fragment'],
    ['spiffe://example.org/a?x=1', 'query or fragment'],
    ['spiffe://example.org/a#frag', 'query or fragment'],
    ['spiffe://example.org/a%2Fb', 'percent-encoded'],
    ['spiffe://ex%41mple.org/a', 'percent-encoded'],
    ['spiffe://example.org/', 'end with a slash'],
    ['spiffe://example.org/a/', 'end with a slash'],
    ['spiffe://example.org//a', 'empty segment'],
    ['spiffe://example.org/a//b', 'empty segment'],
    ['spiffe://example.org/./a', "'.' or '..'"],
    ['spiffe://example.org/a/..', "'.' or '..'"],
    ['spiffe://example.org/a/../b', "'.' or '..'"],
    ['spiffe://example.org/a b', 'invalid character'],
    ['spiffe://example.org/a\u0000', 'invalid character'],
    ['spiffe://example.org/a\n', 'invalid character'],
    ['spiffe://exam ple.org/a', 'invalid character'],
    ['spiffe://еxample.org/a', 'invalid character'], // Cyrillic е
    ['spiffe://example.org/café', 'invalid character'],
    ['spiffe://example.org/a*', 'invalid character'],
    [' spiffe://example.org/a', 'must start with spiffe://'],
    ['spiffe://[::1]/a', 'invalid character'],
    [`spiffe://${'a'.repeat(256)}/x`, 'longer than 255'],
    [`spiffe://example.org/${'a'.repeat(2048)}`, 'longer than 2048 bytes'],
    [`spiffe://example.org/${'é'.repeat(1020)}`, 'longer than 2048 bytes'],
  ])('invalid: %j (%s)', (text, message) => {
    const parsed = parseSpiffeId(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.error).toContain(message);
  });

  test('boundaries: 255-character trust domain and 2048-byte ID are valid', () => {
    expect(parseSpiffeId(`spiffe://${'a'.repeat(255)}/x`).ok).toBe(true);
    const prefix = 'spiffe://example.org/';
    expect(parseSpiffeId(prefix + 'a'.repeat(2048 - prefix.length)).ok).toBe(true);
  });

  test('non-string input and megabyte inputs are rejected quickly', () => {
    expect(parseSpiffeId(undefined as unknown as string).ok).toBe(false);
    expect(parseSpiffeId(42 as unknown as string).ok).toBe(false);
    const huge = `spiffe://example.org/${'a/'.repeat(500_000)}`;
    const start = process.hrtime.bigint();
    expect(parseSpiffeId(huge).ok).toBe(false);
    expect(Number(process.hrtime.bigint() - start)).toBeLessThan(50e6); // a safety bound, not a benchmark
  });

  test('errors never echo the input', () => {
    const parsed = parseSpiffeId(`spiffe://example.org/${'secret'.repeat(100)}?token=abc`);
    expect(!parsed.ok && parsed.error).not.toContain('secret');
  });
});

describe('SPIFFE caller patterns', () => {
  const matches = (pattern: string, text: string): boolean => {
    const compiled = compileSpiffePattern(pattern);
    if (!compiled.ok) throw new Error(compiled.error);
    return compiled.value.matches(id(text));
  };

  test.each([
    ['spiffe://td/ns/a/sa/web', 'spiffe://td/ns/a/sa/web', true],
    ['spiffe://td/ns/a/sa/web', 'spiffe://td/ns/a/sa/web2', false],
    ['spiffe://td/ns/a/sa/web', 'spiffe://td/ns/a/sa', false],
    ['spiffe://td/ns/a/sa/*', 'spiffe://td/ns/a/sa/web', true],
    ['spiffe://td/ns/a/sa/*', 'spiffe://td/ns/a/sa', false],
    ['spiffe://td/ns/a/sa/*', 'spiffe://td/ns/a/sa/web/x', false],
    ['spiffe://td/ns/a/sa/*', 'spiffe://td/ns/a/sab', false],
    ['spiffe://td/ns/a/sa/*', 'spiffe://td/ns/a/saweb', false],
    ['spiffe://td/ns/a/**', 'spiffe://td/ns/a', true],
    ['spiffe://td/ns/a/**', 'spiffe://td/ns/a/sa/web', true],
    ['spiffe://td/ns/a/**', 'spiffe://td/ns/a/sa/web/deep/er', true],
    ['spiffe://td/ns/a/**', 'spiffe://td/ns/ab', false],
    ['spiffe://td/ns/a/**', 'spiffe://td/ns/ab/sa/x', false],
    ['spiffe://td/**', 'spiffe://td', true],
    ['spiffe://td/**', 'spiffe://td/anything', true],
    ['spiffe://td/**', 'spiffe://td2/anything', false],
    ['spiffe://td/**', 'spiffe://td.evil/anything', false],
    ['spiffe://a.org/**', 'spiffe://a.org.evil/x', false],
    ['spiffe://a.org/**', 'spiffe://b.org/x', false],
    ['spiffe://a.org/*', 'spiffe://a.org/x', true],
    ['spiffe://a.org/*', 'spiffe://a.orgx/y', false],
  ])('%s vs %s → %s', (pattern, text, expected) => {
    expect(matches(pattern, text)).toBe(expected);
  });

  test.each([
    ['', 'empty'],
    ['*', 'wildcard may only end'],
    ['spiffe://*/x', 'wildcard may only end'],
    ['spiffe://td/ns/*/sa/x', 'wildcard may only end'],
    ['spiffe://td/ns/a*', 'wildcard may only end'],
    ['spiffe://td/ns/a/***', 'wildcard may only end'],
    ['spiffe://td/ns/a/*/**', 'wildcard may only end'],
    ['spiffe://TD/x', 'lower-case'],
    ['spiffe://td/a/../b', "'.' or '..'"],
    ['spiffe://td/a//*', 'end with a slash'],
    ['spiffe://td//a/*', 'empty segment'],
    ['cluster.local/ns/a/sa/b', 'must start with spiffe://'],
  ])('rejects %j', (pattern, message) => {
    const compiled = compileSpiffePattern(pattern);
    expect(compiled.ok).toBe(false);
    if (!compiled.ok) expect(compiled.error).toContain(message);
  });

  test('patterns carry their trust domain', () => {
    const compiled = compileSpiffePattern('spiffe://shop.example/ns/x/**');
    expect(compiled.ok && compiled.value.trustDomain).toBe('shop.example');
  });
});
