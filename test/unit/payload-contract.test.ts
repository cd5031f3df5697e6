import {
  compileBodyContract,
  bodyContractViolation,
  type CompiledBodyContract,
} from '../../src/policy/features/payload';
import { normalizeCheckRequest, type NormalizedRequest } from '../../src/request/normalize';

function request(
  headers: Record<string, string>,
  body?: string,
  partial = false,
): NormalizedRequest {
  const h = {
    ':authority': 'h',
    ':method': 'POST',
    ':path': '/x',
    ...headers,
    ...(partial ? { 'x-envoy-auth-partial-body': 'true' } : {}),
  };
  const r = normalizeCheckRequest({
    attributes: {
      request: {
        http: {
          host: 'h',
          method: 'POST',
          path: '/x',
          headers: h,
          ...(body !== undefined ? { body } : {}),
        },
      },
    },
  });
  if (!r.ok) throw new Error(r.reason);
  return r.request;
}

function contract(doc: Parameters<typeof compileBodyContract>[0]): CompiledBodyContract {
  const c = compileBodyContract(doc);
  if (!c.ok) throw new Error(c.error);
  return c.value;
}

describe('body contracts never quote the payload and never assume a size', () => {
  test('a property name the schema does not declare is not repeated in the reason', () => {
    const c = contract({
      schema: {
        type: 'object',
        properties: { amount: { type: 'integer' } },
        additionalProperties: { type: 'integer' },
      },
    });
    const secretKey = request(
      { 'content-type': 'application/json' },
      JSON.stringify({ sk_live_KEYSECRET: 'x' }),
    );
    const reason = bodyContractViolation(c, secretKey)!.reason;
    expect(reason).toBe('request body does not match the schema: /* must be integer');
    expect(reason).not.toContain('sk_live');
    // Declared names and array indexes still say where the problem is.
    const declared = request(
      { 'content-type': 'application/json' },
      JSON.stringify({ amount: 'ten' }),
    );
    expect(bodyContractViolation(c, declared)?.reason).toBe(
      'request body does not match the schema: /amount must be integer',
    );
    const list = contract({
      schema: {
        type: 'object',
        properties: { items: { type: 'array', items: { type: 'integer' } } },
      },
    });
    expect(
      bodyContractViolation(list, request({}, JSON.stringify({ items: [1, 'x'] })))?.reason,
    ).toBe('request body does not match the schema: /items/1 must be integer');
  });

  test('maxBytes alone: a body of unknown size that was not forwarded, or was truncated, is refused', () => {
    const c = contract({ maxBytes: 64 });
    expect(bodyContractViolation(c, request({ 'transfer-encoding': 'chunked' }))).toEqual({
      reason: expect.stringMatching(
        /size cannot be shown to be within 64 bytes \(the body was not forwarded/,
      ),
      malformed: true,
    });
    expect(bodyContractViolation(c, request({}, 'x'.repeat(60), true))).toEqual({
      reason: expect.stringMatching(/size cannot be shown.*truncated/),
      malformed: true,
    });
    // A declared length within the limit is enough; so is a whole forwarded body; no body at all passes.
    expect(bodyContractViolation(c, request({ 'content-length': '60' }))).toBeUndefined();
    expect(bodyContractViolation(c, request({}, 'x'.repeat(60)))).toBeUndefined();
    expect(bodyContractViolation(c, request({ 'content-length': '0' }))).toBeUndefined();
    expect(bodyContractViolation(c, request({ 'content-length': '65' }))).toEqual({
      reason: 'request body is 65 bytes, more than the 64 allowed',
      malformed: false,
    });
  });
});
