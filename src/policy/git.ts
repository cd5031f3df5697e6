import { execFile } from 'node:child_process';

export interface GitVersion {
  readonly commit: string;
  /** Files under the policy directory differ from the commit. */
  readonly dirty: boolean;
}

/** The commit of the checkout `dir` is in, if any. Never fails: no git, no checkout → undefined. */
export async function gitVersion(dir: string): Promise<GitVersion | undefined> {
  const commit = await git(dir, ['rev-parse', 'HEAD']);
  if (commit === undefined || !/^[0-9a-f]{40,64}$/.test(commit)) return undefined;
  const status = await git(dir, ['status', '--porcelain', '--untracked-files=normal', '--', '.']);
  return { commit, dirty: status === undefined || status !== '' };
}

function git(cwd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('git', args, { cwd, timeout: 2000, windowsHide: true, env: { ...process.env, GIT_OPTIONAL_LOCKS: '0' } }, (err, stdout) =>
      resolve(err ? undefined : stdout.trim()),
    );
  });
}

export function describeGit(git: GitVersion | undefined): string | undefined {
  return git ? `${git.commit.slice(0, 12)}${git.dirty ? '-dirty' : ''}` : undefined;
}
