import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** A JWK as a SPIFFE bundle carries it for JWT-SVIDs. */
export interface JwtKey {
  readonly kid: string;
  readonly jwk: Record<string, unknown>;
}

/** X.509 authorities and JWT-SVID keys of one trust domain. */
export interface TrustBundle {
  readonly trustDomain: string;
  readonly authorities: readonly X509Certificate[];
  /** By `kid`; only keys marked `use: "jwt-svid"`. */
  readonly jwtKeys: ReadonlyMap<string, JwtKey>;
}

/**
 * Reads a trust bundle file: PEM certificates, or a SPIFFE bundle (a JWKS whose keys with
 * `use: "x509-svid"` carry the authority certificate in `x5c`).
 */
export function readTrustBundle(trustDomain: string, file: string): TrustBundle {
  const text = readFileSync(file, 'utf8');
  const bundle = text.trimStart().startsWith('{') ? fromSpiffeBundle(trustDomain, text, file) : { trustDomain, authorities: fromPem(text), jwtKeys: new Map() };
  if (bundle.authorities.length === 0 && bundle.jwtKeys.size === 0) throw new Error(`trust bundle ${file} holds no X.509 authority and no JWT-SVID key`);
  return bundle;
}

function fromPem(text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((pem) => new X509Certificate(pem));
}

/** The SPIFFE bundle format: a JWKS whose keys say whether they are for x509-svid or jwt-svid. */
function fromSpiffeBundle(trustDomain: string, text: string, file: string): TrustBundle {
  let jwks: { keys?: { use?: string; kid?: string; x5c?: string[]; [k: string]: unknown }[] };
  try {
    jwks = JSON.parse(text) as typeof jwks;
  } catch {
    throw new Error(`trust bundle ${file} is not valid JSON`);
  }
  const keys = Array.isArray(jwks.keys) ? jwks.keys : [];
  const authorities = keys
    .filter((k) => k.use === 'x509-svid' && Array.isArray(k.x5c) && k.x5c.length > 0)
    .map((k) => new X509Certificate(Buffer.from(k.x5c![0]!, 'base64')));
  const jwtKeys = new Map<string, JwtKey>();
  for (const k of keys) {
    if (k.use === 'jwt-svid' && typeof k.kid === 'string' && k.kid !== '') jwtKeys.set(k.kid, { kid: k.kid, jwk: k });
  }
  return { trustDomain, authorities, jwtKeys };
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
