import {
  decodeJwt,
  decodeProtectedHeader,
  errors,
  importJWK,
  jwtVerify,
  type JWK,
  type KeyLike,
} from 'jose';
import { parseSpiffeId, type Parsed, type SpiffeId } from './spiffe';
import type { TrustBundle } from './trust-bundle';

/** The JWT-SVID standard's algorithms: RSA, ECDSA and RSA-PSS. Never `none`, never HMAC. */
const ALGORITHMS = new Set([
  'RS256',
  'RS384',
  'RS512',
  'ES256',
  'ES384',
  'ES512',
  'PS256',
  'PS384',
  'PS512',
]);
export const MAX_TOKEN_LENGTH = 8 * 1024;

export interface JwtSvidOptions {
  /** The token's `aud` must contain one of these. */
  readonly audiences: readonly string[];
  readonly leewaySeconds: number;
}

/** Imported keys by bundle and kid: importing is costly and bundles are immutable. */
const keyCache = new WeakMap<TrustBundle, Map<string, Promise<KeyLike | Uint8Array>>>();

/**
 * Verifies a JWT-SVID (SPIFFE JWT-SVID standard) with jose: allowed algorithm, `kid` found in
 * the bundle of the trust domain named by `sub` (so another domain's key never verifies it),
 * signature, `exp` required, `nbf` honoured, `aud` containing an expected audience, `sub` a
 * SPIFFE ID, `typ` JWT or JOSE when present. Error messages never contain the token.
 */
/** A verified JWT-SVID: its subject, and the audiences it was issued for. */
export interface VerifiedJwtSvid {
  readonly id: SpiffeId;
  readonly audiences: readonly string[];
}

export async function verifyJwtSvid(
  token: string,
  bundles: ReadonlyMap<string, TrustBundle>,
  options: JwtSvidOptions,
): Promise<Parsed<VerifiedJwtSvid>> {
  if (token.length > MAX_TOKEN_LENGTH) return fail('token is too large');
  let header: ReturnType<typeof decodeProtectedHeader>;
  let claims: ReturnType<typeof decodeJwt>;
  try {
    header = decodeProtectedHeader(token);
    claims = decodeJwt(token);
  } catch {
    return fail('token is not a well-formed JWT');
  }
  const alg = String(header.alg);
  if (alg === 'none') return fail("token algorithm 'none' is not accepted");
  if (alg.startsWith('HS')) return fail('HMAC-signed tokens are not accepted');
  if (!ALGORITHMS.has(alg)) return fail(`token algorithm ${alg.slice(0, 16)} is not accepted`);
  if (header.typ !== undefined && header.typ !== 'JWT' && header.typ !== 'JOSE')
    return fail('token typ must be JWT or JOSE');
  if (typeof header.kid !== 'string' || header.kid === '') return fail('token has no kid');
  if (typeof claims.sub !== 'string') return fail('token has no sub');
  const id = parseSpiffeId(claims.sub);
  if (!id.ok) return fail(`token sub: ${id.error}`);
  if (id.value.path === '')
    return fail('token sub has no path (a trust domain ID names no workload)');
  if (options.audiences.length === 0)
    return fail('no JWT audience is configured (--jwt-audience or the policy audience)');
  const bundle = bundles.get(id.value.trustDomain);
  if (!bundle) return fail(`no trust bundle for trust domain '${id.value.trustDomain}'`);
  const key = bundle.jwtKeys.get(header.kid);
  if (!key)
    return fail(`token kid is not a JWT-SVID key of trust domain '${id.value.trustDomain}'`);

  let aud: unknown;
  try {
    ({
      payload: { aud },
    } = await jwtVerify(token, await importKey(bundle, key.kid, key.jwk, alg), {
      algorithms: [alg],
      audience: [...options.audiences],
      clockTolerance: options.leewaySeconds,
      requiredClaims: ['exp', 'sub', 'aud'],
    }));
  } catch (err) {
    return fail(describe(err));
  }
  const audiences =
    typeof aud === 'string'
      ? [aud]
      : Array.isArray(aud)
        ? aud.filter((a): a is string => typeof a === 'string')
        : [];
  return { ok: true, value: { id: id.value, audiences } };
}

function importKey(
  bundle: TrustBundle,
  kid: string,
  jwk: Record<string, unknown>,
  alg: string,
): Promise<KeyLike | Uint8Array> {
  let byKid = keyCache.get(bundle);
  if (!byKid) keyCache.set(bundle, (byKid = new Map()));
  const cacheKey = `${kid}\u0000${alg}`;
  let key = byKid.get(cacheKey);
  if (!key) {
    key = importJWK({ ...jwk, alg } as JWK, alg);
    key.catch(() => byKid!.delete(cacheKey));
    byKid.set(cacheKey, key);
  }
  return key;
}

/**
 * Whether a bearer token is a JWT-SVID, so that beside a stronger identity it must still verify:
 * a JWT whose (unverified) `sub` is a SPIFFE ID. Anything else is an app's own token. An
 * oversized token is not decoded at all.
 */
export function presentsJwtSvid(token: string): boolean {
  if (token.length > MAX_TOKEN_LENGTH) return false;
  try {
    const sub = decodeJwt(token).sub;
    return typeof sub === 'string' && sub.startsWith('spiffe://');
  } catch {
    return false;
  }
}

function describe(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'token has expired';
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'token is not yet valid';
    if (err.claim === 'aud') return 'token audience does not match';
    if (err.claim === 'exp') return 'token has no exp';
    return `token claim ${err.claim} is invalid`;
  }
  if (err instanceof errors.JWSSignatureVerificationFailed)
    return 'token signature does not verify';
  if (err instanceof errors.JOSEAlgNotAllowed) return 'token algorithm does not match its key';
  return 'token does not verify';
}

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error };
}
