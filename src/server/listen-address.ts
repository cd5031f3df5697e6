import { isIP, isIPv6 } from 'node:net';

/**
 * A listen address as operators write it: `0.0.0.0`, `::`, `[::]`, `::1`, `[fd00::1]` or a
 * host name. Node's `listen()` wants IPv6 literals bare, the
 * form kept here; every listener, gRPC included, listens through it.
 */
export function parseListenAddress(value: string): string {
  const text = value.trim();
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  if (bare.length === 0 || bare.length > 253)
    throw new Error(`listen address '${value.slice(0, 64)}' is empty or too long`);
  if (bare !== text && !isIPv6(bare))
    throw new Error(`listen address '${value.slice(0, 64)}': only IPv6 addresses go in brackets`);
  if (isIP(bare) !== 0) return bare;
  if (bare !== text || bare.includes(':'))
    throw new Error(
      `listen address '${value.slice(0, 64)}' is not an IPv4 or IPv6 address (a port goes in --grpc-port, --http-port, --admin-port)`,
    );
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(bare))
    throw new Error(`listen address '${value.slice(0, 64)}' is not an address or host name`);
  return bare;
}

/** The host node's listen() takes (node:http, and the gRPC port's own listener): IPv6 literals without brackets. */
export function httpListenHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
