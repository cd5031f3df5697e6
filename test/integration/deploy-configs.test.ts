/**
 * Deployment configurations (envoy/, istio/, Dockerfile, k6/) checked for the mistakes that
 * break real deployments: a filter after the router, an HTTP/1.1 cluster to the gRPC port,
 * a provider name that does not match, a probe on the wrong port, a root user, policies
 * that drifted from policies/. Each checker returns a list of problems; the shipped files
 * must have none, and the mutation tests prove each checker notices what it is meant to.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_ADMIN_PORT, DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT } from '../../src/cli/defaults';
import { AUTHORIZATION_SERVICE } from '../../src/server/health';
import { renderKustomization } from '../helpers/kustomize';
import { runCli, spawnServe, type ServeProcess } from '../helpers/cli';
import { waitFor } from '../helpers/wait';

const ROOT = path.resolve(__dirname, '..', '..');

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function obj(v: unknown): Obj {
  return isObj(v) ? v : {};
}
function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
function objs(v: unknown): Obj[] {
  return list(v).filter(isObj);
}
function dig(v: unknown, ...keys: Array<string | number>): unknown {
  let cur: unknown = v;
  for (const k of keys) {
    if (typeof k === 'number') cur = Array.isArray(cur) ? cur[k] : undefined;
    else cur = isObj(cur) ? cur[k] : undefined;
  }
  return cur;
}
function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}
function clone<T>(v: T): T {
  return structuredClone(v);
}
/** One option's help text from `--help` output, its wrapped lines joined. */
function serveOptionHelp(help: string, flag: string): string {
  const lines = help.split('\n');
  const start = lines.findIndex((l) => l.trimStart().startsWith(`${flag} `));
  if (start < 0) return '';
  const body = [lines[start]!];
  for (const l of lines.slice(start + 1)) {
    if (!/^\s{6,}\S/.test(l)) break;
    body.push(l);
  }
  return body.map((l) => l.trim()).join(' ');
}

function read(rel: string): string {
  return readFileSync(path.join(ROOT, rel), 'utf8');
}

/** Every non-empty document of a YAML text; syntax errors and duplicate keys throw. */
function parseYaml(text: string, label: string): unknown[] {
  const out: unknown[] = [];
  for (const doc of parseAllDocuments(text, { uniqueKeys: true })) {
    if (doc.errors.length > 0)
      throw new Error(`${label}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const js: unknown = doc.toJS();
    if (js !== null && js !== undefined) out.push(js);
  }
  return out;
}
function loadYaml(rel: string): unknown[] {
  return parseYaml(read(rel), rel);
}
function loadOne(rel: string): Obj {
  const docs = loadYaml(rel);
  if (docs.length !== 1 || !isObj(docs[0]))
    throw new Error(`${rel}: expected exactly one YAML mapping, got ${docs.length} documents`);
  return docs[0];
}

/** Envoy/Istio durations as written in YAML: "0.25s", "1s". */
function isPositiveDuration(v: unknown): boolean {
  const m = /^(\d+(?:\.\d+)?)s$/.exec(str(v));
  return m !== null && Number(m[1]) > 0;
}

// ---------------------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------------------

const HCM = 'envoy.filters.network.http_connection_manager';
const EXT_AUTHZ = 'envoy.filters.http.ext_authz';
const ROUTER = 'envoy.filters.http.router';
const T = 'type.googleapis.com/';
const EXT_AUTHZ_TYPE = `${T}envoy.extensions.filters.http.ext_authz.v3.ExtAuthz`;
const EXT_AUTHZ_PER_ROUTE_TYPE = `${T}envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute`;
const HCM_TYPE = `${T}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
const ROUTER_TYPE = `${T}envoy.extensions.filters.http.router.v3.Router`;
const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const DOWNSTREAM_TLS_TYPE = `${T}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`;
/** Exact-path routes that health checkers call; each must skip ext_authz. */
const HEALTH_PATHS = new Set(['/healthz', '/readyz', '/livez']);
/** Gatehouse's own upstream headers; client-sent copies (any x-gatehouse-*) must reach it to be removed. */
const GATEHOUSE_HEADERS = [
  'x-gatehouse-caller',
  'x-gatehouse-policy',
  'x-gatehouse-decision',
  'x-gatehouse-anything-else',
];

/** Every type URL the configs may use; a typo in one is a config Envoy refuses to load. */
const KNOWN_ENVOY_TYPES = new Set([
  EXT_AUTHZ_TYPE,
  EXT_AUTHZ_PER_ROUTE_TYPE,
  HCM_TYPE,
  ROUTER_TYPE,
  `${T}${HTTP_PROTOCOL_OPTIONS}`,
  DOWNSTREAM_TLS_TYPE,
  `${T}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`,
]);

function collectTypes(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) collectTypes(x, out);
  else if (isObj(v)) {
    for (const [k, x] of Object.entries(v)) {
      if (k === '@type') out.push(str(x));
      else collectTypes(x, out);
    }
  }
  return out;
}

function connectionManagers(config: unknown): Obj[] {
  const out: Obj[] = [];
  for (const listener of objs(dig(config, 'static_resources', 'listeners'))) {
    for (const chain of objs(listener['filter_chains'])) {
      for (const filter of objs(chain['filters'])) {
        if (filter['name'] === HCM) out.push(obj(filter['typed_config']));
      }
    }
  }
  return out;
}

function clusterMap(config: unknown): Map<string, Obj> {
  return new Map(objs(dig(config, 'static_resources', 'clusters')).map((c) => [str(c['name']), c]));
}

function endpointPorts(cluster: Obj): number[] {
  const ports: number[] = [];
  for (const group of objs(dig(cluster, 'load_assignment', 'endpoints'))) {
    for (const lb of objs(group['lb_endpoints']))
      ports.push(Number(dig(lb, 'endpoint', 'address', 'socket_address', 'port_value')));
  }
  return ports;
}

/** The listener filter chains that carry an http_connection_manager. */
function httpFilterChains(config: unknown): Array<{ listener: string; chain: Obj }> {
  const out: Array<{ listener: string; chain: Obj }> = [];
  for (const listener of objs(dig(config, 'static_resources', 'listeners'))) {
    for (const chain of objs(listener['filter_chains'])) {
      if (objs(chain['filters']).some((f) => f['name'] === HCM))
        out.push({ listener: str(listener['name']), chain });
    }
  }
  return out;
}

/**
 * mTLS on the listener: Gatehouse's caller is the client certificate's SPIFFE ID
 * (source.principal in gRPC mode, this hop's XFCC element in HTTP mode). Without a required,
 * verified client certificate there is no identity and every check is a 401.
 */
function downstreamTlsProblems(config: unknown): string[] {
  const problems: string[] = [];
  for (const { listener, chain } of httpFilterChains(config)) {
    const tls = obj(dig(chain, 'transport_socket', 'typed_config'));
    if (tls['@type'] !== DOWNSTREAM_TLS_TYPE) {
      problems.push(
        `listener ${listener}: no DownstreamTlsContext (plaintext: no client certificate, no caller identity)`,
      );
      continue;
    }
    if (tls['require_client_certificate'] !== true)
      problems.push(`listener ${listener}: require_client_certificate is not true`);
    const common = obj(tls['common_tls_context']);
    if (
      common['validation_context'] === undefined &&
      common['validation_context_sds_secret_config'] === undefined &&
      common['combined_validation_context'] === undefined
    ) {
      problems.push(
        `listener ${listener}: no validation context (client certificates are not verified against the trust bundle)`,
      );
    }
    const alpn = list(common['alpn_protocols']).map(str);
    if (!alpn.includes('h2') || !alpn.includes('http/1.1'))
      problems.push(
        `listener ${listener}: ALPN does not offer h2 and http/1.1 (clients fall back to HTTP/1.1)`,
      );
  }
  return problems;
}

/** Endpoint `health_check_config.port_value` overrides (health checks elsewhere than the traffic port). */
function healthCheckPorts(cluster: Obj): Array<number | undefined> {
  const ports: Array<number | undefined> = [];
  for (const group of objs(dig(cluster, 'load_assignment', 'endpoints'))) {
    for (const lb of objs(group['lb_endpoints'])) {
      const p = dig(lb, 'endpoint', 'health_check_config', 'port_value');
      ports.push(p === undefined ? undefined : Number(p));
    }
  }
  return ports;
}

/**
 * Active health checks of an authz cluster must reach something that answers them: gRPC
 * health (grpc.health.v1, '' or the Authorization service) on the gRPC port, or /readyz or
 * /healthz on the admin port. Elsewhere (e.g. /readyz sent to the HTTP authorization port,
 * where it is checked like any request and denied) every host is marked unhealthy and every
 * check fails.
 */
function healthCheckProblems(name: string, cluster: Obj): string[] {
  const problems: string[] = [];
  const traffic = endpointPorts(cluster);
  const ports = healthCheckPorts(cluster).map((p, i) => p ?? traffic[i]);
  for (const hc of objs(cluster['health_checks'])) {
    const grpcHc = hc['grpc_health_check'];
    const httpHc = hc['http_health_check'];
    if (grpcHc !== undefined) {
      const service = str(dig(grpcHc, 'service_name'));
      if (service !== '' && service !== AUTHORIZATION_SERVICE)
        problems.push(
          `cluster ${name}: grpc_health_check service_name '${service}' is unknown to Gatehouse (NOT_FOUND: every host unhealthy)`,
        );
      for (const p of ports)
        if (p !== DEFAULT_GRPC_PORT)
          problems.push(
            `cluster ${name}: gRPC health checks go to port ${String(p)}, not the gRPC port ${DEFAULT_GRPC_PORT}`,
          );
    } else if (httpHc !== undefined) {
      const hcPath = str(dig(httpHc, 'path'));
      if (hcPath === '/readyz')
        problems.push(
          `cluster ${name}: http_health_check on /readyz marks every host unhealthy when Redis is down; use /readyz?exclude=redis`,
        );
      else if (hcPath !== '/readyz?exclude=redis' && hcPath !== '/healthz')
        problems.push(
          `cluster ${name}: http_health_check path '${hcPath}' is not /readyz?exclude=redis or /healthz`,
        );
      for (const p of ports)
        if (p !== DEFAULT_ADMIN_PORT)
          problems.push(
            `cluster ${name}: HTTP health checks go to port ${String(p)}, not the admin port ${DEFAULT_ADMIN_PORT}`,
          );
    } else {
      problems.push(
        `cluster ${name}: health check is neither grpc_health_check nor http_health_check`,
      );
    }
  }
  return problems;
}

/** Envoy's defaults (1024 pending, 1024 in flight) answer a burst with local 503s before a check reaches Gatehouse. */
function circuitBreakerProblems(name: string, cluster: Obj): string[] {
  const thresholds = objs(dig(cluster, 'circuit_breakers', 'thresholds')).find(
    (t) => t['priority'] === undefined || t['priority'] === 'DEFAULT',
  );
  if (thresholds === undefined)
    return [
      `cluster ${name}: no circuit_breakers (Envoy's defaults of 1024 pending and 1024 requests turn a burst into 503s)`,
    ];
  const problems: string[] = [];
  for (const key of ['max_pending_requests', 'max_requests']) {
    if (!(Number(thresholds[key]) > 1024))
      problems.push(`cluster ${name}: circuit_breakers ${key} is not above Envoy's default 1024`);
  }
  return problems;
}

function hasExplicitHttp2(cluster: Obj): boolean {
  const opts = obj(dig(cluster, 'typed_extension_protocol_options', HTTP_PROTOCOL_OPTIONS));
  return (
    opts['@type'] === `${T}${HTTP_PROTOCOL_OPTIONS}` &&
    isObj(dig(opts, 'explicit_http_config', 'http2_protocol_options'))
  );
}

interface Pattern {
  exact?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  ignore_case?: boolean;
}

/** Whether a header name is let through by a ListStringMatcher. */
function matcherAllows(matcher: unknown, header: string): boolean {
  return objs(dig(matcher, 'patterns')).some((raw) => {
    const p = raw as Pattern;
    const fold = (s: string): string => (p.ignore_case ? s.toLowerCase() : s);
    const h = fold(header);
    if (p.exact !== undefined) return h === fold(p.exact);
    if (p.prefix !== undefined) return h.startsWith(fold(p.prefix));
    if (p.suffix !== undefined) return h.endsWith(fold(p.suffix));
    if (p.contains !== undefined) return h.includes(fold(p.contains));
    return false;
  });
}

type EnvoyMode = 'grpc' | 'http';

function envoyProblems(config: unknown, mode: EnvoyMode): string[] {
  const problems: string[] = [];
  for (const t of collectTypes(config)) {
    if (!KNOWN_ENVOY_TYPES.has(t)) problems.push(`unknown @type '${t}'`);
  }
  const clusters = clusterMap(config);
  for (const [name, cluster] of clusters) {
    if (!isPositiveDuration(cluster['connect_timeout']))
      problems.push(`cluster ${name}: no connect_timeout`);
    if (endpointPorts(cluster).length === 0) problems.push(`cluster ${name}: no endpoints`);
  }

  const managers = connectionManagers(config);
  if (managers.length === 0) problems.push('no http_connection_manager');
  problems.push(...downstreamTlsProblems(config));
  for (const hcm of managers) {
    if (hcm['@type'] !== HCM_TYPE)
      problems.push(`http_connection_manager has @type '${str(hcm['@type'])}'`);
    const filters = objs(hcm['http_filters']);
    const names = filters.map((f) => str(f['name']));
    const authz = names.indexOf(EXT_AUTHZ);
    const router = names.indexOf(ROUTER);
    if (router === -1) problems.push('no envoy.filters.http.router');
    else if (router !== names.length - 1)
      problems.push('envoy.filters.http.router is not the last http filter');
    if (router !== -1 && dig(filters[router], 'typed_config', '@type') !== ROUTER_TYPE)
      problems.push('router has the wrong @type');
    if (authz === -1) {
      problems.push('no envoy.filters.http.ext_authz filter');
    } else {
      if (router !== -1 && authz > router) problems.push('ext_authz comes after the router');
      const ext = obj(filters[authz]?.['typed_config']);
      problems.push(...extAuthzProblems(ext, clusters, mode));
      // A metadata namespace is filled by the filter of that name, which must run first.
      for (const ns of list(ext['metadata_context_namespaces']).map(str)) {
        if (!names.slice(0, authz).includes(ns))
          problems.push(
            `metadata_context_namespaces names ${ns}, but no such filter runs before ext_authz (nothing is sent)`,
          );
      }
      const clusterName = str(
        dig(ext, 'grpc_service', 'envoy_grpc', 'cluster_name') ??
          dig(ext, 'http_service', 'server_uri', 'cluster'),
      );
      const authzCluster = clusters.get(clusterName);
      if (authzCluster !== undefined)
        problems.push(...circuitBreakerProblems(clusterName, authzCluster));
    }
    if (mode === 'http') problems.push(...xfccProblems(hcm));
    problems.push(...routeProblems(obj(hcm['route_config']), clusters));
  }
  return problems;
}

function extAuthzProblems(ext: Obj, clusters: Map<string, Obj>, mode: EnvoyMode): string[] {
  const problems: string[] = [];
  if (ext['@type'] !== EXT_AUTHZ_TYPE) problems.push(`ext_authz has @type '${str(ext['@type'])}'`);
  // Unset is false (fail closed); anything else lets every request through when Gatehouse is down.
  const failOpen = ext['failure_mode_allow'];
  if (failOpen !== undefined && failOpen !== false)
    problems.push(
      `ext_authz failure_mode_allow is ${String(failOpen)}: must be false or unset (fail closed)`,
    );
  // disallowed_headers always wins over allowed_headers: a client-sent x-gatehouse-* kept from
  // Gatehouse cannot be listed for removal and reaches the upstream under Gatehouse's name.
  for (const h of ['authorization', ...GATEHOUSE_HEADERS]) {
    if (ext['disallowed_headers'] !== undefined && matcherAllows(ext['disallowed_headers'], h))
      problems.push(`disallowed_headers keeps request header ${h} from Gatehouse`);
  }

  if (mode === 'grpc') {
    if (ext['http_service'] !== undefined) problems.push('gRPC config sets http_service');
    if (ext['transport_api_version'] !== 'V3')
      problems.push('ext_authz transport_api_version must be V3');
    if (ext['include_peer_certificate'] !== true)
      problems.push(
        'ext_authz include_peer_certificate is not true (source.certificate stays empty)',
      );
    // gRPC mode sends every header unless allowed_headers narrows it.
    if (ext['allowed_headers'] !== undefined) {
      for (const h of ['authorization', 'x-forwarded-client-cert', ...GATEHOUSE_HEADERS]) {
        if (!matcherAllows(ext['allowed_headers'], h))
          problems.push(`allowed_headers does not send request header ${h} to Gatehouse`);
      }
    }
    const grpcService = obj(ext['grpc_service']);
    if (!isPositiveDuration(grpcService['timeout']))
      problems.push('ext_authz grpc_service has no timeout');
    const name = str(dig(grpcService, 'envoy_grpc', 'cluster_name'));
    const cluster = clusters.get(name);
    if (cluster === undefined) {
      problems.push(`ext_authz cluster '${name}' is not defined`);
    } else {
      if (!hasExplicitHttp2(cluster))
        problems.push(
          `cluster ${name} does not speak HTTP/2 (explicit_http_config.http2_protocol_options)`,
        );
      const ports = endpointPorts(cluster);
      if (ports.length === 0 || ports.some((p) => p !== DEFAULT_GRPC_PORT))
        problems.push(
          `cluster ${name} must point at Gatehouse's gRPC port ${DEFAULT_GRPC_PORT}, has ${ports.join(',')}`,
        );
      problems.push(...healthCheckProblems(name, cluster));
    }
    return problems;
  }

  if (ext['grpc_service'] !== undefined) problems.push('HTTP-mode config sets grpc_service');
  const httpService = obj(ext['http_service']);
  const uri = obj(httpService['server_uri']);
  if (str(uri['uri']) === '') problems.push('http_service.server_uri.uri is empty');
  if (!isPositiveDuration(uri['timeout'])) problems.push('http_service.server_uri has no timeout');
  const prefix = httpService['path_prefix'];
  if (prefix !== undefined && (!str(prefix).startsWith('/') || str(prefix).endsWith('/'))) {
    problems.push(
      `path_prefix '${str(prefix)}' must start with '/' and not end with '/' (Envoy concatenates it with the path)`,
    );
  }
  const name = str(uri['cluster']);
  const cluster = clusters.get(name);
  if (cluster === undefined) {
    problems.push(`ext_authz cluster '${name}' is not defined`);
  } else {
    const ports = endpointPorts(cluster);
    if (ports.length === 0 || ports.some((p) => p !== DEFAULT_HTTP_PORT))
      problems.push(
        `cluster ${name} must point at the HTTP authorization port ${DEFAULT_HTTP_PORT}, has ${ports.join(',')}`,
      );
    if (hasExplicitHttp2(cluster))
      problems.push(`cluster ${name} forces HTTP/2 on the HTTP/1.1 authorization port`);
    problems.push(...healthCheckProblems(name, cluster));
  }

  const topLevel = ext['allowed_headers'];
  const legacy = dig(httpService, 'authorization_request', 'allowed_headers');
  if (topLevel !== undefined && legacy !== undefined)
    problems.push('allowed_headers set twice (Envoy rejects the config)');
  const allowed = topLevel ?? legacy;
  for (const h of [
    'authorization',
    'x-forwarded-client-cert',
    'x-request-id',
    'traceparent',
    ...GATEHOUSE_HEADERS,
  ]) {
    if (!matcherAllows(allowed, h)) problems.push(`request header ${h} is not sent to Gatehouse`);
  }
  const response = obj(httpService['authorization_response']);
  for (const h of ['x-gatehouse-caller', 'x-gatehouse-policy', 'x-gatehouse-decision']) {
    if (!matcherAllows(response['allowed_upstream_headers'], h))
      problems.push(`upstream header ${h} is not copied on allow`);
  }
  for (const h of [
    'content-type',
    'retry-after',
    'ratelimit-limit',
    'ratelimit-remaining',
    'ratelimit-reset',
    'x-gatehouse-decision',
  ]) {
    if (!matcherAllows(response['allowed_client_headers'], h))
      problems.push(`client header ${h} is not copied on deny`);
  }
  for (const h of ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']) {
    if (!matcherAllows(response['allowed_client_headers_on_success'], h))
      problems.push(`client header ${h} is not copied on allow`);
  }
  return problems;
}

/**
 * HTTP mode: the caller's identity reaches Gatehouse (--trust-xfcc) only as the last XFCC
 * element, so this hop must write it (SANITIZE_SET or APPEND_FORWARD) with the URI SAN;
 * FORWARD_ONLY / ALWAYS_FORWARD_ONLY pass a client-forged header through.
 */
function xfccProblems(hcm: Obj): string[] {
  const problems: string[] = [];
  const mode = str(hcm['forward_client_cert_details']);
  if (mode !== 'SANITIZE_SET' && mode !== 'APPEND_FORWARD')
    problems.push(
      `forward_client_cert_details is ${mode || 'unset (SANITIZE)'}: this hop does not write the XFCC Gatehouse reads`,
    );
  if (dig(hcm, 'set_current_client_cert_details', 'uri') !== true)
    problems.push(
      'set_current_client_cert_details.uri is not true: the XFCC element carries no SPIFFE ID',
    );
  return problems;
}

/** A per-route override that only hands Gatehouse context extensions still checks every request. */
function onlyAddsContext(override: unknown): boolean {
  const o = obj(override);
  const settings = obj(o['check_settings']);
  return (
    Object.keys(o).every((k) => k === '@type' || k === 'check_settings') &&
    o['@type'] === EXT_AUTHZ_PER_ROUTE_TYPE &&
    Object.keys(settings).every((k) => k === 'context_extensions')
  );
}

function routeProblems(routeConfig: Obj, clusters: Map<string, Obj>): string[] {
  const problems: string[] = [];
  let healthz = 0;
  for (const vhost of objs(routeConfig['virtual_hosts'])) {
    if (dig(vhost, 'typed_per_filter_config', EXT_AUTHZ) !== undefined)
      problems.push(`virtual host ${str(vhost['name'])} overrides ext_authz for every route`);
    for (const route of objs(vhost['routes'])) {
      const target = str(dig(route, 'route', 'cluster'));
      if (target !== '' && !clusters.has(target))
        problems.push(`route to undefined cluster '${target}'`);
      const override = dig(route, 'typed_per_filter_config', EXT_AUTHZ);
      const exactPath = dig(route, 'match', 'path');
      if (typeof exactPath === 'string' && HEALTH_PATHS.has(exactPath)) {
        if (exactPath === '/healthz') healthz += 1;
        if (dig(override, '@type') !== EXT_AUTHZ_PER_ROUTE_TYPE)
          problems.push(`${exactPath} override has @type '${str(dig(override, '@type'))}'`);
        if (dig(override, 'disabled') !== true)
          problems.push(`${exactPath} does not disable ext_authz`);
      } else if (override !== undefined && !onlyAddsContext(override)) {
        problems.push(
          `route ${JSON.stringify(route['match'])} changes ext_authz; only exact health routes (${[...HEALTH_PATHS].join(', ')}) may`,
        );
      }
    }
  }
  if (healthz === 0) problems.push('no exact /healthz route');
  return problems;
}

describe('envoy/', () => {
  const grpcConfig = loadOne('envoy/envoy.yaml');
  const httpConfig = loadOne('envoy/envoy-http-mode.yaml');

  test('envoy.yaml (gRPC mode) has no problems', () => {
    expect(envoyProblems(grpcConfig, 'grpc')).toEqual([]);
  });

  test('envoy-http-mode.yaml (HTTP mode) has no problems', () => {
    expect(envoyProblems(httpConfig, 'http')).toEqual([]);
  });

  test('the documented facts hold literally', () => {
    const hcm = connectionManagers(grpcConfig)[0] ?? {};
    const filters = objs(hcm['http_filters']);
    expect(filters.map((f) => f['name'])).toEqual([EXT_AUTHZ, ROUTER]);
    expect(dig(filters[0], 'typed_config', '@type')).toBe(EXT_AUTHZ_TYPE);
    expect(dig(filters[0], 'typed_config', 'transport_api_version')).toBe('V3');
    expect(dig(filters[0], 'typed_config', 'failure_mode_allow')).toBe(false);
    expect(dig(filters[0], 'typed_config', 'include_peer_certificate')).toBe(true);
    for (const config of [grpcConfig, httpConfig]) {
      const chains = httpFilterChains(config);
      expect(chains.length).toBeGreaterThan(0);
      for (const { chain } of chains)
        expect(dig(chain, 'transport_socket', 'typed_config', 'require_client_certificate')).toBe(
          true,
        );
    }
    const cluster = clusterMap(grpcConfig).get('gatehouse') ?? {};
    expect(
      dig(
        cluster,
        'typed_extension_protocol_options',
        HTTP_PROTOCOL_OPTIONS,
        'explicit_http_config',
        'http2_protocol_options',
      ),
    ).toEqual({});
    expect(endpointPorts(cluster)).toEqual([DEFAULT_GRPC_PORT]);
    const httpCluster = clusterMap(httpConfig).get('gatehouse_http') ?? {};
    expect(endpointPorts(httpCluster)).toEqual([DEFAULT_HTTP_PORT]);
    expect(healthCheckPorts(httpCluster)).toEqual([DEFAULT_ADMIN_PORT]);
  });

  test('the ports compared against are the ones `serve` defaults to', () => {
    // The checkers use src/cli/defaults.ts; serve's own help says which defaults it applies.
    const help = runCli(['serve', '--help']);
    expect(help.status).toBe(0);
    const option = (flag: string): string => serveOptionHelp(help.stdout, flag);
    expect(option('--grpc-port')).toContain(`(default: ${DEFAULT_GRPC_PORT}`);
    expect(option('--admin-port')).toContain(`(default: ${DEFAULT_ADMIN_PORT}`);
    // The HTTP mode is off unless asked for: its port is named, not defaulted.
    expect(option('--http-port')).toContain(String(DEFAULT_HTTP_PORT));
    expect(option('--http-port')).not.toContain('(default:');
    expect(new Set([DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, DEFAULT_ADMIN_PORT]).size).toBe(3);
  });

  describe('the checker notices', () => {
    const hcmOf = (c: unknown): Obj => connectionManagers(c)[0] ?? {};
    const extOf = (c: unknown): Obj =>
      obj(objs(hcmOf(c)['http_filters']).find((f) => f['name'] === EXT_AUTHZ)?.['typed_config']);
    const grpcCluster = (c: unknown): Obj => clusterMap(c).get('gatehouse') ?? {};
    const httpService = (c: unknown): Obj => obj(extOf(c)['http_service']);
    const healthRoute = (c: unknown): Obj =>
      objs(dig(hcmOf(c), 'route_config', 'virtual_hosts', 0, 'routes')).find(
        (r) => dig(r, 'match', 'path') === '/healthz',
      ) ?? {};
    const tlsOf = (c: unknown): Obj =>
      obj(dig(httpFilterChains(c)[0]?.chain, 'transport_socket', 'typed_config'));
    const endpointOf = (c: unknown, cluster: string): Obj =>
      obj(
        dig(
          clusterMap(c).get(cluster),
          'load_assignment',
          'endpoints',
          0,
          'lb_endpoints',
          0,
          'endpoint',
        ),
      );
    const socketOf = (c: unknown, cluster: string): Obj =>
      obj(dig(endpointOf(c, cluster), 'address', 'socket_address'));
    const addRoute = (c: unknown, route: Obj): void => {
      list(dig(hcmOf(c), 'route_config', 'virtual_hosts', 0, 'routes')).unshift(route);
    };

    type Case = [string, EnvoyMode, (c: Obj) => void, RegExp];
    /** The mode's Gatehouse cluster sent to another of its ports: the problem names the one it wants. */
    const onWrongPort = (name: string, mode: EnvoyMode, port: number): Case => {
      const [cluster, role, wanted] =
        mode === 'grpc'
          ? ['gatehouse', 'gRPC', DEFAULT_GRPC_PORT]
          : ['gatehouse_http', 'authorization', DEFAULT_HTTP_PORT];
      return [
        name,
        mode,
        (c) => {
          socketOf(c, cluster)['port_value'] = port;
        },
        new RegExp(`${role} port ${wanted}, has ${port}`),
      ];
    };

    /** The same fault in the gRPC and the HTTP-mode example. */
    const inBothModes = (name: string, mutate: Case[2], expected: RegExp): Case[] => [
      [name, 'grpc', mutate, expected],
      [`${name} in HTTP mode`, 'http', mutate, expected],
    ];

    const cases: Case[] = [
      ...inBothModes(
        'router before ext_authz',
        (c) => {
          (hcmOf(c)['http_filters'] as unknown[]).reverse();
        },
        /router is not the last|after the router/,
      ),
      [
        'no ext_authz filter',
        'grpc',
        (c) => {
          hcmOf(c)['http_filters'] = objs(hcmOf(c)['http_filters']).filter(
            (f) => f['name'] !== EXT_AUTHZ,
          );
        },
        /no envoy.filters.http.ext_authz/,
      ],
      [
        'a v2 type URL',
        'grpc',
        (c) => {
          extOf(c)['@type'] = `${T}envoy.config.filter.http.ext_authz.v2.ExtAuthz`;
        },
        /ext_authz has @type|unknown @type/,
      ],
      [
        'transport_api_version unset',
        'grpc',
        (c) => {
          delete extOf(c)['transport_api_version'];
        },
        /V3/,
      ],
      [
        'no timeout',
        'grpc',
        (c) => {
          delete obj(extOf(c)['grpc_service'])['timeout'];
        },
        /no timeout/,
      ],
      ...inBothModes(
        'fail open',
        (c) => {
          extOf(c)['failure_mode_allow'] = true;
        },
        /failure_mode_allow/,
      ),
      [
        'HTTP/1.1 to the gRPC port',
        'grpc',
        (c) => {
          delete grpcCluster(c)['typed_extension_protocol_options'];
        },
        /HTTP\/2/,
      ],
      [
        'HTTP/1 options instead of HTTP/2',
        'grpc',
        (c) => {
          obj(dig(grpcCluster(c), 'typed_extension_protocol_options', HTTP_PROTOCOL_OPTIONS))[
            'explicit_http_config'
          ] = { http_protocol_options: {} };
        },
        /HTTP\/2/,
      ],
      [
        'HTTP/2 options without the HttpProtocolOptions @type',
        'grpc',
        (c) => {
          delete obj(
            dig(grpcCluster(c), 'typed_extension_protocol_options', HTTP_PROTOCOL_OPTIONS),
          )['@type'];
        },
        /HTTP\/2/,
      ],
      onWrongPort('the gRPC cluster on the admin port', 'grpc', DEFAULT_ADMIN_PORT),
      onWrongPort('the gRPC cluster on the HTTP-mode port', 'grpc', DEFAULT_HTTP_PORT),
      ...inBothModes(
        'no client certificate required',
        (c) => {
          tlsOf(c)['require_client_certificate'] = false;
        },
        /require_client_certificate/,
      ),
      [
        'require_client_certificate left to its default',
        'grpc',
        (c) => {
          delete tlsOf(c)['require_client_certificate'];
        },
        /require_client_certificate/,
      ],
      [
        'a plaintext listener',
        'grpc',
        (c) => {
          delete obj(httpFilterChains(c)[0]?.chain)['transport_socket'];
        },
        /no DownstreamTlsContext/,
      ],
      [
        'client certificates not verified',
        'grpc',
        (c) => {
          delete obj(tlsOf(c)['common_tls_context'])['validation_context'];
        },
        /no validation context/,
      ],
      [
        'no peer certificate',
        'grpc',
        (c) => {
          delete extOf(c)['include_peer_certificate'];
        },
        /include_peer_certificate/,
      ],
      [
        'x-gatehouse-* withheld by allowed_headers',
        'grpc',
        (c) => {
          extOf(c)['allowed_headers'] = {
            patterns: [
              { exact: 'authorization' },
              { exact: 'x-forwarded-client-cert' },
              { exact: 'x-gatehouse-caller' },
            ],
          };
        },
        /x-gatehouse-policy/,
      ],
      [
        'x-gatehouse-* withheld by disallowed_headers',
        'grpc',
        (c) => {
          extOf(c)['disallowed_headers'] = { patterns: [{ prefix: 'x-gatehouse-' }] };
        },
        /disallowed_headers keeps request header x-gatehouse-caller/,
      ],
      [
        'a gRPC health check for an unknown service',
        'grpc',
        (c) => {
          obj(dig(grpcCluster(c), 'health_checks', 0, 'grpc_health_check'))['service_name'] =
            'gatehouse';
        },
        /service_name 'gatehouse' is unknown/,
      ],
      [
        'an HTTP health check on the gRPC port',
        'grpc',
        (c) => {
          const hc = obj(dig(grpcCluster(c), 'health_checks', 0));
          delete hc['grpc_health_check'];
          hc['http_health_check'] = { path: '/readyz' };
        },
        new RegExp(`HTTP health checks go to port ${DEFAULT_GRPC_PORT}, not the admin port`),
      ],
      [
        'a gRPC health check on the admin port',
        'grpc',
        (c) => {
          endpointOf(c, 'gatehouse')['health_check_config'] = { port_value: DEFAULT_ADMIN_PORT };
        },
        new RegExp(`gRPC health checks go to port ${DEFAULT_ADMIN_PORT}`),
      ],
      [
        'a health check on the wrong path',
        'http',
        (c) => {
          obj(dig(clusterMap(c).get('gatehouse_http'), 'health_checks', 0, 'http_health_check'))[
            'path'
          ] = '/metrics';
        },
        /path '\/metrics' is not/,
      ],
      [
        'a /readyz route still checked',
        'grpc',
        (c) => {
          addRoute(c, { match: { path: '/readyz' }, route: { cluster: 'app' } });
        },
        /\/readyz does not disable ext_authz/,
      ],
      [
        'request-body buffering turned off on the catch-all route',
        'grpc',
        (c) => {
          const r = objs(dig(hcmOf(c), 'route_config', 'virtual_hosts', 0, 'routes')).find(
            (x) => dig(x, 'match', 'prefix') === '/',
          );
          obj(dig(r, 'typed_per_filter_config', EXT_AUTHZ, 'check_settings'))[
            'disable_request_body_buffering'
          ] = true;
        },
        /changes ext_authz/,
      ],
      [
        'ext_authz disabled on the catch-all route',
        'grpc',
        (c) => {
          const r = objs(dig(hcmOf(c), 'route_config', 'virtual_hosts', 0, 'routes')).find(
            (x) => dig(x, 'match', 'prefix') === '/',
          );
          obj(r)['typed_per_filter_config'] = {
            [EXT_AUTHZ]: { '@type': EXT_AUTHZ_PER_ROUTE_TYPE, disabled: true },
          };
        },
        /changes ext_authz/,
      ],
      [
        'a misspelt cluster name',
        'grpc',
        (c) => {
          obj(dig(extOf(c), 'grpc_service', 'envoy_grpc'))['cluster_name'] = 'gatehous';
        },
        /not defined/,
      ],
      [
        '/healthz override with the filter type',
        'grpc',
        (c) => {
          obj(dig(healthRoute(c), 'typed_per_filter_config', EXT_AUTHZ))['@type'] = EXT_AUTHZ_TYPE;
        },
        /\/healthz override/,
      ],
      ...inBothModes(
        '/healthz not disabled',
        (c) => {
          delete obj(dig(healthRoute(c), 'typed_per_filter_config', EXT_AUTHZ))['disabled'];
        },
        /does not disable/,
      ),
      [
        '/healthz as a prefix',
        'grpc',
        (c) => {
          healthRoute(c)['match'] = { prefix: '/healthz' };
        },
        /only the exact \/healthz|no exact \/healthz/,
      ],
      [
        'an unknown @type',
        'grpc',
        (c) => {
          obj(dig(objs(hcmOf(c)['http_filters'])[1], 'typed_config'))['@type'] =
            `${T}envoy.extensions.filters.http.router.v3.Routr`;
        },
        /unknown @type/,
      ],
      onWrongPort('HTTP mode on the gRPC port', 'http', DEFAULT_GRPC_PORT),
      onWrongPort('HTTP mode on the admin port', 'http', DEFAULT_ADMIN_PORT),
      [
        'HTTP-mode /readyz health check on the authorization port',
        'http',
        (c) => {
          delete endpointOf(c, 'gatehouse_http')['health_check_config'];
        },
        new RegExp(
          `HTTP health checks go to port ${DEFAULT_HTTP_PORT}, not the admin port ${DEFAULT_ADMIN_PORT}`,
        ),
      ],
      [
        'HTTP-mode health check on the gRPC port',
        'http',
        (c) => {
          obj(endpointOf(c, 'gatehouse_http')['health_check_config'])['port_value'] =
            DEFAULT_GRPC_PORT;
        },
        /not the admin port/,
      ],
      [
        'HTTP mode forced to HTTP/2',
        'http',
        (c) => {
          (clusterMap(c).get('gatehouse_http') ?? {})['typed_extension_protocol_options'] = {
            [HTTP_PROTOCOL_OPTIONS]: {
              '@type': `${T}${HTTP_PROTOCOL_OPTIONS}`,
              explicit_http_config: { http2_protocol_options: {} },
            },
          };
        },
        /forces HTTP\/2/,
      ],
      [
        'client-sent x-gatehouse-* not sent to Gatehouse',
        'http',
        (c) => {
          const a = obj(extOf(c)['allowed_headers']);
          a['patterns'] = objs(a['patterns']).filter((p) => p['prefix'] !== 'x-gatehouse-');
        },
        /request header x-gatehouse-anything-else is not sent/,
      ],
      [
        'only some x-gatehouse-* sent to Gatehouse',
        'http',
        (c) => {
          const a = obj(extOf(c)['allowed_headers']);
          a['patterns'] = [
            ...objs(a['patterns']).filter((p) => p['prefix'] !== 'x-gatehouse-'),
            { exact: 'x-gatehouse-caller' },
          ];
        },
        /request header x-gatehouse-policy is not sent/,
      ],
      [
        'x-gatehouse-caller not copied upstream',
        'http',
        (c) => {
          const r = obj(dig(httpService(c), 'authorization_response', 'allowed_upstream_headers'));
          r['patterns'] = objs(r['patterns']).filter((p) => p['exact'] !== 'x-gatehouse-caller');
        },
        /upstream header x-gatehouse-caller is not copied/,
      ],
      [
        'client XFCC forwarded as is',
        'http',
        (c) => {
          hcmOf(c)['forward_client_cert_details'] = 'FORWARD_ONLY';
        },
        /forward_client_cert_details is FORWARD_ONLY/,
      ],
      [
        'XFCC sanitised away',
        'http',
        (c) => {
          delete hcmOf(c)['forward_client_cert_details'];
        },
        /forward_client_cert_details is unset/,
      ],
      [
        'XFCC without the URI SAN',
        'http',
        (c) => {
          delete hcmOf(c)['set_current_client_cert_details'];
        },
        /set_current_client_cert_details\.uri/,
      ],
      [
        'HTTP mode without a timeout',
        'http',
        (c) => {
          delete obj(httpService(c)['server_uri'])['timeout'];
        },
        /no timeout/,
      ],
      [
        'path_prefix "/"',
        'http',
        (c) => {
          httpService(c)['path_prefix'] = '/';
        },
        /path_prefix/,
      ],
      [
        'allowed_headers in both places',
        'http',
        (c) => {
          httpService(c)['authorization_request'] = {
            allowed_headers: { patterns: [{ exact: 'authorization' }] },
          };
        },
        /set twice/,
      ],
      [
        'XFCC not sent',
        'http',
        (c) => {
          extOf(c)['allowed_headers'] = { patterns: [{ exact: 'authorization' }] };
        },
        /x-forwarded-client-cert/,
      ],
      [
        'no ALPN on the TLS listener',
        'grpc',
        (c) => {
          delete obj(tlsOf(c)['common_tls_context'])['alpn_protocols'];
        },
        /ALPN does not offer h2/,
      ],
      [
        'ALPN without h2 in HTTP mode',
        'http',
        (c) => {
          obj(tlsOf(c)['common_tls_context'])['alpn_protocols'] = ['http/1.1'];
        },
        /ALPN does not offer h2/,
      ],
      [
        'no circuit breakers on the Gatehouse cluster',
        'grpc',
        (c) => {
          delete grpcCluster(c)['circuit_breakers'];
        },
        /cluster gatehouse: no circuit_breakers/,
      ],
      [
        'default-sized circuit breakers in HTTP mode',
        'http',
        (c) => {
          obj(dig(clusterMap(c).get('gatehouse_http'), 'circuit_breakers', 'thresholds', 0))[
            'max_pending_requests'
          ] = 1024;
        },
        /max_pending_requests is not above/,
      ],
      [
        'jwt_authn metadata without the filter',
        'grpc',
        (c) => {
          extOf(c)['metadata_context_namespaces'] = ['envoy.filters.http.jwt_authn'];
        },
        /names envoy\.filters\.http\.jwt_authn, but no such filter/,
      ],
      [
        'HTTP-mode health check on plain /readyz',
        'http',
        (c) => {
          obj(dig(clusterMap(c).get('gatehouse_http'), 'health_checks', 0, 'http_health_check'))[
            'path'
          ] = '/readyz';
        },
        /Redis is down; use \/readyz\?exclude=redis/,
      ],
      [
        'ratelimit headers dropped on allow',
        'http',
        (c) => {
          delete obj(httpService(c)['authorization_response'])['allowed_client_headers_on_success'];
        },
        /ratelimit-limit is not copied on allow/,
      ],
    ];
    test.each(cases)('%s', (_name, mode, mutate, expected) => {
      const original = mode === 'grpc' ? grpcConfig : httpConfig;
      const config = clone(original);
      mutate(config);
      expect(config).not.toEqual(original);
      expect(envoyProblems(config, mode).join('\n')).toMatch(expected);
    });

    // What Envoy accepts as fail-closed: failure_mode_allow defaults to false.
    test.each(['grpc', 'http'] as EnvoyMode[])(
      'failure_mode_allow unset is fail closed too (%s)',
      (mode) => {
        const config = clone(mode === 'grpc' ? grpcConfig : httpConfig);
        delete extOf(config)['failure_mode_allow'];
        expect(envoyProblems(config, mode).filter((p) => p.includes('failure_mode_allow'))).toEqual(
          [],
        );
      },
    );
  });
});

// ---------------------------------------------------------------------------------------
// Istio and the Kubernetes base
// ---------------------------------------------------------------------------------------

const BASE = 'istio/gatehouse';

const EXPECTED_API_VERSIONS: Record<string, string> = {
  Namespace: 'v1',
  ServiceAccount: 'v1',
  Deployment: 'apps/v1',
  Service: 'v1',
  PodDisruptionBudget: 'policy/v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
  PriorityClass: 'scheduling.k8s.io/v1',
  ConfigMap: 'v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  AuthorizationPolicy: 'security.istio.io/v1',
  PeerAuthentication: 'security.istio.io/v1',
};

interface Base {
  kustomization: Obj;
  docs: Obj[];
}

/** The base as `kubectl apply -k` would send it (test/helpers/kustomize.ts). */
function loadBase(): Base {
  return {
    kustomization: loadOne(`${BASE}/kustomization.yaml`),
    docs: renderKustomization(path.join(ROOT, BASE)),
  };
}

function ofKind(docs: Obj[], kind: string): Obj[] {
  return docs.filter((d) => d['kind'] === kind);
}

function labelsSelect(selector: unknown, labels: unknown): boolean {
  const want = Object.entries(obj(selector));
  return want.length > 0 && want.every(([k, v]) => obj(labels)[k] === v);
}

function argValue(args: unknown[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  if (i !== -1) return str(args[i + 1]);
  const inline = args.map(str).find((a) => a.startsWith(`${flag}=`));
  return inline?.slice(flag.length + 1);
}

/** How istiod recognises an HTTP/2 (gRPC) Service port; otherwise its outbound cluster is HTTP/1.1. */
function isGrpcServicePort(port: Obj): boolean {
  const name = str(port['name']);
  return name === 'grpc' || name.startsWith('grpc-') || port['appProtocol'] === 'grpc';
}

/** Resolves a probe's or Service's port (number or container port name) to a number. */
function resolvePort(port: unknown, containerPorts: Obj[]): number | undefined {
  if (typeof port === 'number') return port;
  const named = containerPorts.find((p) => p['name'] === port);
  return named === undefined ? undefined : Number(named['containerPort']);
}

function securityProblems(who: string, container: Obj, podSecurity: Obj): string[] {
  const c = obj(container['securityContext']);
  const eff = (k: string): unknown => (c[k] !== undefined ? c[k] : podSecurity[k]);
  const problems: string[] = [];
  if (eff('runAsNonRoot') !== true) problems.push(`${who}: runAsNonRoot is not true`);
  const uid = eff('runAsUser');
  if (typeof uid !== 'number' || uid === 0)
    problems.push(`${who}: runAsUser must be a non-zero number`);
  if (c['readOnlyRootFilesystem'] !== true)
    problems.push(`${who}: readOnlyRootFilesystem is not true`);
  if (c['allowPrivilegeEscalation'] !== false)
    problems.push(`${who}: allowPrivilegeEscalation is not false`);
  if (!list(dig(c, 'capabilities', 'drop')).includes('ALL'))
    problems.push(`${who}: capabilities do not drop ALL`);
  if (dig(eff('seccompProfile'), 'type') !== 'RuntimeDefault')
    problems.push(`${who}: seccompProfile is not RuntimeDefault`);
  return problems;
}

/** The Kubernetes objects of the base, and how they fit together. */
/** Only proxies may ask: a NetworkPolicy limits who reaches 9191, an AuthorizationPolicy asks for an mTLS identity. */
function askerReachProblems(docs: Obj[], podLabels: unknown): string[] {
  const problems: string[] = [];
  const netpols = ofKind(docs, 'NetworkPolicy').filter((n) =>
    labelsSelect(dig(obj(n['spec']), 'podSelector', 'matchLabels'), podLabels),
  );
  if (netpols.length === 0)
    problems.push(
      'no NetworkPolicy selects the gatehouse pods: anyone in the cluster can reach the Check port',
    );
  for (const n of netpols) {
    for (const rule of objs(obj(n['spec'])['ingress'])) {
      const opensGrpc =
        objs(rule['ports']).some((p) => p['port'] === DEFAULT_GRPC_PORT) ||
        rule['ports'] === undefined;
      if (opensGrpc && objs(rule['from']).length === 0)
        problems.push(
          `NetworkPolicy ${str(dig(n, 'metadata', 'name'))} opens ${DEFAULT_GRPC_PORT} to every source`,
        );
    }
  }
  const authz = ofKind(docs, 'AuthorizationPolicy').filter((a) =>
    labelsSelect(dig(obj(a['spec']), 'selector', 'matchLabels'), podLabels),
  );
  const grpcRules = authz
    .flatMap((a) => objs(obj(a['spec'])['rules']))
    .filter((r) =>
      objs(r['to']).some((t) =>
        list(dig(t, 'operation', 'ports')).includes(String(DEFAULT_GRPC_PORT)),
      ),
    );
  if (
    grpcRules.length === 0 ||
    grpcRules.some(
      (r) => !objs(r['from']).some((f) => list(dig(f, 'source', 'principals')).length > 0),
    )
  ) {
    problems.push(`no AuthorizationPolicy limits ${DEFAULT_GRPC_PORT} to mTLS principals`);
  }
  return problems;
}

function workloadProblems(docs: Obj[], generatedConfigMaps: string[]): string[] {
  const problems: string[] = [];
  for (const d of docs) {
    const kind = str(d['kind']);
    const want = EXPECTED_API_VERSIONS[kind];
    if (want === undefined) problems.push(`unexpected kind ${kind}`);
    else if (d['apiVersion'] !== want)
      problems.push(`${kind} has apiVersion ${str(d['apiVersion'])}, expected ${want}`);
  }
  for (const kind of ['Deployment', 'Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler']) {
    if (ofKind(docs, kind).length !== 1)
      problems.push(`expected one ${kind}, found ${ofKind(docs, kind).length}`);
  }
  const deployment = ofKind(docs, 'Deployment')[0] ?? {};
  const spec = obj(deployment['spec']);
  const pod = obj(dig(spec, 'template', 'spec'));
  const podLabels = dig(spec, 'template', 'metadata', 'labels');
  problems.push(...askerReachProblems(docs, podLabels));
  if (spec['replicas'] !== undefined)
    problems.push('Deployment sets replicas beside the HPA: every apply resets the scale');
  if (!labelsSelect(dig(spec, 'selector', 'matchLabels'), podLabels))
    problems.push('Deployment selector does not match its pod labels');

  const container = objs(pod['containers']).find((c) => c['name'] === 'gatehouse');
  if (container === undefined) return [...problems, 'no container named gatehouse'];
  const ports = objs(container['ports']);
  const grpcPort = ports.find((p) => p['containerPort'] === DEFAULT_GRPC_PORT);
  const adminPort = ports.find((p) => p['containerPort'] === DEFAULT_ADMIN_PORT);
  if (grpcPort?.['name'] !== 'grpc')
    problems.push(`container port ${DEFAULT_GRPC_PORT} is not named grpc`);
  if (adminPort?.['name'] !== 'http-admin')
    problems.push(`container port ${DEFAULT_ADMIN_PORT} is not named http-admin`);

  const args = list(container['args']);
  if (args[0] !== 'serve') problems.push('container args do not start with serve');
  if (argValue(args, '--trust-domain') === undefined)
    problems.push('no --trust-domain: every caller would be a 401');
  // The port Gatehouse listens on: flag, else its environment twin, else the built-in default.
  const envValue = (name: string): string | undefined => {
    const e = objs(container['env']).find((x) => x['name'] === name);
    return e === undefined ? undefined : str(e['value']);
  };
  for (const [flag, env, want, what] of [
    ['--admin-port', 'GATEHOUSE_ADMIN_PORT', DEFAULT_ADMIN_PORT, 'admin'],
    ['--grpc-port', 'GATEHOUSE_GRPC_PORT', DEFAULT_GRPC_PORT, 'grpc'],
  ] as const) {
    const listen = argValue(args, flag) ?? envValue(env);
    if (listen !== undefined && Number(listen) !== want)
      problems.push(`${flag} ${listen} is not the container's ${what} port ${want}`);
  }

  // Readiness leaves Redis out: a Redis outage must not take every replica out of service
  // (limits then follow onBackendError; identity and permissions still apply).
  for (const [probe, wantPath] of [
    ['livenessProbe', '/healthz'],
    ['readinessProbe', '/readyz?exclude=redis'],
  ] as const) {
    const get = obj(dig(container, probe, 'httpGet'));
    if (get['path'] !== wantPath)
      problems.push(`${probe} path is ${str(get['path']) || 'unset'}, expected ${wantPath}`);
    if (resolvePort(get['port'], ports) !== DEFAULT_ADMIN_PORT)
      problems.push(`${probe} is not on the admin port ${DEFAULT_ADMIN_PORT}`);
  }

  const podSecurity = obj(pod['securityContext']);
  problems.push(...securityProblems('container gatehouse', container, podSecurity));
  for (const init of objs(pod['initContainers']))
    problems.push(...securityProblems(`init container ${str(init['name'])}`, init, podSecurity));

  const resources = obj(container['resources']);
  if (dig(resources, 'requests', 'cpu') === undefined)
    problems.push('no CPU request (the HPA needs one)');
  if (
    dig(resources, 'requests', 'memory') === undefined ||
    dig(resources, 'limits', 'memory') === undefined
  )
    problems.push('memory request/limit missing');
  // V8 sizes its heap for the node, not the cgroup: without a cap, RSS at saturation passes 256Mi.
  const oldSpace = /--max-old-space-size=(\d+)/.exec(envValue('NODE_OPTIONS') ?? '')?.[1];
  const limitMi = /^(\d+)Mi$/.exec(str(dig(resources, 'limits', 'memory')))?.[1];
  if (oldSpace === undefined)
    problems.push(
      'NODE_OPTIONS sets no --max-old-space-size: the heap grows past the memory limit before it collects',
    );
  else if (limitMi !== undefined && Number(oldSpace) + 112 > Number(limitMi))
    problems.push(
      `--max-old-space-size=${oldSpace} leaves less than the ~112 MiB baseline below the ${limitMi}Mi limit`,
    );

  for (const env of objs(container['env'])) {
    const ref = dig(env, 'valueFrom', 'secretKeyRef');
    if (env['name'] === 'GATEHOUSE_REDIS' && ref !== undefined && dig(ref, 'optional') !== true)
      problems.push('GATEHOUSE_REDIS Secret is not optional: pods would not start without it');
  }

  // Policies: --policies names a mounted volume, fed from the generated ConfigMap.
  const volumes = new Map(objs(pod['volumes']).map((v) => [str(v['name']), v]));
  const policiesDir = argValue(args, '--policies');
  const policiesMount = objs(container['volumeMounts']).find((m) => m['mountPath'] === policiesDir);
  if (policiesDir === undefined || policiesMount === undefined) {
    problems.push(`--policies ${policiesDir ?? '(unset)'} is not a mounted volume`);
  } else {
    const volume = volumes.get(str(policiesMount['name']));
    if (volume === undefined) problems.push(`volume ${str(policiesMount['name'])} is not defined`);
  }
  const configMapVolumes = [...volumes.values()].filter((v) => v['configMap'] !== undefined);
  for (const v of configMapVolumes) {
    const name = str(dig(v, 'configMap', 'name'));
    if (!generatedConfigMaps.includes(name))
      problems.push(
        `volume ${str(v['name'])} uses ConfigMap ${name}, which the kustomization does not generate`,
      );
  }
  if (configMapVolumes.length === 0) problems.push('no volume from the policies ConfigMap');
  for (const init of objs(pod['initContainers'])) {
    // An init container that copies the ConfigMap into the --policies volume must name both paths.
    const script = [...list(init['command']), ...list(init['args'])].map(str).join(' ');
    for (const m of objs(init['volumeMounts'])) {
      if (!script.includes(str(m['mountPath'])))
        problems.push(
          `init container ${str(init['name'])} does not use its mount ${str(m['mountPath'])}`,
        );
    }
  }

  const serviceAccount = pod['serviceAccountName'];
  if (
    serviceAccount !== undefined &&
    !ofKind(docs, 'ServiceAccount').some((sa) => dig(sa, 'metadata', 'name') === serviceAccount)
  ) {
    problems.push(`ServiceAccount ${str(serviceAccount)} is not in the base`);
  }

  const service = ofKind(docs, 'Service')[0] ?? {};
  if (!labelsSelect(dig(service, 'spec', 'selector'), podLabels))
    problems.push('Service selector does not match the pod labels');
  const servicePorts = objs(dig(service, 'spec', 'ports'));
  const grpcService = servicePorts.find((p) => p['port'] === DEFAULT_GRPC_PORT);
  if (grpcService === undefined) {
    problems.push(`Service has no port ${DEFAULT_GRPC_PORT}`);
  } else {
    if (!isGrpcServicePort(grpcService))
      problems.push(
        `Service port ${DEFAULT_GRPC_PORT} is not recognisable as gRPC (name grpc/grpc-* or appProtocol grpc)`,
      );
    if (resolvePort(grpcService['targetPort'] ?? DEFAULT_GRPC_PORT, ports) !== DEFAULT_GRPC_PORT)
      problems.push(
        `Service port ${DEFAULT_GRPC_PORT} does not reach container port ${DEFAULT_GRPC_PORT}`,
      );
  }
  const adminService = servicePorts.find((p) => p['port'] === DEFAULT_ADMIN_PORT);
  if (adminService?.['name'] !== 'http-admin')
    problems.push(`Service port ${DEFAULT_ADMIN_PORT} is not named http-admin`);

  const pdb = ofKind(docs, 'PodDisruptionBudget')[0] ?? {};
  if (dig(pdb, 'spec', 'maxUnavailable') !== 1 || dig(pdb, 'spec', 'minAvailable') !== undefined)
    problems.push('PodDisruptionBudget is not maxUnavailable: 1');
  if (!labelsSelect(dig(pdb, 'spec', 'selector', 'matchLabels'), podLabels))
    problems.push('PodDisruptionBudget selector does not match the pod labels');

  const hpa = ofKind(docs, 'HorizontalPodAutoscaler')[0] ?? {};
  const target = obj(dig(hpa, 'spec', 'scaleTargetRef'));
  if (
    target['kind'] !== 'Deployment' ||
    target['apiVersion'] !== 'apps/v1' ||
    target['name'] !== dig(deployment, 'metadata', 'name')
  ) {
    problems.push('HorizontalPodAutoscaler does not target the Deployment');
  }
  const cpu = objs(dig(hpa, 'spec', 'metrics')).find(
    (m) => m['type'] === 'Resource' && dig(m, 'resource', 'name') === 'cpu',
  );
  if (
    dig(cpu, 'resource', 'target', 'type') !== 'Utilization' ||
    dig(cpu, 'resource', 'target', 'averageUtilization') !== 70
  )
    problems.push('HorizontalPodAutoscaler does not scale on 70% CPU');
  if (
    Number(dig(hpa, 'spec', 'minReplicas')) < 1 ||
    Number(dig(hpa, 'spec', 'maxReplicas')) < Number(dig(hpa, 'spec', 'minReplicas'))
  )
    problems.push('HorizontalPodAutoscaler replica bounds are wrong');
  return problems;
}

/** The k8s base's policies are the examples' for Istio's default trust domain. */
function toIstioTrustDomain(text: string): string {
  return text.replace(/spiffe:\/\/shop\.example\//g, 'spiffe://cluster.local/');
}
const toIstioTrustDomainFn = toIstioTrustDomain;

function deploymentContainer(docs: Obj[]): Obj {
  return (
    objs(dig(ofKind(docs, 'Deployment')[0], 'spec', 'template', 'spec', 'containers')).find(
      (c) => c['name'] === 'gatehouse',
    ) ?? {}
  );
}

const PACKAGE_VERSION = (JSON.parse(read('package.json')) as { version: string }).version;

/** What a production cluster needs beyond "it starts". */
function productionProblems(docs: Obj[]): string[] {
  const problems: string[] = [];
  const deployment = ofKind(docs, 'Deployment')[0] ?? {};
  const pod = obj(dig(deployment, 'spec', 'template', 'spec'));
  const podLabels = obj(dig(deployment, 'spec', 'template', 'metadata', 'labels'));
  const container = deploymentContainer(docs);
  const image = str(container['image']);
  if (
    !/@sha256:[0-9a-f]{64}$/.test(image) &&
    !new RegExp(`:${PACKAGE_VERSION.replace(/\./g, '\\.')}$`).test(image)
  )
    problems.push(`image ${image} is not pinned to the release ${PACKAGE_VERSION} (or a digest)`);
  if (/:latest$/.test(image) || !/[:@]/.test(image.replace(/^[^/]*\//, '')))
    problems.push(`image ${image} floats`);
  if (dig(deployment, 'spec', 'replicas') !== undefined)
    problems.push('Deployment sets replicas beside the HPA');
  if (ofKind(docs, 'HorizontalPodAutoscaler').length !== 1)
    problems.push('no HorizontalPodAutoscaler');
  const pdb = ofKind(docs, 'PodDisruptionBudget')[0];
  if (dig(pdb, 'spec', 'maxUnavailable') !== 1)
    problems.push('PodDisruptionBudget is not maxUnavailable: 1');
  const spread = objs(pod['topologySpreadConstraints']);
  for (const [key, hard] of [
    ['topology.kubernetes.io/zone', false],
    ['kubernetes.io/hostname', true],
  ] as const) {
    const c = spread.find((s) => s['topologyKey'] === key);
    if (c === undefined) problems.push(`no topologySpreadConstraint by ${key}`);
    else {
      if (!labelsSelect(dig(c, 'labelSelector', 'matchLabels'), podLabels))
        problems.push(`spread by ${key} does not select the pods`);
      if (hard && c['whenUnsatisfiable'] !== 'DoNotSchedule')
        problems.push(`spread by ${key} is not a hard rule`);
    }
  }
  const priority = str(pod['priorityClassName']);
  const priorityClass = ofKind(docs, 'PriorityClass').find(
    (p) => dig(p, 'metadata', 'name') === priority,
  );
  if (priority === '') problems.push('no priorityClassName');
  else if (priorityClass === undefined && !priority.startsWith('system-'))
    problems.push(`PriorityClass ${priority} is not in the rendered objects`);
  else if (
    priorityClass !== undefined &&
    (!(Number(priorityClass['value']) > 0) ||
      Number(priorityClass['value']) >= 1e9 ||
      priorityClass['globalDefault'] === true)
  )
    problems.push(`PriorityClass ${priority} value/globalDefault is wrong`);
  const namespace = ofKind(docs, 'Namespace')[0];
  const psa = obj(dig(namespace, 'metadata', 'labels'));
  for (const mode of ['enforce', 'warn', 'audit'])
    if (psa[`pod-security.kubernetes.io/${mode}`] !== 'restricted')
      problems.push(`Namespace has no pod-security.kubernetes.io/${mode}: restricted`);
  for (const d of docs) {
    if (
      !['Namespace', 'PriorityClass'].includes(str(d['kind'])) &&
      dig(d, 'metadata', 'namespace') !== dig(namespace, 'metadata', 'name')
    )
      problems.push(`${str(d['kind'])} ${str(dig(d, 'metadata', 'name'))} is not in the Namespace`);
  }
  // Hot reload: the policies ConfigMap keeps its name and is mounted as a directory.
  const args = list(container['args']);
  const policiesDir = argValue(args, '--policies');
  if (policiesDir !== undefined) {
    const mount = objs(container['volumeMounts']).find((m) => m['mountPath'] === policiesDir);
    if (mount?.['subPath'] !== undefined)
      problems.push('policies mounted with subPath: the kubelet never updates it, so no reload');
    const volume = objs(pod['volumes']).find((v) => v['name'] === mount?.['name']);
    const configMapName = str(dig(volume, 'configMap', 'name'));
    if (configMapName !== 'gatehouse-policies')
      problems.push(
        `policies ConfigMap is named ${configMapName}: a hash suffix rolls the pods on every change and hot reload never runs`,
      );
    if (!ofKind(docs, 'ConfigMap').some((c) => dig(c, 'metadata', 'name') === configMapName))
      problems.push(`ConfigMap ${configMapName} is not rendered`);
  } else if (
    !argValue(args, '--bundle') &&
    !objs(container['env']).some((e) => e['name'] === 'GATEHOUSE_BUNDLE')
  ) {
    problems.push('neither --policies nor a bundle');
  }
  return problems;
}

/** Every SPIFFE ID the served policies name is in a trust domain the Deployment accepts. */
function trustDomainProblems(docs: Obj[]): string[] {
  const trusted = new Set(
    list(deploymentContainer(docs)['args']).flatMap((a, i, all) =>
      all[i - 1] === '--trust-domain' ? [str(a)] : [],
    ),
  );
  const configMap = ofKind(docs, 'ConfigMap').find(
    (c) => dig(c, 'metadata', 'name') === 'gatehouse-policies',
  );
  const problems: string[] = [];
  for (const [file, text] of Object.entries(obj(configMap?.['data']))) {
    for (const m of str(text).matchAll(/spiffe:\/\/([^/\s'",\]]+)/g)) {
      if (!trusted.has(m[1]!))
        problems.push(
          `${file} names ${m[0]}, but the Deployment trusts ${[...trusted].join(', ') || 'no domain'}`,
        );
    }
  }
  return problems;
}

/** configMapGenerator `files:` entries are `path` or `key=path`. */
function generatorFiles(kustomization: Obj): string[] {
  return objs(kustomization['configMapGenerator']).flatMap((g) =>
    list(g['files']).map((f) => str(f).replace(/^[^=]*=/, '')),
  );
}

function exampleSourcePolicies(): string[] {
  return readdirSync(path.join(ROOT, 'policies'))
    .filter((f) => /\.ya?ml$/.test(f) && !/\.test\.ya?ml$/.test(f))
    .sort();
}

function meshProviders(mesh: Obj): Obj[] {
  return objs(dig(mesh, 'meshConfig', 'extensionProviders'));
}

/** Istio header patterns (case-insensitive): exact, `prefix*` or `*suffix`. */
function istioPatternAllows(patterns: unknown, header: string): boolean {
  const h = header.toLowerCase();
  return list(patterns)
    .map((p) => str(p).toLowerCase())
    .some((p) => {
      if (p === '*' || p === '') return false;
      if (p.endsWith('*')) return h.startsWith(p.slice(0, -1));
      if (p.startsWith('*')) return h.endsWith(p.slice(1));
      return h === p;
    });
}

/**
 * An envoyExtAuthzHttp provider on its own (no Service needed): the headers it sends to and
 * copies from Gatehouse. Mirrors the Envoy HTTP-mode checks: client-sent x-gatehouse-* must
 * reach Gatehouse (includeRequestHeadersInCheck) so it can name them for removal.
 */
function httpProviderProblems(name: string, config: Obj): string[] {
  const problems: string[] = [];
  if (config['port'] !== DEFAULT_HTTP_PORT)
    problems.push(
      `provider ${name} port is ${String(config['port'])}, expected ${DEFAULT_HTTP_PORT}`,
    );
  const lists = [
    'includeRequestHeadersInCheck',
    'includeHeadersInCheck',
    'headersToUpstreamOnAllow',
    'headersToDownstreamOnDeny',
    'headersToDownstreamOnAllow',
  ];
  for (const key of lists) {
    if (list(config[key]).some((p) => str(p) === '*'))
      problems.push(`provider ${name} ${key} has a lone '*' (istiod rejects it)`);
  }
  const request = config['includeRequestHeadersInCheck'] ?? config['includeHeadersInCheck'];
  for (const h of [
    'authorization',
    'x-forwarded-client-cert',
    'x-request-id',
    'traceparent',
    ...GATEHOUSE_HEADERS,
  ]) {
    if (!istioPatternAllows(request, h))
      problems.push(`provider ${name}: request header ${h} is not in includeRequestHeadersInCheck`);
  }
  for (const h of ['x-gatehouse-caller', 'x-gatehouse-policy', 'x-gatehouse-decision']) {
    if (!istioPatternAllows(config['headersToUpstreamOnAllow'], h))
      problems.push(`provider ${name}: ${h} is not in headersToUpstreamOnAllow`);
  }
  for (const h of [
    'content-type',
    'retry-after',
    'ratelimit-limit',
    'ratelimit-remaining',
    'ratelimit-reset',
    'x-gatehouse-decision',
  ]) {
    if (!istioPatternAllows(config['headersToDownstreamOnDeny'], h))
      problems.push(`provider ${name}: ${h} is not in headersToDownstreamOnDeny`);
  }
  for (const h of ['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']) {
    if (!istioPatternAllows(config['headersToDownstreamOnAllow'], h))
      problems.push(`provider ${name}: ${h} is not in headersToDownstreamOnAllow`);
  }
  return problems;
}

/** Settings every provider kind shares. */
function commonProviderProblems(name: string, config: Obj): string[] {
  const problems: string[] = [];
  if (!isPositiveDuration(config['timeout']))
    problems.push(`provider ${name} has no timeout (istiod would use 600s)`);
  if (config['failOpen'] === true) problems.push(`provider ${name} fails open`);
  const prefix = config['pathPrefix'];
  if (prefix !== undefined && (!str(prefix).startsWith('/') || str(prefix).endsWith('/')))
    problems.push(`provider ${name} pathPrefix '${str(prefix)}' is concatenated with the path`);
  return problems;
}

/**
 * Example providers left commented out in mesh-config.yaml (`#   - name: ...` blocks),
 * uncommented and parsed, so the example people copy is checked like a live one.
 */
function commentedProviders(text: string): Obj[] {
  const lines = text.split('\n');
  const out: Obj[] = [];
  for (let i = 0; i < lines.length; i++) {
    const head = /^\s*#(\s*)- name:\s*\S/.exec(lines[i] ?? '');
    if (head === null) continue;
    const indent = (head[1] ?? '').length;
    const block: string[] = [];
    for (let j = i; j < lines.length; j++) {
      const m = /^\s*#(.*)$/.exec(lines[j] ?? '');
      if (m === null) break;
      const body = m[1] ?? '';
      // The block ends at a comment line indented no deeper than its `- name:` (except the first).
      if (j > i && body.trim() !== '' && body.length - body.trimStart().length <= indent) break;
      block.push(body.slice(indent));
      i = j;
    }
    for (const doc of parseYaml(block.join('\n'), 'commented provider')) out.push(...objs(doc));
  }
  return out;
}

function istioProblems(mesh: Obj, policies: Obj[], base: Base): string[] {
  const problems: string[] = [];
  const gatehouseNamespace = str(base.kustomization['namespace']);
  const service = ofKind(base.docs, 'Service')[0] ?? {};
  const serviceName = str(dig(service, 'metadata', 'name'));
  const servicePorts = objs(dig(service, 'spec', 'ports'));
  const providers = new Map(meshProviders(mesh).map((p) => [str(p['name']), p]));
  if (providers.size === 0) problems.push('no extensionProviders in mesh-config.yaml');
  if (![...providers.values()].some((p) => isObj(p['envoyExtAuthzGrpc'])))
    problems.push('no envoyExtAuthzGrpc provider');

  for (const [name, provider] of providers) {
    const grpc = provider['envoyExtAuthzGrpc'];
    const http = provider['envoyExtAuthzHttp'];
    if (!isObj(grpc) && !isObj(http)) {
      problems.push(`provider ${name} is neither envoyExtAuthzGrpc nor envoyExtAuthzHttp`);
      continue;
    }
    const config = obj(grpc ?? http);
    problems.push(...commonProviderProblems(name, config));
    if (isObj(grpc)) {
      if (config['port'] !== DEFAULT_GRPC_PORT)
        problems.push(
          `provider ${name} port is ${String(config['port'])}, expected ${DEFAULT_GRPC_PORT}`,
        );
    } else {
      problems.push(...httpProviderProblems(name, config));
    }
    const host = str(config['service']).replace(/^[^/]*\//, '');
    if (
      host !== `${serviceName}.${gatehouseNamespace}.svc.cluster.local` &&
      host !== `${serviceName}.${gatehouseNamespace}.svc`
    ) {
      problems.push(
        `provider ${name} service '${host}' is not the base's Service ${serviceName}.${gatehouseNamespace}.svc.cluster.local`,
      );
    }
    const servicePort = servicePorts.find((p) => p['port'] === config['port']);
    if (servicePort === undefined)
      problems.push(`provider ${name} port ${String(config['port'])} is not a port of the Service`);
    else if (isObj(grpc) && !isGrpcServicePort(servicePort))
      problems.push(
        `provider ${name}: Service port ${String(config['port'])} is not recognisable as gRPC (name grpc/grpc-* or appProtocol grpc): sidecars would speak HTTP/1.1 to it`,
      );
  }

  if (policies.length === 0) problems.push('no AuthorizationPolicy');
  for (const policy of policies) {
    const who = `AuthorizationPolicy ${str(dig(policy, 'metadata', 'namespace'))}/${str(dig(policy, 'metadata', 'name'))}`;
    if (
      policy['kind'] !== 'AuthorizationPolicy' ||
      !/^security\.istio\.io\/v1(beta1)?$/.test(str(policy['apiVersion']))
    )
      problems.push(`${who}: wrong kind/apiVersion`);
    const spec = obj(policy['spec']);
    if (spec['action'] !== 'CUSTOM') problems.push(`${who}: action is not CUSTOM`);
    const providerName = str(dig(spec, 'provider', 'name'));
    if (!providers.has(providerName))
      problems.push(
        `${who}: provider '${providerName}' is not in mesh-config.yaml (istiod would deny everything)`,
      );
    else if (!isObj(providers.get(providerName)?.['envoyExtAuthzGrpc']))
      problems.push(
        `${who}: provider '${providerName}' is not the gRPC provider (the base serves no HTTP authorization port)`,
      );
    const rules = spec['rules'];
    if (!Array.isArray(rules) || rules.length === 0)
      problems.push(
        `${who}: rules missing or empty (a CUSTOM policy without rules checks nothing)`,
      );
    const namespace = str(dig(policy, 'metadata', 'namespace'));
    if (namespace === gatehouseNamespace)
      problems.push(`${who}: targets Gatehouse's own namespace`);
    if (
      namespace === '' ||
      (namespace === 'istio-system' &&
        spec['selector'] === undefined &&
        spec['targetRefs'] === undefined)
    ) {
      problems.push(`${who}: mesh-wide or namespace-less; it would also check Gatehouse itself`);
    }
  }
  return problems;
}

describe('istio/', () => {
  const mesh = loadOne('istio/mesh-config.yaml');
  const policies = loadYaml('istio/authorization-policy.yaml').map(obj);
  const base = loadBase();

  test('kustomization: namespace, and every listed resource exists', () => {
    expect(base.kustomization['namespace']).toBe('gatehouse-system');
    const resources = list(base.kustomization['resources']).map(str);
    expect(resources.length).toBeGreaterThan(0);
    for (const r of resources) expect([r, existsSync(path.join(ROOT, BASE, r))]).toEqual([r, true]);
  });

  test('the Kubernetes objects have no problems', () => {
    const generated = objs(base.kustomization['configMapGenerator']).map((g) => str(g['name']));
    expect(workloadProblems(base.docs, generated)).toEqual([]);
    const kinds = base.docs.map((d) => `${str(d['apiVersion'])} ${str(d['kind'])}`);
    expect(kinds).toEqual(
      expect.arrayContaining([
        'apps/v1 Deployment',
        'v1 Service',
        'policy/v1 PodDisruptionBudget',
        'autoscaling/v2 HorizontalPodAutoscaler',
      ]),
    );
  });

  test.each([
    [BASE, toIstioTrustDomain],
    [`${BASE}/overlays/envoy`, (text: string) => text],
  ] as Array<[string, (text: string) => string]>)(
    '%s: the policies ConfigMap holds the example policies (scripts/sync-k8s-policies.sh)',
    (dir, transform) => {
      const kustomization = loadOne(`${dir}/kustomization.yaml`);
      const files = generatorFiles(kustomization);
      expect(files.length).toBeGreaterThan(0);
      for (const f of files) {
        const copy = path.join(ROOT, dir, f);
        expect([f, existsSync(copy)]).toEqual([f, true]);
        const source = path.join(ROOT, 'policies', path.basename(f));
        expect([f, existsSync(source)]).toEqual([f, true]);
        // Byte for byte after the trust-domain rewrite: a copy that drifted would deploy other rules than the repository's.
        expect([f, readFileSync(copy, 'utf8')]).toEqual([
          f,
          transform(readFileSync(source, 'utf8')),
        ]);
      }
      expect(files.map((f) => path.basename(f)).sort()).toEqual(exampleSourcePolicies());
      // No stale copy lies beside the listed ones.
      const local = readdirSync(path.join(ROOT, dir, 'policies')).sort();
      expect(local).toEqual(files.map((f) => path.basename(f)).sort());
    },
  );

  test('the base is production-shaped: pinned image, HPA-owned replicas, one disruption at a time, spread, priority, Pod Security', () => {
    expect(productionProblems(base.docs)).toEqual([]);
  });

  test.each([BASE, `${BASE}/overlays/envoy`, `${BASE}/overlays/bundle`])(
    '%s renders, and its policies trust what the Deployment trusts',
    (dir) => {
      const docs = renderKustomization(path.join(ROOT, dir));
      expect(productionProblems(docs)).toEqual([]);
      expect(trustDomainProblems(docs)).toEqual([]);
    },
  );

  test.each([
    [BASE, toIstioTrustDomain],
    [`${BASE}/overlays/envoy`, (text: string) => text],
  ] as Array<[string, (text: string) => string]>)(
    '%s as shipped admits the example traffic: the example policy tests pass against its ConfigMap and trust domain',
    (dir, transform) => {
      const docs = renderKustomization(path.join(ROOT, dir));
      const configMap = ofKind(docs, 'ConfigMap').find(
        (c) => dig(c, 'metadata', 'name') === 'gatehouse-policies',
      )!;
      const policiesDir = mkdtempSync(path.join(tmpdir(), 'gh-k8s-policies-'));
      for (const [name, text] of Object.entries(obj(configMap['data'])))
        writeFileSync(path.join(policiesDir, name), str(text));
      for (const test of readdirSync(path.join(ROOT, 'policies')).filter((f) =>
        f.endsWith('.test.yaml'),
      )) {
        const text = transform(readFileSync(path.join(ROOT, 'policies', test), 'utf8'));
        writeFileSync(
          path.join(policiesDir, test),
          transform === toIstioTrustDomainFn
            ? text.replace(/trustDomains: \[shop\.example\]/g, 'trustDomains: [cluster.local]')
            : text,
        );
      }
      const args = list(deploymentContainer(docs)['args']);
      const trust = argValue(args, '--trust-domain')!;
      const r = runCli(['test', policiesDir, '--trust-domain', trust]);
      expect([r.status, /policy-tests: [1-9]\d* passed, 0 failed/.test(r.stdout)]).toEqual([
        0,
        true,
      ]);
    },
  );

  test('mesh provider and CUSTOM policies fit each other and the base', () => {
    expect(istioProblems(mesh, policies, base)).toEqual([]);
    for (const policy of policies) {
      const provider = meshProviders(mesh).find(
        (p) => p['name'] === dig(policy, 'spec', 'provider', 'name'),
      );
      expect(dig(policy, 'spec', 'action')).toBe('CUSTOM');
      expect(dig(provider, 'envoyExtAuthzGrpc', 'port')).toBe(DEFAULT_GRPC_PORT);
    }
    const grpcServicePort =
      objs(dig(ofKind(base.docs, 'Service')[0], 'spec', 'ports')).find(
        (p) => p['port'] === DEFAULT_GRPC_PORT,
      ) ?? {};
    expect(isGrpcServicePort(grpcServicePort)).toBe(true);
  });

  /** The namespaces whose workloads the shipped (cluster.local) ServicePolicies guard. */
  const guardedNamespaces = (): Set<string> => {
    const namespaces = new Set<string>();
    const dir = path.join(ROOT, BASE, 'policies');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.yaml')))
      for (const doc of loadYaml(path.join(BASE, 'policies', f)).map(obj)) {
        if (doc['kind'] !== 'ServicePolicy') continue;
        for (const id of list(dig(doc, 'spec', 'workloads')).map(str)) {
          const ns = /^spiffe:\/\/cluster\.local\/ns\/([^/]+)\/sa\/[^/]+$/.exec(id)?.[1];
          expect([id, ns !== undefined]).toEqual([id, true]);
          namespaces.add(ns!);
        }
      }
    return namespaces;
  };
  const customNamespaces = (docs: Obj[]): string[] =>
    docs
      .filter((d) => dig(d, 'spec', 'action') === 'CUSTOM')
      .map((d) => str(dig(d, 'metadata', 'namespace')))
      .sort();

  test('every workload a shipped policy guards is sent to Gatehouse, whatever its labels', () => {
    const guarded = guardedNamespaces();
    expect(guarded.size).toBeGreaterThanOrEqual(5);
    // One namespace-wide CUSTOM policy per guarded namespace: a policy outside them guards
    // nothing the policies know, and a selector could miss a guarded workload by a label.
    expect(customNamespaces(policies)).toEqual([...guarded].sort());
    for (const policy of policies) expect(dig(policy, 'spec', 'selector')).toBeUndefined();
  });

  test('the coverage check notices a guarded namespace left out or a wrong namespace', () => {
    const guarded = [...guardedNamespaces()].sort();
    const without = policies.filter((p) => dig(p, 'metadata', 'namespace') !== 'payments');
    expect(customNamespaces(without)).not.toEqual(guarded);
    const moved = structuredClone(policies);
    (obj(moved[0])['metadata'] as Obj)['namespace'] = 'shop';
    expect(customNamespaces(moved)).not.toEqual(guarded);
  });

  test('the commented-out HTTP provider example is a working HTTP provider', () => {
    const text = read('istio/mesh-config.yaml');
    const examples = commentedProviders(text);
    // Guard the extraction: an example the parser missed would be checked by nothing.
    expect(examples.length).toBe((text.match(/^\s*#\s*- name:/gm) ?? []).length);
    for (const p of examples) {
      const name = str(p['name']);
      const http = p['envoyExtAuthzHttp'];
      if (!isObj(http)) continue;
      expect([...commonProviderProblems(name, http), ...httpProviderProblems(name, http)]).toEqual(
        [],
      );
      expect(istioPatternAllows(http['includeRequestHeadersInCheck'], 'x-gatehouse-made-up')).toBe(
        true,
      );
    }
  });

  describe('the checkers notice', () => {
    const generated = objs(base.kustomization['configMapGenerator']).map((g) => str(g['name']));
    const dep = (docs: Obj[]): Obj => ofKind(docs, 'Deployment')[0] ?? {};
    const main = (docs: Obj[]): Obj =>
      objs(dig(dep(docs), 'spec', 'template', 'spec', 'containers')).find(
        (c) => c['name'] === 'gatehouse',
      ) ?? {};
    const svcPort = (docs: Obj[], port: number): Obj =>
      objs(dig(ofKind(docs, 'Service')[0], 'spec', 'ports')).find((p) => p['port'] === port) ?? {};

    const workloadCases: Array<[string, (docs: Obj[]) => void, RegExp]> = [
      [
        'gRPC Service port named http',
        (d) => {
          Object.assign(svcPort(d, DEFAULT_GRPC_PORT), { name: 'http' });
          delete svcPort(d, DEFAULT_GRPC_PORT)['appProtocol'];
        },
        /not recognisable as gRPC/,
      ],
      [
        'Service targetPort to the admin port',
        (d) => {
          svcPort(d, DEFAULT_GRPC_PORT)['targetPort'] = 'http-admin';
        },
        new RegExp(`does not reach container port ${DEFAULT_GRPC_PORT}`),
      ],
      [
        '--grpc-port elsewhere than the container port',
        (d) => {
          const a = list(main(d)['args']);
          a[a.indexOf('--grpc-port') + 1] = String(DEFAULT_HTTP_PORT);
        },
        new RegExp(`--grpc-port ${DEFAULT_HTTP_PORT} is not`),
      ],
      [
        'GATEHOUSE_ADMIN_PORT elsewhere than the probes',
        (d) => {
          const a = list(main(d)['args']);
          a.splice(a.indexOf('--admin-port'), 2);
          (main(d)['env'] as unknown[]).push({ name: 'GATEHOUSE_ADMIN_PORT', value: '8081' });
        },
        /--admin-port 8081 is not/,
      ],
      [
        'readiness on /healthz',
        (d) => {
          obj(dig(main(d), 'readinessProbe', 'httpGet'))['path'] = '/healthz';
        },
        /readinessProbe path/,
      ],
      [
        'liveness on the gRPC port',
        (d) => {
          obj(dig(main(d), 'livenessProbe', 'httpGet'))['port'] = 'grpc';
        },
        /livenessProbe is not on the admin port/,
      ],
      [
        'root user',
        (d) => {
          obj(main(d)['securityContext'])['runAsUser'] = 0;
        },
        /runAsUser/,
      ],
      [
        'writable root filesystem',
        (d) => {
          obj(main(d)['securityContext'])['readOnlyRootFilesystem'] = false;
        },
        /readOnlyRootFilesystem/,
      ],
      [
        'Service selector typo',
        (d) => {
          obj(dig(ofKind(d, 'Service')[0], 'spec'))['selector'] = {
            'app.kubernetes.io/name': 'gatehose',
          };
        },
        /Service selector/,
      ],
      [
        'HPA on autoscaling/v1',
        (d) => {
          (ofKind(d, 'HorizontalPodAutoscaler')[0] ?? {})['apiVersion'] = 'autoscaling/v1';
        },
        /apiVersion autoscaling\/v1/,
      ],
      [
        'PDB on policy/v1beta1',
        (d) => {
          (ofKind(d, 'PodDisruptionBudget')[0] ?? {})['apiVersion'] = 'policy/v1beta1';
        },
        /apiVersion policy\/v1beta1/,
      ],
      [
        'required Redis Secret',
        (d) => {
          const env = objs(main(d)['env']).find((e) => e['name'] === 'GATEHOUSE_REDIS');
          obj(dig(env, 'valueFrom', 'secretKeyRef'))['optional'] = false;
        },
        /not optional/,
      ],
      [
        'no heap cap',
        (d) => {
          main(d)['env'] = objs(main(d)['env']).filter((e) => e['name'] !== 'NODE_OPTIONS');
        },
        /no --max-old-space-size/,
      ],
      [
        'a heap cap the memory limit cannot hold',
        (d) => {
          obj(dig(main(d), 'resources', 'limits'))['memory'] = '192Mi';
        },
        /leaves less than/,
      ],
      [
        '--policies elsewhere than the mount',
        (d) => {
          const a = list(main(d)['args']);
          a[a.indexOf('--policies') + 1] = '/policies';
        },
        /is not a mounted volume/,
      ],
    ];
    test.each(workloadCases)('%s', (_name, mutate, expected) => {
      const docs = clone(base.docs);
      mutate(docs);
      expect(workloadProblems(docs, generated).join('\n')).toMatch(expected);
    });

    const istioCases: Array<[string, (mesh: Obj, policies: Obj[], docs: Obj[]) => void, RegExp]> = [
      [
        'provider name mismatch',
        (_m, p) => {
          obj(dig(p[0], 'spec', 'provider'))['name'] = 'gatehouse-grpc';
        },
        /not in mesh-config/,
      ],
      [
        'action ALLOW',
        (_m, p) => {
          obj(p[0]?.['spec'])['action'] = 'ALLOW';
        },
        /not CUSTOM/,
      ],
      [
        'no rules',
        (_m, p) => {
          delete obj(p[0]?.['spec'])['rules'];
        },
        /rules missing or empty/,
      ],
      [
        'empty rules',
        (_m, p) => {
          obj(p[0]?.['spec'])['rules'] = [];
        },
        /rules missing or empty/,
      ],
      [
        'policy on Gatehouse itself',
        (_m, p) => {
          obj(p[0]?.['metadata'])['namespace'] = 'gatehouse-system';
        },
        /own namespace/,
      ],
      [
        'mesh-wide policy',
        (_m, p) => {
          obj(p[0]?.['metadata'])['namespace'] = 'istio-system';
          delete obj(p[0]?.['spec'])['selector'];
        },
        /mesh-wide/,
      ],
      [
        'provider on the admin port',
        (m) => {
          obj(meshProviders(m)[0]?.['envoyExtAuthzGrpc'])['port'] = DEFAULT_ADMIN_PORT;
        },
        new RegExp(`expected ${DEFAULT_GRPC_PORT}`),
      ],
      [
        'provider on the HTTP-mode port',
        (m) => {
          obj(meshProviders(m)[0]?.['envoyExtAuthzGrpc'])['port'] = DEFAULT_HTTP_PORT;
        },
        new RegExp(`port is ${DEFAULT_HTTP_PORT}, expected ${DEFAULT_GRPC_PORT}`),
      ],
      [
        'the provider Service port not recognisable as gRPC',
        (_m, _p, d) => {
          const sp =
            objs(dig(ofKind(d, 'Service')[0], 'spec', 'ports')).find(
              (x) => x['port'] === DEFAULT_GRPC_PORT,
            ) ?? {};
          sp['name'] = 'tcp-authz';
          delete sp['appProtocol'];
        },
        /Service port \d+ is not recognisable as gRPC[^\n]*HTTP\/1\.1/,
      ],
      [
        'the second policy not CUSTOM',
        (_m, p) => {
          obj(p[1]?.['spec'])['action'] = 'DENY';
        },
        /payments\/gatehouse: action is not CUSTOM/,
      ],
      [
        'the second policy on an unknown provider',
        (_m, p) => {
          obj(dig(p[1], 'spec', 'provider'))['name'] = 'gatehouse-http';
        },
        /payments\/gatehouse: provider 'gatehouse-http' is not in mesh-config/,
      ],
      [
        'fail open',
        (m) => {
          obj(meshProviders(m)[0]?.['envoyExtAuthzGrpc'])['failOpen'] = true;
        },
        /fails open/,
      ],
      [
        'provider in the wrong namespace',
        (m) => {
          obj(meshProviders(m)[0]?.['envoyExtAuthzGrpc'])['service'] =
            'gatehouse.default.svc.cluster.local';
        },
        /is not the base's Service/,
      ],
      [
        'the policy on an HTTP provider',
        (m) => {
          const p = meshProviders(m)[0] ?? {};
          p['envoyExtAuthzHttp'] = p['envoyExtAuthzGrpc'];
          delete p['envoyExtAuthzGrpc'];
        },
        /not the gRPC provider[\s\S]*no envoyExtAuthzGrpc provider|no envoyExtAuthzGrpc provider[\s\S]*not the gRPC provider/,
      ],
      [
        'no timeout',
        (m) => {
          delete obj(meshProviders(m)[0]?.['envoyExtAuthzGrpc'])['timeout'];
        },
        /no timeout/,
      ],
      [
        'an HTTP provider with pathPrefix "/"',
        (m) => {
          list(dig(m, 'meshConfig', 'extensionProviders')).push({
            name: 'gatehouse-http',
            envoyExtAuthzHttp: {
              service: 'gatehouse.gatehouse-system.svc.cluster.local',
              port: DEFAULT_HTTP_PORT,
              timeout: '0.25s',
              pathPrefix: '/',
            },
          });
        },
        /pathPrefix/,
      ],
    ];
    test.each(istioCases)('%s', (_name, mutate, expected) => {
      const m = clone(mesh);
      const p = clone(policies);
      const docs = clone(base.docs);
      mutate(m, p, docs);
      expect([m, p, docs]).not.toEqual([mesh, policies, base.docs]);
      expect(istioProblems(m, p, { kustomization: base.kustomization, docs }).join('\n')).toMatch(
        expected,
      );
    });

    const productionCases: Array<[string, (docs: Obj[]) => void, RegExp]> = [
      [
        'replicas beside the HPA',
        (d) => {
          obj(dep(d)['spec'])['replicas'] = 2;
        },
        /replicas beside the HPA/,
      ],
      [
        'image :latest',
        (d) => {
          main(d)['image'] = 'gatehouse:latest';
        },
        /not pinned[\s\S]*floats/,
      ],
      [
        'image without a tag',
        (d) => {
          main(d)['image'] = 'registry.example:5000/gatehouse';
        },
        /floats/,
      ],
      [
        'PDB minAvailable 1',
        (d) => {
          obj(ofKind(d, 'PodDisruptionBudget')[0]?.['spec'])['minAvailable'] = 1;
          delete obj(ofKind(d, 'PodDisruptionBudget')[0]?.['spec'])['maxUnavailable'];
        },
        /maxUnavailable: 1/,
      ],
      [
        'spread by host only',
        (d) => {
          const pod = obj(dig(dep(d), 'spec', 'template', 'spec'));
          pod['topologySpreadConstraints'] = objs(pod['topologySpreadConstraints']).filter(
            (c) => c['topologyKey'] !== 'topology.kubernetes.io/zone',
          );
        },
        /no topologySpreadConstraint by topology\.kubernetes\.io\/zone/,
      ],
      [
        'soft host spread',
        (d) => {
          const c = objs(dig(dep(d), 'spec', 'template', 'spec', 'topologySpreadConstraints')).find(
            (x) => x['topologyKey'] === 'kubernetes.io/hostname',
          )!;
          c['whenUnsatisfiable'] = 'ScheduleAnyway';
        },
        /hostname is not a hard rule/,
      ],
      [
        'no priority class',
        (d) => {
          delete obj(dig(dep(d), 'spec', 'template', 'spec'))['priorityClassName'];
        },
        /no priorityClassName/,
      ],
      [
        'no Pod Security labels',
        (d) => {
          delete obj(ofKind(d, 'Namespace')[0]?.['metadata'])['labels'];
        },
        /pod-security\.kubernetes\.io\/enforce: restricted/,
      ],
      [
        'policies by subPath',
        (d) => {
          const m = objs(main(d)['volumeMounts']).find(
            (x) => x['mountPath'] === '/etc/gatehouse/policies',
          )!;
          m['subPath'] = 'orders.yaml';
        },
        /subPath/,
      ],
      [
        'a hash-suffixed ConfigMap',
        (d) => {
          const v = objs(dig(dep(d), 'spec', 'template', 'spec', 'volumes')).find(
            (x) => x['name'] === 'policies',
          )!;
          obj(v['configMap'])['name'] = 'gatehouse-policies-5h7k2m9b4t';
        },
        /hash suffix/,
      ],
    ];
    test.each(productionCases)('production shape: %s', (_name, mutate, expected) => {
      const docs = clone(base.docs);
      mutate(docs);
      expect(productionProblems(docs).join('\n')).toMatch(expected);
    });

    test('policies naming another trust domain than the Deployment trusts', () => {
      const docs = clone(base.docs);
      const cm = ofKind(docs, 'ConfigMap').find(
        (c) => dig(c, 'metadata', 'name') === 'gatehouse-policies',
      )!;
      const data = obj(cm['data']);
      data['orders.yaml'] = str(data['orders.yaml']).replace(
        /spiffe:\/\/cluster\.local\//g,
        'spiffe://shop.example/',
      );
      expect(trustDomainProblems(docs).join('\n')).toMatch(
        /orders\.yaml names spiffe:\/\/shop\.example, but the Deployment trusts cluster\.local/,
      );
    });

    test('a Service port named grpc-* without appProtocol is gRPC enough', () => {
      const docs = clone(base.docs);
      const sp =
        objs(dig(ofKind(docs, 'Service')[0], 'spec', 'ports')).find(
          (x) => x['port'] === DEFAULT_GRPC_PORT,
        ) ?? {};
      sp['name'] = 'grpc-authz';
      delete sp['appProtocol'];
      expect(
        istioProblems(mesh, policies, { kustomization: base.kustomization, docs }).filter((p) =>
          p.includes('gRPC'),
        ),
      ).toEqual([]);
    });

    // The commented-out HTTP provider, uncommented and then broken.
    const example = (): Obj =>
      obj(
        commentedProviders(read('istio/mesh-config.yaml')).find((p) =>
          isObj(p['envoyExtAuthzHttp']),
        )?.['envoyExtAuthzHttp'],
      );
    const httpCases: Array<[string, (http: Obj) => void, RegExp]> = [
      [
        'client-sent x-gatehouse-* not in the check',
        (h) => {
          h['includeRequestHeadersInCheck'] = list(h['includeRequestHeadersInCheck']).filter(
            (x) => x !== 'x-gatehouse-*',
          );
        },
        /x-gatehouse-anything-else is not in includeRequestHeadersInCheck/,
      ],
      [
        'only the known x-gatehouse-* in the check',
        (h) => {
          h['includeRequestHeadersInCheck'] = [
            ...list(h['includeRequestHeadersInCheck']).filter((x) => x !== 'x-gatehouse-*'),
            'x-gatehouse-caller',
            'x-gatehouse-policy',
            'x-gatehouse-decision',
          ];
        },
        /x-gatehouse-anything-else is not in includeRequestHeadersInCheck/,
      ],
      [
        'no XFCC in the check',
        (h) => {
          h['includeRequestHeadersInCheck'] = list(h['includeRequestHeadersInCheck']).filter(
            (x) => x !== 'x-forwarded-client-cert',
          );
        },
        /x-forwarded-client-cert is not in includeRequestHeadersInCheck/,
      ],
      [
        'a lone *',
        (h) => {
          h['includeRequestHeadersInCheck'] = ['*'];
        },
        /lone '\*'/,
      ],
      [
        'caller not copied upstream',
        (h) => {
          h['headersToUpstreamOnAllow'] = list(h['headersToUpstreamOnAllow']).filter(
            (x) => x !== 'x-gatehouse-caller',
          );
        },
        /x-gatehouse-caller is not in headersToUpstreamOnAllow/,
      ],
      [
        'on the gRPC port',
        (h) => {
          h['port'] = DEFAULT_GRPC_PORT;
        },
        new RegExp(`expected ${DEFAULT_HTTP_PORT}`),
      ],
    ];
    test.each(httpCases)('commented HTTP provider: %s', (_name, mutate, expected) => {
      const h = clone(example());
      expect(Object.keys(h).length).toBeGreaterThan(0);
      mutate(h);
      expect(h).not.toEqual(example());
      expect(httpProviderProblems('gatehouse-http', h).join('\n')).toMatch(expected);
    });
  });
});

// ---------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------

interface Instruction {
  op: string;
  args: string;
}

function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // comment inside a continuation
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    const m = /^(\S+)\s*(.*)$/.exec(full);
    if (m) out.push({ op: (m[1] ?? '').toUpperCase(), args: m[2] ?? '' });
  }
  return out;
}

function stages(instructions: Instruction[]): Instruction[][] {
  const out: Instruction[][] = [];
  for (const i of instructions) {
    if (i.op === 'FROM') out.push([i]);
    else out[out.length - 1]?.push(i);
  }
  return out;
}

function dockerignorePatterns(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

function dockerProblems(dockerfile: string, dockerignore: string): string[] {
  const problems: string[] = [];
  const all = stages(parseDockerfile(dockerfile));
  if (all.length < 2) return [`${all.length} FROM: not a multi-stage build`];
  const buildStage = all[0] ?? [];
  const buildName = /\bAS\s+(\S+)/i.exec(buildStage[0]?.args ?? '')?.[1];
  const final = all[all.length - 1] ?? [];
  for (const stage of all) {
    // Node 24 LTS, pinned to a full version so a rebuild cannot change the runtime underneath.
    if (!/^node:24\.\d+\.\d+-/.test(stage[0]?.args ?? ''))
      problems.push(`stage '${stage[0]?.args ?? ''}' is not on a pinned node:24.x.y tag`);
  }
  const build = buildStage
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args)
    .join('\n');
  if (!/\bnpm ci\b/.test(build)) problems.push('build stage does not npm ci');
  if (!/tsc -p tsconfig\.build\.json/.test(build))
    problems.push('build stage does not compile with tsconfig.build.json');

  const users = final.filter((i) => i.op === 'USER');
  const user = users[users.length - 1]?.args.trim() ?? '';
  if (!/^\d+(:\d+)?$/.test(user)) problems.push(`final stage USER '${user}' is not numeric`);
  else if (Number(user.split(':')[0]) === 0) problems.push('final stage runs as root (USER 0)');

  const exposed = all
    .flat()
    .filter((i) => i.op === 'EXPOSE')
    .flatMap((i) => i.args.split(/\s+/))
    .map((p) => Number(p.split('/')[0]));
  for (const port of [DEFAULT_GRPC_PORT, DEFAULT_ADMIN_PORT])
    if (!exposed.includes(port)) problems.push(`EXPOSE lacks ${port}`);

  const finalRuns = final
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args)
    .join('\n');
  if (!/npm ci\b.*--omit=dev/.test(finalRuns))
    problems.push(
      'runtime stage does not install production dependencies only (npm ci --omit=dev)',
    );
  const copies = final.filter((i) => i.op === 'COPY' || i.op === 'ADD').map((i) => i.args);
  if (!copies.some((c) => !/--from=/.test(c) && /(^|\s)\.?\/?protos\/?\s/.test(`${c} `)))
    problems.push('protos/ is not copied into the runtime image');
  if (
    !copies.some(
      (c) => buildName !== undefined && c.includes(`--from=${buildName}`) && /\bdist\b/.test(c),
    )
  )
    problems.push('dist/ is not copied from the build stage');

  const workdir = final
    .filter((i) => i.op === 'WORKDIR')
    .pop()
    ?.args.trim();
  const entrypoint = final.filter((i) => i.op === 'ENTRYPOINT').pop()?.args;
  let entry: unknown;
  try {
    entry = JSON.parse(entrypoint ?? '');
  } catch {
    entry = undefined;
  }
  if (JSON.stringify(entry) !== JSON.stringify(['node', 'dist/cli/main.js']))
    problems.push(
      `ENTRYPOINT ${entrypoint ?? '(none)'} is not ["node","dist/cli/main.js"] in exec form`,
    );
  if (workdir !== '/app')
    problems.push('runtime WORKDIR is not /app (ENTRYPOINT and CMD paths are relative to it)');

  // Files the build context must contain: COPY sources exist and are not ignored.
  const ignored = dockerignorePatterns(dockerignore).map((p) => p.replace(/^\/|\/$/g, ''));
  for (const want of ['node_modules', 'dist', '.git', 'test', 'coverage'])
    if (!ignored.includes(want)) problems.push(`.dockerignore lacks ${want}`);
  for (const i of all.flat()) {
    if ((i.op !== 'COPY' && i.op !== 'ADD') || /--from=/.test(i.args)) continue;
    const parts = i.args.split(/\s+/).filter((p) => !p.startsWith('--'));
    for (const src of parts.slice(0, -1)) {
      const clean = src.replace(/^\.\//, '').replace(/\/$/, '');
      if (!existsSync(path.join(ROOT, clean))) problems.push(`COPY source ${src} does not exist`);
      if (ignored.some((p) => p === clean || clean.startsWith(`${p}/`)))
        problems.push(`COPY source ${src} is excluded by .dockerignore`);
    }
  }
  return problems;
}

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const dockerignore = read('.dockerignore');

  test('has no problems', () => {
    expect(dockerProblems(dockerfile, dockerignore)).toEqual([]);
    expect(stages(parseDockerfile(dockerfile)).length).toBeGreaterThanOrEqual(2);
  });

  // Each case changes the Dockerfile or the .dockerignore.
  const cases: Array<[string, (d: { file: string; ignore: string }) => void, RegExp]> = [
    [
      'single stage',
      (d) => {
        d.file = d.file.replace(/[\s\S]*?(?=FROM node:24.22.3-bookworm-slim AS runtime)/, '');
      },
      /not a multi-stage build/,
    ],
    [
      'root user',
      (d) => {
        d.file = d.file.replace(/^USER .*$/m, 'USER root');
      },
      /not numeric/,
    ],
    [
      'UID 0',
      (d) => {
        d.file = d.file.replace(/^USER .*$/m, 'USER 0');
      },
      /root/,
    ],
    [
      'no USER',
      (d) => {
        d.file = d.file.replace(/^USER .*$/m, '');
      },
      /not numeric/,
    ],
    [
      'gRPC port not exposed',
      (d) => {
        d.file = d.file.replace(/^EXPOSE .*$/m, `EXPOSE ${DEFAULT_ADMIN_PORT}`);
      },
      new RegExp(`EXPOSE lacks ${DEFAULT_GRPC_PORT}`),
    ],
    [
      'admin port not exposed',
      (d) => {
        d.file = d.file.replace(/^EXPOSE .*$/m, `EXPOSE ${DEFAULT_GRPC_PORT}`);
      },
      new RegExp(`EXPOSE lacks ${DEFAULT_ADMIN_PORT}`),
    ],
    [
      'no protos',
      (d) => {
        d.file = d.file.replace(/^COPY protos .*$/m, '');
      },
      /protos/,
    ],
    [
      'dev dependencies at runtime',
      (d) => {
        d.file = d.file.replace(/npm ci --omit=dev/, 'npm ci');
      },
      /--omit=dev/,
    ],
    [
      'shell-form ENTRYPOINT',
      (d) => {
        d.file = d.file.replace(/^ENTRYPOINT .*$/m, 'ENTRYPOINT node dist/cli/main.js');
      },
      /ENTRYPOINT/,
    ],
    [
      'protos excluded from the build context',
      (d) => {
        d.ignore = `${d.ignore}\nprotos\n`;
      },
      /excluded by .dockerignore/,
    ],
    [
      'node_modules sent to the build',
      (d) => {
        d.ignore = d.ignore.replace(/^node_modules$/m, '');
      },
      /lacks node_modules/,
    ],
  ];
  test.each(cases)('the checker notices: %s', (_name, mutate, expected) => {
    const d = { file: dockerfile, ignore: dockerignore };
    mutate(d);
    expect(d.file === dockerfile && d.ignore === dockerignore).toBe(false);
    expect(dockerProblems(d.file, d.ignore).join('\n')).toMatch(expected);
  });
});

// ---------------------------------------------------------------------------------------
// k6
// ---------------------------------------------------------------------------------------

/** `/package.Service/Method` of the Check RPC, as the project's own proto declares it. */
function checkMethodPath(): string {
  const proto = read('protos/envoy/service/auth/v3/external_auth.proto');
  const pkg = /^\s*package\s+([\w.]+)\s*;/m.exec(proto)?.[1];
  const service = /^\s*service\s+(\w+)\s*\{/m.exec(proto)?.[1];
  const rpc = /^\s*rpc\s+(Check)\s*\(/m.exec(proto)?.[1];
  return `/${pkg ?? '?'}.${service ?? '?'}/${rpc ?? '?'}`;
}

function k6Problems(script: string): string[] {
  const problems: string[] = [];
  if (!/from\s+'k6\/net\/grpc'/.test(script)) problems.push('does not import k6/net/grpc');
  const method = checkMethodPath();
  if (method !== '/envoy.service.auth.v3.Authorization/Check')
    problems.push(`the proto declares ${method}`);
  if (!script.includes(`'${method}'`)) problems.push(`does not call ${method}`);
  const load = /client\.load\(\s*\[([^\]]*)\]\s*,\s*'([^']+)'\s*\)/.exec(script);
  if (load === null) {
    problems.push('no client.load([...], file)');
  } else {
    const dirs = [...(load[1] ?? '').matchAll(/'([^']+)'/g)].map((m) => m[1] ?? '');
    const file = load[2] ?? '';
    // k6 resolves import paths relative to the script's directory.
    if (!dirs.some((d) => existsSync(path.join(ROOT, 'k6', d, file))))
      problems.push(`${file} is not found under ${dirs.join(', ')} relative to k6/`);
  }
  if (!/thresholds\s*:/.test(script)) problems.push('no thresholds');
  if (!/grpc_req_duration\s*:\s*\[\s*'p\(99\)<25'/.test(script))
    problems.push('no grpc_req_duration p(99)<25 threshold');
  if (!/checks\s*:\s*\[\s*'rate>0\.99'/.test(script))
    problems.push('no checks rate>0.99 threshold');
  if (!/executor\s*:\s*'constant-arrival-rate'/.test(script))
    problems.push('not a constant-arrival-rate scenario');
  if (!/\bduration\s*:/.test(script) || !/\bmaxVUs\s*:/.test(script))
    problems.push('scenario without duration or maxVUs');
  if (!/plaintext\s*:\s*true/.test(script))
    problems.push('does not connect in plaintext (the server is h2c)');
  const target = `127.0.0.1:${DEFAULT_GRPC_PORT}`;
  if (!/GATEHOUSE_ADDR/.test(script) || !script.includes(`'${target}'`))
    problems.push(`target is not GATEHOUSE_ADDR with default ${target}`);
  if (!/grpc\.StatusOK/.test(script)) problems.push('does not check the RPC status');
  for (const code of ['[0]', '[7]', '[8'])
    if (!script.includes(`expect: ${code}`)) problems.push(`no expected status.code ${code}`);
  // The callers of the mix must be ones the example policies know.
  const policies = exampleSourcePolicies()
    .map((f) => read(`policies/${f}`))
    .join('\n');
  const callers = [...script.matchAll(/'(spiffe:\/\/[^']+)'/g)].map((m) => m[1] ?? '');
  if (callers.length < 3) problems.push('fewer than three callers in the mix');
  for (const c of callers)
    if (!policies.includes(c)) problems.push(`caller ${c} is not named in policies/`);
  return problems;
}

describe('k6/', () => {
  const script = read('k6/check.js');

  test('check.js has no problems', () => {
    expect(k6Problems(script)).toEqual([]);
    expect(script).toContain('/envoy.service.auth.v3.Authorization/Check');
  });

  const cases: Array<[string, (s: string) => string, RegExp]> = [
    [
      'v2 method',
      (s) =>
        s.replace(
          /envoy\.service\.auth\.v3\.Authorization\/Check/g,
          'envoy.service.auth.v2.Authorization/Check',
        ),
      /does not call/,
    ],
    [
      'proto path from the repository root',
      (s) => s.replace("client.load(['../protos']", "client.load(['protos']"),
      /not found/,
    ],
    ['no thresholds', (s) => s.replace(/thresholds\s*:\s*\{[^}]*\},/, ''), /no thresholds/],
    [
      'TLS to a plaintext server',
      (s) => s.replace('plaintext: true', 'plaintext: false'),
      /plaintext/,
    ],
    [
      'default target on the admin port',
      (s) => s.replace(`'127.0.0.1:${DEFAULT_GRPC_PORT}'`, `'127.0.0.1:${DEFAULT_ADMIN_PORT}'`),
      /target is not GATEHOUSE_ADDR/,
    ],
    [
      'unknown caller',
      (s) => s.replace('ns/checkout/sa/batch', 'ns/checkout/sa/nightly'),
      /not named in policies/,
    ],
  ];
  test.each(cases)('the checker notices: %s', (_name, mutate, expected) => {
    const changed = mutate(script);
    expect(changed).not.toBe(script);
    expect(k6Problems(changed).join('\n')).toMatch(expected);
  });
});

describe('READMEs', () => {
  test.each([
    ['envoy/README.md', ['envoy.yaml', 'envoy-http-mode.yaml', String(DEFAULT_HTTP_PORT)]],
    [
      'istio/README.md',
      ['kubectl apply -k istio/gatehouse', 'mesh-config.yaml', 'CUSTOM', 'must not be ext_authz'],
    ],
    ['k6/README.md', ['k6 run k6/check.js', 'h2load', 'big-endian', 'requestSerialize']],
  ] as Array<[string, string[]]>)('%s explains its files', (file, needles) => {
    const text = read(file);
    for (const n of needles) expect([n, text.includes(n)]).toEqual([n, true]);
  });
});

describe('Makefile', () => {
  /** The recipe of one target, tab-indented lines after `target:`. */
  function recipe(makefile: string, target: string): string {
    const lines = makefile.split('\n');
    const start = lines.findIndex((l) => l.startsWith(`${target}:`));
    if (start < 0) return '';
    const body: string[] = [];
    for (const l of lines.slice(start + 1)) {
      if (!l.startsWith('\t')) break;
      body.push(l.slice(1));
    }
    return body.join('\n');
  }
  const makefile = read('Makefile');

  test('make run serves on loopback, not every interface', () => {
    const run = recipe(makefile, 'run');
    expect(run).toMatch(/serve\b.*--listen-address \$\(LISTEN_ADDRESS\)/);
    expect(makefile).toMatch(/^LISTEN_ADDRESS \?= 127\.0\.0\.1$/m);
    // ARGS come last, so a user's own --listen-address still wins.
    expect(run.indexOf('$(ARGS)')).toBeGreaterThan(run.indexOf('--listen-address'));
  });
});

describe('istio/residency-envoyfilter.yaml', () => {
  const filter = loadOne('istio/residency-envoyfilter.yaml');

  /** Whether the EnvoyFilter gives the ext_authz filter the labels a `regionFrom: label:` rule reads. */
  function residencyFilterProblems(f: Obj): string[] {
    const problems: string[] = [];
    if (
      f['kind'] !== 'EnvoyFilter' ||
      !/^networking\.istio\.io\/v1(alpha3)?$/.test(str(f['apiVersion']))
    )
      problems.push('not an EnvoyFilter');
    const patches = objs(dig(f, 'spec', 'configPatches'));
    const p = patches.find((x) => x['applyTo'] === 'HTTP_FILTER');
    if (p === undefined) return [...problems, 'no HTTP_FILTER patch'];
    if (dig(p, 'match', 'context') !== 'SIDECAR_INBOUND')
      problems.push('does not patch the inbound sidecar, where the check runs');
    if (dig(p, 'match', 'listener', 'filterChain', 'filter', 'subFilter', 'name') !== EXT_AUTHZ)
      problems.push(`does not match the ${EXT_AUTHZ} filter`);
    if (dig(p, 'patch', 'operation') !== 'MERGE')
      problems.push("does not MERGE into istiod's filter (it would replace its provider settings)");
    const typed = obj(dig(p, 'patch', 'value', 'typed_config'));
    if (typed['@type'] !== EXT_AUTHZ_TYPE) problems.push('typed_config is not ExtAuthz');
    if (typed['bootstrap_metadata_labels_key'] !== 'LABELS')
      problems.push(
        'bootstrap_metadata_labels_key is not LABELS (Istio keeps the pod labels there)',
      );
    if (Object.keys(obj(dig(f, 'spec', 'workloadSelector', 'labels'))).length === 0)
      problems.push('no workloadSelector: it would change every sidecar of the namespace');
    return problems;
  }

  test("gives the customers sidecars' checks their pod labels", () => {
    expect(residencyFilterProblems(filter)).toEqual([]);
    expect(dig(filter, 'spec', 'workloadSelector', 'labels', 'app')).toBe('customers');
    // The example rule it serves reads a label, and the file tells which pod label to set.
    const customers = read('policies/customers.yaml');
    const key = /regionFrom: label:(\S+)/.exec(customers)?.[1];
    expect(key).toBe('topology.kubernetes.io/region');
    expect(read('istio/residency-envoyfilter.yaml')).toContain(`labels["${key}"]`);
  });

  test.each([
    [
      'outbound context',
      (f: Obj) => {
        obj(dig(f, 'spec', 'configPatches', 0, 'match'))['context'] = 'SIDECAR_OUTBOUND';
      },
      /inbound sidecar/,
    ],
    [
      'REPLACE',
      (f: Obj) => {
        obj(dig(f, 'spec', 'configPatches', 0, 'patch'))['operation'] = 'REPLACE';
      },
      /MERGE/,
    ],
    [
      'another key',
      (f: Obj) => {
        obj(dig(f, 'spec', 'configPatches', 0, 'patch', 'value', 'typed_config'))[
          'bootstrap_metadata_labels_key'
        ] = 'labels';
      },
      /LABELS/,
    ],
    [
      'no selector',
      (f: Obj) => {
        delete obj(f['spec'])['workloadSelector'];
      },
      /workloadSelector/,
    ],
  ] as Array<[string, (f: Obj) => void, RegExp]>)(
    'the checker notices: %s',
    (_name, mutate, expected) => {
      const f = clone(filter);
      mutate(f);
      expect(residencyFilterProblems(f).join('\n')).toMatch(expected);
    },
  );
});

describe('examples/nginx/gatehouse-server.conf', () => {
  const conf = read('examples/nginx/gatehouse-server.conf');

  /** The body of the first block whose header matches (`upstream name`, `location = /x`), braces balanced. */
  function block(text: string, header: string): string {
    const start = text.indexOf(`${header} {`);
    if (start < 0) return '';
    let depth = 0;
    for (let i = text.indexOf('{', start); i < text.length; i++) {
      if (text[i] === '{') depth++;
      else if (text[i] === '}' && --depth === 0) return text.slice(text.indexOf('{', start) + 1, i);
    }
    return '';
  }
  /** Directives of a block without comments, `name args` per entry. */
  function directives(body: string): string[] {
    return body
      .split('\n')
      .map((l) => l.replace(/#.*$/, '').trim())
      .filter((l) => l !== '')
      .map((l) => l.replace(/;$/, ''));
  }
  function milliseconds(value: string): number {
    const m = /^(\d+)(ms|s|m)?$/.exec(value);
    if (!m) return NaN;
    return Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  }

  function nginxProblems(text: string): string[] {
    const problems: string[] = [];
    const auth = directives(block(text, 'location = /_gatehouse'));
    const pass = auth.find((d) => d.startsWith('proxy_pass '))?.split(/\s+/)[1] ?? '';
    const upstreamName = /^http:\/\/([^/:]+)$/.exec(pass)?.[1];
    const upstream = upstreamName ? directives(block(text, `upstream ${upstreamName}`)) : [];
    if (!upstream.some((d) => /^keepalive \d+$/.test(d)))
      problems.push('no upstream keepalive to Gatehouse: a new TCP connection per request');
    if (!auth.includes('proxy_http_version 1.1'))
      problems.push('auth location is not HTTP/1.1 (keepalive needs it)');
    if (!auth.includes('proxy_set_header Connection ""'))
      problems.push('auth location does not clear Connection (keepalive needs it)');
    for (const t of ['proxy_connect_timeout', 'proxy_send_timeout', 'proxy_read_timeout']) {
      const value = auth.find((d) => d.startsWith(`${t} `))?.split(/\s+/)[1];
      if (value === undefined || !(milliseconds(value) <= 1000))
        problems.push(
          `${t} is ${value ?? "nginx's default 60s"}; a check should give up in well under a second (Envoy: 250ms)`,
        );
    }
    if (
      !auth.includes('proxy_intercept_errors on') ||
      !auth.some((d) => /^error_page 429 = @\S+$/.test(d))
    )
      problems.push('429 reaches auth_request, which logs it at [error]');
    const app = directives(block(text, 'location /'));
    if (!app.includes('proxy_set_header Host $host'))
      problems.push('the app location does not forward Host');
    return problems;
  }

  test('keepalive to Gatehouse, short timeouts, Host forwarded, 429 not logged as an error', () => {
    expect(nginxProblems(conf)).toEqual([]);
  });

  test.each([
    ['no keepalive', (t: string) => t.replace(/^\s*keepalive 32;\n/m, ''), /no upstream keepalive/],
    [
      '60 s read timeout',
      (t: string) => t.replace('proxy_read_timeout 250ms', 'proxy_read_timeout 60s'),
      /proxy_read_timeout is 60s/,
    ],
    [
      'no connect timeout',
      (t: string) => t.replace(/^\s*proxy_connect_timeout 250ms;\n/m, ''),
      /proxy_connect_timeout is nginx's default/,
    ],
    [
      'HTTP/1.0 to Gatehouse',
      (t: string) => t.replace(/^\s*proxy_http_version 1\.1;\n/m, ''),
      /not HTTP\/1\.1/,
    ],
    [
      'Host not forwarded',
      (t: string) => t.replace(/^\s*proxy_set_header Host \$host;\n/m, ''),
      /does not forward Host/,
    ],
    [
      '429 not intercepted',
      (t: string) => t.replace(/^\s*error_page 429 = @gatehouse_limited;\n/m, ''),
      /429 reaches auth_request/,
    ],
  ] as Array<[string, (t: string) => string, RegExp]>)(
    'the checker notices: %s',
    (_name, mutate, expected) => {
      const changed = mutate(conf);
      expect(changed).not.toBe(conf);
      expect(nginxProblems(changed).join('\n')).toMatch(expected);
    },
  );
});

describe('deploy/grafana/gatehouse.json and the PrometheusRule query metrics a real server exports', () => {
  const dashboard = JSON.parse(read('deploy/grafana/gatehouse.json')) as Obj;
  const rules = loadOne(`${BASE}/monitoring/prometheusrule.yaml`);
  let exported: Set<string>;
  let server: ServeProcess;

  /** Every PromQL expression in the dashboard (panels and variables). */
  function dashboardExprs(d: Obj): string[] {
    const out: string[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (isObj(v)) {
        for (const [k, x] of Object.entries(v)) {
          if (
            (k === 'expr' || (k === 'query' && isObj(v) && v['type'] === 'query')) &&
            typeof x === 'string'
          )
            out.push(x);
          else walk(x);
        }
      }
    };
    walk(d);
    return out;
  }
  /** Metric names in a PromQL expression (Gatehouse's and the Node.js defaults; `up` is Prometheus's own). */
  function metricNames(expr: string): string[] {
    return [...expr.matchAll(/\b((?:gatehouse|nodejs|process)_[a-z0-9_]+)\b/g)].map((m) => m[1]!);
  }

  beforeAll(async () => {
    server = await spawnServe([
      '--policies',
      'policies',
      '--trust-domain',
      'shop.example',
      '--no-watch',
      '--workers',
      '2',
      '--audit-log',
      '/dev/null',
    ]);
    await waitFor(
      async () => (await fetch(`http://127.0.0.1:${server.adminPort}/readyz`)).status === 200,
      'workers ready',
    );
    const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
    exported = new Set();
    for (const line of text.split('\n')) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (!m) continue;
      exported.add(m[1]!);
      if (m[2] === 'histogram')
        for (const s of ['_bucket', '_sum', '_count']) exported.add(`${m[1]!}${s}`);
      if (m[2] === 'summary') for (const s of ['_sum', '_count']) exported.add(`${m[1]!}${s}`);
    }
  }, 30_000);
  afterAll(async () => {
    server.child.kill('SIGTERM');
    await server.exited;
  });

  test('every metric the dashboard queries is exported', () => {
    const names = dashboardExprs(dashboard).flatMap(metricNames);
    expect(names.length).toBeGreaterThan(15);
    expect(names.filter((n) => !exported.has(n))).toEqual([]);
  });

  test('every metric the alerts query is exported', () => {
    const exprs = objs(dig(rules, 'spec', 'groups'))
      .flatMap((g) => objs(g['rules']))
      .map((r) => str(r['expr']));
    const names = exprs.flatMap(metricNames);
    expect(names.length).toBeGreaterThan(8);
    expect(names.filter((n) => !exported.has(n))).toEqual([]);
  });

  test('the dashboard covers decisions by result and reason, latency, Redis, reloads, quarantines and dormant grants', () => {
    const all = dashboardExprs(dashboard).join('\n');
    for (const needle of [
      'by (result)',
      'by (reason)',
      'gatehouse_check_duration_seconds_bucket',
      'gatehouse_redis_breaker_state',
      'gatehouse_redis_errors_total',
      'gatehouse_policy_reloads_total',
      'gatehouse_quarantined_callers',
      'gatehouse_dormant_grants',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect([needle, all.includes(needle)]).toEqual([needle, true]);
    }
    expect(dig(dashboard, 'uid')).toBe('gatehouse');
  });

  test('the checker notices a metric that does not exist', () => {
    expect(
      metricNames('sum(rate(gatehouse_checks_totl[5m]))').filter((n) => !exported.has(n)),
    ).toEqual(['gatehouse_checks_totl']);
  });
});
