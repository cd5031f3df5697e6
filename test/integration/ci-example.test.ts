import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { ROOT, runCliAsync } from '../helpers/cli';

const WORKFLOW = path.join(ROOT, 'examples', 'ci', 'policy-review.yml');
const SAMPLE = path.join(ROOT, 'examples', 'ci', 'sample-audit.log');

describe('the example CI workflow', () => {
  const steps = (
    parse(readFileSync(WORKFLOW, 'utf8')) as { jobs: { review: { steps: { run?: string }[] } } }
  ).jobs.review.steps;
  const commands = steps
    .flatMap((s) => (s.run ?? '').replace(/\\\n\s*/g, '').split('\n'))
    .filter((l) => l.startsWith('node dist/cli/main.js '));

  test('runs validate, test, replay with --fail-on and bundle build', () => {
    expect(commands.map((c) => c.split(' ')[2])).toEqual(['validate', 'test', 'replay', 'bundle']);
    expect(commands[2]).toContain('--fail-on new-denials');
  });

  test('its commands pass on the example policies and sample audit log', async () => {
    expect((await runCliAsync(['audit', 'verify', SAMPLE])).status).toBe(0);
    expect((await runCliAsync(['validate', 'policies'])).status).toBe(0);
    const replay = await runCliAsync([
      'replay',
      'policies',
      '--audit',
      SAMPLE,
      '--base',
      'policies',
      '--markdown',
      '--fail-on',
      'new-denials',
    ]);
    expect(replay.status).toBe(0);
    expect(replay.stdout).toMatch(
      /^\*\*0 callers lose access, 0 gain it, [\d,]+ decisions unchanged/m,
    );
    expect(replay.stdout).toContain('- rules changed: none');
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-ci-'));
    const key = path.join(dir, 'bundle.key');
    writeFileSync(
      key,
      generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    const bundle = await runCliAsync([
      'bundle',
      'build',
      'policies',
      '-o',
      path.join(dir, 'policies.bundle'),
      '--key',
      key,
    ]);
    expect(bundle.status).toBe(0);
  }, 60_000);
});
