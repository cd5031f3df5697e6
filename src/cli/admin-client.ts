import { promises as fs } from 'node:fs';
import { DEFAULT_ADMIN_PORT } from './defaults';

/**
 * `gatehouse quarantine …` and `gatehouse access …`: thin clients of a running server's admin
 * API. From inside the pod (kubectl exec) the loopback address needs no token.
 */
export interface AdminClientFlags {
  admin: string;
  adminTokenFile?: string;
  json?: boolean;
}

export const DEFAULT_ADMIN_URL = `http://127.0.0.1:${DEFAULT_ADMIN_PORT}`;

/** The token for admin changes: the file's first line, at least 16 characters. */
export async function readAdminToken(file: string): Promise<Buffer> {
  const text = (await fs.readFile(file, 'utf8')).split('\n')[0]!.trim();
  if (text.length < 16) throw new Error(`${file}: the admin token must be at least 16 characters`);
  return Buffer.from(text);
}

export async function adminCall(
  flags: AdminClientFlags,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  let base: URL;
  try {
    base = new URL(flags.admin);
  } catch {
    throw new Error(`--admin: not a URL: ${flags.admin}`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new Error('--admin must be an http:// or https:// URL');
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (flags.adminTokenFile)
    headers['authorization'] = `Bearer ${(await readAdminToken(flags.adminTokenFile)).toString()}`;
  let res: Response;
  try {
    res = await fetch(new URL(path, base), {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (err) {
    throw new Error(
      `cannot reach the admin API at ${base.origin}: ${(err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message}`,
      { cause: err },
    );
  }
  const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
  return { status: res.status, json };
}

interface QuarantineRow {
  caller: string;
  policy: string;
  since: number;
  until: number;
  denials: number;
  dryRun: boolean;
}

export function formatQuarantine(rows: readonly QuarantineRow[], now = Date.now()): string {
  if (rows.length === 0) return 'no caller is quarantined\n';
  const lines = rows.map((r) => [
    r.caller,
    r.dryRun ? 'dry-run' : 'enforce',
    r.policy,
    String(r.denials),
    new Date(r.since).toISOString(),
    `${new Date(r.until).toISOString()} (in ${age(r.until - now)})`,
  ]);
  return table(['CALLER', 'MODE', 'POLICY', 'DENIALS', 'SINCE', 'UNTIL'], lines);
}

interface GrantRow {
  policy: string;
  rule: string;
  entry: number;
  pattern: string;
  caller: string;
  lastUsed?: number;
  since: number;
  maxIdleMs: number;
  dormant: boolean;
}

/** Oldest use first, so what to remove is at the top. */
export function formatAccessReport(rows: readonly GrantRow[], now = Date.now()): string {
  if (rows.length === 0) return 'no grant carries expiresAfterUnused\n';
  const lines = rows.map((r) => {
    const start = Math.max(r.lastUsed ?? -Infinity, r.since);
    const state = r.dormant ? 'DORMANT' : `expires in ${age(start + r.maxIdleMs - now)}`;
    return [
      `${r.policy}/${r.rule}/allow[${r.entry}]`,
      r.pattern,
      r.caller === '' ? '(nobody)' : r.caller,
      r.lastUsed === undefined ? 'never' : `${age(now - r.lastUsed)} ago`,
      state,
    ];
  });
  return table(['GRANT', 'PATTERN', 'CALLER', 'LAST USED', 'STATE'], lines);
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return `${[line(head), ...rows.map(line)].join('\n')}\n`;
}
