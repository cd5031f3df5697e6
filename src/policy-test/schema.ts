import { DURATION } from '../policy/document/schema';
import type { JwtCredentialDoc } from './credentials';

/** JSON Schema for `kind: PolicyTest` (`*.test.yaml` beside the policies). */
export const policyTestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'gatehouse/v1' },
    kind: { const: 'PolicyTest' },
    metadata: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: { name: { type: 'string', minLength: 1 }, description: { type: 'string' } },
    },
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['cases'],
      properties: {
        trustDomains: { type: 'array', items: { type: 'string', minLength: 1 } },
        trustXfcc: { type: 'boolean' },
        jwtAudience: { type: 'string', minLength: 1 },
        cases: {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'request', 'expect'],
            properties: {
              name: { type: 'string', minLength: 1 },
              request: {
                type: 'object',
                additionalProperties: false,
                properties: {
                  caller: { type: 'string' },
                  xfcc: { type: 'string' },
                  jwt: {
                    type: 'object',
                    additionalProperties: false,
                    required: ['sub'],
                    properties: {
                      sub: { type: 'string', minLength: 1 },
                      aud: {
                        anyOf: [
                          { type: 'string', minLength: 1 },
                          { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
                        ],
                      },
                      expiresIn: { type: 'integer', minimum: -86400, maximum: 86400 },
                    },
                  },
                  workload: { type: 'string', minLength: 1 },
                  host: { type: 'string', minLength: 1 },
                  destination: { type: 'string', minLength: 1 },
                  method: { type: 'string', minLength: 1 },
                  path: { type: 'string', minLength: 1 },
                  headers: { type: 'object', additionalProperties: { type: 'string' } },
                  body: { anyOf: [{ type: 'string' }, { type: 'object' }, { type: 'array' }] },
                  context: { type: 'object', additionalProperties: { type: 'string' } },
                  labels: { type: 'object', additionalProperties: { type: 'string' } },
                  metadata: { type: 'object', additionalProperties: { type: 'object' } },
                },
              },
              state: {
                type: 'object',
                additionalProperties: false,
                minProperties: 1,
                properties: {
                  quarantined: { type: 'boolean' },
                  grantUnusedFor: { type: 'string', pattern: DURATION },
                },
              },
              repeat: { type: 'integer', minimum: 1, maximum: 100000 },
              expect: {
                anyOf: [
                  { enum: ['allow', 'deny'] },
                  {
                    type: 'object',
                    additionalProperties: false,
                    properties: {
                      allow: { const: true },
                      deny: { enum: [401, 403, 429] },
                      reason: { type: 'string', minLength: 1 },
                      rule: { type: 'string', minLength: 1 },
                    },
                  },
                ],
              },
            },
          },
        },
      },
    },
  },
} as const;

export type ExpectDoc =
  'allow' | 'deny' | { allow?: true; deny?: 401 | 403 | 429; reason?: string; rule?: string };

export interface PolicyTestDoc {
  apiVersion: 'gatehouse/v1';
  kind: 'PolicyTest';
  metadata: { name: string; description?: string };
  spec: {
    trustDomains?: string[];
    trustXfcc?: boolean;
    /** The server's --jwt-audience for these cases (default `gatehouse-test`). */
    jwtAudience?: string;
    cases: CaseDoc[];
  };
}

export interface CaseDoc {
  name: string;
  /** An HTTP request (host and path), or a TCP connection to `workload` (a SPIFFE ID). */
  request: {
    caller?: string;
    xfcc?: string;
    jwt?: JwtCredentialDoc;
    workload?: string;
    host?: string;
    /** The receiving workload's SPIFFE ID (Envoy's destination.principal); it selects the policy. */
    destination?: string;
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    /** The body Envoy forwards (`with_request_body`); an object or list is sent as JSON. */
    body?: string | Record<string, unknown> | unknown[];
    /** Per-route context extensions. */
    context?: Record<string, string>;
    /** The destination node's labels (`bootstrap_metadata_labels_key`). */
    labels?: Record<string, string>;
    /** Dynamic metadata by filter namespace. */
    metadata?: Record<string, Record<string, unknown>>;
  };
  /** What the mesh remembers before the case: the caller quarantined, or its grants unused this long. */
  state?: { quarantined?: boolean; grantUnusedFor?: string };
  repeat?: number;
  expect: ExpectDoc;
}
