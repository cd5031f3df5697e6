import { Reader } from 'protobufjs';
import type { CheckResponseMessage } from '../respond/check-response';
import type { CheckInput } from './check-input';
import { checkResponseBytes } from './response-bytes';

/**
 * The hot path's own CheckRequest decoder and CheckResponse encoder, on protobufjs's Reader
 * and Writer, from the published field numbers (protos/ documents them). proto-loader's
 * generic path builds every field into objects and converts them again; this reads only what
 * the pipeline uses and skips the rest, producing the same camelCase shape (except that
 * google.protobuf.Struct arrives in its JSON form, see decodeMetadata). Maps come out as
 * null-prototype objects, and only fields present on the wire allocate anything. Malformed
 * input throws, which the server turns into a denial.
 */

type Obj = Record<string, unknown>;

/**
 * protobufjs 7's Buffer reader clamps a string that runs past the message to what is there,
 * so a truncated CheckRequest would decode as a shorter one; here an overrun throws, as every
 * other read does.
 */
class StrictReader extends Reader {
  override string(): string {
    const start = this.stringStart();
    return (this.buf as Utf8Sliceable).utf8Slice(start, this.pos);
  }

  /**
   * A header name in lower case. Envoy's are lower case already: the bytes are looked at before
   * a string exists, so only a name holding A-Z pays for a second, lower-cased copy.
   */
  headerName(): string {
    const start = this.stringStart();
    const end = this.pos;
    const buf = this.buf;
    const name = (buf as Utf8Sliceable).utf8Slice(start, end);
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      if (c >= 0x41 && c <= 0x5a) return name.toLowerCase();
    }
    return name;
  }

  /** Reads a string's length, checks it against what is left, moves past it; returns where it starts. */
  private stringStart(): number {
    const length = this.uint32();
    const start = this.pos;
    if (start + length > this.len)
      throw new RangeError(
        `string of ${length} bytes runs past the message (${this.len - start} left)`,
      );
    this.pos = start + length;
    return start;
  }
}

/** Node's Buffer method under `toString('utf8', start, end)`, without its argument checks; untyped in @types/node. */
type Utf8Sliceable = Uint8Array & { utf8Slice(start: number, end: number): string };

/** envoy.service.auth.v3.CheckRequest: 1 attributes. */
export function decodeCheckRequest(bytes: Uint8Array): CheckInput {
  const r = new StrictReader(
    Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
  );
  const out: { attributes?: Obj } = {};
  while (seekField(r, r.len, (1 << 3) | 2)) out['attributes'] = decodeAttributes(r, r.uint32());
  return out;
}

/**
 * Skips every field but `tag` up to `end`. True with the reader just past `tag` (a later
 * occurrence of it is found by the next call), false once `end` is reached. For the messages
 * of which only one field is read.
 */
function seekField(r: Reader, end: number, tag: number): boolean {
  while (r.pos < end) {
    const t = r.uint32();
    if (t === tag) return true;
    r.skipType(t & 7);
  }
  return false;
}

/**
 * AttributeContext: 1 source, 2 destination (Peer), 4 request, 10 context_extensions,
 * 11 metadata_context.
 */
function decodeAttributes(r: Reader, length: number): Obj {
  const end = r.pos + length;
  const out: Obj = {};
  let extensions: Record<string, string> | undefined;
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
      case (10 << 3) | 2:
        extensions ??= Object.create(null) as Record<string, string>;
        readStringEntry(r, extensions);
        break;
      case (11 << 3) | 2:
        out['metadataContext'] = decodeMetadata(
          r,
          r.uint32(),
          out['metadataContext'] as Obj | undefined,
        );
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  if (extensions) out['contextExtensions'] = extensions;
  return out;
}

/** Peer: 3 labels (map), 4 principal, 5 certificate. */
function decodePeer(r: Reader, length: number): Obj {
  const end = r.pos + length;
  const out: Obj = {};
  let labels: Record<string, string> | undefined;
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag === ((4 << 3) | 2)) out['principal'] = r.string();
    else if (tag === ((5 << 3) | 2)) out['certificate'] = r.string();
    else if (tag === ((3 << 3) | 2))
      readStringEntry(r, (labels ??= Object.create(null) as Record<string, string>));
    else r.skipType(tag & 7);
  }
  if (labels) out['labels'] = labels;
  return out;
}

/**
 * One map<string, string> entry (1 key, 2 value) into `into`, whose prototype is null so a
 * key such as `__proto__` is only ever a key. An absent key or value is '' (proto3 default);
 * a repeated key keeps the last value, as protobuf's own map decoding does. For `headers`, names
 * are case-insensitive and every stage looks them up in lower case, so a sender's `X-Api-Key`
 * is lower-cased, and two spellings of one name are joined with ',' as Envoy joins repeated lines.
 */
function readStringEntry(r: Reader, into: Record<string, string>, headers = false): void {
  const entryEnd = r.uint32() + r.pos;
  let key = '';
  let value = '';
  while (r.pos < entryEnd) {
    const t = r.uint32();
    if (t === ((1 << 3) | 2)) key = headers ? (r as StrictReader).headerName() : r.string();
    else if (t === ((2 << 3) | 2)) value = r.string();
    else r.skipType(t & 7);
  }
  const previous = headers ? into[key] : undefined;
  into[key] = previous === undefined ? value : `${previous},${value}`;
}

/** Past this many nested Struct/ListValue levels metadata is refused: recursion is bounded by us, not by the stack. */
export const MAX_METADATA_DEPTH = 32;

/**
 * envoy.config.core.v3.Metadata: 1 filter_metadata (map<string, Struct>); 2
 * typed_filter_metadata (Any) is skipped. Unlike proto-loader, each Struct comes out in its
 * proto3 JSON form (plain objects, arrays, numbers, strings, booleans, null), the form
 * policies read and `gatehouse check --input` accepts, so nothing converts it twice.
 */
function decodeMetadata(r: Reader, length: number, previous: Obj | undefined): Obj {
  const end = r.pos + length;
  // A message field sent twice merges (protobuf's rule); for a map that means the union of entries.
  let filterMetadata = previous?.['filterMetadata'] as Record<string, unknown> | undefined;
  while (seekField(r, end, (1 << 3) | 2)) {
    filterMetadata ??= Object.create(null) as Record<string, unknown>;
    const entryEnd = r.uint32() + r.pos;
    let key = '';
    let value: Record<string, unknown> | undefined;
    while (r.pos < entryEnd) {
      const t = r.uint32();
      if (t === ((1 << 3) | 2)) key = r.string();
      else if (t === ((2 << 3) | 2)) value = decodeStruct(r, r.uint32(), 1);
      else r.skipType(t & 7);
    }
    filterMetadata[key] = value ?? (Object.create(null) as Record<string, unknown>);
  }
  return filterMetadata ? { filterMetadata } : {};
}

/** google.protobuf.Struct: 1 fields (map<string, Value>), as a null-prototype object. */
function decodeStruct(r: Reader, length: number, depth: number): Record<string, unknown> {
  if (depth > MAX_METADATA_DEPTH) throw new Error('metadata nests too deeply');
  const end = r.pos + length;
  const out = Object.create(null) as Record<string, unknown>;
  while (seekField(r, end, (1 << 3) | 2)) {
    const entryEnd = r.uint32() + r.pos;
    let key = '';
    let value: unknown = null;
    while (r.pos < entryEnd) {
      const t = r.uint32();
      if (t === ((1 << 3) | 2)) key = r.string();
      else if (t === ((2 << 3) | 2)) value = decodeValue(r, r.uint32(), depth);
      else r.skipType(t & 7);
    }
    out[key] = value;
  }
  return out;
}

/**
 * google.protobuf.Value, oneof kind: 1 null_value, 2 number_value (double), 3 string_value,
 * 4 bool_value, 5 struct_value, 6 list_value. A Value with no kind set reads as null; if
 * several are sent the last wins, as for any protobuf oneof.
 */
function decodeValue(r: Reader, length: number, depth: number): unknown {
  const end = r.pos + length;
  let value: unknown = null;
  while (r.pos < end) {
    const tag = r.uint32();
    switch (tag) {
      case (1 << 3) | 0:
        r.int32();
        value = null;
        break;
      case (2 << 3) | 1:
        value = r.double();
        break;
      case (3 << 3) | 2:
        value = r.string();
        break;
      case (4 << 3) | 0:
        value = r.bool();
        break;
      case (5 << 3) | 2:
        value = decodeStruct(r, r.uint32(), depth + 1);
        break;
      case (6 << 3) | 2:
        value = decodeList(r, r.uint32(), depth + 1);
        break;
      default:
        r.skipType(tag & 7);
    }
  }
  return value;
}

/** google.protobuf.ListValue: 1 repeated Value. */
function decodeList(r: Reader, length: number, depth: number): unknown[] {
  if (depth > MAX_METADATA_DEPTH) throw new Error('metadata nests too deeply');
  const end = r.pos + length;
  const out: unknown[] = [];
  while (seekField(r, end, (1 << 3) | 2)) out.push(decodeValue(r, r.uint32(), depth));
  return out;
}

/** Request: 2 http. */
function decodeRequest(r: Reader, length: number): Obj {
  const end = r.pos + length;
  const out: Obj = {};
  while (seekField(r, end, (2 << 3) | 2)) out['http'] = decodeHttp(r, r.uint32());
  return out;
}

/**
 * HttpRequest: 2 method, 3 headers (map), 4 path, 5 host, 11 body, 12 raw_body, 13 header_map.
 * `raw_body` stays bytes (a view of the message buffer, not a copy). Envoy sends
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
      case (3 << 3) | 2:
        readStringEntry(r, (headers ??= Object.create(null) as Record<string, string>), true);
        break;
      case (4 << 3) | 2:
        out['path'] = r.string();
        break;
      case (5 << 3) | 2:
        out['host'] = r.string();
        break;
      case (11 << 3) | 2:
        out['body'] = r.string();
        break;
      case (12 << 3) | 2:
        out['rawBody'] = r.bytes();
        break;
      case (13 << 3) | 2: {
        headers ??= Object.create(null) as Record<string, string>;
        const repeated = decodeHeaderMap(r, r.uint32(), headers);
        if (repeated !== undefined) out['repeatedCredentialHeader'] = repeated;
        break;
      }
      default:
        r.skipType(tag & 7);
    }
  }
  if (headers) out['headers'] = headers;
  return out;
}

/** Credential headers whose repetition a first-line reader and a joined-value reader see differently. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'x-forwarded-client-cert']);

/**
 * HeaderMap: 1 repeated HeaderValue (1 key, 2 value, 3 raw_value bytes). Returns the name of a
 * credential header that came on more than one line, for normalisation to refuse.
 */
function decodeHeaderMap(
  r: Reader,
  length: number,
  headers: Record<string, string>,
): string | undefined {
  let repeatedCredential: string | undefined;
  const end = r.pos + length;
  while (seekField(r, end, (1 << 3) | 2)) {
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
    if (previous !== undefined && CREDENTIAL_HEADERS.has(key)) repeatedCredential = key;
    headers[key] = previous === undefined ? value : `${previous},${value}`;
  }
  return repeatedCredential;
}

/** envoy.service.auth.v3.CheckResponse: 1 status, 2 denied_response, 3 ok_response. */
export function encodeCheckResponse(m: CheckResponseMessage): Buffer {
  return checkResponseBytes(m);
}
