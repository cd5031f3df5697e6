import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

/** Writes `files` (name → YAML text) into a fresh temporary directory and returns it. */
export function policyDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-policies-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

export const EXAMPLE_POLICIES = path.resolve(__dirname, '..', '..', 'policies');

export function servicePolicy(name: string, hosts: string[], rulesYaml: string, mode?: 'enforce' | 'dry-run'): string {
  return [
    'apiVersion: gatehouse/v1',
    'kind: ServicePolicy',
    'metadata:',
    `  name: ${name}`,
    'spec:',
    `  hosts: [${hosts.join(', ')}]`,
    ...(mode ? [`  mode: ${mode}`] : []),
    '  rules:',
    rulesYaml.replace(/^\n/, ''),
  ].join('\n');
}
