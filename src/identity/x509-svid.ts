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
  const usage = keyUsage(cert.raw);
  if (usage === 'malformed') return { ok: false, error: 'client certificate key usage extension is malformed' };
  if (usage !== undefined) {
    if (!usage.digitalSignature) return { ok: false, error: 'client certificate key usage lacks digitalSignature' };
    if (usage.keyCertSign || usage.cRLSign) return { ok: false, error: 'client certificate key usage allows signing certificates or CRLs' };
  }
  if (nowMs < Date.parse(cert.validFrom)) return { ok: false, error: 'client certificate is not yet valid' };
  if (nowMs > Date.parse(cert.validTo)) return { ok: false, error: 'client certificate has expired' };
  const bundle = bundles.get(id.value.trustDomain);
  if (!bundle) return { ok: false, error: `no trust bundle for trust domain '${id.value.trustDomain}'` };
  const issuer = bundle.authorities.find((ca) => cert.checkIssued(ca) && safeVerify(cert, ca));
  if (!issuer) return { ok: false, error: `client certificate is not signed by an authority of '${id.value.trustDomain}'` };
  return id;
}

/** id-ce-keyUsage (2.5.29.15) as DER: OBJECT IDENTIFIER, length 3, 55 1D 0F. */
const KEY_USAGE_OID = Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x0f]);

/**
 * The KeyUsage bits of a certificate, read from its DER (Node's X509Certificate does not
 * expose them). Extension = SEQUENCE { OID, [BOOLEAN critical], OCTET STRING { BIT STRING } }.
 * undefined: no KeyUsage extension.
 */
export function keyUsage(der: Buffer): { digitalSignature: boolean; keyCertSign: boolean; cRLSign: boolean } | undefined | 'malformed' {
  const at = der.indexOf(KEY_USAGE_OID);
  if (at === -1) return undefined;
  let i = at + KEY_USAGE_OID.length;
  if (der[i] === 0x01) i += 2 + (der[i + 1] ?? 0); // critical flag
  if (der[i] !== 0x04) return 'malformed'; // OCTET STRING
  i += 2;
  if (der[i] !== 0x03) return 'malformed'; // BIT STRING
  const length = der[i + 1] ?? 0;
  if (length < 2 || length > 3) return 'malformed';
  const first = der[i + 3] ?? 0; // after the unused-bits byte; bit 0 is the most significant
  return { digitalSignature: (first & 0x80) !== 0, keyCertSign: (first & 0x04) !== 0, cRLSign: (first & 0x02) !== 0 };
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
