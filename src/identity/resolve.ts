import { parseSpiffeId, type SpiffeId } from './spiffe';
import type { TrustBundle } from './trust-bundle';
import { verifyX509Svid } from './x509-svid';
import { presentsJwtSvid, verifyJwtSvid } from './jwt-svid';
import { nearestXfccElement } from './xfcc';
import type { NormalizedRequest } from '../request/normalize';

export interface IdentityConfig {
  /** Trust domains whose callers are accepted (`--trust-domain`). */
  readonly trustDomains: ReadonlySet<string>;
  /** Read the caller from the nearest XFCC element (`--trust-xfcc`). */
  readonly trustXfcc: boolean;
  /** X.509 authorities per trust domain (`--trust-bundle`); certificates are verified against them. */
  readonly trustBundles?: ReadonlyMap<string, TrustBundle>;
  /** JWT-SVIDs: the server's audience (`--jwt-audience`) and clock leeway. */
  readonly jwt?: { readonly audience: string | undefined; readonly leewaySeconds: number };
}

export type IdentitySource = 'principal' | 'certificate' | 'xfcc' | 'jwt';

/** Sources that prove the caller held a private key on this connection or the one before. */
export function isMtlsSource(source: IdentitySource): boolean {
  return source !== 'jwt';
}

export type IdentityOutcome =
  /** `audiences`: for a JWT-SVID, the `aud` it carries (rules may ask for one of them). */
  | { ok: true; id: SpiffeId; source: IdentitySource; audiences?: readonly string[] }
  | {
      ok: false;
      code: 'no_identity' | 'invalid_identity' | 'untrusted_domain';
      reason: string;
      source?: IdentitySource;
    };

/**
 * Who is calling. Sources strongest first: peer principal, peer certificate, trusted
 * XFCC, then a JWT-SVID bearer token. The strongest credential present names the caller; a
 * present but invalid one is a failure, never a fall-back to a weaker one. Every other
 * credential the request presents must verify too, as Istio's RequestAuthentication rejects an
 * invalid token whatever else a request carries: a trusted XFCC header must parse, and a bearer
 * token that is a JWT-SVID (a JWT whose `sub` is a SPIFFE ID) must verify. A bearer token that
 * is not a JWT-SVID (an app's own opaque or OAuth token) is no SPIFFE credential and not read.
 * Synchronous except for a JWT-SVID, whose signature check is asynchronous in jose.
 */
export function resolveIdentity(
  request: NormalizedRequest,
  config: IdentityConfig,
  audiences?: AudienceScope,
): IdentityOutcome | Promise<IdentityOutcome> {
  const outcome = strongestIdentity(request, config, audiences);
  // A JWT-SVID named the caller (nothing weaker to check), or the strongest credential failed.
  if (outcome instanceof Promise || !outcome.ok) return outcome;
  if (outcome.source !== 'xfcc' && config.trustXfcc) {
    const xfcc = request.headers['x-forwarded-client-cert'];
    if (typeof xfcc === 'string' && xfcc !== '') {
      const presented = fromXfcc(xfcc, config);
      if (!presented.ok) return alsoPresented(presented, outcome.source);
    }
  }
  const token = bearerToken(request.headers['authorization']);
  if (token === undefined || !presentsJwtSvid(token)) return outcome;
  return fromJwt(token, config, audiences).then((presented) =>
    presented.ok ? outcome : alsoPresented(presented, outcome.source),
  );
}

/** A failed credential beside one that verified: the request is still a 401, and the reason says why. */
function alsoPresented(
  failure: Extract<IdentityOutcome, { ok: false }>,
  verified: IdentitySource,
): IdentityOutcome {
  return {
    ok: false,
    code: 'invalid_identity',
    reason: `${failure.reason} (a presented credential must verify, even beside a verified ${verified} identity)`,
    ...(failure.source ? { source: failure.source } : {}),
  };
}

function strongestIdentity(
  request: NormalizedRequest,
  config: IdentityConfig,
  audiences?: AudienceScope,
): IdentityOutcome | Promise<IdentityOutcome> {
  const bundles = config.trustBundles;
  if (request.principal !== '') {
    const byPrincipal = fromSpiffeText(request.principal, 'principal', config);
    // Envoy verified the TLS chain; with trust bundles configured, a forwarded certificate is
    // verified too and must name the same workload.
    if (!byPrincipal.ok || request.certificate === '' || !bundles || bundles.size === 0)
      return byPrincipal;
    const cert = fromCertificate(request.certificate, bundles, config);
    if (!cert.ok) return cert;
    if (cert.id.id !== byPrincipal.id.id) {
      return {
        ok: false,
        code: 'invalid_identity',
        reason: 'peer certificate and peer principal name different workloads',
        source: 'certificate',
      };
    }
    return byPrincipal;
  }

  if (request.certificate !== '') {
    if (!bundles || bundles.size === 0) {
      return {
        ok: false,
        code: 'invalid_identity',
        reason:
          'a client certificate was forwarded but no trust bundle is configured (--trust-bundle)',
        source: 'certificate',
      };
    }
    return fromCertificate(request.certificate, bundles, config);
  }

  const xfcc = request.headers['x-forwarded-client-cert'];
  if (config.trustXfcc && typeof xfcc === 'string' && xfcc !== '') return fromXfcc(xfcc, config);

  const token = bearerToken(request.headers['authorization']);
  if (token !== undefined) return fromJwt(token, config, audiences);

  return {
    ok: false,
    code: 'no_identity',
    reason:
      xfcc && !config.trustXfcc
        ? 'no mTLS peer principal (x-forwarded-client-cert is present but not trusted; see --trust-xfcc)'
        : 'no caller identity: no mTLS peer principal',
  };
}

function fromXfcc(xfcc: string, config: IdentityConfig): IdentityOutcome {
  const element = nearestXfccElement(xfcc);
  if (!element.ok)
    return {
      ok: false,
      code: 'invalid_identity',
      reason: `x-forwarded-client-cert: ${element.error}`,
      source: 'xfcc',
    };
  const uris = element.value.uri;
  if (uris.length !== 1) {
    return {
      ok: false,
      code: 'invalid_identity',
      reason:
        uris.length === 0
          ? 'x-forwarded-client-cert has no URI SAN'
          : 'x-forwarded-client-cert has more than one URI SAN',
      source: 'xfcc',
    };
  }
  return fromSpiffeText(uris[0]!, 'xfcc', config);
}

/** The audiences a destination accepts: its own (policy, else server) and its rules' own. A compiled policy is one. */
export interface AudienceScope {
  readonly audience: string | undefined;
  readonly ruleAudiences: readonly string[];
}

/** The audience a token must carry where a rule names none: the policy's, else --jwt-audience. */
export function defaultAudience(
  config: IdentityConfig,
  policyAudience: string | undefined,
): string | undefined {
  return policyAudience ?? config.jwt?.audience;
}

async function fromJwt(
  token: string,
  config: IdentityConfig,
  scope: AudienceScope | undefined,
): Promise<IdentityOutcome> {
  const audience = defaultAudience(config, scope?.audience);
  // Any audience of the destination verifies here; the matched rule then asks for its own.
  const audiences = [...(audience ? [audience] : []), ...(scope?.ruleAudiences ?? [])];
  const verified = await verifyJwtSvid(token, config.trustBundles ?? new Map(), {
    audiences,
    leewaySeconds: config.jwt?.leewaySeconds ?? 30,
  });
  if (!verified.ok)
    return {
      ok: false,
      code: 'invalid_identity',
      reason: `JWT-SVID: ${verified.error}`,
      source: 'jwt',
    };
  const outcome = fromSpiffeText(verified.value.id.id, 'jwt', config);
  return outcome.ok ? { ...outcome, audiences: verified.value.audiences } : outcome;
}

/** The token of `authorization: Bearer <token>`; other schemes are not a JWT-SVID credential. */
function bearerToken(header: string | undefined): string | undefined {
  if (typeof header !== 'string' || header.length < 8) return undefined;
  if (header.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  const token = header.slice(7).trim();
  return token === '' ? undefined : token;
}

function fromCertificate(
  certificate: string,
  bundles: ReadonlyMap<string, TrustBundle>,
  config: IdentityConfig,
): IdentityOutcome {
  const verified = verifyX509Svid(certificate, bundles);
  if (!verified.ok)
    return { ok: false, code: 'invalid_identity', reason: verified.error, source: 'certificate' };
  return fromSpiffeText(verified.value.id, 'certificate', config);
}

function fromSpiffeText(
  text: string,
  source: IdentitySource,
  config: IdentityConfig,
): IdentityOutcome {
  const parsed = parseSpiffeId(text);
  if (!parsed.ok)
    return { ok: false, code: 'invalid_identity', reason: `${source}: ${parsed.error}`, source };
  if (!config.trustDomains.has(parsed.value.trustDomain)) {
    return {
      ok: false,
      code: 'untrusted_domain',
      reason: `trust domain '${parsed.value.trustDomain}' is not trusted`,
      source,
    };
  }
  return { ok: true, id: parsed.value, source };
}
