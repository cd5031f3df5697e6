import * as path from 'node:path';
import type { CheckInput } from '../../src/envoy/check-input';
import type { Decision } from '../../src/pipeline/decision';
import { engineFor } from '../helpers/engine';
import { CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';

/*
 * CheckInput is a type, not a proof: a producer (an adapter with a bug, a test helper, a
 * replayed record) can hand the engine any value in its place. Each one below must come back
 * as 403 malformed_request, never an allow, never a throw out of decide().
 */

const POLICIES = path.resolve(__dirname, '..', '..', 'policies');

/** A valid, allowed request with one part replaced, so only that part can make it malformed. */
function withHttp(http: Record<string, unknown>): CheckInput {
  const request = envoyCheckRequest({ principal: CHECKOUT_WEB }) as {
    attributes: { request: { http: Record<string, unknown> } };
  };
  Object.assign(request.attributes.request.http, http);
  return request as CheckInput;
}

function nullRecord(entries: Record<string, unknown>): Record<string, unknown> {
  return Object.assign(Object.create(null) as Record<string, unknown>, entries);
}

const throwing = Object.defineProperty({}, 'http', {
  enumerable: true,
  get() {
    throw new Error('a getter that throws');
  },
});

const cyclic: Record<string, unknown> = { a: 1 };
cyclic['self'] = cyclic;

const MALFORMED: [string, unknown][] = [
  ['null', null],
  ['a number', 42],
  ['a string', 'attributes'],
  ['an array', [{ attributes: {} }]],
  ['attributes of the wrong type', { attributes: 'x' }],
  [
    'host, method and path of the wrong types',
    withHttp({ host: 7, method: ['POST'], path: {}, headers: {} }),
  ],
  [
    'a header value that is not a string',
    withHttp({ headers: { ':authority': 'orders', 'x-api-key': 7 } }),
  ],
  [
    'codec-shaped headers whose values are not strings',
    withHttp({ headers: nullRecord({ ':authority': 'orders', ':path': 7, 'content-type': {} }) }),
  ],
  ['a getter that throws', { attributes: { request: throwing } }],
  [
    'metadata that refers to itself',
    {
      attributes: {
        ...envoyCheckRequest({ principal: CHECKOUT_WEB }).attributes,
        metadataContext: { filterMetadata: { ns: cyclic } },
      },
    },
  ],
];

describe('a malformed CheckInput from a producer', () => {
  test('the valid request these are made from is allowed', async () => {
    const { engine } = await engineFor(POLICIES);
    expect(await engine.decide(withHttp({}))).toMatchObject({ allowed: true });
  });

  test.each(MALFORMED)('%s: 403 malformed_request', async (_name, input) => {
    const { engine, decisions } = await engineFor(POLICIES);
    const decision: Decision = await engine.decide(input as CheckInput);
    expect(decision).toMatchObject({ allowed: false, status: 403, code: 'malformed_request' });
    expect(decisions).toEqual([decision]); // audited like any other check
  });
});
