import { parseSpiffeId } from '../../src/identity/spiffe';
import { authorize, type RuleStep } from '../../src/policy/authorize';
import { loadPolicyDir } from '../../src/policy/load';
import type { CompiledPolicy } from '../../src/policy/types';
import { normalizeCheckRequest, type NormalizedRequest } from '../../src/request/normalize';
import { policyDir, servicePolicy } from '../helpers/policies';
import { envoyCheckRequest } from '../helpers/requests';

const WEB = 'spiffe://td/ns/a/sa/web';
const BATCH = 'spiffe://td/ns/a/sa/batch';

async function policy(): Promise<CompiledPolicy> {
  const loaded = await loadPolicyDir(
    policyDir({
      'p.yaml': servicePolicy(
        'p',
        ['p'],
        `    - name: posts-only
      when: request.method == "POST"
      allow: [${WEB}]
    - name: reads
      methods: [GET]
      allow: [spiffe://td/ns/a/**]
    - name: never-batch
      methods: [GET]
      paths: [/x]
      allow: [${WEB}]
      deny: [${BATCH}]
    - name: after
      allow: [${WEB}]`,
      ),
    }),
  );
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  return loaded.set.policies[0]!;
}

function request(method: string, path: string): NormalizedRequest {
  const normalized = normalizeCheckRequest(envoyCheckRequest({ host: 'p', method, path }));
  if (!normalized.ok) throw new Error(normalized.reason);
  return normalized.request;
}

function id(text: string) {
  const parsed = parseSpiffeId(text);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.value;
}

const steps = (trace: RuleStep[]) =>
  trace.map((s) => `${s.rule.name}:${s.step}${'entry' in s ? `[${s.entry}]` : ''}`);

describe('authorize with a trace', () => {
  test('records each rule it looked at, and decides as without one', async () => {
    const p = await policy();
    const cases: [string, string, string, string[]][] = [
      [
        'GET',
        '/y',
        WEB,
        [
          'posts-only:condition-false',
          'reads:allowed[0]',
          'never-batch:path-differs',
          'after:not-refused',
        ],
      ],
      [
        'GET',
        '/x',
        BATCH,
        ['posts-only:condition-false', 'reads:allowed[0]', 'never-batch:refused[0]'],
      ],
      [
        'POST',
        '/y',
        WEB,
        [
          'posts-only:allowed[0]',
          'reads:method-differs',
          'never-batch:method-differs',
          'after:not-refused',
        ],
      ],
      [
        'DELETE',
        '/y',
        BATCH,
        [
          'posts-only:condition-false',
          'reads:method-differs',
          'never-batch:method-differs',
          'after:not-allowed',
        ],
      ],
    ];
    for (const [method, path, caller, expected] of cases) {
      const trace: RuleStep[] = [];
      const traced = authorize(p, request(method, path), id(caller), trace);
      expect(steps(trace)).toEqual(expected);
      expect(traced).toEqual(authorize(p, request(method, path), id(caller)));
    }
  });
});
