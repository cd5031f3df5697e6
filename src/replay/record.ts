/**
 * One decision read back from an audit log. The log is input like any other: every field is
 * checked for type and clipped, and a line that is not a decision record is skipped.
 */
export interface ReplayRecord {
  readonly id: string;
  /** Epoch ms of the record's `time`, NaN when missing. */
  readonly time: number;
  readonly timeText: string;
  readonly allowed: boolean;
  readonly code: string;
  readonly caller: string | null;
  readonly identitySource: string | null;
  readonly host: string | null;
  readonly method: string | null;
  readonly path: string | null;
  readonly policy: string | null;
  readonly policyVersion: string;
  readonly rule: string | null;
  readonly destination: string | null;
  /** undefined: the record predates query keys (the query is unknown); [] when there was none. */
  readonly queryKeys: readonly string[] | undefined;
  readonly queryKeysTruncated: boolean;
  /** Tracked header name → presence; undefined when the record tracks none. */
  readonly headerPresence: Readonly<Record<string, boolean>> | undefined;
  /** undefined: the record predates body presence. */
  readonly bodyPresent: boolean | undefined;
  /** The record was written before destination, query keys and header presence were kept. */
  readonly legacy: boolean;
}

const MAX_FIELD = 4096;
const DECISION_MESSAGES = new Set(['decision', 'would deny (dry-run)']);

export type ParsedLine =
  | { kind: 'decision'; record: ReplayRecord }
  | { kind: 'other' }
  | { kind: 'invalid'; reason: string };

export function parseAuditLine(text: string): ParsedLine {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { kind: 'invalid', reason: 'not JSON' };
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    return { kind: 'invalid', reason: 'not a JSON object' };
  const o = json as Record<string, unknown>;
  if (
    typeof o['msg'] !== 'string' ||
    !DECISION_MESSAGES.has(o['msg']) ||
    o['decision_id'] === undefined
  )
    return { kind: 'other' };
  const id = text_(o['decision_id']);
  const result = o['result'];
  const code = text_(o['reason_code']);
  if (id === undefined || (result !== 'allow' && result !== 'deny') || code === undefined)
    return {
      kind: 'invalid',
      reason: 'decision record without decision_id, result or reason_code',
    };
  const timeText = text_(o['time']) ?? '';
  const presence = o['header_presence'];
  const queryKeys = o['query_keys'];
  return {
    kind: 'decision',
    record: {
      id,
      time: Date.parse(timeText),
      timeText,
      allowed: result === 'allow',
      code,
      caller: textOrNull(o['caller']),
      identitySource: textOrNull(o['identity_source']),
      host: textOrNull(o['host']),
      method: textOrNull(o['method']),
      path: textOrNull(o['path']),
      policy: textOrNull(o['policy']),
      policyVersion: text_(o['policy_version']) ?? '',
      rule: textOrNull(o['rule']),
      destination: textOrNull(o['destination']),
      queryKeys: Array.isArray(queryKeys)
        ? queryKeys.filter((k): k is string => typeof k === 'string').slice(0, 64)
        : o['destination'] === undefined
          ? undefined
          : [],
      queryKeysTruncated: o['query_keys_truncated'] === true,
      headerPresence: presenceOf(presence),
      bodyPresent: 'destination' in o ? o['body_present'] === true : undefined,
      legacy: !('destination' in o),
    },
  };
}

function text_(v: unknown): string | undefined {
  return typeof v === 'string' && v.length <= MAX_FIELD ? v : undefined;
}

function textOrNull(v: unknown): string | null {
  return text_(v) ?? null;
}

function presenceOf(v: unknown): Record<string, boolean> | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const out = Object.create(null) as Record<string, boolean>;
  let n = 0;
  for (const [name, present] of Object.entries(v)) {
    if (typeof present !== 'boolean' || ++n > 64) continue;
    out[name] = present;
  }
  return out;
}
