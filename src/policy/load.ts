import { compilePolicySet, type ValidDoc } from './compile/policy-set';
import { describeGit, policyGitVersion } from './document/git';
import {
  isPolicyFile,
  listFiles,
  MAX_POLICY_FILE_BYTES,
  readSources,
  type SourceFile,
} from './document/source';
import { tooLargeErrors, wholeFileError, type PolicyProblem } from './document/problems';
import type { PolicySet } from './types';
import { validateDocument } from './compile/validate';
import { fileErrorText } from '../util/file-error';
import { parseYamlDocuments } from './document/yaml-docs';

export type LoadResult =
  | { ok: true; set: PolicySet; warnings: PolicyProblem[] }
  | { ok: false; problems: PolicyProblem[] };

/**
 * Reads, validates and compiles every policy file under `dir`. All problems are reported
 * at once; the set is only produced when there is no error (warnings are allowed).
 */
export async function loadPolicyDir(dir: string): Promise<LoadResult> {
  let files: string[];
  try {
    files = await listFiles(dir, isPolicyFile);
  } catch (err) {
    return { ok: false, problems: [wholeFileError(dir, fileErrorText(err, 'policy directory'))] };
  }
  if (files.length === 0) {
    const message = 'no policy files (*.yaml, *.yml) found; every request would be denied';
    return { ok: false, problems: [wholeFileError(dir, message)] };
  }
  const { sources, tooLarge } = await readSources(files);
  const problems = tooLargeErrors(tooLarge, `file is larger than ${MAX_POLICY_FILE_BYTES} bytes`);
  const result = compileSources(sources, files, problems);
  if (!result.ok) return result;
  const git = await policyGitVersion(dir);
  return git ? { ...result, set: { ...result.set, git, gitLabel: describeGit(git)! } } : result;
}

/**
 * Parses, validates and compiles policy sources already in memory (a directory's files, or
 * documents a test builds): the checks across documents included. `problems` found before
 * (unreadable files) are reported with the rest.
 */
export function compileSources(
  sources: readonly SourceFile[],
  files: readonly string[],
  problems: PolicyProblem[] = [],
): LoadResult {
  const valid: ValidDoc[] = [];
  const policyNames = new Map<string, string>();
  const hostOwners = new Map<string, string>();
  const workloadOwners = new Map<string, string>();
  const optOutOwners = new Map<string, string>();
  for (const source of sources) {
    const parsed = parseYamlDocuments(source);
    problems.push(...parsed.problems);
    for (const located of parsed.docs) {
      const { doc, parts, names, problems: docProblems } = validateDocument(located);
      problems.push(...docProblems);
      // Names are checked across documents even when this one has errors: all problems at once.
      if (!names) continue;
      const owner = policyNames.get(names.name);
      if (owner !== undefined) {
        problems.push(
          located.problem(
            ['metadata', 'name'],
            `duplicate policy name '${names.name}' (also in ${owner})`,
          ),
        );
        continue;
      }
      policyNames.set(names.name, source.file);
      if (names.callerWorkload !== undefined) {
        const other = optOutOwners.get(names.callerWorkload);
        if (other !== undefined)
          problems.push(
            located.problem(
              ['spec', 'workload'],
              `workload '${names.callerWorkload}' already has WorkloadPolicy ${other}; one per workload`,
            ),
          );
        else optOutOwners.set(names.callerWorkload, names.name);
      }
      names.workloads.forEach((workload, i) => {
        if (workload === undefined) return;
        const other = workloadOwners.get(workload);
        if (other !== undefined)
          problems.push(
            located.problem(
              ['spec', 'workloads', i],
              `workload '${workload}' is already guarded by policy ${other}`,
            ),
          );
        else workloadOwners.set(workload, names.name);
      });
      names.hosts.forEach((host, i) => {
        if (host === undefined) return;
        const other = hostOwners.get(host);
        if (other !== undefined) {
          problems.push(
            located.problem(
              ['spec', 'hosts', i],
              `host '${host}' is already guarded by policy ${other}; a host belongs to one policy`,
            ),
          );
        } else {
          hostOwners.set(host, names.name);
        }
      });
      if (!doc || !parts) continue;
      valid.push({ file: source.file, doc, parts });
    }
  }
  const errors = problems.filter((p) => p.severity === 'error');
  if (errors.length > 0) return { ok: false, problems: sortProblems(problems) };
  return { ok: true, set: compilePolicySet(valid, files), warnings: sortProblems(problems) };
}

function sortProblems(problems: PolicyProblem[]): PolicyProblem[] {
  return [...problems].sort((a, b) =>
    a.file === b.file ? a.line - b.line || a.col - b.col : a.file < b.file ? -1 : 1,
  );
}
