import { readFileSync } from 'node:fs';
import type { CheckResponseMessage } from '../../src/respond/check-response';
import { headerMap } from './grpc-client';
import { envoyCheckRequest, type RequestSpec } from './requests';

/**
 * Check requests with the inputs the enforcement features read: a forwarded body (`body` or
 * `raw_body`), context extensions, destination labels and metadata_context, shaped the way
 * proto-loader encodes them (camelCase; google.protobuf.Struct in its message form).
 */
export interface EnforcementRequestSpec extends RequestSpec {
  /** HttpRequest.body (field 11): what Envoy forwards with `with_request_body`. */
  body?: string;
  /** HttpRequest.raw_body (field 12): the same with `pack_as_bytes: true`. */
  rawBody?: Uint8Array;
  /** AttributeContext.context_extensions (field 10). */
  contextExtensions?: Record<string, string>;
  /** destination Peer.labels (field 3). */
  labels?: Record<string, string>;
  /** metadata_context.filter_metadata: namespace → plain JSON object (converted to Struct). */
  metadata?: Record<string, Record<string, unknown>>;
  /** metadata_context.filter_metadata already in proto-loader Struct form (hostile shapes). */
  rawMetadata?: Record<string, unknown>;
}

export function enforcementRequest(spec: EnforcementRequestSpec): Record<string, unknown> {
  const request = envoyCheckRequest(spec) as {
    attributes: Record<string, Record<string, unknown>> & {
      request: { http: Record<string, unknown> };
    };
  };
  const attributes = request.attributes;
  const http = attributes.request.http;
  if (spec.body !== undefined) http['body'] = spec.body;
  if (spec.rawBody !== undefined) http['rawBody'] = Buffer.from(spec.rawBody);
  if (spec.contextExtensions !== undefined)
    attributes['contextExtensions'] = spec.contextExtensions;
  if (spec.labels !== undefined) attributes['destination']!['labels'] = spec.labels;
  if (spec.metadata !== undefined) {
    attributes['metadataContext'] = {
      filterMetadata: Object.fromEntries(
        Object.entries(spec.metadata).map(([ns, value]) => [ns, toStruct(value)]),
      ),
    };
  }
  if (spec.rawMetadata !== undefined)
    attributes['metadataContext'] = { filterMetadata: spec.rawMetadata };
  return request;
}

/** Plain JSON → google.protobuf.Struct as proto-loader takes it. */
export function toStruct(value: Record<string, unknown>): { fields: Record<string, unknown> } {
  return { fields: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toValue(v)])) };
}

export function toValue(value: unknown): Record<string, unknown> {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value as Record<string, unknown>) };
}

/** A Struct nested `depth` levels deep (struct_value inside struct_value). */
export function deepStruct(depth: number): { fields: Record<string, unknown> } {
  let inner: { fields: Record<string, unknown> } = { fields: { leaf: { stringValue: 'x' } } };
  for (let i = 1; i < depth; i++) inner = { fields: { a: { structValue: inner } } };
  return inner;
}

/** The decision id the answer carries (upstream header on allow, client header on deny). */
export function decisionIdOf(res: CheckResponseMessage): string {
  const headers = res.okResponse
    ? headerMap(res.okResponse.headers)
    : headerMap(res.deniedResponse?.headers);
  const id = headers['x-gatehouse-decision'];
  if (id === undefined)
    throw new Error(`answer has no x-gatehouse-decision: ${JSON.stringify(res)}`);
  return id;
}

export function isAllowed(res: CheckResponseMessage): boolean {
  return (
    (res.status?.code ?? 0) === 0 &&
    res.okResponse !== undefined &&
    res.deniedResponse === undefined
  );
}

export interface DeniedBody {
  error: string;
  reason: string;
  decision_id: string;
}

/** Asserts a 403 on the wire (PERMISSION_DENIED, denied_response 403, JSON headers) and returns the body. */
export function expect403(res: CheckResponseMessage): DeniedBody {
  expect(res.okResponse).toBeUndefined();
  expect(res.status.code).toBe(7);
  expect(res.deniedResponse).toBeDefined();
  expect(res.deniedResponse!.status.code).toBe(403);
  const headers = headerMap(res.deniedResponse!.headers);
  expect(headers['content-type']).toBe('application/json');
  const body = JSON.parse(res.deniedResponse!.body) as DeniedBody;
  expect(body.error).toBe('forbidden');
  expect(body.decision_id).toBe(headers['x-gatehouse-decision']);
  expect(res.status.message).toBe(body.reason);
  return body;
}

/** Reads the audit file (after a flush) and finds one decision's record. */
export function auditRecordFor(
  records: readonly Record<string, unknown>[],
  decisionId: string,
): Record<string, unknown> {
  const record = records.find((r) => r['decision_id'] === decisionId);
  if (record === undefined)
    throw new Error(`no audit record for decision ${decisionId} among ${records.length}`);
  return record;
}

export function readText(file: string): string {
  return readFileSync(file, 'utf8');
}

/** Resolves within `ms` or rejects: no test waits unbounded. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
