import { readTrustBundle } from '../../src/identity/trust-bundle';
import type { Decision } from '../../src/pipeline/decision';
import { DecisionEngine } from '../../src/pipeline/engine';
import { MemoryBucketStore } from '../../src/ratelimit/memory-store';
import { loadSet } from './engine';
import { policyDir, servicePolicy } from './policies';
import { envoyCheckRequest } from './requests';

/** Decides a CheckRequest carrying `source.certificate` (as Envoy's include_peer_certificate sends it). */
export async function grpcCertificateCase(
  caFile: string,
  certPem: string,
  principal?: string,
): Promise<Decision> {
  const set = await loadSet(
    policyDir({
      'p.yaml': servicePolicy(
        'p',
        ['p'],
        `    - name: r
      allow: [spiffe://shop.example/ns/frontend/**]`,
      ),
    }),
  );
  let decision: Decision | undefined;
  const engine = new DecisionEngine({
    policies: () => set,
    identity: {
      trustDomains: new Set(['shop.example', 'elsewhere.example']),
      trustXfcc: false,
      trustBundles: new Map([['shop.example', readTrustBundle('shop.example', caFile)]]),
    },
    store: new MemoryBucketStore(),
    sink: { record: (d) => void (decision = d) },
  });
  const request = envoyCheckRequest({
    host: 'p',
    path: '/',
    ...(principal ? { principal } : {}),
  }) as { attributes: { source: Record<string, unknown> } };
  request.attributes.source['certificate'] = encodeURIComponent(certPem);
  await engine.decide(request);
  return decision!;
}
