import type { GrantRef } from '../grants/types';
import type { SpiffePattern } from '../identity/spiffe';
import type { QuarantineRule } from '../quarantine/types';
import type { CompiledCondition } from './features/conditions';
import type { GitVersion } from './document/git';
import type { PathPattern } from './features/path-pattern';
import type { CompiledBodyContract } from './features/payload';
import type { CompiledResidency } from './features/residency';

export type PolicyMode = 'enforce' | 'dry-run';
export type BackendErrorAction = 'allow' | 'deny';

/** Where a bucket's key comes from: the verified caller, or one request header's value. */
export type LimitKeySource =
  { readonly kind: 'caller' } | { readonly kind: 'header'; readonly name: string };

export interface CompiledRateLimit {
  readonly capacity: number;
  readonly refillPerSecond: number;
  readonly cost: number;
  readonly per: LimitKeySource;
  readonly onBackendError: BackendErrorAction;
  /** `policy|rule|` — the bucket key prefix, built once at load. */
  readonly keyPrefix: string;
}

export interface CompiledRule {
  readonly name: string;
  readonly index: number;
  /** Upper-case methods, or null for any method. */
  readonly methods: ReadonlySet<string> | null;
  /** Path patterns, or null for any path. */
  readonly paths: readonly PathPattern[] | null;
  readonly allow: readonly SpiffePattern[];
  /** Per allow entry: its disuse expiry, or null when it never goes dormant. */
  readonly grants: readonly (GrantRef | null)[];
  readonly deny: readonly SpiffePattern[];
  /** `when:`; the rule applies only where it holds. */
  readonly when: { readonly source: string; readonly evaluate: CompiledCondition } | null;
  readonly body: CompiledBodyContract | null;
  readonly residency: CompiledResidency | null;
  readonly rateLimit: CompiledRateLimit | null;
  readonly requireMtls: boolean;
  readonly stripToken: boolean;
  /** The `aud` a JWT-SVID must carry for this rule; undefined: the policy's or the server's. */
  readonly audience: string | undefined;
}

export interface CompiledPolicy {
  readonly name: string;
  readonly mode: PolicyMode;
  readonly hosts: readonly string[];
  readonly workloads: readonly string[];
  readonly audience: string | undefined;
  /** Rule audiences other than `audience`: a token for one of them is verified, then matched to its rule. */
  readonly ruleAudiences: readonly string[];
  /** Connection-level rules for TCP checks to `workloads`; null when the policy has none. */
  readonly tcp: {
    readonly allow: readonly SpiffePattern[];
    readonly deny: readonly SpiffePattern[];
  } | null;
  readonly rules: readonly CompiledRule[];
  /** Denials by this policy that quarantine a caller mesh-wide; null: none do. */
  readonly quarantine: QuarantineRule | null;
  readonly file: string;
  /** `name@version`, the value of x-gatehouse-policy, built once at load. */
  readonly label: string;
  /** Content hash of this policy's own document: a grant's clock restarts when it changes. */
  readonly contentHash: string;
}

/** A compiled `refuse:` entry of a WorkloadPolicy. */
export interface CompiledRefusal {
  readonly name: string;
  readonly hosts: ReadonlySet<string> | null;
  readonly methods: ReadonlySet<string> | null;
  readonly paths: readonly PathPattern[] | null;
  readonly headers: readonly string[] | null;
  /** Each field as its path segments, as written (for reasons). */
  readonly fields: readonly (readonly string[])[] | null;
  /** The same, each segment case-folded: Go and .NET bind JSON names regardless of case. */
  readonly foldedFields: readonly (readonly string[])[] | null;
}

export interface CompiledWorkloadPolicy {
  readonly name: string;
  readonly workload: string;
  readonly mode: PolicyMode;
  readonly refusals: readonly CompiledRefusal[];
  readonly file: string;
  readonly label: string;
}

/** Destination SPIFFE ID → policy, built at load: exact IDs in a map, wildcard patterns most specific first. */
export interface DestinationIndex {
  readonly exact: ReadonlyMap<string, CompiledPolicy>;
  readonly patterns: readonly {
    readonly pattern: SpiffePattern;
    readonly policy: CompiledPolicy;
  }[];
}

/** One immutable, fully compiled policy set; swapped whole on reload. */
export interface PolicySet {
  /** Content hash of the canonical policy documents. */
  readonly version: string;
  readonly policies: readonly CompiledPolicy[];
  readonly byHost: ReadonlyMap<string, CompiledPolicy>;
  /** Exact destination SPIFFE ID (as written in `workloads:`) → policy. */
  readonly byWorkload: ReadonlyMap<string, CompiledPolicy>;
  /** Destination SPIFFE ID or pattern → policy: what selects a policy (select.ts). */
  readonly destinations: DestinationIndex;
  /** Policy name → policy, for a route's `context_extensions` naming one. */
  readonly byName: ReadonlyMap<string, CompiledPolicy>;
  /** Caller SPIFFE ID → its WorkloadPolicy (what it refuses to send or do). */
  readonly optOuts: ReadonlyMap<string, CompiledWorkloadPolicy>;
  /** Every allow entry with `expiresAfterUnused`, for the usage tracker. */
  readonly grants: readonly GrantRef[];
  /** Header names the set reads, whose presence audit records keep (see audit/request-shape.ts). */
  readonly auditHeaders: readonly string[];
  readonly files: readonly string[];
  readonly loadedAt: Date;
  /** The git commit of the policy directory, when it is in a checkout. */
  readonly git?: GitVersion;
  /** `commit` or `commit-dirty`, for audit records; built once. */
  readonly gitLabel?: string;
}

/** The served set as the admin endpoint /v1/policy shows it. */
export function describePolicySet(set: PolicySet, directory: string): Record<string, unknown> {
  return {
    version: set.version,
    git: set.git ?? null,
    loadedAt: set.loadedAt.toISOString(),
    directory,
    files: set.files,
    policies: set.policies.map((p) => ({
      name: p.name,
      mode: p.mode,
      hosts: p.hosts,
      workloads: p.workloads,
      rules: p.rules.map((r) => r.name),
      tcp: p.tcp !== null,
      quarantine: p.quarantine !== null,
      file: p.file,
    })),
    workloadPolicies: [...set.optOuts.values()].map((w) => ({
      name: w.name,
      workload: w.workload,
      mode: w.mode,
      refuse: w.refusals.map((r) => r.name),
      file: w.file,
    })),
  };
}
