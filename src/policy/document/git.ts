import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';

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

/**
 * A directory that is not a checkout may say which commit its files came from: a bundle's
 * unpacked directory (the commit `bundle build` saw, inside the signed payload), or a ConfigMap
 * that CI filled from a checkout. Its name is not a policy file name, so a bundle cannot carry one.
 */
export const GIT_VERSION_FILE = '.gatehouse-git.json';

/** The checkout's commit, else the one recorded in GIT_VERSION_FILE, else undefined. */
export async function policyGitVersion(dir: string): Promise<GitVersion | undefined> {
  return (await gitVersion(dir)) ?? (await recordedGitVersion(dir));
}

async function recordedGitVersion(dir: string): Promise<GitVersion | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(dir, GIT_VERSION_FILE), 'utf8');
  } catch {
    return undefined;
  }
  return parseGitVersion(text.length <= 1024 ? safeJson(text) : undefined);
}

/** A GitVersion from untrusted JSON, or undefined when it is not one. */
export function parseGitVersion(value: unknown): GitVersion | undefined {
  const v = value as { commit?: unknown; dirty?: unknown } | null | undefined;
  if (
    !v ||
    typeof v.commit !== 'string' ||
    !/^[0-9a-f]{40,64}$/.test(v.commit) ||
    typeof v.dirty !== 'boolean'
  )
    return undefined;
  return { commit: v.commit, dirty: v.dirty };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function git(cwd: string, args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(
      'git',
      args,
      { cwd, timeout: 2000, windowsHide: true, env: { ...process.env, GIT_OPTIONAL_LOCKS: '0' } },
      (err, stdout) => resolve(err ? undefined : stdout.trim()),
    );
  });
}

export function describeGit(git: GitVersion | undefined): string | undefined {
  return git ? `${git.commit.slice(0, 12)}${git.dirty ? '-dirty' : ''}` : undefined;
}
