import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { compileSpiffePattern, parseSpiffeId } from '../identity/spiffe';
import { compilePathPattern } from './path-pattern';
import { servicePolicySchema, type ServicePolicyDoc } from './schema';
import { findShadowedRules } from './shadow';
import type { PolicyProblem } from './types';
import { describePath, type LocatedDoc, type YamlPath } from './yaml-docs';

let validator: ValidateFunction | undefined;
function schemaValidator(): ValidateFunction {
  validator ??= compileSchema(servicePolicySchema);
  return validator;
}

const KNOWN_KINDS = ['ServicePolicy'];

/** Structural and semantic checks of one document; returns the typed document when it is sound. */
export function validateDocument(located: LocatedDoc): { doc?: ServicePolicyDoc; problems: PolicyProblem[] } {
  const value = located.value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { problems: [located.problem([], 'a policy document must be a mapping with apiVersion, kind, metadata and spec')] };
  }
  const kind = (value as Record<string, unknown>)['kind'];
  if (typeof kind === 'string' && !KNOWN_KINDS.includes(kind)) {
    return { problems: [located.problem(['kind'], `unknown kind '${clip(kind)}' (expected one of: ${KNOWN_KINDS.join(', ')})`)] };
  }
  const problems = schemaProblems(located, schemaValidator());
  if (problems.length > 0) return { problems };
  const doc = value as ServicePolicyDoc;
  return { doc, problems: semanticProblems(located, doc) };
}

function semanticProblems(located: LocatedDoc, doc: ServicePolicyDoc): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  (doc.spec.hosts ?? []).forEach((host, i) => {
    const error = hostError(host);
    if (error) problems.push(located.problem(['spec', 'hosts', i], error));
  });
  if (!doc.spec.hosts && !doc.spec.workloads) {
    problems.push(located.problem(['spec'], 'a policy must guard hosts (HTTP) or workloads (TCP): add spec.hosts or spec.workloads'));
  }
  (doc.spec.workloads ?? []).forEach((workload, i) => {
    const parsed = parseSpiffeId(workload);
    if (!parsed.ok) problems.push(located.problem(['spec', 'workloads', i], `workloads[${i}]: ${parsed.error} (workloads are exact SPIFFE IDs)`));
  });
  if (doc.spec.tcp && !doc.spec.workloads) {
    problems.push(located.problem(['spec', 'tcp'], 'tcp rules apply to spec.workloads (the destination SPIFFE IDs); list them'));
  }
  for (const list of ['allow', 'deny'] as const) {
    doc.spec.tcp?.[list]?.forEach((p, i) => {
      const compiled = compileSpiffePattern(p);
      if (!compiled.ok) problems.push(located.problem(['spec', 'tcp', list, i], `tcp.${list}[${i}]: ${compiled.error}`));
    });
  }

  const ruleNames = new Map<string, number>();
  doc.spec.rules.forEach((rule, r) => {
    const at: YamlPath = ['spec', 'rules', r];
    const earlier = ruleNames.get(rule.name);
    if (earlier !== undefined) {
      problems.push(located.problem([...at, 'name'], `duplicate rule name '${rule.name}' (also rules[${earlier}]); rule names must be unique in a policy`));
    } else {
      ruleNames.set(rule.name, r);
    }
    rule.paths?.forEach((p, i) => {
      const compiled = compilePathPattern(p);
      if (!compiled.ok) problems.push(located.problem([...at, 'paths', i], compiled.error));
    });
    for (const list of ['allow', 'deny'] as const) {
      rule[list]?.forEach((p, i) => {
        const compiled = compileSpiffePattern(p);
        if (!compiled.ok) problems.push(located.problem([...at, list, i], `${list}[${i}]: ${compiled.error}`));
      });
    }
    if ((rule.allow?.length ?? 0) === 0 && (rule.deny?.length ?? 0) === 0) {
      problems.push(located.problem(at, `rule '${rule.name}' lists no callers: add allow (and optionally deny) SPIFFE ID patterns`));
    }
    const limit = rule.rateLimit;
    if (limit) {
      if (limit.per !== undefined && parseLimitKey(limit.per) === undefined) {
        problems.push(located.problem([...at, 'rateLimit', 'per'], `per must be 'caller' or 'header:<header-name>' (lower-case), not '${clip(limit.per)}'`));
      }
      if (limit.cost !== undefined && limit.cost > limit.capacity) {
        problems.push(located.problem([...at, 'rateLimit', 'cost'], `cost ${limit.cost} is larger than capacity ${limit.capacity}, so no request could ever pass`));
      }
    }
  });
  if (problems.length === 0) {
    for (const { index, by } of findShadowedRules(doc.spec.rules)) {
      const rule = doc.spec.rules[index]!.name;
      const earlier = doc.spec.rules[by]!.name;
      problems.push(
        located.problem(['spec', 'rules', index, 'name'], `rule '${rule}' is shadowed by rule '${earlier}' (rules[${by}]): every request it allows is decided by '${earlier}' first, so it never applies`, 'warning'),
      );
    }
  }
  return problems;
}

/** Parses `per:`; undefined when invalid. */
export function parseLimitKey(per: string): { kind: 'caller' } | { kind: 'header'; name: string } | undefined {
  if (per === 'caller') return { kind: 'caller' };
  if (!per.startsWith('header:')) return undefined;
  const name = per.slice('header:'.length);
  return isHeaderName(name) ? { kind: 'header', name } : undefined;
}

function isHeaderName(name: string): boolean {
  if (name.length === 0 || name.length > 128) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === 0x2e;
    if (!ok) return false;
  }
  return true;
}

/** Host names as written in `hosts:`; lower-case DNS names or IP literals, no port, no wildcard. */
export function hostError(host: string): string | undefined {
  if (host.includes('*')) return `host '${clip(host)}': wildcards are not supported; list each host`;
  if (host.startsWith('[')) {
    return /^\[[0-9a-fA-F:.]+\]$/.test(host) ? undefined : `host '${clip(host)}' is not a valid IPv6 literal`;
  }
  if (host.includes(':')) return `host '${clip(host)}': hosts are matched without their port; remove ':${clip(host.slice(host.indexOf(':') + 1))}'`;
  if (host !== host.toLowerCase()) return `host '${clip(host)}' must be lower-case`;
  for (const label of host.split('.')) {
    if (label.length === 0 || label.length > 63) return `host '${clip(host)}' has an empty or over-long label`;
    for (let i = 0; i < label.length; i++) {
      const c = label.charCodeAt(i);
      const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
      if (!ok) return `host '${clip(host)}' has a character not allowed in a host name`;
    }
  }
  return undefined;
}

/** Checks a document against a compiled JSON Schema; each error located at its YAML node. */
export function schemaProblems(located: LocatedDoc, validate: ValidateFunction): PolicyProblem[] {
  if (validate(located.value)) return [];
  return dedupe(relevant(validate.errors ?? []).map((e) => schemaProblem(located, e)));
}

export function compileSchema(schema: object): ValidateFunction {
  return new Ajv({ allErrors: true, strict: true, verbose: true }).compile(schema);
}

function schemaProblem(located: LocatedDoc, error: ErrorObject): PolicyProblem {
  const path = pointerToPath(error.instancePath);
  const where = describePath(path);
  const prefix = where === '' ? '' : `${where}: `;
  switch (error.keyword) {
    case 'additionalProperties': {
      const key = String((error.params as { additionalProperty: string }).additionalProperty);
      const allowed = Object.keys((error.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return located.keyProblem(path, key, `${prefix}unknown key '${clip(key)}' (allowed: ${allowed.join(', ')})`);
    }
    case 'required':
      return located.problem(path, `${prefix}missing required key '${(error.params as { missingProperty: string }).missingProperty}'`);
    case 'const':
      return located.problem(path, `${prefix}must be '${String((error.params as { allowedValue: unknown }).allowedValue)}'`);
    case 'enum':
      return located.problem(path, `${prefix}must be one of: ${((error.params as { allowedValues: unknown[] }).allowedValues).join(', ')}`);
    case 'type':
      return located.problem(path, `${prefix}must be ${article(String((error.params as { type: string }).type))}`);
    case 'pattern': {
      const isMethod = path.includes('methods');
      return located.problem(
        path,
        isMethod
          ? `${prefix}must be an upper-case HTTP method such as GET or POST`
          : `${prefix}must be a lower-case name of letters, digits and '-' (at most 63 characters)`,
      );
    }
    default:
      return located.problem(path, `${prefix}${error.message ?? 'is invalid'}`);
  }
}

/**
 * Drops what `anyOf` adds that a reader cannot act on: the summary "must match a schema in
 * anyOf", and a scalar branch's enum error when the value written is a mapping or list.
 */
function relevant(errors: ErrorObject[]): ErrorObject[] {
  const kept = errors.filter((e) => {
    const inAnyOf = e.schemaPath.includes('/anyOf/');
    if (e.keyword === 'anyOf') return !errors.some((o) => o !== e && o.instancePath.startsWith(e.instancePath) && o.keyword !== 'anyOf');
    return !(inAnyOf && e.keyword === 'enum' && e.data !== null && typeof e.data === 'object');
  });
  return kept.length > 0 ? kept : errors;
}

function pointerToPath(pointer: string): YamlPath {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

function article(type: string): string {
  return /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`;
}

function dedupe(problems: PolicyProblem[]): PolicyProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.line}:${p.col}:${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Hostile policy text must not flood messages. */
export function clip(text: string, max = 64): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}
