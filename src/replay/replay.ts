import type { Readable } from 'node:stream';
import type { PolicySet } from '../policy/types';
import { auditLines, type SourceCounts } from './audit-source';
import { parseAuditLine, type ReplayRecord } from './record';
import { Redecider } from './redecide';

/**
 * `gatehouse replay`: every decision in the audit logs is re-decided with another policy set
 * and the changes are counted by group. Memory is bounded by the number of distinct groups
 * (capped), never by the number of records.
 */

export type Change = 'allow-to-deny' | 'deny-to-allow';

export interface ChangeGroup {
  readonly change: Change;
  readonly caller: string | null;
  readonly host: string | null;
  /** The rule behind the denial (new or recorded), else the one that allows. */
  readonly rule: string | null;
  /** The denial's reason code. */
  readonly reason: string;
  count: number;
  first: string;
  last: string;
  readonly example: string;
}

export interface CannotTellGroup {
  readonly reason: string;
  readonly host: string | null;
  readonly rule: string | null;
  count: number;
  readonly example: string;
}

export interface ReplayOptions {
  readonly files: readonly string[];
  /** Only records at or after this epoch ms. */
  readonly since?: number;
  /** Distinct change and cannot-tell groups kept; beyond it records are only counted. */
  readonly maxGroups?: number;
  /** Called about once a second with the records read so far. */
  readonly onProgress?: (records: number, elapsedMs: number) => void;
  readonly stdin?: Readable;
}

export interface ReplayReport {
  readonly policyVersion: string;
  /** Policy versions the records were decided under, with their record counts (at most 100). */
  readonly recordedVersions: Record<string, number>;
  readonly records: number;
  readonly unchanged: number;
  readonly allowToDeny: number;
  readonly denyToAllow: number;
  readonly cannotTell: number;
  /** Recorded as malformed: no policy decides those. */
  readonly policyIndependent: number;
  /** Lines that are not decision records (quarantine events, operational logs). */
  readonly skipped: number;
  readonly invalid: number;
  /** Records before --since. */
  readonly older: number;
  /** Records written before destination, query keys and header presence were kept. */
  readonly legacy: number;
  readonly changes: ChangeGroup[];
  readonly cannotTellGroups: CannotTellGroup[];
  /** Records whose group was not kept because maxGroups was reached. */
  readonly ungrouped: number;
  /** `policy/rule` of the new set that decided changed requests. */
  readonly rulesTouched: string[];
  /** `policy/rule` that decided recorded requests but is not in the new set (removed or renamed). */
  readonly recordedRulesMissing: string[];
  readonly elapsedMs: number;
  readonly recordsPerSecond: number;
  /** The first unreadable line, for the message. */
  readonly firstInvalid?: string;
}

export const DEFAULT_MAX_GROUPS = 10_000;
const MAX_VERSIONS = 100;
const MAX_RULE_NAMES = 1000;

export async function replay(set: PolicySet, options: ReplayOptions): Promise<ReplayReport> {
  const maxGroups = options.maxGroups ?? DEFAULT_MAX_GROUPS;
  const redecider = new Redecider(set);
  const counts: SourceCounts = { overlong: 0 };
  const changes = new Map<string, ChangeGroup>();
  const cannotTell = new Map<string, CannotTellGroup>();
  const versions = new Map<string, number>();
  const touched = new Set<string>();
  const recordedRules = new Set<string>();
  const newRules = new Set(set.policies.flatMap((p) => p.rules.map((r) => `${p.name}/${r.name}`)));
  let records = 0,
    unchanged = 0,
    allowToDeny = 0,
    denyToAllow = 0,
    unknown = 0,
    independent = 0,
    skipped = 0,
    invalid = 0,
    older = 0,
    legacy = 0,
    ungrouped = 0;
  let firstInvalid: string | undefined;
  const started = performance.now();
  let nextProgress = started + 1000;

  for await (const line of auditLines(options.files, counts, options.stdin)) {
    const parsed = parseAuditLine(line.text);
    if (parsed.kind === 'other') {
      skipped++;
      continue;
    }
    if (parsed.kind === 'invalid') {
      invalid++;
      firstInvalid ??= `${line.where}: ${parsed.reason}`;
      continue;
    }
    const record = parsed.record;
    if (options.since !== undefined && !(record.time >= options.since)) {
      older++;
      continue;
    }
    records++;
    if (record.legacy) legacy++;
    if (versions.size < MAX_VERSIONS || versions.has(record.policyVersion))
      versions.set(record.policyVersion, (versions.get(record.policyVersion) ?? 0) + 1);
    if (record.rule !== null && record.policy !== null && recordedRules.size < MAX_RULE_NAMES)
      recordedRules.add(`${record.policy}/${record.rule}`);
    const outcome = await redecider.redecide(record);
    if (outcome.kind === 'policy-independent') {
      independent++;
    } else if (outcome.kind === 'cannot-tell') {
      unknown++;
      const key = `${outcome.reason}\u0000${record.host}\u0000${outcome.rule}`;
      const group = cannotTell.get(key);
      if (group) group.count++;
      else if (cannotTell.size + changes.size < maxGroups)
        cannotTell.set(key, {
          reason: outcome.reason,
          host: record.host,
          rule: outcome.rule,
          count: 1,
          example: record.id,
        });
      else ungrouped++;
    } else if (outcome.allowed === record.allowed) {
      unchanged++;
    } else {
      const change: Change = record.allowed ? 'allow-to-deny' : 'deny-to-allow';
      if (change === 'allow-to-deny') allowToDeny++;
      else denyToAllow++;
      const rule =
        change === 'allow-to-deny' ? (outcome.rule ?? record.rule) : (record.rule ?? outcome.rule);
      const reason = change === 'allow-to-deny' ? outcome.code : record.code;
      if (outcome.rule !== null && outcome.policy !== null)
        touched.add(`${outcome.policy}/${outcome.rule}`);
      const key = `${change}\u0000${record.caller}\u0000${record.host}\u0000${rule}\u0000${reason}`;
      const group = changes.get(key);
      if (group) {
        group.count++;
        if (record.timeText < group.first) group.first = record.timeText;
        if (record.timeText > group.last) group.last = record.timeText;
      } else if (cannotTell.size + changes.size < maxGroups) {
        changes.set(key, {
          change,
          caller: record.caller,
          host: record.host,
          rule,
          reason,
          count: 1,
          first: record.timeText,
          last: record.timeText,
          example: record.id,
        });
      } else {
        ungrouped++;
      }
    }
    if (options.onProgress && (records & 1023) === 0 && performance.now() >= nextProgress) {
      nextProgress = performance.now() + 1000;
      options.onProgress(records, nextProgress - 1000 - started);
    }
  }
  invalid += counts.overlong;
  const elapsedMs = performance.now() - started;
  const byCount = <T extends { count: number }>(a: T, b: T): number => b.count - a.count;
  return {
    policyVersion: set.version,
    recordedVersions: Object.fromEntries(versions),
    records,
    unchanged,
    allowToDeny,
    denyToAllow,
    cannotTell: unknown,
    policyIndependent: independent,
    skipped,
    invalid,
    older,
    legacy,
    changes: [...changes.values()].sort(byCount),
    cannotTellGroups: [...cannotTell.values()].sort(byCount),
    ungrouped,
    rulesTouched: [...touched].filter((r) => newRules.has(r)).sort(),
    recordedRulesMissing: [...recordedRules].filter((r) => !newRules.has(r)).sort(),
    elapsedMs,
    recordsPerSecond: elapsedMs > 0 ? Math.round((records * 1000) / elapsedMs) : records,
    ...(firstInvalid !== undefined ? { firstInvalid } : {}),
  };
}

export type { ReplayRecord };
