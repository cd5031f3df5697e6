import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { bodyState, jsonBody, mediaType } from '../../request/body';
import { clipText, type NormalizedRequest } from '../../request/normalize';
import { pointerToPath } from '../json-pointer';

/** A rule's `body:` contract, compiled once at load. */
export interface CompiledBodyContract {
  readonly maxBytes: number | undefined;
  readonly contentTypes: ReadonlySet<string> | null;
  readonly schema: ValidateFunction | null;
  /** Property names the schema declares: the only names a denial reason may repeat. */
  readonly names: ReadonlySet<string>;
}

/**
 * Keywords refused in contract schemas: ajv turns `pattern` into a JavaScript RegExp that
 * would run over request bodies, and a backtracking pattern is a denial of service.
 */
const REFUSED_KEYWORDS = new Set(['pattern', 'patternProperties', '$dynamicRef', '$recursiveRef']);

let ajv: Ajv | undefined;
function contractAjv(): Ajv {
  // No loadSchema: a `$ref` to a URL is an unresolvable reference at load, never a fetch.
  ajv ??= new Ajv({ allErrors: false, strict: true, validateFormats: false, addUsedSchema: false });
  return ajv;
}

/** `key`: `at` ends with a key that is itself the problem (point at the key, not its value). */
export type ContractCompileResult =
  | { ok: true; value: CompiledBodyContract }
  | { ok: false; error: string; at: readonly (string | number)[]; key?: boolean };

/** A rule's `body:` as the document gives it (the compile pass passes the schema-derived `RuleDoc['body']`). */
export function compileBodyContract(doc: {
  readonly maxBytes?: number | undefined;
  readonly contentTypes?: readonly string[];
  readonly schema?: Record<string, unknown>;
}): ContractCompileResult {
  let schema: ValidateFunction | null = null;
  if (doc.schema !== undefined) {
    const refused = findRefusedKeyword(doc.schema, [], false);
    if (refused)
      return {
        ok: false,
        error: `'${refused.keyword}' is not available in body schemas (regular expressions can backtrack on hostile input)`,
        at: ['schema', ...refused.at],
        key: true,
      };
    const invalid = metaSchemaError(doc.schema);
    if (invalid) return invalid;
    try {
      schema = contractAjv().compile(doc.schema);
    } catch (err) {
      return {
        ok: false,
        error: `invalid JSON Schema: ${clipText((err as Error).message.split('\n')[0]!, 160)}`,
        at: ['schema'],
      };
    } finally {
      // ajv caches every schema object it compiles, and every reload brings new objects:
      // without this the cache would grow for the life of the process.
      contractAjv().removeSchema(doc.schema);
    }
  }
  const contentTypes = doc.contentTypes
    ? new Set(doc.contentTypes.map((t) => t.trim().toLowerCase()))
    : null;
  return {
    ok: true,
    value: { maxBytes: doc.maxBytes, contentTypes, schema, names: declaredNames(doc.schema) },
  };
}

/**
 * The schema checked against its meta-schema first, so the error points at the bad keyword:
 * ajv's compile error lists every alternative it tried and is located at the whole schema.
 */
function metaSchemaError(schema: Record<string, unknown>): ContractCompileResult | undefined {
  const ajv = contractAjv();
  let valid: boolean;
  try {
    valid = ajv.validateSchema(schema) as boolean;
  } catch {
    return undefined; // e.g. an unknown $schema: compile reports it
  }
  const error = valid ? undefined : ajv.errors?.[0];
  if (!error) return undefined;
  const at = pointerToPath(error.instancePath);
  const allowed = (error.params as { allowedValues?: unknown[] }).allowedValues;
  const message =
    error.keyword === 'enum' && Array.isArray(allowed)
      ? `must be one of: ${allowed.join(', ')}`
      : (error.message ?? 'is invalid');
  const where = at.length === 0 ? 'the schema' : clipText(at.join('.'), 64);
  return { ok: false, error: `invalid JSON Schema: ${where} ${message}`, at: ['schema', ...at] };
}

/**
 * `nameMap`: `node` maps property names to schemas (under `properties`, `$defs`, …), so its
 * keys are names, not keywords. It is not judged from the last path segment, because a
 * property named `properties` would then hide a `pattern` in its own schema from the check.
 */
function findRefusedKeyword(
  node: unknown,
  at: (string | number)[],
  nameMap: boolean,
): { keyword: string; at: (string | number)[] } | undefined {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const found = findRefusedKeyword(node[i], [...at, i], false);
      if (found) return found;
    }
    return undefined;
  }
  if (node === null || typeof node !== 'object') return undefined;
  for (const [key, value] of Object.entries(node)) {
    if (!nameMap && REFUSED_KEYWORDS.has(key)) return { keyword: key, at: [...at, key] };
    // Values of data keywords are instances, not schemas: a `pattern` key there is data.
    if (!nameMap && DATA_KEYWORDS.has(key)) continue;
    const found = findRefusedKeyword(value, [...at, key], !nameMap && NAME_MAPS.has(key));
    if (found) return found;
  }
  return undefined;
}

const NAME_MAPS = new Set([
  'properties',
  '$defs',
  'definitions',
  'dependentSchemas',
  'dependencies',
]);
const DATA_KEYWORDS = new Set(['const', 'enum', 'default', 'examples']);

/** A broken contract; `malformed` when upstreams could read the body otherwise than Gatehouse. */
export interface BodyViolation {
  readonly reason: string;
  readonly malformed: boolean;
}

/** The first way the request breaks the contract, as a reason that quotes no payload; undefined when it holds. */
export function bodyContractViolation(
  contract: CompiledBodyContract,
  request: NormalizedRequest,
): BodyViolation | undefined {
  const state = bodyState(request);
  if (contract.maxBytes !== undefined) {
    switch (state.kind) {
      case 'whole':
      case 'sized':
        if (state.size > contract.maxBytes)
          return {
            reason: `request body is ${state.size} bytes, more than the ${contract.maxBytes} allowed`,
            malformed: false,
          };
        break;
      case 'unknown':
        return {
          reason: `request body size cannot be shown to be within ${contract.maxBytes} bytes (${state.why})`,
          malformed: true,
        };
      case 'too-large':
        return { reason: `request body is too large: ${state.why}`, malformed: true };
    }
  }
  if (contract.contentTypes !== null && state.kind !== 'none') {
    const type = mediaType(request);
    if (!contract.contentTypes.has(type)) {
      return {
        reason: `content type ${type === '' ? '(none)' : `'${clipText(type, 64)}'`} is not accepted (expected ${[...contract.contentTypes].join(', ')})`,
        malformed: false,
      };
    }
  }
  if (contract.schema !== null) {
    const body = jsonBody(request);
    if (!body.ok) return { reason: body.reason, malformed: body.malformed };
    if (!contract.schema(body.value))
      return {
        reason: `request body does not match the schema: ${describeError(contract.schema.errors?.[0], contract.names, body.value)}`,
        malformed: false,
      };
  }
  return undefined;
}

/**
 * ajv's message with the location. Property names come from the payload, so a name the schema
 * does not declare (one matched by `additionalProperties`, say) is shown as `*`: a client's
 * key may itself be a secret, a card number as much as a word. Only an index into an array is
 * shown as a number.
 */
function describeError(
  error: ErrorObject | undefined,
  names: ReadonlySet<string>,
  value: unknown,
): string {
  if (!error) return 'invalid';
  let node = value;
  const where = pointerToPath(error.instancePath).map((segment) => {
    const key = String(segment);
    const shown = Array.isArray(node) || names.has(key) ? key : '*';
    node =
      node !== null && typeof node === 'object'
        ? (node as Record<string, unknown>)[key]
        : undefined;
    return shown;
  });
  return `/${where.join('/')} ${error.message ?? 'is invalid'}`;
}

/** Names under `properties` and in `required` anywhere in the schema. */
function declaredNames(schema: unknown): ReadonlySet<string> {
  const names = new Set<string>();
  const walk = (node: unknown, depth: number): void => {
    if (depth > 64 || node === null || typeof node !== 'object') return;
    if (Array.isArray(node)) return node.forEach((n) => walk(n, depth + 1));
    const record = node as Record<string, unknown>;
    const properties = record['properties'];
    if (properties !== null && typeof properties === 'object' && !Array.isArray(properties))
      for (const name of Object.keys(properties)) names.add(name);
    if (Array.isArray(record['required']))
      for (const name of record['required']) if (typeof name === 'string') names.add(name);
    for (const value of Object.values(record)) walk(value, depth + 1);
  };
  walk(schema, 0);
  return names;
}
