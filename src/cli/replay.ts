import { Command, InvalidArgumentError, Option } from 'commander';
import { promises as fs } from 'node:fs';
import { loadPolicyDir } from '../policy/load';
import { parseDuration } from '../policy/duration';
import { formatProblem } from '../policy/document/problems';
import type { PolicySet } from '../policy/types';
import { formatMarkdown, formatText } from '../replay/report';
import { replay, type ReplayReport } from '../replay/replay';
import { diffRules } from '../replay/rule-diff';

/** Exit codes: 0 no change that --fail-on counts, 1 such a change, 2 the replay could not run. */
export const EXIT_CHANGES = 1;
export const EXIT_ERROR = 2;

/** `--since`: an ISO time, or a duration back from now (`24h`). */
export function parseSince(value: string, now = Date.now()): number {
  const back = parseDuration(value);
  if (back !== undefined) return now - back;
  const at = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(at))
    throw new InvalidArgumentError(
      'must be an ISO time (2026-12-05T00:00:00Z) or a duration back from now (24h)',
    );
  return at;
}

interface ReplayFlags {
  audit: string[];
  since?: number;
  json?: boolean;
  markdown?: boolean;
  failOn?: 'new-denials' | 'any-change';
  base?: string;
  output?: string;
}

export function failsOn(report: ReplayReport, failOn: ReplayFlags['failOn']): boolean {
  if (failOn === 'new-denials') return report.allowToDeny > 0;
  if (failOn === 'any-change') return report.allowToDeny + report.denyToAllow > 0;
  return false;
}

async function loadOrExplain(dir: string, what: string): Promise<PolicySet | string> {
  const loaded = await loadPolicyDir(dir);
  if (loaded.ok) return loaded.set;
  return [`${what} ${dir} has invalid policies:`, ...loaded.problems.map(formatProblem)].join('\n');
}

export async function runReplay(dir: string, flags: ReplayFlags): Promise<number> {
  if (flags.json && flags.markdown) return error('give --json or --markdown, not both');
  const set = await loadOrExplain(dir, 'policy directory');
  if (typeof set === 'string') return error(set);
  const base = flags.base !== undefined ? await loadOrExplain(flags.base, '--base') : undefined;
  if (typeof base === 'string') return error(base);
  const progress = process.stderr.isTTY
    ? (records: number, elapsedMs: number) =>
        process.stderr.write(
          `\rreplaying: ${records.toLocaleString('en-US')} records, ${Math.round((records * 1000) / Math.max(elapsedMs, 1)).toLocaleString('en-US')}/s   `,
        )
    : undefined;
  let report: ReplayReport;
  try {
    report = await replay(set, {
      files: flags.audit,
      ...(flags.since !== undefined ? { since: flags.since } : {}),
      ...(progress ? { onProgress: progress } : {}),
    });
  } catch (err) {
    return error(
      `cannot read the audit log: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  } finally {
    if (progress) process.stderr.write('\r\x1b[K');
  }
  const diff = base !== undefined ? diffRules(base, set) : undefined;
  const text = flags.json
    ? `${JSON.stringify(diff ? { ...report, rules: diff } : report, null, 2)}\n`
    : flags.markdown
      ? formatMarkdown(report, diff)
      : formatText(report, diff);
  if (flags.output !== undefined) await fs.writeFile(flags.output, text);
  else process.stdout.write(text);
  return failsOn(report, flags.failOn) ? EXIT_CHANGES : 0;
}

function error(message: string): number {
  process.stderr.write(`gatehouse: ${message}\n`);
  return EXIT_ERROR;
}

export function addReplayCommands(program: Command): void {
  program
    .command('replay')
    .description(
      're-decide the requests in audit logs with the policies in DIR and report which outcomes change',
    )
    .argument('<dir>', 'policy directory (the change under review)')
    .requiredOption(
      '--audit <file...>',
      'audit logs: files or rotated pieces, oldest first; "-" for stdin',
    )
    .option(
      '--since <time>',
      'only records from this ISO time, or this long ago (24h)',
      (v: string) => parseSince(v),
    )
    .option('--json', 'print the report as JSON')
    .option('--markdown', 'print the report as Markdown (for a pull-request comment)')
    .addOption(
      new Option('--fail-on <what>', 'exit 1 when replay finds new denials, or any change').choices(
        ['new-denials', 'any-change'],
      ),
    )
    .option(
      '--base <dir>',
      'the policies the log was recorded under (e.g. a checkout of main), to name the rules added, removed and changed',
    )
    .option('-o, --output <file>', 'write the report here instead of stdout')
    .action(async (dir: string, flags: ReplayFlags) => {
      process.exitCode = await runReplay(dir, flags);
    });
}
