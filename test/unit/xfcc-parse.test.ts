import { MAX_XFCC_LENGTH, nearestXfccElement, parseXfcc } from '../../src/identity/xfcc';

describe('x-forwarded-client-cert parsing', () => {
  test("Envoy's documented single-element example", () => {
    const header =
      'By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com';
    expect(parseXfcc(header)).toEqual({
      ok: true,
      value: [
        {
          by: ['http://frontend.lyft.com'],
          hash: '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688',
          subject: '/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client',
          uri: ['http://testclient.lyft.com'],
          dns: [],
        },
      ],
    });
  });

  test('two hops: the nearest proxy is the last element', () => {
    const header =
      'By=spiffe://td/ns/edge/sa/gw;Hash=aa;URI=spiffe://td/ns/far/sa/client,By=spiffe://td/ns/orders/sa/orders;Hash=bb;Subject="";URI=spiffe://td/ns/near/sa/caller';
    const all = parseXfcc(header);
    expect(all.ok && all.value.length).toBe(2);
    expect(nearestXfccElement(header)).toEqual({
      ok: true,
      value: {
        by: ['spiffe://td/ns/orders/sa/orders'],
        hash: 'bb',
        subject: '',
        uri: ['spiffe://td/ns/near/sa/caller'],
        dns: [],
      },
    });
  });

  test('quoted values keep commas, semicolons, equals and escaped quotes', () => {
    const r = nearestXfccElement('Subject="CN=a,O=b;c=\\"quoted\\" \\\\ end";URI=spiffe://td/x');
    expect(r).toMatchObject({
      ok: true,
      value: { subject: 'CN=a,O=b;c="quoted" \\ end', uri: ['spiffe://td/x'] },
    });
  });

  test('repeated URI, DNS and By pairs; URI= empty means none; keys are case-insensitive', () => {
    const r = nearestXfccElement(
      'by=spiffe://p/1;BY=spiffe://p/2;uri=spiffe://td/a;Uri=spiffe://td/b;DNS=a.example;dns=b.example;URI=',
    );
    expect(r).toEqual({
      ok: true,
      value: {
        by: ['spiffe://p/1', 'spiffe://p/2'],
        uri: ['spiffe://td/a', 'spiffe://td/b'],
        dns: ['a.example', 'b.example'],
      },
    });
    expect(nearestXfccElement('Hash=ab;URI=')).toEqual({
      ok: true,
      value: { by: [], hash: 'ab', uri: [], dns: [] },
    });
  });

  test('Cert and Chain stay URL-encoded; unknown keys are ignored; spaces around separators tolerated', () => {
    const cert = '"-----BEGIN%20CERTIFICATE-----%0AMIIB%2Fabc%3D%0A-----END%20CERTIFICATE-----%0A"';
    const r = nearestXfccElement(
      `Hash=ab; Cert=${cert}; Chain=${cert}; Future=thing ; URI=spiffe://td/x`,
    );
    expect(r).toMatchObject({
      ok: true,
      value: { cert: cert.slice(1, -1), chain: cert.slice(1, -1), uri: ['spiffe://td/x'] },
    });
  });

  test('Istio sidecar style', () => {
    expect(
      nearestXfccElement(
        'By=spiffe://cluster.local/ns/a/sa/b;Hash=abc;Subject="";URI=spiffe://cluster.local/ns/c/sa/d',
      ),
    ).toMatchObject({
      ok: true,
      value: { uri: ['spiffe://cluster.local/ns/c/sa/d'], subject: '' },
    });
  });

  test.each([
    ['', 'empty'],
    ['   ', 'empty'],
    ['URI="spiffe://td/x', 'unterminated'],
    ['URI=spiffe://td/x,', 'empty element'],
    ['URI=spiffe://td/x,,URI=spiffe://td/y', 'empty element'],
    [',URI=spiffe://td/x', 'empty element'],
    ['URI=spiffe://td/x;', 'empty pair'],
    ['URI=spiffe://td/x;;Hash=a', 'empty'],
    ['justtext', "has no '='"],
    ['=value', 'empty key'],
    ['Hash=a;Hash=b', 'duplicate hash'],
    ['Subject="a";Subject="b"', 'duplicate subject'],
    ['Subject="a"junk;URI=x', 'after a quoted value'],
    ['URI=ok,broken', "has no '='"],
  ])('invalid %j (%s)', (header, message) => {
    const r = parseXfcc(header);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toContain(message);
    expect(nearestXfccElement(header).ok).toBe(false);
  });

  test('oversized headers are refused without parsing', () => {
    const r = parseXfcc(`URI=spiffe://td/x;Hash=${'a'.repeat(MAX_XFCC_LENGTH)}`);
    expect(r).toEqual({ ok: false, error: `header is longer than ${MAX_XFCC_LENGTH} bytes` });
  });
});
