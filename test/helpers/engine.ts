import { DecisionEngine } from '../../src/pipeline/engine';
import type { Decision } from '../../src/pipeline/decision';
import { loadPolicyDir } from '../../src/policy/load';
import type { PolicySet } from '../../src/policy/types';
import type { QuarantineState } from '../../src/quarantine/types';
import { MemoryBucketStore } from '../../src/ratelimit/memory-store';
import type { BucketStore } from '../../src/ratelimit/types';

export async function loadSet(dir: string): Promise<PolicySet> {
  const loaded = await loadPolicyDir(dir);
  if (!loaded.ok) throw new Error(`policies invalid: ${JSON.stringify(loaded.problems)}`);
  return loaded.set;
}

/** The real decision engine over a policy directory or a built set, recording decisions in memory. */
export async function engineFor(
  policies: string | PolicySet,
  options: {
    trustDomains?: string[];
    trustXfcc?: boolean;
    store?: BucketStore;
    quarantine?: QuarantineState;
  } = {},
): Promise<{ engine: DecisionEngine; decisions: Decision[]; store: BucketStore }> {
  const set = typeof policies === 'string' ? await loadSet(policies) : policies;
  const decisions: Decision[] = [];
  const store = options.store ?? new MemoryBucketStore();
  const engine = new DecisionEngine({
    policies: () => set,
    identity: {
      trustDomains: new Set(options.trustDomains ?? ['shop.example']),
      trustXfcc: options.trustXfcc ?? false,
    },
    store,
    sink: { record: (d) => decisions.push(d) },
    ...(options.quarantine ? { quarantine: options.quarantine } : {}),
  });
  return { engine, decisions, store };
}
