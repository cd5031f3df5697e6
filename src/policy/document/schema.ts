/**
 * JSON Schema (draft-07, checked by ajv) for `kind: ServicePolicy`. Structure and types
 * only; meaning (SPIFFE patterns, path patterns, duplicates) is checked in compile/validate.ts
 * where the message can say what to write instead.
 */
import { CONTENT_DENIALS, IDENTITY_DENIALS } from '../../quarantine/types';
import type { FromSchema } from './from-schema';

const NAME = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
const METHOD = '^[A-Z][A-Z0-9_-]{0,31}$';
/** `90s`, `15m`, `12h`, `30d`; parsed by duration.ts. */
export const DURATION = '^[1-9][0-9]{0,6}(ms|s|m|h|d)$';
const duration = { type: 'string', pattern: DURATION } as const;
const QUARANTINE_REASONS = [...IDENTITY_DENIALS, ...CONTENT_DENIALS];

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
        hosts: {
          type: 'array',
          minItems: 1,
          items: { type: 'string', minLength: 1, maxLength: 253 },
        },
        // Destination SPIFFE IDs guarded at the TCP level (Istio's network ext_authz).
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
        // The `aud` JWT-SVIDs presented to this policy's hosts must carry (else --jwt-audience).
        audience: { type: 'string', minLength: 1 },
        // Denials by this policy that put a caller into quarantine: by default only those its
        // identity decided (`countReasons` adds others), isolating it from this policy's workloads
        // (`scope: mesh`: from every destination).
        quarantine: {
          type: 'object',
          additionalProperties: false,
          required: ['denials', 'window', 'duration'],
          properties: {
            denials: { type: 'integer', minimum: 1, maximum: 100000 },
            window: duration,
            duration,
            countReasons: {
              type: 'array',
              minItems: 1,
              uniqueItems: true,
              items: { enum: [...QUARANTINE_REASONS] },
            },
            scope: { enum: ['policy', 'mesh'] },
          },
        },
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
              allow: {
                type: 'array',
                items: {
                  anyOf: [
                    { type: 'string', minLength: 1 },
                    {
                      type: 'object',
                      additionalProperties: false,
                      required: ['caller'],
                      properties: {
                        caller: { type: 'string', minLength: 1 },
                        expiresAfterUnused: duration,
                      },
                    },
                  ],
                },
              },
              deny: { type: 'array', items: { type: 'string', minLength: 1 } },
              // A CEL expression that must hold for the rule to apply.
              when: { type: 'string', minLength: 1 },
              // What the request body must be (Envoy forwards it with `with_request_body`).
              body: {
                type: 'object',
                additionalProperties: false,
                minProperties: 1,
                properties: {
                  maxBytes: { type: 'integer', minimum: 0, maximum: 104857600 },
                  contentTypes: {
                    type: 'array',
                    minItems: 1,
                    items: { type: 'string', minLength: 1, maxLength: 127 },
                  },
                  schema: { type: 'object' },
                },
              },
              // Where the data may flow: the destination's region must be listed.
              residency: {
                type: 'object',
                additionalProperties: false,
                required: ['regions', 'regionFrom'],
                properties: {
                  regions: {
                    type: 'array',
                    minItems: 1,
                    items: { type: 'string', minLength: 1, maxLength: 128 },
                  },
                  regionFrom: { type: 'string', minLength: 1 },
                },
              },
              // `mtls`: a JWT-SVID alone is not enough for this rule.
              require: { enum: ['mtls'] },
              // Remove the caller's `authorization` header before the request goes upstream.
              stripToken: { type: 'boolean' },
              // The `aud` a JWT-SVID must carry for this rule (else the policy's, else --jwt-audience).
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
export type ServicePolicyDoc = FromSchema<typeof servicePolicySchema>;

export type RuleDoc = ServicePolicyDoc['spec']['rules'][number];

/** JSON Schema for `kind: WorkloadPolicy`: what one workload refuses to send or do as a caller. */
export const workloadPolicySchema = {
  $id: 'https://gatehouse.dev/schema/workloadpolicy.json',
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'gatehouse/v1' },
    kind: { const: 'WorkloadPolicy' },
    metadata: servicePolicySchema.properties.metadata,
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['workload', 'refuse'],
      properties: {
        // The caller this applies to: one exact SPIFFE ID.
        workload: { type: 'string', minLength: 1 },
        mode: { enum: ['enforce', 'dry-run'] },
        refuse: {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name'],
            minProperties: 2,
            properties: {
              name: { type: 'string', pattern: NAME },
              hosts: {
                type: 'array',
                minItems: 1,
                items: { type: 'string', minLength: 1, maxLength: 253 },
              },
              methods: { type: 'array', minItems: 1, items: { type: 'string', pattern: METHOD } },
              paths: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
              // Request headers it never sends (lower-case names).
              headers: {
                type: 'array',
                minItems: 1,
                items: { type: 'string', minLength: 1, maxLength: 128 },
              },
              // JSON body fields it never sends, dotted (`card.number`); arrays are searched element by element.
              fields: {
                type: 'array',
                minItems: 1,
                items: { type: 'string', minLength: 1, maxLength: 256 },
              },
            },
          },
        },
      },
    },
  },
} as const;

export type WorkloadPolicyDoc = FromSchema<typeof workloadPolicySchema>;

export type PolicyDoc = ServicePolicyDoc | WorkloadPolicyDoc;
