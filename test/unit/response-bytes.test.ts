import { Writer } from 'protobufjs';
import { encodeCheckResponse } from '../../src/envoy/codec';
import { loadProtos } from '../../src/server/protos';
import type { CheckResponseMessage, HeaderOption } from '../../src/respond/check-response';

const def = loadProtos().authorization['Check']!;

/**
 * The reference: the encoder the hot path had on protobufjs's Writer. Envoy has read its bytes
 * in every release so far, so the new one must write exactly these (the generic serializer
 * differs: it writes default values that are present, such as `code: 0`).
 */
function writerBytes(m: CheckResponseMessage): Buffer {
  const w = Writer.create();
  w.uint32((1 << 3) | 2).fork();
  if (m.status.code !== 0) w.uint32((1 << 3) | 0).int32(m.status.code);
  if (m.status.message !== '') w.uint32((2 << 3) | 2).string(m.status.message);
  w.ldelim();
  if (m.deniedResponse) {
    const d = m.deniedResponse;
    w.uint32((2 << 3) | 2).fork();
    w.uint32((1 << 3) | 2)
      .fork()
      .uint32((1 << 3) | 0)
      .int32(d.status.code)
      .ldelim();
    for (const h of d.headers) writerOption(w, 2, h);
    if (d.body !== '') w.uint32((3 << 3) | 2).string(d.body);
    w.ldelim();
  } else if (m.okResponse) {
    const ok = m.okResponse;
    w.uint32((3 << 3) | 2).fork();
    for (const h of ok.headers) writerOption(w, 2, h);
    for (const name of ok.headersToRemove) w.uint32((5 << 3) | 2).string(name);
    for (const h of ok.responseHeadersToAdd) writerOption(w, 6, h);
    w.ldelim();
  }
  return Buffer.from(w.finish());
}

function writerOption(w: Writer, field: number, h: HeaderOption): void {
  w.uint32((field << 3) | 2).fork();
  w.uint32((1 << 3) | 2)
    .fork()
    .uint32((1 << 3) | 2)
    .string(h.header.key)
    .uint32((2 << 3) | 2)
    .string(h.header.value)
    .ldelim();
  if (h.appendAction !== 0) w.uint32((3 << 3) | 0).int32(h.appendAction);
  w.ldelim();
}

const option = (key: string, value: string, appendAction = 2): HeaderOption => ({
  header: { key, value },
  appendAction,
});

const long = (n: number, unit = 'a'): string => unit.repeat(n);

const MESSAGES: [string, CheckResponseMessage][] = [
  [
    'an allow',
    {
      status: { code: 0, message: '' },
      okResponse: {
        headers: [
          option('x-gatehouse-decision', '0b6f4a8e-3c1d-4f5e-9a7b-2d8c6e1f0a3b'),
          option('x-gatehouse-caller', 'spiffe://shop.example/ns/frontend/sa/web'),
        ],
        headersToRemove: ['x-gatehouse-role', 'authorization'],
        responseHeadersToAdd: [option('ratelimit-limit', '10'), option('ratelimit-remaining', '9')],
      },
    },
  ],
  [
    'an allow with nothing to add',
    {
      status: { code: 0, message: '' },
      okResponse: { headers: [], headersToRemove: [], responseHeadersToAdd: [] },
    },
  ],
  [
    'a deny',
    {
      status: { code: 7, message: 'caller spiffe://x/y is not allowed by policy orders' },
      deniedResponse: {
        status: { code: 403 },
        headers: [option('content-type', 'application/json'), option('x-gatehouse-decision', 'id')],
        body: '{"error":"forbidden","reason":"r","decision_id":"id"}',
      },
    },
  ],
  [
    'a deny without body, headers or message',
    {
      status: { code: 16, message: '' },
      deniedResponse: { status: { code: 401 }, headers: [], body: '' },
    },
  ],
  [
    'lengths of two and three varint bytes, non-ASCII text',
    {
      status: { code: 8, message: `rate limited ${long(200, 'é')}` },
      deniedResponse: {
        status: { code: 429 },
        headers: [option('retry-after', long(130)), option('x-note', 'naïve ☃ 😀', 0)],
        body: long(20_000, '✓'),
      },
    },
  ],
  [
    'a negative code and action (ten-byte varints)',
    {
      status: { code: -1, message: 'm' },
      okResponse: {
        headers: [option('k', 'v', -2147483648)],
        headersToRemove: [''],
        responseHeadersToAdd: [option('', '', 1)],
      },
    },
  ],
  ['only a status', { status: { code: 2147483647, message: long(16_384) } }],
];

describe('the CheckResponse encoder', () => {
  test.each(MESSAGES)('%s: the same bytes as the Writer-based encoder', (_name, m) => {
    expect(encodeCheckResponse(m).toString('hex')).toBe(writerBytes(m).toString('hex'));
  });

  // Negative enum values and empty repeated strings have no JSON form to compare; the bytes above cover them.
  const comparable = MESSAGES.filter(([name]) => !name.startsWith('a negative'));
  test.each(comparable)('%s: proto-loader decodes it to what was encoded', (_name, m) => {
    const decoded = def.responseDeserialize(encodeCheckResponse(m)) as Record<string, unknown>;
    delete decoded['httpResponse'];
    const expected = JSON.parse(JSON.stringify(m)) as Record<string, unknown>;
    expect(JSON.parse(JSON.stringify(decoded))).toEqual(stripDefaults(expected));
  });

  test('a lone surrogate (text clipped mid-pair) is written as U+FFFD, which is UTF-8', () => {
    const message = `path ${'😀'.repeat(3).slice(0, 5)}`;
    const bytes = encodeCheckResponse({ status: { code: 7, message } });
    expect(bytes.includes(Buffer.from([0xef, 0xbf, 0xbd]))).toBe(true);
    expect(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(4))).toContain('\ufffd');
    const decoded = def.responseDeserialize(bytes) as CheckResponseMessage;
    expect(decoded.status.message).toBe(`path 😀😀\ufffd`);
  });
});

/** What proto-loader gives back: proto3 leaves out zero numbers, empty strings and empty lists. */
function stripDefaults(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(stripDefaults);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === 0 || v === '' || (Array.isArray(v) && v.length === 0)) continue;
    out[k] = stripDefaults(v);
  }
  return out;
}
