import { Command } from 'commander';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { policyYaml, testYaml } from '../suggest/render';
import { suggest } from '../suggest/suggest';
import { intInRange } from './options';

interface SuggestFlags {
  audit: string[];
  workload?: string;
  host?: string;
  outputDir: string;
  minIds: number;
}

export async function runSuggest(flags: SuggestFlags): Promise<number> {
  if (flags.workload !== undefined && flags.host !== undefined)
    return error('give --workload or --host, not both');
  let suggestion;
  try {
    suggestion = await suggest({
      files: flags.audit,
      minIds: flags.minIds,
      ...(flags.workload !== undefined ? { workload: flags.workload } : {}),
      ...(flags.host !== undefined ? { host: flags.host } : {}),
    });
  } catch (err) {
    return error(
      `cannot suggest: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (suggestion.policies.length === 0)
    return error('no allowed request with a verified caller matches; nothing to suggest');
  await fs.mkdir(flags.outputDir, { recursive: true });
  for (const policy of suggestion.policies) {
    const file = path.join(flags.outputDir, `${policy.name}.yaml`);
    const tests = path.join(flags.outputDir, `${policy.name}.test.yaml`);
    await fs.writeFile(file, policyYaml(policy, suggestion));
    await fs.writeFile(tests, testYaml(policy));
    process.stdout.write(
      `${file}: ${policy.rules.length} rule${policy.rules.length === 1 ? '' : 's'} from ${policy.records.toLocaleString('en-US')} requests (tests: ${tests})\n`,
    );
  }
  if (suggestion.anonymous > 0)
    process.stdout.write(
      `note: ${suggestion.anonymous} allowed requests had no verified caller; no rule admits them\n`,
    );
  if (suggestion.dropped > 0)
    process.stdout.write(
      `note: ${suggestion.dropped} requests were beyond the bound on distinct callers per route and are not covered\n`,
    );
  if (suggestion.invalid > 0)
    process.stdout.write(`note: ${suggestion.invalid} lines could not be read as audit records\n`);
  return 0;
}

function error(message: string): number {
  process.stderr.write(`gatehouse: ${message}\n`);
  return 2;
}

export function addSuggestCommand(program: Command): void {
  program
    .command('suggest')
    .description(
      'propose least-privilege ServicePolicies (and their tests) from the traffic in audit logs, e.g. of a dry-run rollout',
    )
    .requiredOption('--audit <file...>', 'audit logs (files; read twice)')
    .option('--workload <spiffe-id>', 'only the policy for this destination workload')
    .option('--host <host>', 'only the policy guarding this host')
    .option(
      '-o, --output-dir <dir>',
      'where to write <policy>.yaml and <policy>.test.yaml',
      'suggested-policies',
    )
    .option(
      '--min-ids <n>',
      'distinct id-like values at one path position that make it a `*`',
      intInRange(2, 1000, 'a count'),
      3,
    )
    .action(async (flags: SuggestFlags) => {
      process.exitCode = await runSuggest(flags);
    });
}
