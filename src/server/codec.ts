import { Reader, Writer } from 'protobufjs';
import type { CheckResponseMessage, HeaderOption } from '../respond/check-response';

/**
 * The hot path's own CheckRequest decoder and CheckResponse encoder, on protobufjs's Reader
 * and Writer, from the published field numbers (protos/ documents them). proto-loader's
 * generic path builds every field into objects and converts them again; this reads only what
 * the pipeline uses and skips the rest, producing the same camelCase shape. Malformed input
 * throws, which the server turns into a denial.
 */

type Obj = Record<string, unknown>;

/** envoy.service.auth.v3.CheckRequest: 1 attributes. */
export function decodeCheckRequest(bytes: Uint8Array): Obj {
  const r = Reader.create(bytes);
  const out: Obj = {};
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag === ((1 << 3) | 2)) out['attributes'] = decodeAttributes(r, r.uint32());
    else r.skipType(tag & 7);
  }
  return out;
}

/** AttributeContext: 1 source, 2 destination (Peer), 4 request. */
function decodeAttributes(r: Reader, length: number): Obj {
  const end = r.pos + length;
  const out: Obj = {};
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag) {
      case (1 << 3) | 2:
        out['source'] = decodePeer(r, r.uint32());
        break;
      case (2 << 3) | 2:
        out['destination'] = decodePeer(r, r.uint32());
        break;
      case (4 << 3) | 2:
        out['request'] = decodeRequest(r, r.uint32());
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  return out;
}

/** Peer: 4 principal, 5 certificate. */
function decodePeer(r: Reader, length: number): Obj {
  const end = r.pos + length;
  const out: Obj = {};
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag === ((4 << 3) | 2)) out['principal'] = r.string();
    else if (tag === ((5 << 3) | 2)) out['certificate'] = r.string();
    else r.skipType(tag & 7);
  }
  return out;
}

/** Request: 2 http. */
function decodeRequest(r: Reader, length: number): Obj {
  const end = r.pos + length;
  const out: Obj = {};
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag === ((2 << 3) | 2)) out['http'] = decodeHttp(r, r.uint32());
    else r.skipType(tag & 7);
  }
  return out;
}

/**
 * HttpRequest: 2 method, 3 headers (map), 4 path, 5 host, 13 header_map. Envoy sends
 * `header_map` instead of `headers` when `encode_raw_headers: true`: one HeaderValue per
 * header line, unmerged; it is folded into the same record (keys lower-cased, repeated
 * headers joined with ',' as Envoy joins them in `headers`), so nothing downstream differs.
 */
function decodeHttp(r: Reader, length: number): Obj {
  const end = r.pos + length;
  const out: Obj = {};
  let headers: Record<string, string> | undefined;
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag) {
      case (2 << 3) | 2:
        out['method'] = r.string();
        break;
      case (3 << 3) | 2: {
        headers ??= Object.create(null) as Record<string, string>;
        const entryEnd = r.uint32() + r.pos;
        let key = '';
        let value = '';
        while (r.pos < entryEnd) {
          const t = r.uint32();
          if (t === ((1 << 3) | 2)) key = r.string();
          else if (t === ((2 << 3) | 2)) value = r.string();
          else r.skipType(t & 7);
        }
        headers[key] = value;
        break;
      }
      case (4 << 3) | 2:
        out['path'] = r.string();
        break;
      case (5 << 3) | 2:
        out['host'] = r.string();
        break;
      case (13 << 3) | 2:
        headers ??= Object.create(null) as Record<string, string>;
        decodeHeaderMap(r, r.uint32(), headers);
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  if (headers) out['headers'] = headers;
  return out;
}

/** HeaderMap: 1 repeated HeaderValue (1 key, 2 value, 3 raw_value bytes). */
function decodeHeaderMap(r: Reader, length: number, headers: Record<string, string>): void {
  const end = r.pos + length;
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag !== ((1 << 3) | 2)) {
      r.skipType(tag & 7);
      continue;
    }
    const entryEnd = r.uint32() + r.pos;
    let key = '';
    let value = '';
    while (r.pos < entryEnd) {
      const t = r.uint32();
      if (t === ((1 << 3) | 2)) key = r.string().toLowerCase();
      // raw_value wins: Envoy sets only it in header_map; non-UTF-8 bytes become U+FFFD.
      else if (t === ((3 << 3) | 2) || (t === ((2 << 3) | 2) && value === '')) value = r.string();
      else r.skipType(t & 7);
    }
    const previous = headers[key];
    headers[key] = previous === undefined ? value : `${previous},${value}`;
  }
}

/** envoy.service.auth.v3.CheckResponse: 1 status, 2 denied_response, 3 ok_response. */
export function encodeCheckResponse(m: CheckResponseMessage): Buffer {
  const w = Writer.create();
  // google.rpc.Status: 1 code, 2 message
  w.uint32((1 << 3) | 2).fork();
  if (m.status.code !== 0) w.uint32((1 << 3) | 0).int32(m.status.code);
  if (m.status.message !== '') w.uint32((2 << 3) | 2).string(m.status.message);
  w.ldelim();
  if (m.deniedResponse) {
    const d = m.deniedResponse;
    w.uint32((2 << 3) | 2).fork();
    w.uint32((1 << 3) | 2).fork().uint32((1 << 3) | 0).int32(d.status.code).ldelim(); // HttpStatus.code
    for (const h of d.headers) writeHeaderOption(w, 2, h);
    if (d.body !== '') w.uint32((3 << 3) | 2).string(d.body);
    w.ldelim();
  } else if (m.okResponse) {
    const ok = m.okResponse;
    w.uint32((3 << 3) | 2).fork();
    for (const h of ok.headers) writeHeaderOption(w, 2, h);
    for (const name of ok.headersToRemove) w.uint32((5 << 3) | 2).string(name);
    for (const h of ok.responseHeadersToAdd) writeHeaderOption(w, 6, h);
    w.ldelim();
  }
  return Buffer.from(w.finish());
}

/** HeaderValueOption: 1 header (HeaderValue: 1 key, 2 value), 3 append_action; `append` (2) stays unset. */
function writeHeaderOption(w: Writer, field: number, h: HeaderOption): void {
  w.uint32((field << 3) | 2).fork();
  w.uint32((1 << 3) | 2).fork().uint32((1 << 3) | 2).string(h.header.key).uint32((2 << 3) | 2).string(h.header.value).ldelim();
  if (h.appendAction !== 0) w.uint32((3 << 3) | 0).int32(h.appendAction);
  w.ldelim();
}
