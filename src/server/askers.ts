import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { compileSpiffePattern, parseSpiffeId, type SpiffePattern } from '../identity/spiffe';
import { parseXfcc } from '../identity/xfcc';
import { UNDECODABLE, type CheckInput } from '../envoy/check-input';

/**
 * Who may ask Gatehouse. Envoy's attributes are believed only from a proxy that is entitled to
 * state them: a TLS client certificate (or, inside a mesh, the identity Gatehouse's own sidecar
 * forwards) names the asker, and a known asker asks only about requests to itself (asker =
 * `destination.principal`) unless it is listed as a gateway. A refused asker gets an RPC error
 * and never reaches the engine: no quarantine count, grant use, token or decision record.
 */
export interface AskerOptions {
  /** Serve the Check port over TLS and require client certificates signed by `clientCaFile`. */
  readonly tls?: {
    readonly certFile: string;
    readonly keyFile: string;
    readonly clientCaFile: string;
  };
  /** SPIFFE ID patterns of the proxies that may ask (`--askers`); empty: any authenticated asker. */
  readonly askers: readonly string[];
  /** Askers that may ask about any destination (`--gateway-askers`): ingress gateways. */
  readonly gateways: readonly string[];
  /**
   * Read the asker from the `x-forwarded-client-cert` metadata that Gatehouse's own sidecar sets
   * (`--asker-from-xfcc`): only where nothing but that sidecar can reach the port.
   */
  readonly fromXfcc: boolean;
}

export type AskerRefusalReason = 'no_asker_identity' | 'asker_not_listed' | 'not_own_destination';

export interface AskerRefusal {
  readonly reason: AskerRefusalReason;
  readonly asker: string | undefined;
  readonly destination: string | undefined;
}

/** Whether any asker control is configured; without it the port is open, as before. */
export function askerControlConfigured(options: AskerOptions | undefined): options is AskerOptions {
  return (
    options !== undefined &&
    (options.tls !== undefined ||
      options.fromXfcc ||
      options.askers.length > 0 ||
      options.gateways.length > 0)
  );
}

/** Flags that make no sense together, as a start-up error; undefined when sound. */
export function askerOptionsProblem(options: AskerOptions): string | undefined {
  if (
    (options.askers.length > 0 || options.gateways.length > 0) &&
    options.tls === undefined &&
    !options.fromXfcc
  ) {
    return '--askers and --gateway-askers need a way to identify askers: --tls-cert/--tls-key/--client-ca, or --asker-from-xfcc';
  }
  for (const pattern of [...options.askers, ...options.gateways]) {
    const compiled = compileSpiffePattern(pattern);
    if (!compiled.ok) return `asker pattern: ${compiled.error}`;
  }
  return undefined;
}

export class AskerGate {
  private readonly askers: readonly SpiffePattern[];
  private readonly gateways: readonly SpiffePattern[];

  constructor(
    private readonly options: AskerOptions,
    private readonly onRefused: (refusal: AskerRefusal) => void,
  ) {
    const problem = askerOptionsProblem(options);
    if (problem !== undefined) throw new Error(problem);
    this.askers = options.askers.map((p) => mustPattern(p));
    this.gateways = options.gateways.map((p) => mustPattern(p));
  }

  /** TLS with client certificates required, or plaintext when only the sidecar's XFCC names askers. */
  credentials(): grpc.ServerCredentials {
    const tls = this.options.tls;
    if (tls === undefined) return grpc.ServerCredentials.createInsecure();
    return serverTlsCredentials(tls);
  }

  /** HTTPS server options for the HTTP mode: client certificates required; undefined without --tls-cert. */
  httpsOptions():
    | { cert: Buffer; key: Buffer; ca: Buffer; requestCert: true; rejectUnauthorized: true }
    | undefined {
    const tls = this.options.tls;
    if (tls === undefined) return undefined;
    return {
      cert: readFileSync(tls.certFile),
      key: readFileSync(tls.keyFile),
      ca: readFileSync(tls.clientCaFile),
      requestCert: true,
      rejectUnauthorized: true,
    };
  }

  /**
   * The HTTP mode carries no destination identity: only gateway askers may use it. Without TLS
   * the HTTP mode names no asker, so with asker control on it refuses every request.
   */
  refuseHttp(socket: Socket): AskerRefusal | undefined {
    const cert = socket instanceof TLSSocket ? socket.getPeerCertificate() : undefined;
    const refusal = this.judge(cert ? spiffeUriSan(cert.subjectaltname) : undefined, undefined);
    if (refusal !== undefined) this.onRefused(refusal);
    return refusal;
  }

  /** Undefined when the asker may ask this; else the refusal, already reported. */
  refuse(call: grpc.ServerUnaryCall<CheckInput, unknown>): AskerRefusal | undefined {
    const asker = this.askerOf(call);
    const refusal = this.judge(asker, call.request);
    if (refusal !== undefined) this.onRefused(refusal);
    return refusal;
  }

  private judge(
    asker: string | undefined,
    request: CheckInput | undefined,
  ): AskerRefusal | undefined {
    if (asker === undefined) return { reason: 'no_asker_identity', asker, destination: undefined };
    const parsed = parseSpiffeId(asker);
    if (!parsed.ok)
      return { reason: 'no_asker_identity', asker: undefined, destination: undefined };
    if (this.askers.length > 0 && !this.askers.some((p) => p.matches(parsed.value)))
      return { reason: 'asker_not_listed', asker, destination: undefined };
    if (this.gateways.some((p) => p.matches(parsed.value))) return undefined;
    const destination = destinationOf(request);
    return destination === asker
      ? undefined
      : { reason: 'not_own_destination', asker, destination };
  }

  private askerOf(call: grpc.ServerUnaryCall<unknown, unknown>): string | undefined {
    if (this.options.tls !== undefined) {
      const cert = call.getAuthContext().sslPeerCertificate;
      return cert ? spiffeUriSan(cert.subjectaltname) : undefined;
    }
    if (this.options.fromXfcc) {
      const values = call.metadata.get('x-forwarded-client-cert');
      if (values.length !== 1 || typeof values[0] !== 'string') return undefined;
      // Our sidecar (SANITIZE_SET) writes exactly one element; a second means another hop added one: believe none.
      const elements = parseXfcc(values[0]);
      return elements.ok && elements.value.length === 1 && elements.value[0]!.uri.length === 1
        ? elements.value[0]!.uri[0]
        : undefined;
    }
    return undefined;
  }
}

export function serverTlsCredentials(
  tls: NonNullable<AskerOptions['tls']>,
): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(
    readFileSync(tls.clientCaFile),
    [{ cert_chain: readFileSync(tls.certFile), private_key: readFileSync(tls.keyFile) }],
    true,
  );
}

/** The one SPIFFE URI SAN of a certificate (`URI:spiffe://…` in Node's subjectaltname); undefined when none or several. */
export function spiffeUriSan(subjectaltname: string | undefined): string | undefined {
  if (subjectaltname === undefined) return undefined;
  let found: string | undefined;
  for (const entry of subjectaltname.split(', ')) {
    if (!entry.startsWith('URI:spiffe://')) continue;
    if (found !== undefined) return undefined;
    found = entry.slice('URI:'.length);
  }
  return found;
}

function destinationOf(request: CheckInput | undefined): string | undefined {
  if (request === undefined || request === UNDECODABLE) return undefined;
  // Typed, not trusted: a value of another type names no destination.
  const principal: unknown = request.attributes?.destination?.principal;
  return typeof principal === 'string' && principal !== '' ? principal : undefined;
}

function mustPattern(pattern: string): SpiffePattern {
  const compiled = compileSpiffePattern(pattern);
  if (!compiled.ok) throw new Error(compiled.error);
  return compiled.value;
}
