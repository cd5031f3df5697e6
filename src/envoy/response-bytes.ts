import type { CheckResponseMessage, HeaderOption } from '../respond/check-response';

/**
 * envoy.service.auth.v3.CheckResponse into exactly the bytes it needs, in two passes (sizes,
 * then bytes) over one Buffer: protobufjs 7's Writer queues an operation per field, copies
 * short strings a character at a time and its result was copied once more. Field order and
 * encoding are the Writer's (unset fields omitted, int32 as a varint, negatives in ten bytes);
 * strings are written as Buffer writes UTF-8, so a lone surrogate becomes U+FFFD, never bytes
 * that are not UTF-8.
 *
 * CheckResponse: 1 status, 2 denied_response, 3 ok_response. google.rpc.Status: 1 code,
 * 2 message. DeniedHttpResponse: 1 status (HttpStatus: 1 code), 2 headers, 3 body.
 * OkHttpResponse: 2 headers, 5 headers_to_remove, 6 response_headers_to_add.
 * HeaderValueOption: 1 header (HeaderValue: 1 key, 2 value), 3 append_action.
 */
export function checkResponseBytes(m: CheckResponseMessage): Buffer {
  const statusSize = statusBodySize(m);
  let size = 1 + varintSize(statusSize) + statusSize;
  let bodySize = 0;
  if (m.deniedResponse) {
    bodySize = deniedBodySize(m.deniedResponse);
    size += 1 + varintSize(bodySize) + bodySize;
  } else if (m.okResponse) {
    bodySize = okBodySize(m.okResponse);
    size += 1 + varintSize(bodySize) + bodySize;
  }
  const buf = Buffer.allocUnsafe(size);
  let pos = writeTag(buf, 0, 1);
  pos = writeVarint(buf, pos, statusSize);
  if (m.status.code !== 0) pos = writeInt32Field(buf, pos, 1, m.status.code);
  if (m.status.message !== '') pos = writeStringField(buf, pos, 2, m.status.message);
  if (m.deniedResponse) {
    const d = m.deniedResponse;
    pos = writeVarint(buf, writeTag(buf, pos, 2), bodySize);
    pos = writeVarint(buf, writeTag(buf, pos, 1), int32FieldSize(d.status.code));
    pos = writeInt32Field(buf, pos, 1, d.status.code);
    for (const h of d.headers) pos = writeHeaderOption(buf, pos, 2, h);
    if (d.body !== '') pos = writeStringField(buf, pos, 3, d.body);
  } else if (m.okResponse) {
    const ok = m.okResponse;
    pos = writeVarint(buf, writeTag(buf, pos, 3), bodySize);
    for (const h of ok.headers) pos = writeHeaderOption(buf, pos, 2, h);
    for (const name of ok.headersToRemove) pos = writeStringField(buf, pos, 5, name);
    for (const h of ok.responseHeadersToAdd) pos = writeHeaderOption(buf, pos, 6, h);
  }
  if (pos !== size) throw new Error(`CheckResponse encoded to ${pos} bytes, sized ${size}`);
  return buf;
}

function statusBodySize(m: CheckResponseMessage): number {
  return (
    (m.status.code !== 0 ? int32FieldSize(m.status.code) : 0) +
    (m.status.message !== '' ? stringFieldSize(m.status.message) : 0)
  );
}

function deniedBodySize(d: NonNullable<CheckResponseMessage['deniedResponse']>): number {
  const httpStatus = int32FieldSize(d.status.code);
  let size = 1 + varintSize(httpStatus) + httpStatus;
  for (const h of d.headers) size += headerOptionSize(h);
  if (d.body !== '') size += stringFieldSize(d.body);
  return size;
}

function okBodySize(ok: NonNullable<CheckResponseMessage['okResponse']>): number {
  let size = 0;
  for (const h of ok.headers) size += headerOptionSize(h);
  for (const name of ok.headersToRemove) size += stringFieldSize(name);
  for (const h of ok.responseHeadersToAdd) size += headerOptionSize(h);
  return size;
}

/** The HeaderValue message inside a HeaderValueOption. */
function headerValueSize(h: HeaderOption): number {
  return stringFieldSize(h.header.key) + stringFieldSize(h.header.value);
}

/** Tag, length and body of a HeaderValueOption field. */
function headerOptionSize(h: HeaderOption): number {
  const inner = optionBodySize(h, headerValueSize(h));
  return 1 + varintSize(inner) + inner;
}

function optionBodySize(h: HeaderOption, valueSize: number): number {
  return (
    1 +
    varintSize(valueSize) +
    valueSize +
    (h.appendAction !== 0 ? int32FieldSize(h.appendAction) : 0)
  );
}

function writeHeaderOption(buf: Buffer, at: number, field: number, h: HeaderOption): number {
  const valueSize = headerValueSize(h);
  let pos = writeVarint(buf, writeTag(buf, at, field), optionBodySize(h, valueSize));
  pos = writeVarint(buf, writeTag(buf, pos, 1), valueSize);
  pos = writeStringField(buf, pos, 1, h.header.key);
  pos = writeStringField(buf, pos, 2, h.header.value);
  if (h.appendAction !== 0) pos = writeInt32Field(buf, pos, 3, h.appendAction);
  return pos;
}

/** Every field number here is below 16, so a tag is one byte. */
function writeTag(buf: Buffer, pos: number, field: number): number {
  buf[pos] = (field << 3) | 2;
  return pos + 1;
}

function stringFieldSize(s: string): number {
  const length = Buffer.byteLength(s, 'utf8');
  return 1 + varintSize(length) + length;
}

/** Node's Buffer method under `write(s, offset, 'utf8')`, without its argument checks; untyped in @types/node. */
type Utf8Writable = Buffer & { utf8Write(s: string, offset: number): number };

function writeStringField(buf: Buffer, at: number, field: number, s: string): number {
  const pos = writeVarint(buf, writeTag(buf, at, field), Buffer.byteLength(s, 'utf8'));
  return pos + (buf as Utf8Writable).utf8Write(s, pos);
}

/** protobuf int32: a negative value is sign-extended to 64 bits, ten bytes on the wire. */
function int32FieldSize(value: number): number {
  return 1 + (value < 0 ? 10 : varintSize(value));
}

function writeInt32Field(buf: Buffer, at: number, field: number, value: number): number {
  buf[at] = field << 3;
  let pos = at + 1;
  if (value >= 0) return writeVarint(buf, pos, value);
  // Low 32 bits as two's complement, then the sign extension: 0xff.. in the high bits.
  let low = value >>> 0;
  for (let i = 0; i < 4; i++) {
    buf[pos++] = (low & 0x7f) | 0x80;
    low >>>= 7;
  }
  buf[pos++] = (low & 0x0f) | 0x70 | 0x80;
  for (let i = 0; i < 4; i++) buf[pos++] = 0xff;
  buf[pos++] = 0x01;
  return pos;
}

function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** An unsigned 32-bit varint. */
function writeVarint(buf: Buffer, at: number, value: number): number {
  let pos = at;
  let v = value >>> 0;
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}
