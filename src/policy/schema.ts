/**
 * JSON Schema (draft-07, checked by ajv) for `kind: ServicePolicy`. Structure and types
 * only; meaning (SPIFFE patterns, path patterns, duplicates) is checked in validate.ts
 * where the message can say what to write instead.
 */
const NAME = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
const METHOD = '^[A-Z][A-Z0-9_-]{0,31}$';

export const servicePolicySchema = {
  $id: 'https://gatehouse.dev/schema/servicepolicy.json',
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'gatehouse/v1' },
    kind: { const: 'ServicePolicy' },
    metadata: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: {
        name: { type: 'string', pattern: NAME },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
        description: { type: 'string' },
      },
    },
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['rules'],
      properties: {
        hosts: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1, maxLength: 253 } },
        workloads: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
        tcp: {
          type: 'object',
          additionalProperties: false,
          properties: {
            allow: { type: 'array', items: { type: 'string', minLength: 1 } },
            deny: { type: 'array', items: { type: 'string', minLength: 1 } },
          },
        },
        mode: { enum: ['enforce', 'dry-run'] },
        audience: { type: 'string', minLength: 1 },
        rules: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name'],
            properties: {
              name: { type: 'string', pattern: NAME },
              methods: { type: 'array', minItems: 1, items: { type: 'string', pattern: METHOD } },
              paths: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
              allow: { type: 'array', items: { type: 'string', minLength: 1 } },
              deny: { type: 'array', items: { type: 'string', minLength: 1 } },
              require: { enum: ['mtls'] },
              stripToken: { type: 'boolean' },
              audience: { type: 'string', minLength: 1 },
              rateLimit: {
                type: 'object',
                additionalProperties: false,
                required: ['capacity', 'refillPerSecond'],
                properties: {
                  capacity: { type: 'integer', minimum: 1, maximum: 1_000_000_000 },
                  refillPerSecond: { type: 'number', minimum: 0.001, maximum: 1_000_000_000 },
                  per: { type: 'string', minLength: 1 },
                  cost: { type: 'integer', minimum: 1 },
                  onBackendError: { enum: ['allow', 'deny'] },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;

/** The shape a document has once it passed the schema. */
export interface ServicePolicyDoc {
  apiVersion: 'gatehouse/v1';
  kind: 'ServicePolicy';
  metadata: { name: string; labels?: Record<string, string>; description?: string };
  spec: {
    hosts?: string[];
    /** Destination SPIFFE IDs guarded at the TCP level (Istio's network ext_authz). */
    workloads?: string[];
    tcp?: { allow?: string[]; deny?: string[] };
    mode?: 'enforce' | 'dry-run';
    /** The `aud` JWT-SVIDs presented to this policy's hosts must carry (else --jwt-audience). */
    audience?: string;
    rules: RuleDoc[];
  };
}

export interface RuleDoc {
  name: string;
  methods?: string[];
  paths?: string[];
  allow?: string[];
  deny?: string[];
  /** `mtls`: a JWT-SVID alone is not enough for this rule. */
  require?: 'mtls';
  /** Remove the caller's `authorization` header before the request goes upstream. */
  stripToken?: boolean;
  /** The `aud` a JWT-SVID must carry for this rule (else the policy's, else --jwt-audience). */
  audience?: string;
  rateLimit?: {
    capacity: number;
    refillPerSecond: number;
    per?: string;
    cost?: number;
    onBackendError?: 'allow' | 'deny';
  };
}
