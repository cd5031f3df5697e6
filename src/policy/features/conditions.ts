import { Environment } from '@marcbachmann/cel-js';
import type { SpiffeId } from '../../identity/spiffe';
import { AmbiguousRequest } from '../../request/ambiguity';
import { clipText, type NormalizedRequest } from '../../request/normalize';
import { readQuery } from '../../request/query';

/**
 * Rule conditions (`when:`) in CEL. Every expression is parsed and type-checked once, at load,
 * against the declared shape of the request below, so a typo is a validation error with its
 * line and column rather than a denial at 3 a.m. The hot path only calls the compiled closure.
 */

export const MAX_CONDITION_LENGTH = 4096;

/** What a condition can see; documented in docs/policies.md. */
function environment(): Environment {
  return new Environment({
    enableOptionalTypes: true,
    limits: {
      maxAstNodes: 512,
      maxDepth: 32,
      maxListElements: 256,
      maxMapEntries: 256,
      maxCallArguments: 16,
    },
  })
    .registerVariable('request', {
      schema: {
        method: 'string',
        path: 'string',
        host: 'string',
        query: 'map<string, string>',
        headers: 'map<string, string>',
      },
    })
    .registerVariable('caller', {
      schema: { id: 'string', trustDomain: 'string', path: 'string', segments: 'list<string>' },
    })
    .registerVariable('context', 'map<string, string>')
    .registerVariable('destination', { schema: { labels: 'map<string, string>' } })
    .registerVariable('metadata', 'map<string, dyn>');
}

let shared: Environment | undefined;
function env(): Environment {
  shared ??= environment();
  return shared;
}

export type ConditionActivation = Record<string, unknown>;
export type CompiledCondition = (activation: ConditionActivation) => boolean;

export type ConditionCompileResult =
  | { ok: true; value: { readonly source: string; readonly evaluate: CompiledCondition } }
  | { ok: false; error: string; /** offset of the problem inside the expression */ offset: number };

/**
 * Functions that are refused even though CEL has them: `matches` runs a regular expression
 * written in policy text over request input, and JavaScript's engine backtracks, so one
 * hostile header could pin a core. Path patterns, startsWith, endsWith and contains cover
 * what policies need.
 */
const REFUSED_FUNCTIONS = new Map([
  [
    'matches',
    'matches() is not available (regular expressions can backtrack on hostile input); use startsWith, endsWith, contains or a path pattern',
  ],
]);

export function compileCondition(source: string): ConditionCompileResult {
  if (source.length > MAX_CONDITION_LENGTH)
    return {
      ok: false,
      error: `condition is longer than ${MAX_CONDITION_LENGTH} characters`,
      offset: 0,
    };
  let parsed: ReturnType<Environment['parse']>;
  try {
    parsed = env().parse(source);
  } catch (err) {
    return celFailure(err);
  }
  const refused = findRefusedCall(parsed.ast);
  if (refused) {
    // The call node starts at its receiver; point at the function's name instead. Searched for
    // from the receiver's end, because a string such as "matches" inside the receiver is not it.
    const name = source.indexOf(refused.name, refused.after);
    return { ok: false, error: refused.message, offset: name === -1 ? refused.offset : name };
  }
  const checked = parsed.check();
  if (!checked.valid) return celFailure(checked.error);
  if (checked.type !== 'bool')
    return {
      ok: false,
      error: `condition must be a bool expression, not ${String(checked.type)}`,
      offset: 0,
    };
  const evaluate = parsed as unknown as (activation: ConditionActivation) => unknown;
  return {
    ok: true,
    value: {
      source,
      // A non-bool at run time (dyn metadata) is an error, never truthiness.
      evaluate: (activation) => {
        const result = evaluate(activation);
        if (typeof result !== 'boolean')
          throw Object.assign(new Error('condition did not produce a bool'), {
            code: 'not_a_bool',
          });
        return result;
      },
    },
  };
}

function celFailure(err: unknown): { ok: false; error: string; offset: number } {
  const e = err as { summary?: string; message?: string; range?: { start: number } } | undefined;
  // Clipped: CEL quotes identifiers from the expression ("Unknown variable: xxx…"), and
  // a 4 KiB name must not flood `validate` output or the reload log.
  return {
    ok: false,
    error: clipText(firstLine(e?.summary ?? e?.message ?? 'invalid condition'), 160),
    offset: e?.range?.start ?? 0,
  };
}

interface AstNode {
  op: string;
  args: unknown;
  pos?: number;
  end?: number;
}

function findRefusedCall(
  node: unknown,
): { name: string; message: string; offset: number; after: number } | undefined {
  if (Array.isArray(node)) {
    for (const child of node) {
      const found = findRefusedCall(child);
      if (found) return found;
    }
    return undefined;
  }
  if (node === null || typeof node !== 'object' || !('op' in node)) return undefined;
  const n = node as AstNode;
  if (
    (n.op === 'call' || n.op === 'rcall') &&
    Array.isArray(n.args) &&
    typeof n.args[0] === 'string'
  ) {
    const message = REFUSED_FUNCTIONS.get(n.args[0]);
    if (message) {
      const receiver = n.op === 'rcall' ? (n.args[1] as AstNode | undefined) : undefined;
      return { name: n.args[0], message, offset: n.pos ?? 0, after: receiver?.end ?? n.pos ?? 0 };
    }
  }
  return findRefusedCall(n.args);
}

function firstLine(text: string): string {
  const i = text.indexOf('\n');
  return i === -1 ? text : text.slice(0, i);
}

/** Null prototype: `"constructor" in request.query` must be false. A query read only in part is refused. */
function queryRecord(raw: string): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  if (raw === '') return out;
  const query = readQuery(raw);
  if (!query.ok) throw new AmbiguousRequest(query.reason);
  for (const [k, v] of query.value) out[k] = v;
  return out;
}

/**
 * What a failed evaluation is reported as: its class, never its message. CEL's messages quote
 * the values they failed on (`duration()` repeats its argument), and those values are request
 * headers, API keys among them; a reason lands in the deny body and the audit record.
 */
export function conditionErrorClass(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && isErrorCode(code)) return code;
  return 'evaluation_error';
}

/** CEL's codes are snake_case words; anything else is not echoed. */
function isErrorCode(code: string): boolean {
  if (code.length === 0 || code.length > 40) return false;
  for (let i = 0; i < code.length; i++) {
    const c = code.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || c === 0x5f)) return false;
  }
  return true;
}

/**
 * The activation for one request, built only when a matching rule has a condition (most
 * checks never pay for it), and at most once per check.
 */
export function conditionActivation(
  request: NormalizedRequest,
  caller: SpiffeId,
): ConditionActivation {
  const path = caller.path;
  return {
    request: {
      method: request.method,
      path: request.path,
      host: request.host,
      query: queryRecord(request.query),
      headers: request.headers,
    },
    caller: {
      id: caller.id,
      trustDomain: caller.trustDomain,
      path,
      segments: path === '' ? [] : path.slice(1).split('/'),
    },
    context: request.contextExtensions,
    destination: { labels: request.destinationLabels },
    metadata: request.metadata,
  };
}
