import { X509Certificate } from 'node:crypto';
import { parseSpiffeId, type Parsed, type SpiffeId } from './spiffe';
import type { TrustBundle } from './trust-bundle';

const MAX_CERT_LENGTH = 16 * 1024;

/**
 * Verifies an X509-SVID leaf certificate (as Envoy's `source.certificate` or a proxy's header
 * sends it: URL-encoded PEM) per the SPIFFE X509-SVID standard: exactly one URI SAN, a valid
 * SPIFFE ID, not a CA, within its validity window, and issued and signed by an authority in
 * the trust bundle of the ID's own trust domain.
 */
export function verifyX509Svid(encodedPem: string, bundles: ReadonlyMap<string, TrustBundle>, nowMs = Date.now()): Parsed<SpiffeId> {
  if (encodedPem.length > MAX_CERT_LENGTH) return { ok: false, error: 'client certificate is too large' };
  let cert: X509Certificate;
  try {
    const pem = encodedPem.includes('%') ? decodeURIComponent(encodedPem) : encodedPem;
    cert = new X509Certificate(pem);
  } catch {
    return { ok: false, error: 'client certificate is not a PEM certificate' };
  }
  const uris = uriSans(cert.subjectAltName);
  if (uris.length !== 1) return { ok: false, error: `client certificate must have exactly one URI SAN (has ${uris.length})` };
  const id = parseSpiffeId(uris[0]!);
  if (!id.ok) return { ok: false, error: `client certificate URI SAN: ${id.error}` };
  if (cert.ca) return { ok: false, error: 'client certificate is a CA certificate' };
  if (nowMs < Date.parse(cert.validFrom)) return { ok: false, error: 'client certificate is not yet valid' };
  if (nowMs > Date.parse(cert.validTo)) return { ok: false, error: 'client certificate has expired' };
  const bundle = bundles.get(id.value.trustDomain);
  if (!bundle) return { ok: false, error: `no trust bundle for trust domain '${id.value.trustDomain}'` };
  const issuer = bundle.authorities.find((ca) => cert.checkIssued(ca) && safeVerify(cert, ca));
  if (!issuer) return { ok: false, error: `client certificate is not signed by an authority of '${id.value.trustDomain}'` };
  return id;
}

function safeVerify(cert: X509Certificate, ca: X509Certificate): boolean {
  try {
    return cert.verify(ca.publicKey);
  } catch {
    return false;
  }
}

/** URI entries of Node's subjectAltName text ("URI:spiffe://a/b, DNS:x"). */
function uriSans(san: string | undefined): string[] {
  if (!san) return [];
  return san
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice(4));
}
