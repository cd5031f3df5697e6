import { HashChain, verifyAuditText } from '../../src/audit/chain';

function chainOf(n: number, chain = new HashChain()): string[] {
  return Array.from({ length: n }, (_, i) => chain.seal(`{"level":30,"msg":"decision","i":${i},"reason":"a \\"quoted\\" }"}\n`));
}

describe('audit hash chain', () => {
  test('an intact chain verifies, and records carry chain, seq, prev_hash and hash', () => {
    const lines = chainOf(5);
    expect(verifyAuditText(lines.join(''))).toEqual({ ok: true, records: 5, chains: 1 });
    const first = JSON.parse(lines[0]!);
    const second = JSON.parse(lines[1]!);
    expect(first).toMatchObject({ seq: 0, prev_hash: '0'.repeat(64), i: 0, reason: 'a "quoted" }' });
    expect(second.prev_hash).toBe(first.hash);
  });

  test('interleaved chains (workers on one stdout) verify', () => {
    const a = chainOf(4);
    const b = chainOf(4);
    const mixed = [a[0], b[0], b[1], a[1], a[2], b[2], b[3], a[3]].join('');
    expect(verifyAuditText(mixed)).toEqual({ ok: true, records: 8, chains: 2 });
  });

  test.each([
    ['an altered field', (l: string[]) => { l[2] = l[2]!.replace('"i":2', '"i":9'); }, 3, 'record altered'],
    ['an altered field with the hash recomputed is caught by the next record', (l: string[]) => {
      const chain = new HashChain();
      const forged = chainOf(3, chain);
      l[2] = forged[2]!; // a well-formed record from another chain position
    }, 3, ''],
    ['a removed record', (l: string[]) => { l.splice(2, 1); }, 3, 'removed'],
    ['two records swapped', (l: string[]) => { [l[1], l[2]] = [l[2]!, l[1]!]; }, 2, 'removed'],
    ['a removed first record', (l: string[]) => { l.shift(); }, 1, 'removed'],
    ['a truncated last record', (l: string[]) => { l[4] = l[4]!.slice(0, 40); }, 5, 'truncated'],
    ['a hash field moved', (l: string[]) => { l[1] = l[1]!.replace('{"chain"', '{"x":1,"chain"'); }, 2, 'altered'],
    ['a blank line inserted', (l: string[]) => { l.splice(2, 0, '\n'); }, 3, 'empty line'],
  ])('detects %s and names the first broken record', (_name, tamper, line, message) => {
    const lines = chainOf(5);
    tamper(lines);
    const result = verifyAuditText(lines.join(''));
    expect(result.ok).toBe(false);
    expect(result.error!.line).toBe(line);
    expect(result.error!.message).toContain(message);
  });
});
