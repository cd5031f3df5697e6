import { Environment } from '@marcbachmann/cel-js';

/**
 * What a `when:` condition reads, found from its syntax tree once (at load, or when replay
 * starts), never per check. Used to know which header names a policy set reads (the audit
 * record keeps their presence) and whether replay can evaluate a condition from a record.
 */
export interface ConditionReads {
  /** Top-level variables and `request.<field>` paths read, e.g. `request.path`, `caller`, `metadata`. */
  readonly paths: ReadonlySet<string>;
  /** Map keys tested only for presence (`'x' in request.headers`), by map (`headers`, `query`). */
  readonly presence: { readonly headers: readonly string[]; readonly query: readonly string[] };
  /** Map keys whose value is read (`request.headers['x']`). */
  readonly values: { readonly headers: readonly string[]; readonly query: readonly string[] };
  /** The map is read some other way (a macro over it, a computed key): which keys matter is unknown. */
  readonly opaque: { readonly headers: boolean; readonly query: boolean };
}

interface Node {
  op: string;
  args: unknown;
}

const VARIABLES = new Set(['request', 'caller', 'context', 'destination', 'metadata']);
const MAPS = ['headers', 'query'] as const;
type MapName = (typeof MAPS)[number];

let parser: Environment | undefined;

/** undefined when the source does not parse (validation has refused it already). */
export function conditionReads(source: string): ConditionReads | undefined {
  parser ??= new Environment({ enableOptionalTypes: true });
  let ast: unknown;
  try {
    ast = parser.parse(source).ast;
  } catch {
    return undefined;
  }
  const paths = new Set<string>();
  const presence = { headers: new Set<string>(), query: new Set<string>() };
  const values = { headers: new Set<string>(), query: new Set<string>() };
  const opaque = { headers: false, query: false };
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const child of node) walk(child);
      return;
    }
    if (!isNode(node)) return;
    const args = node.args;
    if ((node.op === '[]' || node.op === '[?]') && Array.isArray(args)) {
      const map = requestMap(args[0]);
      const key = literal(args[1]);
      if (map !== undefined && key !== undefined) {
        paths.add(`request.${map}`);
        values[map].add(key);
        return;
      }
    }
    if (node.op === 'in' && Array.isArray(args)) {
      const map = requestMap(args[1]);
      const key = literal(args[0]);
      if (map !== undefined && key !== undefined) {
        paths.add(`request.${map}`);
        presence[map].add(key);
        return;
      }
    }
    const map = requestMap(node);
    if (map !== undefined) {
      paths.add(`request.${map}`);
      opaque[map] = true;
      return;
    }
    if (
      (node.op === '.' || node.op === '.?') &&
      Array.isArray(args) &&
      isId(args[0], 'request') &&
      typeof args[1] === 'string'
    ) {
      paths.add(`request.${args[1]}`);
      return;
    }
    if (node.op === 'id' && typeof args === 'string' && VARIABLES.has(args)) {
      paths.add(args);
      return;
    }
    walk(args);
  };
  walk(ast);
  for (const map of MAPS) for (const key of values[map]) presence[map].delete(key);
  return {
    paths,
    presence: { headers: [...presence.headers], query: [...presence.query] },
    values: { headers: [...values.headers], query: [...values.query] },
    opaque,
  };
}

function isNode(value: unknown): value is Node {
  return value !== null && typeof value === 'object' && typeof (value as Node).op === 'string';
}

function isId(value: unknown, name: string): boolean {
  return isNode(value) && value.op === 'id' && value.args === name;
}

/** `request.headers` or `request.query` itself. */
function requestMap(value: unknown): MapName | undefined {
  if (!isNode(value) || (value.op !== '.' && value.op !== '.?') || !Array.isArray(value.args))
    return undefined;
  const [target, name] = value.args as [unknown, unknown];
  return isId(target, 'request') && (name === 'headers' || name === 'query') ? name : undefined;
}

function literal(value: unknown): string | undefined {
  return isNode(value) && value.op === 'value' && typeof value.args === 'string'
    ? value.args
    : undefined;
}
