import { promises as fs } from 'node:fs';
import { junitXml } from '../policy-test/junit';
import { runPolicyTests } from '../policy-test/run';
import { formatProblem } from '../policy/document/problems';

/** `gatehouse test`: a line per case, a summary, optional JUnit and coverage. Returns the exit code. */
export async function runTestCommand(
  dir: string,
  opts: { junit?: string; coverage?: boolean; trustDomain?: string[] },
): Promise<number> {
  const run = await runPolicyTests(dir, opts.trustDomain ? { trustDomains: opts.trustDomain } : {});
  if (!run.ok) {
    for (const p of run.problems) process.stderr.write(`${formatProblem(p)}\n`);
    return 1;
  }
  for (const r of run.results) {
    const where = `${r.file}:${r.line}`;
    process.stdout.write(
      `${r.passed ? 'PASS' : 'FAIL'}  ${r.suite} › ${r.name}  ${where}${r.dryRun ? '  (dry-run policy: verdict not enforced)' : ''}\n`,
    );
    if (!r.passed)
      process.stdout.write(`      expected ${r.expected}\n      got      ${r.actual}\n`);
  }
  if (opts.coverage) {
    const missing = run.coverage.filter((g) => g.entry !== undefined).length;
    process.stdout.write(
      `\ncoverage: ${run.totalEntries - missing} of ${run.totalEntries} allow/deny entries exercised\n`,
    );
    for (const gap of run.coverage) {
      process.stdout.write(
        gap.entry
          ? `  not exercised: ${gap.file} ${gap.policy}/${gap.rule} ${gap.entry.list}[${gap.entry.index}] ${gap.entry.pattern}\n`
          : `  never decided a case: ${gap.file} ${gap.policy}/${gap.rule}\n`,
      );
    }
  }
  if (opts.junit) await fs.writeFile(opts.junit, junitXml(run.results));
  const failed = run.results.filter((r) => !r.passed).length;
  process.stdout.write(
    `\npolicy set ${run.policyVersion}\npolicy-tests: ${run.results.length - failed} passed, ${failed} failed\n`,
  );
  return failed > 0 ? 1 : 0;
}
