import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { bodySize, hasBody, jsonBody, mediaType } from '../request/body';
import type { NormalizedRequest } from '../request/normalize';

/** A rule's `body:` contract, compiled once at load. */
export interface CompiledBodyContract {
  readonly maxBytes: number | undefined;
  readonly contentTypes: ReadonlySet<string> | null;
  readonly schema: ValidateFunction | null;
}

export interface BodyContractDoc {
  maxBytes?: number;
  contentTypes?: string[];
  schema?: Record<string, unknown>;
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

export type ContractCompileResult = { ok: true; value: CompiledBodyContract } | { ok: false; error: string; at: readonly (string | number)[] };

export function compileBodyContract(doc: BodyContractDoc): ContractCompileResult {
  let schema: ValidateFunction | null = null;
  if (doc.schema !== undefined) {
    const refused = findRefusedKeyword(doc.schema, []);
    if (refused) return { ok: false, error: `'${refused.keyword}' is not available in body schemas (regular expressions can backtrack on hostile input)`, at: ['schema', ...refused.at] };
    try {
      schema = contractAjv().compile(doc.schema);
    } catch (err) {
      return { ok: false, error: `invalid JSON Schema: ${(err as Error).message.split('\n')[0]}`, at: ['schema'] };
    }
  }
  const contentTypes = doc.contentTypes ? new Set(doc.contentTypes.map((t) => t.trim().toLowerCase())) : null;
  return { ok: true, value: { maxBytes: doc.maxBytes, contentTypes, schema } };
}

function findRefusedKeyword(node: unknown, at: (string | number)[]): { keyword: string; at: (string | number)[] } | undefined {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) {
      const found = findRefusedKeyword(node[i], [...at, i]);
      if (found) return found;
    }
    return undefined;
  }
  if (node === null || typeof node !== 'object') return undefined;
  for (const [key, value] of Object.entries(node)) {
    // Under `properties` the keys are property names, not keywords.
    const isNameMap = at.length > 0 && (at[at.length - 1] === 'properties' || at[at.length - 1] === '$defs' || at[at.length - 1] === 'definitions');
    if (!isNameMap && REFUSED_KEYWORDS.has(key)) return { keyword: key, at: [...at, key] };
    const found = findRefusedKeyword(value, [...at, key]);
    if (found) return found;
  }
  return undefined;
}

/** The first way the request breaks the contract, as a reason that quotes no payload; undefined when it holds. */
export function bodyContractViolation(contract: CompiledBodyContract, request: NormalizedRequest): string | undefined {
  if (contract.maxBytes !== undefined) {
    const size = bodySize(request);
    if (size > contract.maxBytes) return `request body is ${size} bytes, more than the ${contract.maxBytes} allowed`;
  }
  if (contract.contentTypes !== null && hasBody(request)) {
    const type = mediaType(request);
    if (!contract.contentTypes.has(type)) {
      return `content type ${type === '' ? '(none)' : `'${clip(type)}'`} is not accepted (expected ${[...contract.contentTypes].join(', ')})`;
    }
  }
  if (contract.schema !== null) {
    const body = jsonBody(request);
    if (!body.ok) return body.reason;
    if (!contract.schema(body.value)) return `request body does not match the schema: ${describeError(contract.schema.errors?.[0])}`;
  }
  return undefined;
}

/** ajv's message with the location; payload-chosen property names are clipped to plain characters. */
function describeError(error: ErrorObject | undefined): string {
  if (!error) return 'invalid';
  const where = error.instancePath === '' ? '/' : error.instancePath.split('/').map(safeSegment).join('/');
  return `${where} ${error.message ?? 'is invalid'}`;
}

function safeSegment(segment: string): string {
  if (segment.length > 64) return '…';
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charCodeAt(i);
    const plain = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x2d || c === 0x2e;
    if (!plain) return '…';
  }
  return segment;
}

function clip(text: string): string {
  return text.length <= 64 ? text : `${text.slice(0, 64)}…`;
}
