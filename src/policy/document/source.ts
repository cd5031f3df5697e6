import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export interface SourceFile {
  /** Path as the user will recognise it: the directory they gave joined with the relative name. */
  readonly file: string;
  readonly text: string;
}

export const MAX_POLICY_FILE_BYTES = 1024 * 1024;

export function isPolicyFile(name: string): boolean {
  return /\.ya?ml$/.test(name) && !isPolicyTestFile(name);
}

export function isPolicyTestFile(name: string): boolean {
  return /\.test\.ya?ml$/.test(name);
}

/** Every file under `dir` (recursively, hidden entries skipped) accepted by `accept`, sorted. */
export async function listFiles(dir: string, accept: (name: string) => boolean): Promise<string[]> {
  const out: string[] = [];
  async function walk(current: string): Promise<void> {
    const entries = await fs.readdir(current, { withFileTypes: true });
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const full = path.join(current, entry.name);
      // Kubernetes mounts ConfigMap keys as symlinks into a hidden ..data directory: follow
      // links to files; links to directories are not followed (no cycles).
      const isFile =
        entry.isFile() ||
        (entry.isSymbolicLink() && (await fs.stat(full).catch(() => undefined))?.isFile() === true);
      if (entry.isDirectory()) await walk(full);
      else if (isFile && accept(entry.name)) out.push(full);
    }
  }
  await walk(dir);
  return out.sort();
}

export async function readSources(
  files: readonly string[],
): Promise<{ sources: SourceFile[]; tooLarge: string[] }> {
  const sources: SourceFile[] = [];
  const tooLarge: string[] = [];
  for (const file of files) {
    const stat = await fs.stat(file);
    if (stat.size > MAX_POLICY_FILE_BYTES) tooLarge.push(file);
    else sources.push({ file, text: await fs.readFile(file, 'utf8') });
  }
  return { sources, tooLarge };
}
