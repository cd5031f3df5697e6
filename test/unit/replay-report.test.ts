import { formatMarkdown, formatText, summaryLine } from '../../src/replay/report';
import type { ReplayReport } from '../../src/replay/replay';

const HOSTILE = 'spiffe://evil/\u001b[2J|x`y\n![img](http://x)';

function report(extra: Partial<ReplayReport> = {}): ReplayReport {
  return {
    policyVersion: 'v2',
    recordedVersions: { [`v1\`|\n`]: 3 },
    records: 12_845,
    unchanged: 12_840,
    allowToDeny: 4,
    denyToAllow: 1,
    cannotTell: 0,
    policyIndependent: 0,
    skipped: 0,
    invalid: 0,
    older: 0,
    legacy: 0,
    changes: [
      {
        change: 'allow-to-deny',
        caller: 'spiffe://a/x',
        host: 'h',
        rule: 'r',
        reason: 'caller_not_allowed',
        count: 2,
        first: 't1',
        last: 't2',
        example: 'd1',
      },
      {
        change: 'allow-to-deny',
        caller: 'spiffe://a/y',
        host: 'h',
        rule: 'r',
        reason: 'caller_not_allowed',
        count: 1,
        first: 't1',
        last: 't1',
        example: 'd2',
      },
      {
        change: 'allow-to-deny',
        caller: HOSTILE,
        host: HOSTILE,
        rule: HOSTILE,
        reason: 'caller_not_allowed',
        count: 1,
        first: HOSTILE,
        last: HOSTILE,
        example: HOSTILE,
      },
      {
        change: 'deny-to-allow',
        caller: 'spiffe://a/z',
        host: 'h',
        rule: 'r',
        reason: 'caller_not_allowed',
        count: 1,
        first: 't',
        last: 't',
        example: 'd3',
      },
    ],
    cannotTellGroups: [],
    ungrouped: 0,
    rulesTouched: [],
    recordedRulesMissing: [HOSTILE],
    elapsedMs: 1000,
    recordsPerSecond: 12_845,
    ...extra,
  };
}

describe('replay report', () => {
  test('summary line counts callers, not records', () => {
    expect(summaryLine(report())).toBe(
      '3 callers lose access, 1 gains it, 12,840 decisions unchanged',
    );
  });

  test('log text cannot inject terminal escapes into the text report', () => {
    const text = formatText(report());
    expect(text).not.toContain('\u001b');
    expect(text).toContain('spiffe://evil/?[2J|x`y?![img](http://x)');
  });

  test('log text cannot break out of a Markdown table cell or code span', () => {
    const md = formatMarkdown(report());
    expect(md).not.toContain('\u001b[2J|');
    for (const line of md.split('\n').filter((l) => l.includes('evil'))) {
      // Every backtick pairs up, and no unescaped pipe splits a cell beyond the table's columns.
      expect((line.match(/`/g) ?? []).length % 2).toBe(0);
      expect(line).not.toContain('`y');
    }
    expect(
      md
        .split('\n')
        .find((l) => l.includes('evil') && l.startsWith('|'))!
        .split(/(?<!\\)\|/).length,
    ).toBe(10);
  });
});
