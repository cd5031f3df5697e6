import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** X.509 authorities of one trust domain. */
export interface TrustBundle {
  readonly trustDomain: string;
  readonly authorities: readonly X509Certificate[];
}

/**
 * Reads a trust bundle file: PEM certificates, or a SPIFFE bundle (a JWKS whose keys with
 * `use: "x509-svid"` carry the authority certificate in `x5c`).
 */
export function readTrustBundle(trustDomain: string, file: string): TrustBundle {
  const text = readFileSync(file, 'utf8');
  const authorities = text.trimStart().startsWith('{') ? fromSpiffeBundle(text, file) : fromPem(text);
  if (authorities.length === 0) throw new Error(`trust bundle ${file} holds no X.509 authority`);
  return { trustDomain, authorities };
}

function fromPem(text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((pem) => new X509Certificate(pem));
}

function fromSpiffeBundle(text: string, file: string): X509Certificate[] {
  let jwks: { keys?: { use?: string; x5c?: string[] }[] };
  try {
    jwks = JSON.parse(text) as typeof jwks;
  } catch {
    throw new Error(`trust bundle ${file} is not valid JSON`);
  }
  return (jwks.keys ?? [])
    .filter((k) => k.use === 'x509-svid' && Array.isArray(k.x5c) && k.x5c.length > 0)
    .map((k) => new X509Certificate(Buffer.from(k.x5c![0]!, 'base64')));
}

/** `--trust-bundle DOMAIN=FILE` values. */
export function parseTrustBundleFlags(values: readonly string[]): Map<string, TrustBundle> {
  const bundles = new Map<string, TrustBundle>();
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new Error(`--trust-bundle '${value.slice(0, 64)}' must be DOMAIN=FILE`);
    const domain = value.slice(0, eq);
    bundles.set(domain, readTrustBundle(domain, value.slice(eq + 1)));
  }
  return bundles;
}
