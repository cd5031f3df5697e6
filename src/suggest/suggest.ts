import { auditLines, type SourceCounts } from '../replay/audit-source';
import { parseAuditLine, type ReplayRecord } from '../replay/record';
import { parseSpiffeId } from '../identity/spiffe';
import { compilePathPattern } from '../policy/features/path-pattern';
import { hostError } from '../policy/compile/validate';
import { normalizePath } from '../request/normalize';
import { PathTrie, type TrieOptions } from './path-trie';

/**
 * `gatehouse suggest`: least-privilege ServicePolicies from observed traffic. Every allowed
 * request with a verified caller (a dry-run rollout allows them all and records what it would
 * deny) is evidence: per destination, the callers, methods and path patterns actually used.
 * The logs are read twice, streaming: once to learn where paths hold ids, once to count.
 */

export interface SuggestOptions extends TrieOptions {
  readonly files: readonly string[];
  /** Only the policy for this destination workload (SPIFFE ID). */
  readonly workload?: string;
  /** Only the policy guarding this host. */
  readonly host?: string;
}

export interface Evidence {
  count: number;
  first: string;
  last: string;
}

export interface Example {
  readonly caller: string;
  readonly method: string;
  readonly host: string;
  readonly path: string;
}

export interface SuggestedRule {
  readonly name: string;
  readonly pattern: string;
  readonly methods: readonly string[];
  /** Caller → evidence, most requests first. */
  readonly callers: readonly [string, Evidence][];
  readonly evidence: Evidence;
  /** A real request this rule, and no rule before it, admits; undefined when there is none. */
  readonly example: Example | undefined;
}

export interface SuggestedPolicy {
  readonly name: string;
  readonly workload: string | null;
  readonly hosts: readonly [string, number][];
  readonly rules: readonly SuggestedRule[];
  readonly records: number;
}

export interface Suggestion {
  readonly policies: SuggestedPolicy[];
  /** Allowed records without a verified caller: no rule can admit them. */
  readonly anonymous: number;
  /** Records left out: denials, TCP checks, malformed requests, other destinations. */
  readonly ignored: number;
  readonly invalid: number;
  /** (destination, pattern, method, caller) combinations beyond the bound, not proposed. */
  readonly dropped: number;
}

/** Bound on distinct (destination, pattern, method, caller) combinations held. */
export const MAX_COMBINATIONS = 100_000;
const MAX_EXAMPLES = 4;
/** Every segment unknown: `*`. */
const EMPTY_TRIE = new PathTrie();

interface HostStats {
  readonly destinations: Map<string, number>;
  records: number;
}

interface Combination {
  readonly callers: Map<string, Evidence>;
  readonly examples: Example[];
}

/** A method a rule can name (the schema's shape); a request with another was never matched by one. */
const POLICY_METHOD = /^[A-Z][A-Z0-9_-]{0,31}$/;

/**
 * Evidence a policy can be written from. The log is input too: a host, path, method or caller
 * that no policy could name (too long, not a SPIFFE ID) is not evidence, so the output validates.
 */
function usable(
  record: ReplayRecord,
): record is ReplayRecord & { host: string; method: string; path: string } {
  if (
    !record.allowed ||
    record.code === 'malformed_request' ||
    record.host === null ||
    record.method === null ||
    record.path === null
  )
    return false;
  if (
    record.method === 'TCP' ||
    !POLICY_METHOD.test(record.method) ||
    hostError(record.host) !== undefined ||
    record.path.length > 1024
  )
    return false;
  // A path Gatehouse would not have admitted as it stands (a control character, a dot segment).
  if (normalizePath(record.path) !== record.path) return false;
  return record.caller === null || parseSpiffeId(record.caller).ok;
}

async function* decisions(
  files: readonly string[],
  counts: { invalid: number },
): AsyncGenerator<ReplayRecord> {
  const source: SourceCounts = { overlong: 0 };
  for await (const line of auditLines(files, source)) {
    const parsed = parseAuditLine(line.text);
    if (parsed.kind === 'decision') yield parsed.record;
    else if (parsed.kind === 'invalid') counts.invalid++;
  }
  counts.invalid += source.overlong;
}

export async function suggest(options: SuggestOptions): Promise<Suggestion> {
  if (options.files.includes('-'))
    throw new Error('suggest reads the logs twice; give files, not stdin');
  const hosts = new Map<string, HostStats>();
  // One trie per destination, so ids spread over its several hosts are seen together.
  const tries = new Map<string, PathTrie>();
  const counts = { invalid: 0 };
  let anonymous = 0;
  let ignored = 0;
  for await (const record of decisions(options.files, counts)) {
    if (!usable(record)) continue;
    if (record.caller === null) continue;
    let stats = hosts.get(record.host);
    if (stats === undefined) {
      if (hosts.size >= 10_000) continue;
      hosts.set(record.host, (stats = { destinations: new Map(), records: 0 }));
    }
    stats.records++;
    const trieKey = workloadOf(record) ?? `host:${record.host}`;
    let trie = tries.get(trieKey);
    if (trie === undefined) {
      if (tries.size >= 10_000) continue;
      tries.set(trieKey, (trie = new PathTrie(options)));
    }
    trie.add(record.path);
    const destination = workloadOf(record) ?? '';
    if (stats.destinations.size < 16 || stats.destinations.has(destination))
      stats.destinations.set(destination, (stats.destinations.get(destination) ?? 0) + 1);
  }
  // A host belongs to the workload most of its requests went to.
  const policyOfHost = new Map<string, string>();
  for (const trie of tries.values()) trie.finish();
  for (const [host, stats] of hosts) {
    const [workload] = [...stats.destinations].sort((a, b) => b[1] - a[1])[0] ?? [''];
    policyOfHost.set(host, workload !== '' ? workload! : `host:${host}`);
  }

  const combos = new Map<string, Map<string, Map<string, Combination>>>();
  let held = 0;
  let dropped = 0;
  counts.invalid = 0;
  for await (const record of decisions(options.files, counts)) {
    if (!usable(record)) {
      ignored++;
      continue;
    }
    if (record.caller === null) {
      anonymous++;
      continue;
    }
    const key = policyOfHost.get(record.host);
    if (key === undefined || !selected(key, record.host, options)) {
      ignored++;
      continue;
    }
    const pattern = (tries.get(key) ?? tries.get(`host:${record.host}`) ?? EMPTY_TRIE).patternOf(
      record.path,
    );
    let byPattern = combos.get(key);
    if (!byPattern) combos.set(key, (byPattern = new Map()));
    let byMethod = byPattern.get(pattern);
    if (!byMethod) byPattern.set(pattern, (byMethod = new Map()));
    let combo = byMethod.get(record.method);
    if (!combo) byMethod.set(record.method, (combo = { callers: new Map(), examples: [] }));
    let evidence = combo.callers.get(record.caller);
    if (!evidence) {
      if (held >= MAX_COMBINATIONS) {
        dropped++;
        continue;
      }
      held++;
      combo.callers.set(
        record.caller,
        (evidence = { count: 0, first: record.timeText, last: record.timeText }),
      );
    }
    evidence.count++;
    if (record.timeText < evidence.first) evidence.first = record.timeText;
    if (record.timeText > evidence.last) evidence.last = record.timeText;
    // Examples from distinct callers, so one can be found that no earlier rule admits.
    if (
      combo.examples.length < MAX_EXAMPLES &&
      !combo.examples.some((e) => e.caller === record.caller)
    ) {
      combo.examples.push({
        caller: record.caller,
        method: record.method,
        host: record.host,
        path: record.path,
      });
    }
  }

  const policies: SuggestedPolicy[] = [];
  const policyNames = new Set<string>();
  for (const [key, byPattern] of [...combos].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const workload = key.startsWith('host:') ? null : key;
    const policyHosts = [...hosts]
      .filter(([host]) => policyOfHost.get(host) === key)
      .map(([host, s]): [string, number] => [host, s.records])
      .sort((a, b) => b[1] - a[1]);
    const rules = buildRules(byPattern);
    policies.push({
      name: uniqueName(
        `suggested-${workload !== null ? workload.replace(/^spiffe:\/\/[^/]*\//, '') : policyHosts[0]![0]}`,
        policyNames,
      ),
      workload,
      hosts: policyHosts,
      rules,
      records: rules.reduce((sum, r) => sum + r.evidence.count, 0),
    });
  }
  return { policies, anonymous, ignored, invalid: counts.invalid, dropped };
}

/** The destination workload a policy can be bound to: a SPIFFE ID, else none (the host decides). */
function workloadOf(record: ReplayRecord): string | undefined {
  return record.destination !== null && parseSpiffeId(record.destination).ok
    ? record.destination
    : undefined;
}

function selected(key: string, host: string, options: SuggestOptions): boolean {
  if (options.workload !== undefined && key !== options.workload) return false;
  if (options.host !== undefined && host !== options.host.toLowerCase()) return false;
  return true;
}

function wildcards(pattern: string): number {
  return pattern.split('/').filter((s) => s === '*' || s === '**').length;
}

/**
 * One rule per path pattern and set of callers: methods used by exactly the same callers share
 * a rule. Literal patterns come first, so a request to `/v1/orders/export` is decided by its
 * own rule, not by `/v1/orders/*`.
 */
function buildRules(byPattern: Map<string, Map<string, Combination>>): SuggestedRule[] {
  const drafts: {
    pattern: string;
    methods: string[];
    callers: Map<string, Evidence>;
    examples: Example[];
  }[] = [];
  for (const [pattern, byMethod] of byPattern) {
    const bySignature = new Map<
      string,
      { methods: string[]; callers: Map<string, Evidence>; examples: Example[] }
    >();
    for (const [method, combo] of [...byMethod].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const signature = [...combo.callers.keys()].sort().join('\n');
      const draft = bySignature.get(signature);
      if (!draft) {
        bySignature.set(signature, {
          methods: [method],
          callers: new Map([...combo.callers].map(([c, e]) => [c, { ...e }])),
          examples: [...combo.examples],
        });
        continue;
      }
      draft.methods.push(method);
      draft.examples.push(...combo.examples);
      for (const [caller, e] of combo.callers) {
        const into = draft.callers.get(caller)!;
        into.count += e.count;
        if (e.first < into.first) into.first = e.first;
        if (e.last > into.last) into.last = e.last;
      }
    }
    for (const draft of bySignature.values()) drafts.push({ pattern, ...draft });
  }
  drafts.sort(
    (a, b) =>
      wildcards(a.pattern) - wildcards(b.pattern) ||
      (a.pattern < b.pattern ? -1 : a.pattern > b.pattern ? 1 : 0) ||
      (a.methods.join() < b.methods.join() ? -1 : 1),
  );
  const names = new Set<string>();
  const rules: SuggestedRule[] = [];
  for (const draft of drafts) {
    const callers = [...draft.callers].sort(
      (a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : 1),
    );
    const evidence = callers.reduce<Evidence>(
      (acc, [, e]) => ({
        count: acc.count + e.count,
        first: acc.first === '' || e.first < acc.first ? e.first : acc.first,
        last: e.last > acc.last ? e.last : acc.last,
      }),
      { count: 0, first: '', last: '' },
    );
    const example = draft.examples.find((e) => !rules.some((r) => admits(r, e)));
    rules.push({
      name: uniqueName(`${draft.methods.join('-')}-${draft.pattern.replaceAll('*', 'any')}`, names),
      pattern: draft.pattern,
      methods: draft.methods,
      callers,
      evidence,
      example,
    });
  }
  return rules;
}

function admits(rule: SuggestedRule, e: Example): boolean {
  if (!rule.methods.includes(e.method) || !rule.callers.some(([c]) => c === e.caller)) return false;
  const compiled = compilePathPattern(rule.pattern);
  return compiled.ok && compiled.value.matches(e.path);
}

/** A policy or rule name (`[a-z0-9-]`, at most 63) from any text, unique among `taken`. */
function uniqueName(text: string, taken: Set<string>): string {
  const base =
    text
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 56)
      .replace(/-+$/, '') || 'rule';
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}`;
  taken.add(name);
  return name;
}
