import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
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

/** `serve` flags for the example policies of trust domain shop.example; a test adds its own. */
export const EXAMPLE_POLICY_ARGS: readonly string[] = [
  '--policies',
  EXAMPLE_POLICIES,
  '--trust-domain',
  'shop.example',
];

/** EXAMPLE_POLICY_ARGS with the audit records discarded. */
export const EXAMPLE_SERVE_ARGS: readonly string[] = [
  ...EXAMPLE_POLICY_ARGS,
  '--audit-log',
  '/dev/null',
];

export function servicePolicy(
  name: string,
  hosts: string[],
  rulesYaml: string,
  mode?: 'enforce' | 'dry-run',
): string {
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

/** The warning every policy selected by Host alone gets; tests about other problems leave it out. */
export const HOST_ONLY_WARNING = "selected by the request's Host alone";

export function isHostOnlyWarning(problem: { message: string }): boolean {
  return problem.message.startsWith(HOST_ONLY_WARNING);
}

/**
 * The example policies as an edge gateway without mTLS would serve them (the HTTP mode behind
 * nginx or Traefik): no destination identity reaches Gatehouse, so each HTTP policy is selected
 * by the Host the gateway routed on, with `workloads:` left out.
 */
export function gatewayExamplePolicies(): string {
  const files: Record<string, string> = {};
  for (const name of readdirSync(EXAMPLE_POLICIES)) {
    if (!name.endsWith('.yaml') || name.endsWith('.test.yaml')) continue;
    const text = readFileSync(path.join(EXAMPLE_POLICIES, name), 'utf8');
    files[name] = /^ {2}hosts:/m.test(text) ? text.replace(/^ {2}workloads:.*\n/m, '') : text;
  }
  return policyDir(files);
}

/** A bundle-ready policy set that admits `caller`, with a policy test expecting `testExpect`. */
export function bundlePolicySet(caller: string, testExpect = 'allow'): string {
  return policyDir({
    'svc.yaml': servicePolicy(
      'svc',
      ['svc'],
      `    - name: r
      allow: [spiffe://shop.example/${caller}]`,
    ),
    'svc.test.yaml': `apiVersion: gatehouse/v1
kind: PolicyTest
metadata: { name: svc }
spec:
  cases:
    - name: caller admitted
      request: { caller: spiffe://shop.example/${caller}, host: svc, path: / }
      expect: ${testExpect}
`,
  });
}
