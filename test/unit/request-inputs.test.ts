import { Writer } from 'protobufjs';
import { decodeCheckRequest } from '../../src/envoy/codec';
import { normalizeCheckRequest, type NormalizedRequest } from '../../src/request/normalize';
import { readQuery } from '../../src/request/query';
import { checkRequestFromJson } from '../../src/envoy/proto-json';

/*
 * The request inputs policies read beyond host/method/path (query, body, context extensions,
 * destination labels, dynamic metadata), encoded by hand from the published field numbers
 * so the decoder is checked against the wire format itself rather than against our own protos.
 */

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const tag = (field: number, wire: number): number => (field << 3) | wire;

function message(build: (w: Writer) => void): Uint8Array {
  const w = Writer.create();
  build(w);
  return w.finish();
}
const sub = (w: Writer, field: number, bytes: Uint8Array): Writer =>
  w.uint32(tag(field, LEN)).bytes(bytes);
const text = (w: Writer, field: number, value: string): Writer =>
  w.uint32(tag(field, LEN)).string(value);

/** A map entry (1 key, 2 value); either may be left out, as a sender may for a default. */
function entry(key: string | undefined, value: string | Uint8Array | undefined): Uint8Array {
  return message((w) => {
    if (key !== undefined) text(w, 1, key);
    if (typeof value === 'string') text(w, 2, value);
    else if (value !== undefined) sub(w, 2, value);
  });
}

// google.protobuf.Value / Struct / ListValue
const nullValue = (): Uint8Array => message((w) => w.uint32(tag(1, VARINT)).int32(0));
const numberValue = (n: number): Uint8Array => message((w) => w.uint32(tag(2, I64)).double(n));
const stringValue = (s: string): Uint8Array => message((w) => text(w, 3, s));
const boolValue = (b: boolean): Uint8Array => message((w) => w.uint32(tag(4, VARINT)).bool(b));
const structValue = (s: Uint8Array): Uint8Array => message((w) => sub(w, 5, s));
const listValue = (values: Uint8Array[]): Uint8Array =>
  message((w) =>
    sub(
      w,
      6,
      message((l) => values.forEach((v) => sub(l, 1, v))),
    ),
  );
const struct = (fields: [string | undefined, Uint8Array | undefined][]): Uint8Array =>
  message((w) => fields.forEach(([k, v]) => sub(w, 1, entry(k, v))));

interface Spec {
  http?: (w: Writer) => void;
  attributes?: (w: Writer) => void;
  destination?: (w: Writer) => void;
}

/** A CheckRequest: attributes { destination, request { http } } plus whatever the spec adds. */
function checkRequest(spec: Spec = {}): Uint8Array {
  const http = message((w) => {
    text(w, 2, 'POST');
    text(w, 4, '/v1/x?a=1&b=2');
    text(w, 5, 'orders');
    spec.http?.(w);
  });
  const attributes = message((w) => {
    sub(
      w,
      2,
      message((d) => {
        text(d, 4, 'spiffe://shop.example/ns/orders/sa/orders');
        spec.destination?.(d);
      }),
    );
    sub(
      w,
      4,
      message((r) => sub(r, 2, http)),
    );
    spec.attributes?.(w);
  });
  return message((w) => sub(w, 1, attributes));
}

const metadataWith =
  (namespaces: [string | undefined, Uint8Array | undefined][]): ((w: Writer) => void) =>
  (w) =>
    sub(
      w,
      11,
      message((m) => namespaces.forEach(([k, v]) => sub(m, 1, entry(k, v)))),
    );

function normalized(bytes: Uint8Array): NormalizedRequest {
  const r = normalizeCheckRequest(decodeCheckRequest(bytes));
  if (!r.ok) throw new Error(r.reason);
  return r.request;
}

/** Own enumerable contents of a null-prototype object, for comparison with a literal. */
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

describe('request inputs from the wire', () => {
  test('without any of them: empty query, no body, empty frozen records', () => {
    const r = normalized(checkRequest({ http: (w) => text(w, 4, '/v1/x') }));
    expect(r.query).toBe('');
    expect(r.body).toBeUndefined();
    expect(r.bodyPartial).toBe(false);
    for (const record of [r.contextExtensions, r.destinationLabels, r.metadata]) {
      expect(Object.keys(record)).toEqual([]);
      expect(Object.isFrozen(record)).toBe(true);
      expect(Object.getPrototypeOf(record)).toBeNull();
    }
  });

  test('query: the raw text of :path after ?, without the fragment', () => {
    expect(normalized(checkRequest()).query).toBe('a=1&b=2');
    expect(
      normalized(checkRequest({ http: (w) => text(w, 4, '/v1/x?q=a%20b+c#frag?x=1') })).query,
    ).toBe('q=a%20b+c');
    expect(normalized(checkRequest({ http: (w) => text(w, 4, '/v1/x#frag?x=1') })).query).toBe('');
    expect(normalized(checkRequest({ http: (w) => text(w, 4, '/v1/x?') })).query).toBe('');
  });

  test('body (HttpRequest 11) is a string; bodyPartial follows x-envoy-auth-partial-body', () => {
    const r = normalized(
      checkRequest({
        http: (w) => {
          text(w, 11, '{"a":"é"}');
          sub(w, 3, entry('x-envoy-auth-partial-body', 'true'));
        },
      }),
    );
    expect(r.body).toBe('{"a":"é"}');
    expect(r.bodyPartial).toBe(true);
    const whole = normalized(
      checkRequest({
        http: (w) => {
          text(w, 11, 'x');
          sub(w, 3, entry('x-envoy-auth-partial-body', 'false'));
        },
      }),
    );
    expect(whole.bodyPartial).toBe(false);
  });

  test('raw_body (HttpRequest 12) stays bytes, non-UTF-8 included', () => {
    const raw = Uint8Array.from([0x00, 0xff, 0xfe, 0x41]);
    const r = normalized(checkRequest({ http: (w) => w.uint32(tag(12, LEN)).bytes(raw) }));
    expect(r.body).toBeInstanceOf(Uint8Array);
    expect([...(r.body as Uint8Array)]).toEqual([0x00, 0xff, 0xfe, 0x41]);
  });

  test('an empty body that was sent is "", not undefined', () => {
    // proto3 omits empty strings, but an explicit empty field on the wire is still a body.
    expect(normalized(checkRequest({ http: (w) => text(w, 11, '') })).body).toBe('');
  });

  test('context_extensions (AttributeContext 10) and destination labels (Peer 3)', () => {
    const r = normalized(
      checkRequest({
        attributes: (w) => {
          sub(w, 10, entry('region', 'eu'));
          sub(w, 10, entry('tier', 'gold'));
          sub(w, 10, entry('region', 'us')); // a repeated key: the last wins, as protobuf maps do
        },
        destination: (d) => {
          sub(d, 3, entry('topology.kubernetes.io/region', 'eu-west-1'));
          sub(
            d,
            1,
            message((a) =>
              sub(
                a,
                1,
                message((s) => text(s, 2, '10.0.0.1')),
              ),
            ),
          ); // address: skipped
        },
      }),
    );
    expect(plain(r.contextExtensions)).toEqual({ region: 'us', tier: 'gold' });
    expect(plain(r.destinationLabels)).toEqual({ 'topology.kubernetes.io/region': 'eu-west-1' });
    expect(Object.getPrototypeOf(r.contextExtensions)).toBeNull();
    expect(Object.getPrototypeOf(r.destinationLabels)).toBeNull();
  });

  test('map entries with a missing key or value read as the empty string', () => {
    const r = normalized(
      checkRequest({
        attributes: (w) => {
          sub(w, 10, entry(undefined, 'v'));
          sub(w, 10, entry('k', undefined));
        },
      }),
    );
    expect(plain(r.contextExtensions)).toEqual({ '': 'v', k: '' });
  });

  test('metadata_context: each filter namespace as JSON, nested structs and lists, every Value kind', () => {
    const claims = struct([
      ['tenant', stringValue('a')],
      ['n', numberValue(2.5)],
      ['admin', boolValue(false)],
      ['none', nullValue()],
      [
        'l',
        listValue([
          numberValue(1),
          stringValue('x'),
          boolValue(true),
          nullValue(),
          listValue([]),
          structValue(struct([['k', stringValue('v')]])),
        ]),
      ],
      ['missing', undefined],
    ]);
    const r = normalized(
      checkRequest({
        attributes: (w) => {
          metadataWith([
            ['envoy.filters.http.jwt_authn', struct([['claims', structValue(claims)]])],
            ['empty', undefined],
          ])(w);
          // typed_filter_metadata (Metadata 2) is skipped, as is route_metadata_context (13).
          sub(
            w,
            11,
            message((m) =>
              sub(
                m,
                2,
                entry(
                  'typed',
                  message((a) => text(a, 1, 'type.googleapis.com/x')),
                ),
              ),
            ),
          );
          sub(
            w,
            13,
            message((m) => sub(m, 1, entry('route', struct([['x', stringValue('y')]])))),
          );
          w.uint32(tag(99, VARINT)).uint32(7); // an unknown field
        },
      }),
    );
    expect(plain(r.metadata)).toEqual({
      'envoy.filters.http.jwt_authn': {
        claims: {
          tenant: 'a',
          n: 2.5,
          admin: false,
          none: null,
          l: [1, 'x', true, null, [], { k: 'v' }],
          missing: null,
        },
      },
      empty: {},
    });
    const jwt = r.metadata['envoy.filters.http.jwt_authn'] as Record<
      string,
      Record<string, unknown>
    >;
    expect(Object.getPrototypeOf(jwt)).toBeNull();
    expect(Object.getPrototypeOf(jwt['claims'])).toBeNull();
  });

  test('a Value with no kind is null; with several, the last one sent wins; unknown Value fields are skipped', () => {
    const several = message((w) => {
      text(w, 3, 'first');
      w.uint32(tag(4, VARINT)).bool(true);
      w.uint32(tag(7, LEN)).string('unknown');
    });
    const r = normalized(
      checkRequest({
        attributes: metadataWith([
          [
            'ns',
            struct([
              ['empty', message(() => undefined)],
              ['several', several],
            ]),
          ],
        ]),
      }),
    );
    expect(plain(r.metadata)).toEqual({ ns: { empty: null, several: true } });
  });

  test('__proto__ and constructor keys are ordinary keys everywhere, never prototypes', () => {
    const r = normalized(
      checkRequest({
        attributes: (w) => {
          sub(w, 10, entry('__proto__', 'x'));
          metadataWith([
            [
              '__proto__',
              struct([
                ['__proto__', structValue(struct([['polluted', boolValue(true)]]))],
                ['constructor', stringValue('c')],
              ]),
            ],
          ])(w);
        },
        destination: (d) => sub(d, 3, entry('__proto__', 'y')),
      }),
    );
    expect(Object.prototype.hasOwnProperty.call(r.contextExtensions, '__proto__')).toBe(true);
    expect(r.contextExtensions['__proto__']).toBe('x');
    expect(r.destinationLabels['__proto__']).toBe('y');
    expect(Object.prototype.hasOwnProperty.call(r.metadata, '__proto__')).toBe(true);
    const ns = r.metadata['__proto__'] as Record<string, unknown>;
    expect(Object.getPrototypeOf(ns)).toBeNull();
    expect(Object.getPrototypeOf(ns['__proto__'])).toBeNull();
    expect((ns['__proto__'] as Record<string, unknown>)['polluted']).toBe(true);
    expect(ns['constructor']).toBe('c');
    expect((r.metadata as Record<string, unknown>)['polluted']).toBeUndefined();
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  describe('nesting is bounded at 32 levels', () => {
    const nestedStructs = (levels: number): Uint8Array => {
      let s = struct([['leaf', stringValue('x')]]);
      for (let i = 1; i < levels; i++) s = struct([['a', structValue(s)]]);
      return s;
    };
    const nestedLists = (lists: number): Uint8Array => {
      let v = stringValue('x');
      for (let i = 0; i < lists; i++) v = listValue([v]);
      return struct([['l', v]]);
    };

    test('32 nested structs decode', () => {
      const r = normalized(checkRequest({ attributes: metadataWith([['ns', nestedStructs(32)]]) }));
      let node = r.metadata['ns'] as Record<string, unknown>;
      for (let i = 1; i < 32; i++) node = node['a'] as Record<string, unknown>;
      expect(node['leaf']).toBe('x');
    });

    test('33 nested structs throw', () => {
      expect(() =>
        decodeCheckRequest(checkRequest({ attributes: metadataWith([['ns', nestedStructs(33)]]) })),
      ).toThrow('metadata nests too deeply');
    });

    test('lists count as levels too: a struct holding 31 nested lists decodes, 32 throw', () => {
      expect(() =>
        decodeCheckRequest(checkRequest({ attributes: metadataWith([['ns', nestedLists(31)]]) })),
      ).not.toThrow();
      expect(() =>
        decodeCheckRequest(checkRequest({ attributes: metadataWith([['ns', nestedLists(32)]]) })),
      ).toThrow('metadata nests too deeply');
    });

    test('thousands of levels throw the bound, not a stack overflow', () => {
      expect(() =>
        decodeCheckRequest(
          checkRequest({ attributes: metadataWith([['ns', nestedStructs(5000)]]) }),
        ),
      ).toThrow('metadata nests too deeply');
    });
  });

  test.each([
    [
      'a truncated struct',
      (w: Writer) => w.uint32(tag(11, LEN)).bytes(struct([['k', stringValue('v')]]).subarray(0, 3)),
    ],
    [
      'a double cut short',
      (w: Writer) =>
        metadataWith([['ns', struct([['n', Uint8Array.from([tag(2, I64), 1, 2, 3])]])]])(w),
    ],
    [
      'a context extension entry longer than the message',
      (w: Writer) => w.uint32(tag(10, LEN)).uint32(2).uint32(tag(1, LEN)).uint32(100),
    ],
  ])('malformed input throws: %s', (_name, add) => {
    // Put the broken field last so its overrun runs off the end of the buffer.
    expect(() => decodeCheckRequest(checkRequest({ attributes: add }))).toThrow();
  });
});

describe('readQuery', () => {
  const read = (raw: string): ReadonlyMap<string, string> => {
    const q = readQuery(raw);
    if (!q.ok) throw new Error(q.reason);
    return q.value;
  };

  test.each([
    ['', []],
    [
      'a=1&b=2',
      [
        ['a', '1'],
        ['b', '2'],
      ],
    ],
    [
      'a=1&a=2&A=3',
      [
        ['a', '1'],
        ['A', '3'],
      ],
    ],
    [
      'q=a+b%20c&plus=%2B',
      [
        ['q', 'a b c'],
        ['plus', '+'],
      ],
    ],
    [
      'flag&x=&=v',
      [
        ['flag', ''],
        ['x', ''],
        ['', 'v'],
      ],
    ],
    [
      'a=1&&&b=2&',
      [
        ['a', '1'],
        ['b', '2'],
      ],
    ],
    ['k=v=w', [['k', 'v=w']]],
    ['n=%C3%A9t%C3%A9', [['n', 'été']]],
    [
      '__proto__=1&constructor=2',
      [
        ['__proto__', '1'],
        ['constructor', '2'],
      ],
    ],
  ])('%j', (raw, expected) => {
    const parsed = read(raw);
    expect(parsed).toBeInstanceOf(Map);
    expect([...parsed.entries()]).toEqual(expected);
  });

  test.each([['bad=%zz&ok=1'], ['ok=1&%E0%A4=x'], ['half=%E0%A4'], ['debug=1%'], ['a=%zz&a=2']])(
    'a pair that does not percent-decode refuses the whole query: %j',
    (raw) => {
      expect(readQuery(raw)).toEqual({
        ok: false,
        reason: expect.stringContaining('does not percent-decode'),
      });
    },
  );

  test("a leading '?' (from `??debug=1`) refuses the query: URLSearchParams drops it, URL keeps it", () => {
    expect(readQuery('?debug=1')).toEqual({
      ok: false,
      reason: expect.stringContaining("starts with '?'"),
    });
  });

  test('100 pairs are read; a 101st refuses the query rather than going unseen', () => {
    const pairs = Array.from({ length: 100 }, (_, i) => `p${i}=${i}`);
    expect(read(pairs.join('&')).get('p99')).toBe('99');
    expect(readQuery([...pairs, 'debug=1'].join('&'))).toEqual({
      ok: false,
      reason: expect.stringContaining('more than 100 pairs'),
    });
  });

  test('long names and values are read whole: a clipped value could equal a shorter one', () => {
    const parsed = read(`${'n'.repeat(2000)}=${'v'.repeat(2000)}`);
    expect([...parsed.keys()][0]).toHaveLength(2000);
    expect([...parsed.values()][0]).toHaveLength(2000);
  });
});

describe('request inputs from JSON (gatehouse check --input, policy tests)', () => {
  const json = {
    attributes: {
      contextExtensions: { region: 'eu' },
      destination: { labels: { 'topology.kubernetes.io/region': 'eu-west-1' } },
      metadataContext: {
        filterMetadata: {
          'envoy.filters.http.jwt_authn': {
            claims: { tenant: 'a', n: 2, l: [1, 'x', true, null] },
          },
        },
      },
      request: {
        http: {
          method: 'POST',
          path: '/v1/x?a=1&b=2',
          host: 'h',
          headers: { 'content-type': 'application/json' },
          body: '{"a":1}',
        },
      },
    },
  };

  test('come out exactly as the server decodes them', () => {
    const r = normalizeCheckRequest(checkRequestFromJson(json));
    if (!r.ok) throw new Error(r.reason);
    const req = r.request;
    expect(req.query).toBe('a=1&b=2');
    expect(readQuery(req.query)).toEqual({
      ok: true,
      value: new Map([
        ['a', '1'],
        ['b', '2'],
      ]),
    });
    expect(req.body).toBe('{"a":1}');
    expect(req.bodyPartial).toBe(false);
    expect(plain(req.contextExtensions)).toEqual({ region: 'eu' });
    expect(plain(req.destinationLabels)).toEqual({ 'topology.kubernetes.io/region': 'eu-west-1' });
    expect(plain(req.metadata)).toEqual({
      'envoy.filters.http.jwt_authn': { claims: { tenant: 'a', n: 2, l: [1, 'x', true, null] } },
    });
    for (const record of [
      req.contextExtensions,
      req.destinationLabels,
      req.metadata,
      req.metadata['envoy.filters.http.jwt_authn'],
    ]) {
      expect(Object.getPrototypeOf(record)).toBeNull();
    }
  });

  test('raw_body in JSON is base64 (the proto3 JSON form of bytes) and arrives as bytes', () => {
    const r = normalizeCheckRequest(
      checkRequestFromJson({
        attributes: {
          request: {
            http: {
              method: 'PUT',
              path: '/',
              host: 'h',
              rawBody: Buffer.from([0, 255]).toString('base64'),
            },
          },
        },
      }),
    );
    expect(r.ok && [...(r.request.body as Uint8Array)]).toEqual([0, 255]);
  });

  test('metadata keys named __proto__ in JSON stay keys', () => {
    const hostile = JSON.parse(
      '{"attributes":{"metadataContext":{"filterMetadata":{"ns":{"__proto__":{"polluted":true}}}},"request":{"http":{"method":"GET","path":"/","host":"h"}}}}',
    ) as unknown;
    const r = normalizeCheckRequest(checkRequestFromJson(hostile));
    if (!r.ok) throw new Error(r.reason);
    const ns = r.request.metadata['ns'] as Record<string, unknown>;
    expect(Object.prototype.hasOwnProperty.call(ns, '__proto__')).toBe(true);
    expect(ns['polluted']).toBeUndefined();
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  test('an unknown field is refused, naming its path and the fields there are', () => {
    expect(() =>
      checkRequestFromJson({ attributes: { source: { princpal: 'spiffe://shop.example/a' } } }),
    ).toThrow(
      /^CheckRequest\.attributes\.source\.princpal is not a field of AttributeContext\.Peer \(it has: .*principal.*\)$/,
    );
    expect(() => checkRequestFromJson({ atributes: {} })).toThrow(
      /^CheckRequest\.atributes is not a field of CheckRequest/,
    );
    expect(() =>
      checkRequestFromJson({ attributes: { request: { http: { methd: 'GET' } } } }),
    ).toThrow(/CheckRequest\.attributes\.request\.http\.methd is not a field/);
  });

  test('inherited property names are unknown fields, not a crash', () => {
    for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      const hostile = JSON.parse(`{"attributes":{"${name}":{}}}`) as unknown;
      expect(() => checkRequestFromJson(hostile)).toThrow(
        new RegExp(`CheckRequest\\.attributes\\.${name} is not a field`),
      );
    }
  });

  test('both proto3 JSON spellings of a field stay accepted, and map keys and Struct keys are free text', () => {
    const r = normalizeCheckRequest(
      checkRequestFromJson({
        attributes: {
          context_extensions: { anyKey: 'x' },
          request: { http: { method: 'GET', path: '/', host: 'h', headers: { 'x-any': '1' } } },
        },
      }),
    );
    expect(r.ok && plain(r.request.contextExtensions)).toEqual({ anyKey: 'x' });
  });
});
