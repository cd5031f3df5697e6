import type { ChangeGroup, ReplayReport } from './replay';
import type { RuleDiff } from './rule-diff';

const MAX_ROWS = 50;

/** Log text on a terminal: control characters (escape sequences) become '?'. */
function plain(text: string | null): string {
  if (text === null) return '-';
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    out += code < 0x20 || (code >= 0x7f && code <= 0x9f) ? '?' : text[i];
  }
  return out;
}

/** Thousands separated, as people read counts. */
function n(value: number): string {
  return value.toLocaleString('en-US');
}

function plural(count: number, one: string, many: string): string {
  return `${n(count)} ${count === 1 ? one : many}`;
}

function distinctCallers(groups: readonly ChangeGroup[]): number {
  return new Set(groups.map((g) => g.caller ?? '(no identity)')).size;
}

/** "3 callers lose access, 1 gains it, 12,840 decisions unchanged" */
export function summaryLine(report: ReplayReport): string {
  const lose = distinctCallers(report.changes.filter((g) => g.change === 'allow-to-deny'));
  const gain = distinctCallers(report.changes.filter((g) => g.change === 'deny-to-allow'));
  const parts = [
    `${plural(lose, 'caller loses', 'callers lose')} access`,
    `${n(gain)} ${gain === 1 ? 'gains' : 'gain'} it`,
    `${plural(report.unchanged + report.policyIndependent, 'decision', 'decisions')} unchanged`,
  ];
  if (report.cannotTell > 0) parts.push(`${n(report.cannotTell)} cannot tell`);
  return parts.join(', ');
}

function countsLine(report: ReplayReport): string {
  return `${plural(report.records, 'decision', 'decisions')} replayed in ${(report.elapsedMs / 1000).toFixed(2)}s (${n(report.recordsPerSecond)} records/s): ${n(report.allowToDeny)} allow→deny, ${n(report.denyToAllow)} deny→allow, ${n(report.cannotTell)} cannot tell, ${n(report.unchanged + report.policyIndependent)} unchanged`;
}

function notes(report: ReplayReport): string[] {
  const out: string[] = [];
  if (report.invalid > 0)
    out.push(
      `${plural(report.invalid, 'line', 'lines')} could not be read as audit records${report.firstInvalid ? ` (first: ${report.firstInvalid})` : ''}`,
    );
  if (report.older > 0)
    out.push(`${plural(report.older, 'record', 'records')} before --since left out`);
  if (report.legacy > 0)
    out.push(
      `${plural(report.legacy, 'record was', 'records were')} written before audit records kept the destination, query keys and header presence`,
    );
  if (report.ungrouped > 0)
    out.push(
      `${plural(report.ungrouped, 'record', 'records')} in groups beyond the group limit (counted, not listed)`,
    );
  return out;
}

export function formatText(report: ReplayReport, diff?: RuleDiff): string {
  const lines = [
    summaryLine(report),
    countsLine(report),
    `policy version ${report.policyVersion}; recorded under ${plain(Object.keys(report.recordedVersions).join(', ') || '(none)')}`,
  ];
  for (const change of ['allow-to-deny', 'deny-to-allow'] as const) {
    const groups = report.changes.filter((g) => g.change === change);
    if (groups.length === 0) continue;
    lines.push(
      '',
      change === 'allow-to-deny' ? 'allowed before, denied now:' : 'denied before, allowed now:',
    );
    for (const g of groups.slice(0, MAX_ROWS)) {
      lines.push(
        `  ${n(g.count).padStart(8)}  ${plain(g.caller ?? '(no identity)')} → ${plain(g.host)}  rule ${plain(g.rule)}  ${plain(g.reason)}  (${plain(g.first)} … ${plain(g.last)}, e.g. ${plain(g.example)})`,
      );
    }
    if (groups.length > MAX_ROWS)
      lines.push(`  … ${n(groups.length - MAX_ROWS)} more groups (--json lists all)`);
  }
  if (report.cannotTellGroups.length > 0) {
    lines.push('', 'cannot tell (the outcome depends on what the audit log does not hold):');
    for (const g of report.cannotTellGroups.slice(0, MAX_ROWS))
      lines.push(
        `  ${n(g.count).padStart(8)}  ${plain(g.host)}: ${plain(g.reason)}  (e.g. ${plain(g.example)})`,
      );
  }
  lines.push('', ...ruleLines(report, diff, (name) => `\`${plain(name)}\``).map((l) => l.slice(2)));
  for (const note of notes(report)) lines.push(`note: ${plain(note)}`);
  return `${lines.join('\n').replace(/\n{3,}/g, '\n\n')}\n`;
}

function ruleLines(
  report: ReplayReport,
  diff: RuleDiff | undefined,
  quote: (name: string) => string,
): string[] {
  const list = (names: readonly string[]): string =>
    names.length === 0 ? 'none' : names.map(quote).join(', ');
  if (diff)
    return [
      `- rules added: ${list(diff.added)}`,
      `- rules removed: ${list(diff.removed)}`,
      `- rules changed: ${list(diff.changed)}`,
    ];
  return [
    `- rules of the new set behind changes: ${list(report.rulesTouched)}`,
    `- recorded rules not in the new set: ${list(report.recordedRulesMissing)}`,
  ];
}

/** Table cells are policy data: pipes and newlines must not break the table, nor markup run. */
function cell(text: string | null): string {
  if (text === null) return '–';
  return `\`${text.replace(/[`|\r\n]/g, (c) => (c === '|' ? '\\|' : c === '`' ? "'" : ' '))}\``;
}

export function formatMarkdown(report: ReplayReport, diff?: RuleDiff): string {
  const out = ['## Gatehouse replay', '', `**${summaryLine(report)}**`, '', countsLine(report), ''];
  const sections = [
    ['allow-to-deny', 'Allowed before, denied now'],
    ['deny-to-allow', 'Denied before, allowed now'],
  ] as const;
  for (const [change, title] of sections) {
    const groups = report.changes.filter((g) => g.change === change);
    if (groups.length === 0) continue;
    out.push(
      `### ${title}`,
      '',
      '| Caller | Host | Rule | Reason | Count | First seen | Last seen | Example decision |',
      '|---|---|---|---|--:|---|---|---|',
    );
    for (const g of groups.slice(0, MAX_ROWS))
      out.push(
        `| ${cell(g.caller ?? '(no identity)')} | ${cell(g.host)} | ${cell(g.rule)} | ${cell(g.reason)} | ${n(g.count)} | ${cell(g.first)} | ${cell(g.last)} | ${cell(g.example)} |`,
      );
    if (groups.length > MAX_ROWS) out.push('', `… and ${n(groups.length - MAX_ROWS)} more groups.`);
    out.push('');
  }
  if (report.cannotTellGroups.length > 0) {
    out.push(
      '### Cannot tell',
      '',
      'The new outcome of these requests depends on what the audit log does not hold.',
      '',
      '| Host | Rule | Why | Count | Example decision |',
      '|---|---|---|--:|---|',
    );
    for (const g of report.cannotTellGroups.slice(0, MAX_ROWS))
      out.push(
        `| ${cell(g.host)} | ${cell(g.rule)} | ${cell(g.reason)} | ${n(g.count)} | ${cell(g.example)} |`,
      );
    out.push('');
  }
  out.push(
    '### Policy',
    '',
    `New version \`${report.policyVersion}\`; recorded under ${Object.keys(report.recordedVersions).map(cell).join(', ') || 'none'}.`,
    '',
    ...ruleLines(report, diff, cell),
    '',
  );
  for (const note of notes(report)) out.push(`> ${cell(note)}`, '');
  return `${out.join('\n').trimEnd()}\n`;
}
