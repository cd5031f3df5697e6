import { InvalidArgumentError } from 'commander';
import { parseListenAddress } from '../server/listen-address';

export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535)
    throw new InvalidArgumentError('must be a port number from 0 to 65535');
  return n;
}

/** A commander parser for a whole number in [min, max]. */
export function intInRange(min: number, max: number, what: string): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max)
      throw new InvalidArgumentError(`must be ${what} from ${min} to ${max}`);
    return n;
  };
}

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** Repeatable flag; the environment twin may hold a comma-separated list. */
export function collectList(value: string, previous: string[] | undefined): string[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  return [...(previous ?? []), ...items];
}

/** Trust domain names as the SPIFFE-ID standard allows them. */
export function validateTrustDomains(domains: readonly string[]): string | undefined {
  for (const td of domains) {
    if (td.length === 0 || td.length > 255 || !/^[a-z0-9._-]+$/.test(td)) {
      return `--trust-domain '${td.slice(0, 64)}' is not a valid trust domain (lower-case a-z, 0-9, '.', '-', '_'; no scheme or port)`;
    }
  }
  return undefined;
}

/** --listen-address, kept bare (no IPv6 brackets); each server formats it as its library needs. */
export function listenAddress(value: string): string {
  try {
    return parseListenAddress(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}
