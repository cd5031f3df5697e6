import { HashChain, verifyAuditPieces, verifyAuditText } from '../../src/audit/chain';

function chainOf(n: number, chain = new HashChain()): string[] {
  return Array.from({ length: n }, (_, i) =>
    chain.seal(`{"level":30,"msg":"decision","i":${i},"reason":"a \\"quoted\\" }"}\n`),
  );
}

describe('audit hash chain', () => {
  test('an intact chain verifies, and records carry chain, seq, prev_hash and hash', () => {
    const lines = chainOf(5);
    expect(verifyAuditText(lines.join(''))).toMatchObject({ ok: true, records: 5, chains: 1 });
    const first = JSON.parse(lines[0]!);
    const second = JSON.parse(lines[1]!);
    expect(first).toMatchObject({
      seq: 0,
      prev_hash: '0'.repeat(64),
      i: 0,
      reason: 'a "quoted" }',
    });
    expect(second.prev_hash).toBe(first.hash);
  });

  test('interleaved chains (workers on one stdout) verify', () => {
    const a = chainOf(4);
    const b = chainOf(4);
    const mixed = [a[0], b[0], b[1], a[1], a[2], b[2], b[3], a[3]].join('');
    expect(verifyAuditText(mixed)).toMatchObject({ ok: true, records: 8, chains: 2 });
  });

  test.each([
    [
      'an altered field',
      (l: string[]) => {
        l[2] = l[2]!.replace('"i":2', '"i":9');
      },
      3,
      'record altered',
    ],
    [
      'an altered field with the hash recomputed is caught by the next record',
      (l: string[]) => {
        const chain = new HashChain();
        const forged = chainOf(3, chain);
        l[2] = forged[2]!; // a well-formed record from another chain position
      },
      3,
      '',
    ],
    [
      'a removed record',
      (l: string[]) => {
        l.splice(2, 1);
      },
      3,
      'removed',
    ],
    [
      'two records swapped',
      (l: string[]) => {
        [l[1], l[2]] = [l[2]!, l[1]!];
      },
      2,
      'removed',
    ],
    [
      'a removed first record',
      (l: string[]) => {
        l.shift();
      },
      1,
      'removed',
    ],
    [
      'a truncated last record',
      (l: string[]) => {
        l[4] = l[4]!.slice(0, 40);
      },
      5,
      'truncated',
    ],
    [
      'a hash field moved',
      (l: string[]) => {
        l[1] = l[1]!.replace('{"chain"', '{"x":1,"chain"');
      },
      2,
      'altered',
    ],
    [
      'a blank line inserted',
      (l: string[]) => {
        l.splice(2, 0, '\n');
      },
      3,
      'empty line',
    ],
  ])('detects %s and names the first broken record', (_name, tamper, line, message) => {
    const lines = chainOf(5);
    tamper(lines);
    const result = verifyAuditText(lines.join(''));
    expect(result.ok).toBe(false);
    expect(result.error!.line).toBe(line);
    expect(result.error!.message).toContain(message);
  });
});

describe('rotated pieces of one audit log', () => {
  const lines = chainOf(10);
  const old = lines.slice(0, 6).join('');
  const current = lines.slice(6).join('');
  const lastOfOld = JSON.parse(lines[5]!) as { seq: number; hash: string; chain: string };

  test('a piece that does not start at seq 0 fails alone, saying how to verify it', () => {
    const r = verifyAuditText(current);
    expect(r.ok).toBe(false);
    expect(r.error!.message).toMatch(/starts at seq 6, not 0: .*--from-seq 5 --from-hash/);
  });

  test('pieces verify together, oldest first; each chain end is reported as the next anchor', () => {
    const r = verifyAuditPieces([
      { name: 'audit.log.1', text: old },
      { name: 'audit.log', text: current },
    ]);
    expect(r).toMatchObject({
      ok: true,
      records: 10,
      chains: 1,
      ends: [
        { chain: lastOfOld.chain, seq: 9, hash: (JSON.parse(lines[9]!) as { hash: string }).hash },
      ],
    });
    const swapped = verifyAuditPieces([
      { name: 'audit.log', text: current },
      { name: 'audit.log.1', text: old },
    ]);
    expect(swapped.ok).toBe(false);
    expect(swapped.error).toMatchObject({ piece: 'audit.log', line: 1 });
  });

  test('a piece verifies alone from the anchor of the one before it', () => {
    expect(
      verifyAuditText(current, undefined, { anchor: { seq: lastOfOld.seq, hash: lastOfOld.hash } }),
    ).toMatchObject({ ok: true, records: 4 });
  });

  test('a wrong anchor, a record removed at the boundary, or an anchor nothing continues from all fail', () => {
    const wrongHash = verifyAuditText(current, undefined, {
      anchor: { seq: 5, hash: 'f'.repeat(64) },
    });
    expect(wrongHash.error!.message).toMatch(/does not continue from the anchor/);
    const firstRemoved = verifyAuditText(lines.slice(7).join(''), undefined, {
      anchor: { seq: 5, hash: lastOfOld.hash },
    });
    expect(firstRemoved.ok).toBe(false);
    const unused = verifyAuditText(old, undefined, { anchor: { seq: 40, hash: lastOfOld.hash } });
    expect(unused.ok).toBe(false);
    expect(unused.error!.message).toMatch(/no chain continues from the anchor/);
  });

  test('--mid-chain accepts an unanchored start and says so; a later gap still fails', () => {
    expect(verifyAuditText(current, undefined, { midChain: true })).toMatchObject({
      ok: true,
      records: 4,
      unanchored: [{ chain: lastOfOld.chain, seq: 6 }],
    });
    const gap = [lines[6], lines[8], lines[9]].join('');
    expect(verifyAuditText(gap, undefined, { midChain: true }).error!.message).toMatch(
      /jumps from seq 6 to 8/,
    );
  });

  test('an anchor cannot excuse an altered record', () => {
    const altered = current.replace('"i":7', '"i":70');
    expect(
      verifyAuditText(altered, undefined, { anchor: { seq: 5, hash: lastOfOld.hash } }).error!
        .message,
    ).toMatch(/content does not match its hash/);
  });
});
