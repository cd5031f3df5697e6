import { decodeCheckRequest, encodeCheckResponse } from '../../src/server/codec';
import { loadProtos } from '../../src/server/protos';
import { toCheckResponse, type CheckResponseMessage } from '../../src/respond/check-response';
import { engineFor } from '../helpers/engine';
import { EXAMPLE_POLICIES } from '../helpers/policies';
import { CHECKOUT_BATCH, CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';

const def = loadProtos().authorization['Check']!;

describe("the hot path's CheckRequest decoder", () => {
  test('reads what the pipeline uses exactly as proto-loader does, skipping the rest', () => {
    const request = envoyCheckRequest({ principal: CHECKOUT_WEB, headers: { 'x-tenant': 'a', 'x-empty': '' } }) as { attributes: Record<string, Record<string, unknown>> };
    request.attributes['source']!['certificate'] = '-----BEGIN%20CERTIFICATE-----';
    request.attributes['contextExtensions'] = { skipped: 'yes' };
    request.attributes['metadataContext'] = { filterMetadata: { 'envoy.filters.http.jwt_authn': { fields: { a: { stringValue: 'b' } } } } };
    const bytes = def.requestSerialize(request);
    const full = def.requestDeserialize(bytes) as { attributes: Record<string, Record<string, Record<string, unknown>>> };
    const fast = decodeCheckRequest(bytes) as typeof full;
    expect(fast.attributes['source']).toEqual({ principal: CHECKOUT_WEB, certificate: '-----BEGIN%20CERTIFICATE-----' });
    expect(fast.attributes['destination']).toEqual({ principal: 'spiffe://shop.example/ns/orders/sa/orders' });
    const http = fast.attributes['request']!['http'] as Record<string, unknown>;
    const fullHttp = full.attributes['request']!['http'] as Record<string, unknown>;
    for (const key of ['method', 'path', 'host']) expect(http[key]).toBe(fullHttp[key]);
    expect({ ...(http['headers'] as object) }).toEqual(fullHttp['headers']);
  });

  test('header_map (encode_raw_headers: true) is read like headers: lower-cased keys, repeats joined', () => {
    const request = envoyCheckRequest({ principal: CHECKOUT_WEB }) as { attributes: { request: { http: Record<string, unknown> } } };
    delete request.attributes.request.http['headers'];
    request.attributes.request.http['headerMap'] = {
      headers: [
        { key: ':authority', rawValue: Buffer.from('orders.shop.svc.cluster.local') },
        { key: 'X-Request-Id', rawValue: Buffer.from('raw-1') },
        { key: 'x-gatehouse-caller', rawValue: Buffer.from('spoof') },
        { key: 'accept', rawValue: Buffer.from('a') },
        { key: 'accept', rawValue: Buffer.from('b') },
        { key: 'x-odd', rawValue: Buffer.from([0x61, 0xff]) },
        { key: 'x-value-only', value: 'v' },
      ],
    };
    const http = ((decodeCheckRequest(def.requestSerialize(request))['attributes'] as Record<string, Record<string, Record<string, unknown>>>)['request']!['http']!);
    expect({ ...(http['headers'] as object) }).toEqual({
      ':authority': 'orders.shop.svc.cluster.local',
      'x-request-id': 'raw-1',
      'x-gatehouse-caller': 'spoof',
      accept: 'a,b',
      'x-odd': 'a\ufffd',
      'x-value-only': 'v',
    });
  });

  test('a __proto__ header is an ordinary key, never a prototype', () => {
    // JSON.parse makes "__proto__" an own key (an object literal would set the prototype).
    const hostile = JSON.parse('{"__proto__": "x", "constructor": "y"}') as Record<string, string>;
    const bytes = def.requestSerialize(envoyCheckRequest({ headers: hostile }));
    const headers = ((decodeCheckRequest(bytes)['attributes'] as Record<string, Record<string, Record<string, unknown>>>)['request']!['http']!['headers']) as Record<string, string>;
    expect(Object.getPrototypeOf(headers)).toBeNull();
    expect(Object.prototype.hasOwnProperty.call(headers, '__proto__')).toBe(true);
    expect(headers['__proto__']).toBe('x');
    expect(headers['constructor']).toBe('y');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  test.each([
    ['a length past the end', Buffer.from([0x0a, 0x7f, 0x0a])],
    ['a truncated varint', Buffer.from([0x0a, 0xff, 0xff, 0xff])],
    ['a nested length past its parent', Buffer.from([0x0a, 0x04, 0x22, 0x7f, 0x12, 0x00])],
    ['an invalid wire type', Buffer.from([0x0f, 0x01])],
  ])('throws on %s (the server denies it as undecodable)', (_name, bytes) => {
    expect(() => decodeCheckRequest(bytes)).toThrow();
  });
});

describe("the hot path's CheckResponse encoder", () => {
  test.each([
    ['an allow', CHECKOUT_WEB],
    ['a deny', CHECKOUT_BATCH],
  ])('%s decodes with proto-loader to what it encoded', async (_name, caller) => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const decision = await engine.decide(envoyCheckRequest({ principal: caller, headers: { 'x-gatehouse-role': 'x' } }));
    const message = toCheckResponse(decision);
    const decoded = def.responseDeserialize(encodeCheckResponse(message)) as CheckResponseMessage & { httpResponse?: string };
    delete decoded.httpResponse;
    expect(decoded).toEqual(JSON.parse(JSON.stringify({ ...message, status: message.status.code === 0 ? {} : message.status })));
  });
});
