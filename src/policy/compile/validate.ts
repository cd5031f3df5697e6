import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { compileSpiffePattern, parseSpiffeId, type SpiffePattern } from '../../identity/spiffe';
import { compileCondition, type CompiledCondition } from '../features/conditions';
import { parseDuration } from '../duration';
import { compilePathPattern, type PathPattern } from '../features/path-pattern';
import { compileBodyContract, type CompiledBodyContract } from '../features/payload';
import { parseRegionSource, type RegionSource } from '../features/residency';
import {
  DURATION,
  servicePolicySchema,
  workloadPolicySchema,
  type PolicyDoc,
} from '../document/schema';
import { findShadowedRules } from '../features/shadow';
import type { PolicyProblem } from '../document/problems';
import type { LimitKeySource } from '../types';
import { isHeaderName } from '../features/header-name';
import { describePath, type LocatedDoc, type YamlPath } from '../document/yaml-docs';
import { pointerToPath } from '../json-pointer';

const validators = new Map<string, ValidateFunction>();
function schemaValidator(kind: 'ServicePolicy' | 'WorkloadPolicy'): ValidateFunction {
  let validator = validators.get(kind);
  if (!validator) {
    validator = compileSchema(
      kind === 'WorkloadPolicy' ? workloadPolicySchema : servicePolicySchema,
    );
    validators.set(kind, validator);
  }
  return validator;
}

const KNOWN_KINDS = ['ServicePolicy', 'WorkloadPolicy'];

/**
 * What checking a document compiled on the way, by position in the document: the set is
 * assembled from these, so each pattern, condition and schema is compiled once per load.
 * Complete only for a document without errors.
 */
export interface CompiledParts {
  /** `spec.workloads`, as patterns. */
  readonly workloads: SpiffePattern[];
  readonly tcp: { readonly allow: SpiffePattern[]; readonly deny: SpiffePattern[] };
  readonly rules: RuleParts[];
  quarantine?: { readonly windowMs: number; readonly durationMs: number };
  /** A WorkloadPolicy's `refuse[i].paths`. */
  readonly refusalPaths: PathPattern[][];
}

export interface RuleParts {
  readonly paths: PathPattern[];
  readonly allow: SpiffePattern[];
  /** Per allow entry: `expiresAfterUnused` in milliseconds, when given. */
  readonly idleLimits: (number | undefined)[];
  readonly deny: SpiffePattern[];
  when?: { readonly source: string; readonly evaluate: CompiledCondition };
  body?: CompiledBodyContract;
  regionFrom?: RegionSource;
  per: LimitKeySource;
}

function emptyParts(): CompiledParts {
  return { workloads: [], tcp: { allow: [], deny: [] }, rules: [], refusalPaths: [] };
}

/**
 * Structural and semantic checks of one document, all reported at once: the semantic checks
 * also run on a document the schema rejected, reading only the parts that have the right
 * shape, so one unknown key does not hide a bad pattern three lines further down. Returns the
 * typed document when it is sound, and `names` (policy name, hosts, workloads as written) for
 * the checks across documents whenever they can be read.
 */
export function validateDocument(located: LocatedDoc): {
  doc?: PolicyDoc;
  parts?: CompiledParts;
  names?: DocumentNames;
  problems: PolicyProblem[];
} {
  const value = located.value;
  if (!isRecord(value)) {
    return {
      problems: [
        located.problem(
          [],
          'a policy document must be a mapping with apiVersion, kind, metadata and spec',
        ),
      ],
    };
  }
  const kind = value['kind'];
  if (typeof kind === 'string' && !KNOWN_KINDS.includes(kind)) {
    return {
      problems: [
        located.problem(
          ['kind'],
          `unknown kind '${clip(kind)}' (expected one of: ${KNOWN_KINDS.join(', ')})`,
        ),
      ],
    };
  }
  const workloadKind = kind === 'WorkloadPolicy';
  const structural = schemaProblems(
    located,
    schemaValidator(workloadKind ? 'WorkloadPolicy' : 'ServicePolicy'),
  );
  const taken = new Set(structural.map(where));
  // A semantic problem at a place the schema already complained about would say it twice.
  const parts = emptyParts();
  const semantic = (
    workloadKind
      ? workloadProblems(located, value, parts)
      : semanticProblems(located, value, structural.length === 0, parts)
  ).filter((p) => !taken.has(where(p)));
  const problems = [...structural, ...semantic];
  const names = documentNames(value);
  if (problems.some((p) => p.severity === 'error'))
    return { ...(names ? { names } : {}), problems };
  return { doc: value as unknown as PolicyDoc, parts, ...(names ? { names } : {}), problems };
}

/** A WorkloadPolicy: its workload is one exact SPIFFE ID; its refusals use the same patterns as rules. */
function workloadProblems(
  located: LocatedDoc,
  value: Record<string, unknown>,
  parts: CompiledParts,
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const spec = isRecord(value['spec']) ? value['spec'] : undefined;
  if (!spec) return problems;
  if (typeof spec['workload'] === 'string') {
    const parsed = parseSpiffeId(spec['workload']);
    // A pattern gets its own message: the parser's would say "invalid character" about the `*`.
    if (spec['workload'].includes('*'))
      problems.push(
        located.problem(
          ['spec', 'workload'],
          `workload: '${clip(spec['workload'])}' is a pattern; a WorkloadPolicy names one exact SPIFFE ID`,
        ),
      );
    else if (!parsed.ok)
      problems.push(
        located.problem(
          ['spec', 'workload'],
          `workload: ${parsed.error} (a WorkloadPolicy names one exact SPIFFE ID)`,
        ),
      );
  }
  const refusals = Array.isArray(spec['refuse']) ? (spec['refuse'] as unknown[]) : [];
  const names = new Set<string>();
  refusals.forEach((refusal, r) => {
    if (!isRecord(refusal)) return;
    const at: YamlPath = ['spec', 'refuse', r];
    const paths: PathPattern[] = (parts.refusalPaths[r] = []);
    const name = refusal['name'];
    if (typeof name === 'string') {
      if (names.has(name))
        problems.push(located.problem([...at, 'name'], `duplicate refusal name '${name}'`));
      names.add(name);
    }
    strings(refusal['hosts']).forEach((host, i) => {
      const error = host === undefined ? undefined : hostError(host);
      if (error) problems.push(located.problem([...at, 'hosts', i], error));
    });
    strings(refusal['paths']).forEach((p, i) => {
      const compiled = p === undefined ? undefined : compilePathPattern(p);
      if (compiled?.ok) paths[i] = compiled.value;
      else if (compiled) problems.push(located.problem([...at, 'paths', i], compiled.error));
    });
    strings(refusal['headers']).forEach((h, i) => {
      if (h !== undefined && !isHeaderName(h))
        problems.push(
          located.problem([...at, 'headers', i], `'${clip(h)}' is not a lower-case header name`),
        );
    });
    strings(refusal['fields']).forEach((f, i) => {
      if (f !== undefined && f.split('.').some((segment) => segment === ''))
        problems.push(
          located.problem(
            [...at, 'fields', i],
            `field '${clip(f)}' has an empty segment; write dotted names such as card.number`,
          ),
        );
    });
  });
  return problems;
}

/** What other documents must not repeat; undefined when the name itself cannot be read. */
export interface DocumentNames {
  readonly name: string;
  readonly hosts: readonly (string | undefined)[];
  readonly workloads: readonly (string | undefined)[];
  /** A WorkloadPolicy's caller: one policy per workload. */
  readonly callerWorkload?: string;
}

function documentNames(value: Record<string, unknown>): DocumentNames | undefined {
  const metadata = value['metadata'];
  const name = isRecord(metadata) ? metadata['name'] : undefined;
  if (typeof name !== 'string') return undefined;
  const spec = isRecord(value['spec']) ? value['spec'] : {};
  if (value['kind'] === 'WorkloadPolicy')
    return {
      name,
      hosts: [],
      workloads: [],
      ...(typeof spec['workload'] === 'string' ? { callerWorkload: spec['workload'] } : {}),
    };
  return { name, hosts: strings(spec['hosts']), workloads: strings(spec['workloads']) };
}

function where(p: PolicyProblem): string {
  return `${p.line}:${p.col}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A list's items, strings kept at their index and anything else left undefined. */
function strings(v: unknown): (string | undefined)[] {
  return Array.isArray(v) ? v.map((x) => (typeof x === 'string' ? x : undefined)) : [];
}

function integer(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) ? v : undefined;
}

/** `value` may not have passed the schema: every part is read through a type check. */
function semanticProblems(
  located: LocatedDoc,
  value: Record<string, unknown>,
  schemaClean: boolean,
  parts: CompiledParts,
): PolicyProblem[] {
  const problems: PolicyProblem[] = [];
  const spec = isRecord(value['spec']) ? value['spec'] : undefined;
  if (!spec) return problems;
  strings(spec['hosts']).forEach((host, i) => {
    const error = host === undefined ? undefined : hostError(host);
    if (error) problems.push(located.problem(['spec', 'hosts', i], error));
  });
  if (spec['hosts'] === undefined && spec['workloads'] === undefined) {
    problems.push(
      located.problem(
        ['spec'],
        'a policy must guard hosts (HTTP) or workloads (TCP): add spec.hosts or spec.workloads',
      ),
    );
  }
  strings(spec['workloads']).forEach((workload, i) => {
    if (workload === undefined) return;
    const compiled = compileSpiffePattern(workload);
    if (compiled.ok) parts.workloads[i] = compiled.value;
    else
      problems.push(
        located.problem(
          ['spec', 'workloads', i],
          `workloads[${i}]: ${compiled.error} (workloads are the destination's SPIFFE IDs or patterns)`,
        ),
      );
  });
  const tcp = isRecord(spec['tcp']) ? spec['tcp'] : undefined;
  if (tcp && spec['workloads'] === undefined) {
    problems.push(
      located.problem(
        ['spec', 'tcp'],
        'tcp rules apply to spec.workloads (the destination SPIFFE IDs); list them',
      ),
    );
  }
  for (const list of ['allow', 'deny'] as const) {
    strings(tcp?.[list]).forEach((p, i) => {
      const compiled = p === undefined ? undefined : compileSpiffePattern(p);
      if (compiled?.ok) parts.tcp[list][i] = compiled.value;
      else if (compiled)
        problems.push(
          located.problem(['spec', 'tcp', list, i], `tcp.${list}[${i}]: ${compiled.error}`),
        );
    });
  }

  const rules = Array.isArray(spec['rules']) ? (spec['rules'] as unknown[]) : [];
  const ruleNames = new Map<string, number>();
  rules.forEach((rule, r) => {
    if (!isRecord(rule)) return;
    const at: YamlPath = ['spec', 'rules', r];
    const compiledRule: RuleParts = (parts.rules[r] = {
      paths: [],
      allow: [],
      idleLimits: [],
      deny: [],
      per: { kind: 'caller' },
    });
    const name = typeof rule['name'] === 'string' ? rule['name'] : undefined;
    if (name !== undefined) {
      const earlier = ruleNames.get(name);
      if (earlier !== undefined) {
        problems.push(
          located.problem(
            [...at, 'name'],
            `duplicate rule name '${name}' (also rules[${earlier}]); rule names must be unique in a policy`,
          ),
        );
      } else {
        ruleNames.set(name, r);
      }
    }
    strings(rule['paths']).forEach((p, i) => {
      const compiled = p === undefined ? undefined : compilePathPattern(p);
      if (compiled?.ok) compiledRule.paths[i] = compiled.value;
      else if (compiled) problems.push(located.problem([...at, 'paths', i], compiled.error));
    });
    for (const list of ['allow', 'deny'] as const) {
      allowEntries(rule[list]).forEach((p, i) => {
        const compiled = p === undefined ? undefined : compileSpiffePattern(p);
        const entry = (rule[list] as unknown[])[i];
        const place = isRecord(entry) ? [...at, list, i, 'caller'] : [...at, list, i];
        if (compiled?.ok) compiledRule[list][i] = compiled.value;
        else if (compiled)
          problems.push(located.problem(place, `${list}[${i}]: ${compiled.error}`));
        if (list === 'allow')
          compiledRule.idleLimits[i] =
            isRecord(entry) && typeof entry['expiresAfterUnused'] === 'string'
              ? parseDuration(entry['expiresAfterUnused'])
              : undefined;
      });
    }
    if (typeof rule['when'] === 'string') {
      const compiled = compileCondition(rule['when']);
      if (compiled.ok) compiledRule.when = compiled.value;
      else
        problems.push(
          located.problemInText([...at, 'when'], compiled.offset, `when: ${compiled.error}`),
        );
    }
    const body = isRecord(rule['body']) ? rule['body'] : undefined;
    if (body && (body['schema'] === undefined || isRecord(body['schema']))) {
      const compiled = compileBodyContract({
        ...(isRecord(body['schema']) ? { schema: body['schema'] } : {}),
        maxBytes: integer(body['maxBytes']),
        ...(Array.isArray(body['contentTypes'])
          ? { contentTypes: strings(body['contentTypes']).filter((t) => t !== undefined) }
          : {}),
      });
      if (compiled.ok) compiledRule.body = compiled.value;
      // Read as `body: …`, and a refused keyword is pointed at by its key, as unknown keys are.
      if (!compiled.ok) {
        const place = [...at, 'body', ...compiled.at];
        const key = place[place.length - 1];
        const message = `body: ${compiled.error}`;
        problems.push(
          compiled.key && typeof key === 'string'
            ? located.keyProblem(place.slice(0, -1), key, message)
            : located.problem(place, message),
        );
      }
    }
    const residency = isRecord(rule['residency']) ? rule['residency'] : undefined;
    const regionFrom =
      typeof residency?.['regionFrom'] === 'string' ? residency['regionFrom'] : undefined;
    if (regionFrom !== undefined) compiledRule.regionFrom = parseRegionSource(regionFrom);
    if (regionFrom !== undefined && compiledRule.regionFrom === undefined) {
      problems.push(
        located.problem(
          [...at, 'residency', 'regionFrom'],
          `regionFrom must be 'label:<key>', 'context:<key>' or 'header:<lower-case-name>', not '${clip(regionFrom)}'`,
        ),
      );
    }
    // A list that is not a list is the schema's complaint; missing and empty both mean none.
    const entries = (v: unknown): number =>
      Array.isArray(v) ? v.length : v === undefined ? 0 : -1;
    // Only on a clean document: after a misspelt `allow:` this would blame the wrong thing.
    if (schemaClean && entries(rule['allow']) === 0 && entries(rule['deny']) === 0) {
      problems.push(
        located.problem(
          at,
          `rule '${name ?? r}' lists no callers: add allow (and optionally deny) SPIFFE ID patterns`,
        ),
      );
    }
    const limit = isRecord(rule['rateLimit']) ? rule['rateLimit'] : undefined;
    if (limit) {
      const per = limit['per'];
      const key = typeof per === 'string' ? parseLimitKey(per) : undefined;
      if (key !== undefined) compiledRule.per = key;
      else if (typeof per === 'string') {
        problems.push(
          located.problem(
            [...at, 'rateLimit', 'per'],
            `per must be 'caller' or 'header:<header-name>' (lower-case), not '${clip(per)}'`,
          ),
        );
      }
      const cost = integer(limit['cost']);
      const capacity = integer(limit['capacity']);
      if (cost !== undefined && capacity !== undefined && cost > capacity) {
        problems.push(
          located.problem(
            [...at, 'rateLimit', 'cost'],
            `cost ${cost} is larger than capacity ${capacity}, so no request could ever pass`,
          ),
        );
      }
    }
  });
  const quarantine = isRecord(spec['quarantine']) ? spec['quarantine'] : undefined;
  if (quarantine) {
    const windowMs =
      typeof quarantine['window'] === 'string' ? parseDuration(quarantine['window']) : undefined;
    const durationMs =
      typeof quarantine['duration'] === 'string'
        ? parseDuration(quarantine['duration'])
        : undefined;
    if (windowMs !== undefined && durationMs !== undefined)
      parts.quarantine = { windowMs, durationMs };
    if (windowMs !== undefined && windowMs > 7 * 86_400_000)
      problems.push(
        located.problem(
          ['spec', 'quarantine', 'window'],
          'window is longer than 7d; denials are counted over a sliding window held in memory or Redis',
        ),
      );
    if (durationMs !== undefined && durationMs > 30 * 86_400_000)
      problems.push(
        located.problem(
          ['spec', 'quarantine', 'duration'],
          'duration is longer than 30d; use a deny entry for a permanent refusal',
        ),
      );
  }
  // Shadowing is judged on sound rules only: a broken rule has no meaning to compare.
  if (schemaClean && problems.length === 0) {
    const typed = rules as { name: string; methods?: string[]; paths?: string[]; when?: string }[];
    const candidates = typed.map((rule, r) => {
      const compiled = parts.rules[r]!;
      return {
        methods: rule.methods ? new Set(rule.methods) : null,
        paths: rule.paths === undefined ? null : compiled.paths,
        allow: compiled.allow,
        deny: compiled.deny,
        conditional: rule.when !== undefined,
      };
    });
    for (const { index, by } of findShadowedRules(candidates)) {
      const rule = typed[index]!.name;
      const earlier = typed[by]!.name;
      problems.push(
        located.problem(
          ['spec', 'rules', index, 'name'],
          `rule '${rule}' is shadowed by rule '${earlier}' (rules[${by}]): every request it allows is decided by '${earlier}' first, so it never applies`,
          'warning',
        ),
      );
    }
  }
  // Said of sound documents only: next to an error it would bury what must be fixed.
  if (
    schemaClean &&
    !problems.some((p) => p.severity === 'error') &&
    Array.isArray(spec['hosts']) &&
    spec['workloads'] === undefined
  ) {
    problems.push(
      located.problem(
        ['spec', 'hosts'],
        "selected by the request's Host alone: this policy trusts the route configuration in front of Gatehouse to send it only requests for these hosts (an edge gateway routing by Host); behind a sidecar, bind it to the destination with spec.workloads",
        'warning',
      ),
    );
  }
  return problems;
}

/** Allow or deny entries as their patterns: a string, or an object's `caller`. */
function allowEntries(v: unknown): (string | undefined)[] {
  return Array.isArray(v)
    ? v.map((x) =>
        typeof x === 'string'
          ? x
          : isRecord(x) && typeof x['caller'] === 'string'
            ? x['caller']
            : undefined,
      )
    : [];
}

/** Parses `per:`; undefined when invalid. */
export function parseLimitKey(per: string): LimitKeySource | undefined {
  if (per === 'caller') return { kind: 'caller' };
  if (!per.startsWith('header:')) return undefined;
  const name = per.slice('header:'.length);
  return isHeaderName(name) ? { kind: 'header', name } : undefined;
}

/** Host names as written in `hosts:`; lower-case DNS names or IP literals, no port, no wildcard. */
export function hostError(host: string): string | undefined {
  if (host.includes('*'))
    return `host '${clip(host)}': wildcards are not supported; list each host`;
  if (host.startsWith('[')) {
    return /^\[[0-9a-fA-F:.]+\]$/.test(host)
      ? undefined
      : `host '${clip(host)}' is not a valid IPv6 literal`;
  }
  if (host.includes(':'))
    return `host '${clip(host)}': hosts are matched without their port; remove ':${clip(host.slice(host.indexOf(':') + 1))}'`;
  if (host !== host.toLowerCase()) return `host '${clip(host)}' must be lower-case`;
  for (const label of host.split('.')) {
    if (label.length === 0 || label.length > 63)
      return `host '${clip(host)}' has an empty or over-long label`;
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
      const allowed = Object.keys(
        (error.parentSchema as { properties?: object } | undefined)?.properties ?? {},
      );
      return located.keyProblem(
        path,
        key,
        `${prefix}unknown key '${clip(key)}' (allowed: ${allowed.join(', ')})`,
      );
    }
    case 'required':
      return located.problem(
        path,
        `${prefix}missing required key '${(error.params as { missingProperty: string }).missingProperty}'`,
      );
    case 'const':
      return located.problem(
        path,
        `${prefix}must be '${String((error.params as { allowedValue: unknown }).allowedValue)}'`,
      );
    case 'enum':
      return located.problem(
        path,
        `${prefix}must be one of: ${(error.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`,
      );
    case 'type':
      return located.problem(
        path,
        `${prefix}must be ${article(String((error.params as { type: string }).type))}`,
      );
    case 'minProperties': {
      // ajv's "must NOT have fewer than 2 properties" does not say what is missing.
      const schema = error.parentSchema as { properties?: object; required?: string[] } | undefined;
      const optional = Object.keys(schema?.properties ?? {}).filter(
        (k) => !(schema?.required ?? []).includes(k),
      );
      return located.problem(
        path,
        `${prefix}says nothing to check: add at least one of ${optional.join(', ')}`,
      );
    }
    case 'pattern': {
      if ((error.params as { pattern?: string }).pattern === DURATION)
        return located.problem(path, `${prefix}must be a duration such as 90s, 15m, 12h or 30d`);
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
    if (e.keyword === 'anyOf')
      return !errors.some(
        (o) => o !== e && o.instancePath.startsWith(e.instancePath) && o.keyword !== 'anyOf',
      );
    // An allow entry `{caller: …, expiresAfterUnused: 30days}` would also get "must be a string"
    // from the string branch; when another branch of the same anyOf accepted the value's type
    // and failed further in, only that branch's errors say what to change.
    if (inAnyOf && e.keyword === 'type') {
      const anyOf = e.schemaPath.slice(0, e.schemaPath.indexOf('/anyOf/') + '/anyOf/'.length);
      const branch = e.schemaPath.slice(anyOf.length).split('/')[0];
      const deeper = errors.some(
        (o) =>
          o.schemaPath.startsWith(anyOf) &&
          o.schemaPath.slice(anyOf.length).split('/')[0] !== branch &&
          o.instancePath.startsWith(e.instancePath) &&
          o.keyword !== 'type' &&
          o.keyword !== 'anyOf',
      );
      if (deeper) return false;
    }
    // A refusal with its name missing and a selector given is told about the name only.
    if (e.keyword === 'minProperties' && e.data !== null && typeof e.data === 'object') {
      const schema = e.parentSchema as { properties?: object; required?: string[] } | undefined;
      const optional = Object.keys(schema?.properties ?? {}).filter(
        (k) => !(schema?.required ?? []).includes(k),
      );
      if (optional.some((k) => k in (e.data as object))) return false;
    }
    return !(inAnyOf && e.keyword === 'enum' && e.data !== null && typeof e.data === 'object');
  });
  return kept.length > 0 ? kept : errors;
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
