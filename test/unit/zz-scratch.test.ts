import { loadPolicyDir } from '../../src/policy/load';
import { formatProblem } from '../../src/policy/types';
import { policyDir, servicePolicy } from '../helpers/policies';

async function show(label: string, files: Record<string, string>) {
  const dir = policyDir(files);
  const r = await loadPolicyDir(dir);
  const out = r.ok ? ['OK', ...r.warnings.map((p) => formatProblem(p).slice(dir.length + 1))] : r.problems.map((p) => formatProblem(p).slice(dir.length + 1));
  console.log(`=== ${label}\n${Object.values(files)[0]!.split('\n').map((l, i) => `${String(i + 1).padStart(3)}| ${l}`).join('\n')}\n---\n${out.join('\n')}`);
}
const R = (extra: string) => servicePolicy('p', ['p'], `    - name: r
      methods: [GET]
      paths: [/a]
      allow: [spiffe://td/x]
${extra}`);
test('scratch', async () => {
  await show('plain', { 'p.yaml': R('      when: request.method == 1') });
  await show('plain2', { 'p.yaml': R('      when: true && request.method == 1') });
  await show('single', { 'p.yaml': R(`      when: 'true && request.method == 1'`) });
  await show('double', { 'p.yaml': R(`      when: "true && request.method == 1"`) });
  await show('double-esc', { 'p.yaml': R(`      when: "request.headers[\\"x\\"] == 1"`) });
  await show('single-esc', { 'p.yaml': R(`      when: 'request.headers[''x''] == 1 && request.method == 1'`) });
  await show('block', { 'p.yaml': R(`      when: |\n        true &&\n          request.method == 1`) });
  await show('block-folded', { 'p.yaml': R(`      when: >\n        true &&\n        request.method == 1`) });
  await show('plain-multiline', { 'p.yaml': R(`      when: true &&\n        request.method == 1`) });
  await show('syntax', { 'p.yaml': R(`      when: request.method ==`) });
  await show('nope', { 'p.yaml': R(`      when: request.nope == "x"`) });
  await show('nonbool', { 'p.yaml': R(`      when: request.method`) });
  await show('matches', { 'p.yaml': R(`      when: request.path.matches("^a")`) });
  await show('matches2', { 'p.yaml': R(`      when: matches(request.path, "^a")`) });
  await show('long', { 'p.yaml': R(`      when: ${'true && '.repeat(600)}true`) });
  await show('body', { 'p.yaml': R(`      body:\n        maxBytes: -1\n        colour: red\n        schema:\n          type: object\n          properties:\n            a: { type: string, pattern: "^a+$" }`) });
  await show('body2', { 'p.yaml': R(`      body:\n        schema:\n          type: strin`) });
  await show('body3', { 'p.yaml': R(`      body:\n        schema:\n          patternProperties: {}`) });
  await show('body4', { 'p.yaml': R(`      body:\n        schema:\n          $ref: "https://evil.example/x.json"`) });
  await show('body5', { 'p.yaml': R(`      body:\n        schema:\n          properties:\n            pattern: { type: string }`) });
  await show('body6', { 'p.yaml': R(`      body:\n        schema:\n          type: object\n          unknownKeyword: 1`) });
  await show('body7', { 'p.yaml': R(`      body: {}`) });
  await show('res', { 'p.yaml': R(`      residency:\n        regions: []\n        regionFrom: zone:x`) });
  await show('res2', { 'p.yaml': R(`      residency:\n        regions: [eu]\n        regionFrom: header:X-Upper`) });
  await show('res3', { 'p.yaml': R(`      residency:\n        regions: [eu]\n        regionFrom: "header:"`) });
  await show('allow', { 'p.yaml': servicePolicy('p', ['p'], `    - name: r
      allow:
        - caller: spiffe://td/ns/*/sa
          expiresAfterUnused: 30days
        - caller: spiffe://td/y
          colour: red
        - expiresAfterUnused: 1d`) });
  await show('quarantine', { 'p.yaml': 'apiVersion: gatehouse/v1\nkind: ServicePolicy\nmetadata: {name: p}\nspec:\n  hosts: [p]\n  quarantine: { denials: 0, window: 8d, duration: 31d }\n  rules:\n    - {name: r, allow: [spiffe://td/x]}\n' });
  await show('quarantine2', { 'p.yaml': 'apiVersion: gatehouse/v1\nkind: ServicePolicy\nmetadata: {name: p}\nspec:\n  hosts: [p]\n  quarantine: { denials: 3 }\n  rules:\n    - {name: r, allow: [spiffe://td/x]}\n' });
  await show('quarantine3', { 'p.yaml': 'apiVersion: gatehouse/v1\nkind: ServicePolicy\nmetadata: {name: p}\nspec:\n  hosts: [p]\n  quarantine: { denials: 3, window: 168h, duration: 720h }\n  rules:\n    - {name: r, allow: [spiffe://td/x]}\n' });
  const W = (spec: string, name = 'w') => `apiVersion: gatehouse/v1\nkind: WorkloadPolicy\nmetadata:\n  name: ${name}\nspec:\n${spec}`;
  await show('wl', { 'w.yaml': W(`  workload: spiffe://td/ns/*/sa
  colour: red
  refuse:
    - name: only-name
    - name: dup
      headers: [Cookie]
    - name: dup
      fields: [card..number, .x]
      hosts: ["a:80"]
      paths: [v1]
      rules: x
`) });
  await show('wl2', { 'w.yaml': W(`  workload: not-a-spiffe-id\n  refuse:\n    - name: a\n      headers: [cookie]\n`) });
  await show('wl3', { 'w.yaml': W(`  workload: spiffe://td/x\n  refuse:\n    - name: a\n      headers: [cookie]\n`) + '---\n' + W(`  workload: spiffe://td/x\n  refuse:\n    - name: a\n      headers: [cookie]\n`, 'w2') });
  await show('wl4', { 'w.yaml': W(`  workload: spiffe://td/**\n  refuse: []\n`) });
  await show('shadow', { 'p.yaml': servicePolicy('p', ['p'], `    - name: a
      allow: [spiffe://td/x]
      when: request.method == "GET"
    - name: b
      methods: [GET]
      allow: [spiffe://td/x]`) });
  await show('shadow2', { 'p.yaml': servicePolicy('p', ['p'], `    - name: a
      allow: [spiffe://td/x]
    - name: b
      methods: [GET]
      allow: [spiffe://td/x]`) });
  await show('shadow3', { 'p.yaml': servicePolicy('p', ['p'], `    - name: a
      allow: [{caller: spiffe://td/x, expiresAfterUnused: 1d}]
    - name: b
      methods: [GET]
      allow: [spiffe://td/x]
      body: {maxBytes: 10}`) });
});
