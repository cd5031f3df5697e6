/**
 * Header names as policies write them (`per: header:…`, `regionFrom: header:…`, refused
 * `headers:`): lower-case, since Envoy hands Gatehouse lower-case keys, so any other spelling
 * could never match a request.
 */
export function isHeaderName(name: string): boolean {
  if (name.length === 0 || name.length > 128) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const ok =
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2d ||
      c === 0x5f ||
      c === 0x2e;
    if (!ok) return false;
  }
  return true;
}
