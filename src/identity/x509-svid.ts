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
export function verifyX509Svid(
  encodedPem: string,
  bundles: ReadonlyMap<string, TrustBundle>,
  nowMs = Date.now(),
): Parsed<SpiffeId> {
  if (encodedPem.length > MAX_CERT_LENGTH)
    return { ok: false, error: 'client certificate is too large' };
  let cert: X509Certificate;
  try {
    const text = encodedPem.includes('%') ? decodeURIComponent(encodedPem) : encodedPem;
    cert = new X509Certificate(asPem(text));
  } catch {
    return { ok: false, error: 'client certificate is not a PEM certificate' };
  }
  const uris = uriSans(cert.subjectAltName);
  if (uris.length !== 1)
    return {
      ok: false,
      error: `client certificate must have exactly one URI SAN (has ${uris.length})`,
    };
  const id = parseSpiffeId(uris[0]!);
  if (!id.ok) return { ok: false, error: `client certificate URI SAN: ${id.error}` };
  // X509-SVID §2: a leaf's ID names a workload, so it has a path.
  if (id.value.path === '')
    return {
      ok: false,
      error: 'client certificate SPIFFE ID has no path (a trust domain ID names no workload)',
    };
  // X509-SVID §5.2: a leaf with cA=true is refused. Read from the DER: Node's `ca` reports false
  // for a cA=true certificate whose key usage lacks keyCertSign.
  const isCa = basicConstraintsCa(cert.raw);
  if (isCa === 'malformed')
    return { ok: false, error: 'client certificate basic constraints extension is malformed' };
  if (cert.ca || isCa) return { ok: false, error: 'client certificate is a CA certificate' };
  // X509-SVID §4.3: key usage is present, critical, digitalSignature, and never keyCertSign/cRLSign.
  const usage = keyUsage(cert.raw);
  if (usage === 'malformed')
    return { ok: false, error: 'client certificate key usage extension is malformed' };
  if (usage === undefined)
    return { ok: false, error: 'client certificate has no key usage extension' };
  if (!usage.critical)
    return { ok: false, error: 'client certificate key usage extension is not critical' };
  if (!usage.digitalSignature)
    return { ok: false, error: 'client certificate key usage lacks digitalSignature' };
  if (usage.keyCertSign || usage.cRLSign)
    return { ok: false, error: 'client certificate key usage allows signing certificates or CRLs' };
  if (!withinValidity(cert, nowMs)) {
    return {
      ok: false,
      error:
        nowMs < Date.parse(cert.validFrom)
          ? 'client certificate is not yet valid'
          : 'client certificate has expired',
    };
  }
  const bundle = bundles.get(id.value.trustDomain);
  if (!bundle)
    return { ok: false, error: `no trust bundle for trust domain '${id.value.trustDomain}'` };
  const issuer = bundle.authorities.find((ca) => cert.checkIssued(ca) && safeVerify(cert, ca));
  if (!issuer)
    return {
      ok: false,
      error: `client certificate is not signed by an authority of '${id.value.trustDomain}'`,
    };
  if (!withinValidity(issuer, nowMs))
    return {
      ok: false,
      error: `the authority of '${id.value.trustDomain}' that signed the client certificate is outside its validity window`,
    };
  return id;
}

/** id-ce-keyUsage (2.5.29.15) and id-ce-basicConstraints (2.5.29.19), the OIDs' content bytes. */
const KEY_USAGE_OID = Buffer.from([0x55, 0x1d, 0x0f]);
const BASIC_CONSTRAINTS_OID = Buffer.from([0x55, 0x1d, 0x13]);

interface Tlv {
  readonly tag: number;
  /** Content start and end (exclusive). */
  readonly start: number;
  readonly end: number;
}

/** One DER TLV at `pos`, within `limit`; undefined when it does not fit or is not DER. */
function tlv(der: Buffer, pos: number, limit: number): Tlv | undefined {
  if (pos + 2 > limit) return undefined;
  const tag = der[pos]!;
  let length = der[pos + 1]!;
  let start = pos + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 3 || start + n > limit) return undefined;
    length = 0;
    for (let k = 0; k < n; k++) length = length * 256 + der[start + k]!;
    start += n;
  }
  const end = start + length;
  return end > limit ? undefined : { tag, start, end };
}

export interface KeyUsage {
  readonly critical: boolean;
  readonly digitalSignature: boolean;
  readonly keyCertSign: boolean;
  readonly cRLSign: boolean;
}

/**
 * The KeyUsage extension of a certificate, read from its DER (Node's X509Certificate does
 * not expose it): OCTET STRING { BIT STRING }. undefined: the certificate has none.
 */
export function keyUsage(der: Buffer): KeyUsage | undefined | 'malformed' {
  const found = extension(der, KEY_USAGE_OID);
  if (found === undefined || found === 'malformed') return found;
  const bits = tlv(der, found.value.start, found.value.end);
  if (!bits || bits.tag !== 0x03 || bits.end - bits.start < 2) return 'malformed';
  const first = der[bits.start + 1]!; // after the unused-bits byte; bit 0 is the most significant
  return {
    critical: found.critical,
    digitalSignature: (first & 0x80) !== 0,
    keyCertSign: (first & 0x04) !== 0,
    cRLSign: (first & 0x02) !== 0,
  };
}

/**
 * The cA flag of the BasicConstraints extension: OCTET STRING { SEQUENCE { cA BOOLEAN DEFAULT
 * FALSE, pathLenConstraint INTEGER OPTIONAL } }. false when the extension is absent.
 */
export function basicConstraintsCa(der: Buffer): boolean | 'malformed' {
  const found = extension(der, BASIC_CONSTRAINTS_OID);
  if (found === undefined) return false;
  if (found === 'malformed') return found;
  const sequence = tlv(der, found.value.start, found.value.end);
  if (!sequence || sequence.tag !== 0x30) return 'malformed';
  if (sequence.start === sequence.end) return false;
  const first = tlv(der, sequence.start, sequence.end);
  if (!first) return 'malformed';
  if (first.tag !== 0x01) return false; // only a pathLenConstraint
  return first.end - first.start !== 1 || der[first.start] !== 0;
}

/**
 * One extension of a certificate, found by walking its DER: Certificate → tbsCertificate →
 * [3] extensions → Extension { OID, critical BOOLEAN DEFAULT FALSE, OCTET STRING value }.
 * `value` is the OCTET STRING's content; undefined: the certificate does not have it.
 */
function extension(
  der: Buffer,
  oidBytes: Buffer,
): { critical: boolean; value: Tlv } | undefined | 'malformed' {
  const certificate = tlv(der, 0, der.length);
  if (!certificate || certificate.tag !== 0x30) return 'malformed';
  const tbs = tlv(der, certificate.start, certificate.end);
  if (!tbs || tbs.tag !== 0x30) return 'malformed';
  for (let pos = tbs.start; pos < tbs.end;) {
    const field = tlv(der, pos, tbs.end);
    if (!field) return 'malformed';
    pos = field.end;
    if (field.tag !== 0xa3) continue; // [3] extensions
    const extensions = tlv(der, field.start, field.end);
    if (!extensions || extensions.tag !== 0x30) return 'malformed';
    for (let e = extensions.start; e < extensions.end;) {
      const ext = tlv(der, e, extensions.end);
      if (!ext || ext.tag !== 0x30) return 'malformed';
      e = ext.end;
      const oid = tlv(der, ext.start, ext.end);
      if (!oid || oid.tag !== 0x06) return 'malformed';
      if (!der.subarray(oid.start, oid.end).equals(oidBytes)) continue;
      let next = tlv(der, oid.end, ext.end);
      let critical = false;
      if (next && next.tag === 0x01) {
        critical = next.end - next.start === 1 && der[next.start] !== 0;
        next = tlv(der, next.end, ext.end);
      }
      if (!next || next.tag !== 0x04) return 'malformed';
      return { critical, value: next };
    }
    return undefined;
  }
  return undefined;
}

/**
 * PEM as given, or the leaf of Traefik's `passTLSClientCert` form: base64 DER without the
 * BEGIN/END lines, certificates of a chain separated by ','.
 */
function asPem(text: string): string {
  if (text.includes('-----BEGIN')) return text;
  const leaf = text.split(',', 1)[0]!.replace(/\s+/g, '');
  return `-----BEGIN CERTIFICATE-----\n${leaf}\n-----END CERTIFICATE-----\n`;
}

function withinValidity(cert: X509Certificate, nowMs: number): boolean {
  return nowMs >= Date.parse(cert.validFrom) && nowMs <= Date.parse(cert.validTo);
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
