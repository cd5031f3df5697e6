import { parseSpiffeId } from '../../src/identity/spiffe';
import { parseXfcc } from '../../src/identity/xfcc';
import { decodeCheckRequest } from '../../src/envoy/codec';
import { loadProtos } from '../../src/server/protos';
import { UNDECODABLE, type CheckInput } from '../../src/envoy/check-input';
import { engineFor } from '../helpers/engine';
import { EXAMPLE_POLICIES } from '../helpers/policies';
import { CHECKOUT_BATCH, CHECKOUT_WEB, envoyCheckRequest, ORDERS } from '../helpers/requests';

/** A small seeded PRNG (mulberry32): the same cases on every run, so a failure reproduces. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const def = loadProtos().authorization['Check']!;

describe('mutated CheckRequest bytes (seeded fuzzing through the real decoder and engine)', () => {
  test('never a throw, never an allow without a verified caller and a rule (dry-run aside), statuses from the contract only', async () => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const seeds = [
      envoyCheckRequest({
        principal: CHECKOUT_WEB,
        method: 'GET',
        path: '/v1/orders/7',
        headers: { 'x-request-id': 'r', authorization: 'Bearer x.y.z' },
      }),
      envoyCheckRequest({ principal: CHECKOUT_BATCH }),
      envoyCheckRequest({ principal: ORDERS, host: 'payments', path: '/v1/charges' }),
      envoyCheckRequest({
        host: 'inventory',
        path: '/v1/reservations',
        headers: {
          'x-forwarded-client-cert': 'By=spiffe://a/b;URI=spiffe://shop.example/ns/x/sa/y',
        },
      }),
    ].map((r) => Buffer.from(def.requestSerialize(r)));
    const random = prng(0x9a7e);
    let decoded = 0;
    let allowed = 0;
    for (let i = 0; i < 20_000; i++) {
      const bytes = Buffer.from(seeds[i % seeds.length]!);
      // 1–8 mutations: flip, overwrite, truncate or duplicate a slice.
      for (let m = 1 + Math.floor(random() * 8); m > 0; m--) {
        const at = Math.floor(random() * bytes.length);
        const kind = random();
        if (kind < 0.4) bytes[at] = bytes[at]! ^ (1 << Math.floor(random() * 8));
        else if (kind < 0.8) bytes[at] = Math.floor(random() * 256);
        else if (kind < 0.9) bytes.fill(0xff, at, Math.min(bytes.length, at + 4));
        else bytes.copyWithin(at, Math.floor(random() * bytes.length));
      }
      const cut = random() < 0.1 ? bytes.subarray(0, Math.floor(random() * bytes.length)) : bytes;
      let request: CheckInput;
      try {
        request = decodeCheckRequest(cut);
        decoded++;
      } catch {
        request = UNDECODABLE; // what the gRPC server hands the engine
      }
      const d = await engine.decide(request);
      expect([200, 401, 403, 429]).toContain(d.status);
      if (d.allowed) {
        allowed++;
        if (d.policy?.mode !== 'dry-run') {
          expect(d.caller).toMatch(/^spiffe:\/\/shop\.example\//);
          expect(d.rule).toBeDefined();
        }
      } else {
        expect(d.reason.length).toBeGreaterThan(0);
      }
    }
    // The mutations must reach the engine, not just the decoder's error path.
    expect(decoded).toBeGreaterThan(5_000);
    expect(allowed).toBeGreaterThan(0);
  });
});

describe('hostile text through the identity parsers (seeded)', () => {
  const ALPHABET = [
    's',
    'p',
    'i',
    'f',
    'e',
    ':',
    '/',
    '/',
    '.',
    '..',
    '-',
    '_',
    'a',
    'Z',
    '9',
    '%',
    '?',
    '#',
    '@',
    '"',
    '\\',
    ',',
    ';',
    '=',
    ' ',
    '\t',
    '\u0000',
    'é',
    '\ud800',
    'URI',
    'By',
    'spiffe://',
    'shop.example',
    '/ns/',
    '*',
  ];
  const text = (random: () => number): string => {
    let s = '';
    for (let n = Math.floor(random() * 40); n > 0; n--)
      s += ALPHABET[Math.floor(random() * ALPHABET.length)];
    return s;
  };

  test('SPIFFE IDs: never a throw; whatever is accepted is well-formed and parses the same again', () => {
    const random = prng(0x5f1f);
    for (let i = 0; i < 20_000; i++) {
      const input = random() < 0.5 ? `spiffe://${text(random)}` : text(random);
      const r = parseSpiffeId(input);
      if (!r.ok) continue;
      expect(r.value.id).toBe(input);
      expect(r.value.trustDomain).toMatch(/^[a-z0-9._-]+$/);
      expect(r.value.path).toMatch(/^(\/[A-Za-z0-9._-]+)*$/);
      expect(r.value.path.split('/').some((seg) => seg === '.' || seg === '..')).toBe(false);
      expect(parseSpiffeId(input)).toEqual(r);
    }
  });

  test('XFCC: never a throw; deterministic; accepted URI SANs hold no control characters and come from the text', () => {
    const random = prng(0x0fcc);
    for (let i = 0; i < 20_000; i++) {
      const input = random() < 0.5 ? `By=spiffe://a/b;URI=${text(random)}` : text(random);
      const r = parseXfcc(input);
      if (!r.ok) {
        expect(typeof r.error).toBe('string');
        continue;
      }
      expect(parseXfcc(input)).toEqual(r);
      for (const element of r.value) {
        for (const uri of element.uri) {
          expect(uri).not.toMatch(/[\u0000-\u0008\u000a-\u001f\u007f]/); // control characters never pass
          // Without quoting or escapes, a value is a slice of the header itself.
          if (!/["\\]/.test(input)) expect(input).toContain(uri);
        }
      }
    }
  });
});
