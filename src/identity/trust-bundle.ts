import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseSpiffeId } from './spiffe';

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
  return parseTrustBundle(trustDomain, readFileSync(file, 'utf8'), file);
}

/** A bundle from its text (PEM or SPIFFE bundle JSON); `origin` names it in errors. */
export function parseTrustBundle(trustDomain: string, text: string, origin: string): TrustBundle {
  const bundle = text.trimStart().startsWith('{')
    ? fromSpiffeBundle(trustDomain, text, origin)
    : { trustDomain, authorities: fromPem(text), jwtKeys: new Map() };
  if (bundle.authorities.length === 0 && bundle.jwtKeys.size === 0)
    throw new Error(`trust bundle ${origin} holds no X.509 authority and no JWT-SVID key`);
  return bundle;
}

/** `spiffe_refresh_hint` of a SPIFFE bundle, in seconds, when it has one. */
export function refreshHintSeconds(text: string): number | undefined {
  try {
    const hint = (JSON.parse(text) as { spiffe_refresh_hint?: unknown }).spiffe_refresh_hint;
    return typeof hint === 'number' && hint > 0 ? hint : undefined;
  } catch {
    return undefined;
  }
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
    if (k.use === 'jwt-svid' && typeof k.kid === 'string' && k.kid !== '')
      jwtKeys.set(k.kid, { kid: k.kid, jwk: k });
  }
  return { trustDomain, authorities, jwtKeys };
}

/** `--trust-bundle DOMAIN=FILE|URL` values. */
export function parseTrustBundleFlags(
  values: readonly string[],
): { domain: string; source: string }[] {
  return values.map((value) => {
    const eq = value.indexOf('=');
    if (eq <= 0 || eq === value.length - 1)
      throw new Error(`--trust-bundle '${value.slice(0, 64)}' must be DOMAIN=FILE or DOMAIN=URL`);
    const domain = value.slice(0, eq);
    const id = parseSpiffeId(`spiffe://${domain}`);
    if (!id.ok || id.value.path !== '')
      throw new Error(
        `--trust-bundle '${value.slice(0, 64)}': '${domain.slice(0, 64)}' is not a trust domain name`,
      );
    return { domain, source: value.slice(eq + 1) };
  });
}
