import { decodeCheckRequest, encodeCheckResponse } from '../../src/envoy/codec';
import { normalizeCheckRequest } from '../../src/request/normalize';
import { loadProtos } from '../../src/server/protos';
import { toCheckResponse, type CheckResponseMessage } from '../../src/respond/check-response';
import { engineFor } from '../helpers/engine';
import { EXAMPLE_POLICIES } from '../helpers/policies';
import { CHECKOUT_BATCH, CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';

const def = loadProtos().authorization['Check']!;

describe("the hot path's CheckRequest decoder", () => {
  test('reads what the pipeline uses exactly as proto-loader does, skipping the rest', () => {
    const request = envoyCheckRequest({
      principal: CHECKOUT_WEB,
      headers: { 'x-tenant': 'a', 'x-empty': '' },
    }) as { attributes: Record<string, Record<string, unknown>> };
    request.attributes['source']!['certificate'] = '-----BEGIN%20CERTIFICATE-----';
    request.attributes['tlsSession'] = { sni: 'skipped' };
    const bytes = def.requestSerialize(request);
    const full = def.requestDeserialize(bytes) as {
      attributes: Record<string, Record<string, Record<string, unknown>>>;
    };
    const fast = decodeCheckRequest(bytes) as typeof full;
    expect(fast.attributes['source']).toEqual({
      principal: CHECKOUT_WEB,
      certificate: '-----BEGIN%20CERTIFICATE-----',
    });
    expect(fast.attributes['destination']).toEqual({
      principal: 'spiffe://shop.example/ns/orders/sa/orders',
    });
    const http = fast.attributes['request']!['http'] as Record<string, unknown>;
    const fullHttp = full.attributes['request']!['http'] as Record<string, unknown>;
    for (const key of ['method', 'path', 'host']) expect(http[key]).toBe(fullHttp[key]);
    expect({ ...(http['headers'] as object) }).toEqual(fullHttp['headers']);
  });

  test('context extensions, destination labels, body and metadata match proto-loader (Struct in its JSON form)', () => {
    const request = envoyCheckRequest({ principal: CHECKOUT_WEB }) as {
      attributes: Record<string, Record<string, unknown>> & {
        request: { http: Record<string, unknown> };
      };
    };
    request.attributes['contextExtensions'] = { region: 'eu', tier: 'gold' };
    request.attributes['destination']!['labels'] = { 'topology.kubernetes.io/region': 'eu-west-1' };
    request.attributes.request.http['body'] = '{"a":1}';
    request.attributes['metadataContext'] = {
      filterMetadata: {
        'envoy.filters.http.jwt_authn': {
          fields: {
            claims: {
              structValue: {
                fields: {
                  sub: { stringValue: 'u1' },
                  n: { numberValue: -1.5 },
                  ok: { boolValue: true },
                  nothing: { nullValue: 'NULL_VALUE' },
                  roles: {
                    listValue: {
                      values: [
                        { stringValue: 'a' },
                        { structValue: { fields: { deep: { listValue: { values: [] } } } } },
                      ],
                    },
                  },
                },
              },
            },
          },
        },
      },
    };
    const bytes = def.requestSerialize(request);
    type Attrs = Record<string, Record<string, unknown>>;
    const full = (def.requestDeserialize(bytes) as { attributes: Attrs }).attributes;
    const fast = (decodeCheckRequest(bytes) as { attributes: Attrs }).attributes;
    expect({ ...fast['contextExtensions'] }).toEqual(full['contextExtensions']);
    expect({ ...(fast['destination']!['labels'] as object) }).toEqual(
      full['destination']!['labels'],
    );
    expect((fast['request']!['http'] as Record<string, unknown>)['body']).toBe(
      (full['request']!['http'] as Record<string, unknown>)['body'],
    );
    const fullMetadata = full['metadataContext']!['filterMetadata'] as Record<string, unknown>;
    const expected = Object.fromEntries(
      Object.entries(fullMetadata).map(([ns, s]) => [ns, structJson(s)]),
    );
    expect(JSON.parse(JSON.stringify(fast['metadataContext']!['filterMetadata']))).toEqual(
      expected,
    );
  });

  test('raw_body (pack_as_bytes: true) decodes to the same bytes as proto-loader', () => {
    const request = envoyCheckRequest({ principal: CHECKOUT_WEB }) as {
      attributes: { request: { http: Record<string, unknown> } };
    };
    request.attributes.request.http['rawBody'] = Buffer.from([0x7b, 0xff, 0x00, 0x7d]);
    const bytes = def.requestSerialize(request);
    const fast = (
      decodeCheckRequest(bytes)['attributes'] as Record<
        string,
        Record<string, Record<string, unknown>>
      >
    )['request']!['http']!;
    expect(fast['rawBody']).toBeInstanceOf(Uint8Array);
    expect(
      Buffer.from(fast['rawBody'] as Uint8Array).equals(Buffer.from([0x7b, 0xff, 0x00, 0x7d])),
    ).toBe(true);
    expect(fast['body']).toBeUndefined();
  });

  test('header_map (encode_raw_headers: true) is read like headers: lower-cased keys, repeats joined', () => {
    const request = envoyCheckRequest({ principal: CHECKOUT_WEB }) as {
      attributes: { request: { http: Record<string, unknown> } };
    };
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
    const http = (
      decodeCheckRequest(def.requestSerialize(request))['attributes'] as Record<
        string,
        Record<string, Record<string, unknown>>
      >
    )['request']!['http']!;
    expect({ ...(http['headers'] as object) }).toEqual({
      ':authority': 'orders.shop.svc.cluster.local',
      'x-request-id': 'raw-1',
      'x-gatehouse-caller': 'spoof',
      accept: 'a,b',
      'x-odd': 'a\ufffd',
      'x-value-only': 'v',
    });
  });

  test('headers keys in mixed case are lower-cased; two spellings of one name are joined like repeated lines', () => {
    const request = envoyCheckRequest({
      principal: CHECKOUT_WEB,
      headers: { 'X-Api-Key': 'k1', 'x-api-key': 'k2', 'X-Tenant': 'a' },
    });
    const http = (
      decodeCheckRequest(def.requestSerialize(request))['attributes'] as Record<
        string,
        Record<string, Record<string, unknown>>
      >
    )['request']!['http']!;
    const headers = http['headers'] as Record<string, string>;
    expect(headers['x-tenant']).toBe('a');
    expect(headers['X-Tenant']).toBeUndefined();
    expect(headers['x-api-key']!.split(',').sort()).toEqual(['k1', 'k2']);
  });

  test.each([['authorization'], ['x-forwarded-client-cert']])(
    'a credential header on two header_map lines is refused: %s',
    (name) => {
      const request = envoyCheckRequest({ principal: CHECKOUT_WEB }) as {
        attributes: { request: { http: Record<string, unknown> } };
      };
      delete request.attributes.request.http['headers'];
      request.attributes.request.http['headerMap'] = {
        headers: [
          { key: ':authority', rawValue: Buffer.from('orders.shop.svc.cluster.local') },
          { key: ':path', rawValue: Buffer.from('/v1/orders') },
          {
            key: name,
            rawValue: Buffer.from('By=spiffe://a/b;URI=spiffe://shop.example/ns/x/sa/y'),
          },
          {
            key: name.toUpperCase(),
            rawValue: Buffer.from('By=spiffe://a/b;URI=spiffe://shop.example/ns/x/sa/z'),
          },
        ],
      };
      const normalized = normalizeCheckRequest(decodeCheckRequest(def.requestSerialize(request)));
      expect(normalized).toMatchObject({
        ok: false,
        reason: `the ${name} header was sent on more than one line`,
      });
    },
  );

  test('a __proto__ header is an ordinary key, never a prototype', () => {
    // JSON.parse makes "__proto__" an own key (an object literal would set the prototype).
    const hostile = JSON.parse('{"__proto__": "x", "constructor": "y"}') as Record<string, string>;
    const bytes = def.requestSerialize(envoyCheckRequest({ headers: hostile }));
    const headers = (
      decodeCheckRequest(bytes)['attributes'] as Record<
        string,
        Record<string, Record<string, unknown>>
      >
    )['request']!['http']!['headers'] as Record<string, string>;
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

/** proto-loader's google.protobuf.Struct/Value shape → the proto3 JSON mapping, independently of the codec. */
function structJson(s: unknown): unknown {
  const fields = ((s as { fields?: Record<string, unknown> }).fields ?? {}) as Record<
    string,
    unknown
  >;
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, valueJson(v)]));
}
function valueJson(v: unknown): unknown {
  const value = v as { kind?: string } & Record<string, unknown>;
  switch (value.kind) {
    case 'numberValue':
    case 'stringValue':
    case 'boolValue':
      return value[value.kind];
    case 'structValue':
      return structJson(value['structValue']);
    case 'listValue':
      return ((value['listValue'] as { values?: unknown[] }).values ?? []).map(valueJson);
    default:
      return null;
  }
}

describe("the hot path's CheckResponse encoder", () => {
  test.each([
    ['an allow', CHECKOUT_WEB],
    ['a deny', CHECKOUT_BATCH],
  ])('%s decodes with proto-loader to what it encoded', async (_name, caller) => {
    const { engine } = await engineFor(EXAMPLE_POLICIES);
    const decision = await engine.decide(
      envoyCheckRequest({ principal: caller, headers: { 'x-gatehouse-role': 'x' } }),
    );
    const message = toCheckResponse(decision);
    const decoded = def.responseDeserialize(
      encodeCheckResponse(message),
    ) as CheckResponseMessage & { httpResponse?: string };
    delete decoded.httpResponse;
    expect(decoded).toEqual(
      JSON.parse(
        JSON.stringify({ ...message, status: message.status.code === 0 ? {} : message.status }),
      ),
    );
  });
});
