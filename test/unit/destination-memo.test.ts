import { parseSpiffeId } from '../../src/identity/spiffe';
import { loadPolicyDir } from '../../src/policy/load';
import {
  PATTERN_MEMO_ENTRIES,
  PATTERN_MEMO_KEY,
  policyForDestination,
  rememberedDestinations,
} from '../../src/policy/features/select';
import { formatProblem } from '../../src/policy/document/problems';
import type { CompiledPolicy, DestinationIndex } from '../../src/policy/types';
import { BoundedMemo } from '../../src/util/bounded-memo';
import { policyDir } from '../helpers/policies';

const TD = 'spiffe://shop.example';

async function patternIndex(): Promise<DestinationIndex> {
  const policy = (name: string, workload: string): string =>
    `apiVersion: gatehouse/v1\nkind: ServicePolicy\nmetadata: { name: ${name} }\nspec:\n  workloads: ["${workload}"]\n  rules:\n    - { name: r, allow: ["${TD}/**"] }\n`;
  const result = await loadPolicyDir(
    policyDir({
      'a.yaml': policy('ns-wide', `${TD}/ns/pay/**`),
      'b.yaml': policy('accounts', `${TD}/ns/pay/sa/*`),
      'c.yaml': policy('exact', `${TD}/ns/pay/sa/ledger`),
    }),
  );
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.set.destinations;
}

/** The selection without any memo: exact IDs, then the first pattern that matches. */
function unremembered(index: DestinationIndex, id: string): CompiledPolicy | undefined {
  const exact = index.exact.get(id);
  if (exact !== undefined) return exact;
  const parsed = parseSpiffeId(id);
  if (!parsed.ok) return undefined;
  return index.patterns.find(({ pattern }) => pattern.matches(parsed.value))?.policy;
}

describe('remembered destination selection', () => {
  test('a flood of distinct destination IDs leaves the memo at its cap, answering as without it', async () => {
    const index = await patternIndex();
    const ids: string[] = [];
    for (let i = 0; i < PATTERN_MEMO_ENTRIES * 4; i++) {
      ids.push(
        `${TD}/ns/pay/sa/w${i}`,
        `${TD}/ns/pay/jobs/${i}/x`,
        `${TD}/ns/other/sa/w${i}`,
        `not a spiffe id ${i}`,
        `${TD}/ns/pay/sa/${'x'.repeat(PATTERN_MEMO_KEY)}${i}`,
      );
    }
    // Twice over, so answers come from the memo as well as from parsing.
    for (const id of [...ids, ...ids.slice(-PATTERN_MEMO_ENTRIES), ...ids]) {
      expect(policyForDestination(index, id)?.name).toBe(unremembered(index, id)?.name);
      expect(rememberedDestinations(index)).toBeLessThanOrEqual(PATTERN_MEMO_ENTRIES);
    }
    expect(rememberedDestinations(index)).toBe(PATTERN_MEMO_ENTRIES);
    expect(policyForDestination(index, `${TD}/ns/pay/sa/ledger`)?.name).toBe('exact');
  });

  test('IDs that do not fit a pattern are answered (undefined) from the memo too', async () => {
    const index = await patternIndex();
    expect(policyForDestination(index, `${TD}/ns/payments/sa/api`)).toBeUndefined();
    expect(policyForDestination(index, `${TD}/ns/payments/sa/api`)).toBeUndefined();
    expect(policyForDestination(index, `${TD}/ns/pay/sa/api`)?.name).toBe('accounts');
    expect(rememberedDestinations(index)).toBe(2);
  });
});

describe('BoundedMemo', () => {
  test('forgets the oldest key past its cap, never keeps long keys, and computes each kept key once', () => {
    const computed: string[] = [];
    const memo = new BoundedMemo(
      (key) => {
        computed.push(key);
        return key.length % 2 === 0 ? key.toUpperCase() : undefined;
      },
      3,
      4,
    );
    for (const key of ['ab', 'abc', 'ab', 'abcd', 'abc']) memo.get(key);
    expect(computed).toEqual(['ab', 'abc', 'abcd']);
    expect(memo.get('x')).toBeUndefined();
    expect(memo.size).toBe(3);
    expect(memo.get('ab')).toBe('AB');
    expect(computed).toEqual(['ab', 'abc', 'abcd', 'x', 'ab']);
    expect(memo.get('abcdef')).toBe('ABCDEF');
    expect(memo.get('abcdef')).toBe('ABCDEF');
    expect(computed.filter((k) => k === 'abcdef')).toHaveLength(2);
    expect(memo.size).toBe(3);
  });
});
