import { exportJWK, generateKeyPair, SignJWT, type KeyLike } from 'jose';
import { parseSpiffeId } from '../identity/spiffe';
import { parseTrustBundle, type TrustBundle } from '../identity/trust-bundle';

/** A JWT-SVID a test case presents: its subject, audiences, and lifetime (negative: expired). */
export interface JwtCredentialDoc {
  sub: string;
  aud?: string | string[];
  expiresIn?: number;
}

const KID = 'gatehouse-test';
const ALG = 'ES256';

/**
 * Real JWT-SVIDs for policy tests: one throwaway signing key per run, published as the
 * `jwt-svid` key of every trust domain a case names, so cases exercise the server's own
 * verification (audience, require: mtls, stripToken) rather than a stand-in.
 */
export class TestCredentials {
  private key: Promise<{ privateKey: KeyLike; jwk: Record<string, unknown> }> | undefined;
  private readonly bundles = new Map<string, TrustBundle>();

  private signingKey(): Promise<{ privateKey: KeyLike; jwk: Record<string, unknown> }> {
    this.key ??= generateKeyPair(ALG).then(async ({ privateKey, publicKey }) => ({
      privateKey,
      jwk: { ...(await exportJWK(publicKey)), use: 'jwt-svid', kid: KID },
    }));
    return this.key;
  }

  /** Trust bundles for the domains of the tokens made so far. */
  trustBundles(): ReadonlyMap<string, TrustBundle> {
    return this.bundles;
  }

  /** A signed JWT-SVID; `defaultAudience` when the case names none. */
  async jwt(doc: JwtCredentialDoc, defaultAudience: string): Promise<string> {
    const { privateKey, jwk } = await this.signingKey();
    const id = parseSpiffeId(doc.sub);
    if (id.ok && !this.bundles.has(id.value.trustDomain)) {
      this.bundles.set(
        id.value.trustDomain,
        parseTrustBundle(id.value.trustDomain, JSON.stringify({ keys: [jwk] }), 'gatehouse test'),
      );
    }
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({
      sub: doc.sub,
      aud: doc.aud ?? defaultAudience,
      iat: now,
      exp: now + (doc.expiresIn ?? 300),
    })
      .setProtectedHeader({ alg: ALG, kid: KID, typ: 'JWT' })
      .sign(privateKey);
  }
}
