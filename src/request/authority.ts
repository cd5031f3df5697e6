/**
 * The port of an `:authority`. Hosts are matched without their port, but a port that is not
 * a port (`payments:abc`, `payments:`, `a:b:c`) means the sender and an upstream could read
 * the authority differently, so it is refused rather than dropped.
 */
export function authorityPortError(raw: string): string | undefined {
  let portStart: number;
  if (raw.charCodeAt(0) === 0x5b /* [ */) {
    const close = raw.indexOf(']');
    if (close === -1) return 'request host has an unclosed IPv6 literal';
    if (close === raw.length - 1) return undefined;
    if (raw.charCodeAt(close + 1) !== 0x3a /* : */)
      return 'request host has text after its IPv6 literal';
    portStart = close + 2;
  } else {
    const colon = raw.indexOf(':');
    if (colon === -1) return undefined;
    if (raw.indexOf(':', colon + 1) !== -1)
      return "request host has more than one ':' (an IPv6 literal must be in brackets)";
    portStart = colon + 1;
  }
  const digits = raw.length - portStart;
  if (digits === 0 || digits > 5) return 'request host has a malformed port';
  let port = 0;
  for (let i = portStart; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return 'request host has a malformed port';
    port = port * 10 + (c - 0x30);
  }
  return port === 0 || port > 65535 ? 'request host port is out of range' : undefined;
}
