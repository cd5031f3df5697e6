/**
 * The one shape every producer hands the engine: Envoy's CheckRequest as the wire codec
 * decodes it (camelCase, absent fields absent, google.protobuf.Struct in its JSON form, maps as
 * null-prototype records). The gRPC codec, the HTTP mode, `gatehouse check`, `gatehouse test`,
 * replay and the tests all build this. The type says what a field is; it proves nothing about a
 * value: normalisation still checks every field it reads, as any of them may be hostile.
 */
export interface CheckInput {
  readonly attributes?: AttributesInput;
}

/** envoy.service.auth.v3.AttributeContext: the fields Gatehouse reads. */
export interface AttributesInput {
  readonly source?: PeerInput;
  readonly destination?: PeerInput;
  readonly request?: { readonly http?: HttpRequestInput };
  /** Per-route `context_extensions`. */
  readonly contextExtensions?: Readonly<Record<string, string>>;
  /** `metadata_context.filter_metadata`: namespace → Struct, in proto3 JSON form. */
  readonly metadataContext?: { readonly filterMetadata?: Readonly<Record<string, unknown>> };
}

/** AttributeContext.Peer. */
export interface PeerInput {
  /** A SPIFFE ID, as Envoy states it. */
  readonly principal?: string;
  /** URL-encoded PEM of the peer's certificate. */
  readonly certificate?: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/** AttributeContext.HttpRequest. */
export interface HttpRequestInput {
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  /** Lower-case names; a name sent on several lines joined with ','. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly rawBody?: Uint8Array;
  /** Set by the codec: a credential header that `header_map` carried on more than one line. */
  readonly repeatedCredentialHeader?: string;
}

/** Stands in for a CheckRequest whose bytes did not decode; normalisation denies it. */
export const UNDECODABLE: CheckInput = Object.freeze({
  [Symbol.for('gatehouse.undecodable')]: true,
}) as CheckInput;
