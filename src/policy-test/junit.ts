import type { CaseResult } from './run';

/** JUnit XML (the Surefire dialect CI systems read): one testsuite per test file. */
export function junitXml(results: readonly CaseResult[]): string {
  const byFile = new Map<string, CaseResult[]>();
  for (const r of results) byFile.set(r.file, [...(byFile.get(r.file) ?? []), r]);
  const failures = results.filter((r) => !r.passed).length;
  const out = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<testsuites name="gatehouse" tests="${results.length}" failures="${failures}">`,
  ];
  for (const [file, cases] of byFile) {
    const failed = cases.filter((c) => !c.passed).length;
    const time = cases.reduce((t, c) => t + c.ms, 0) / 1000;
    out.push(
      `  <testsuite name="${xml(file)}" tests="${cases.length}" failures="${failed}" errors="0" time="${time.toFixed(3)}">`,
    );
    for (const c of cases) {
      const open = `    <testcase classname="${xml(c.suite)}" name="${xml(c.name)}" file="${xml(c.file)}" line="${c.line}" time="${(c.ms / 1000).toFixed(3)}"`;
      if (c.passed) out.push(`${open}/>`);
      else {
        out.push(`${open}>`);
        out.push(
          `      <failure message="${xml(`expected ${c.expected}, got ${c.actual}`)}" type="assertion"/>`,
        );
        out.push('    </testcase>');
      }
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>', '');
  return out.join('\n');
}

function xml(text: string): string {
  return text
    .replace(
      /[<>&"']/g,
      (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!,
    )
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');
}
