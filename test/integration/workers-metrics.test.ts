import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { spawnServe } from '../helpers/cli';
import { checkClient } from '../helpers/grpc-client';
import { policyDir, servicePolicy } from '../helpers/policies';
import { CHECKOUT_WEB, envoyCheckRequest } from '../helpers/requests';
import { waitFor } from '../helpers/wait';

async function metrics(adminPort: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
}

function value(text: string, line: string): number {
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? NaN : Number(found.slice(line.length + 1));
}

const policy = (caller: string) =>
  servicePolicy(
    'p',
    ['p'],
    `    - name: r
      allow: [${caller}]`,
  );

test('--workers 2: gatehouse_policy_reloads_total counts each reload once, rejected ones included, as one process does', async () => {
  const dir = policyDir({ 'p.yaml': policy(CHECKOUT_WEB) });
  const serve = await spawnServe([
    '--policies',
    dir,
    '--trust-domain',
    'shop.example',
    '--workers',
    '2',
    '--no-watch',
    '--audit-log',
    path.join(dir, '..', `${path.basename(dir)}-audit.log`),
  ]);
  try {
    await waitFor(
      async () => (await fetch(`http://127.0.0.1:${serve.adminPort}/readyz`)).status === 200,
      'workers ready',
    );
    writeFileSync(path.join(dir, 'p.yaml'), 'apiVersion: [');
    serve.child.kill('SIGHUP');
    await waitFor(
      async () =>
        value(
          await metrics(serve.adminPort),
          'gatehouse_policy_reloads_total{result="rejected"}',
        ) === 1,
      'rejected reload counted',
    );
    writeFileSync(path.join(dir, 'p.yaml'), policy('spiffe://shop.example/ns/other/sa/x'));
    serve.child.kill('SIGHUP');
    await waitFor(
      async () =>
        value(await metrics(serve.adminPort), 'gatehouse_policy_reloads_total{result="ok"}') === 1,
      'accepted reload counted once',
    );
    // Workers took it: the old caller is refused now.
    const client = checkClient(serve.port);
    await waitFor(
      async () =>
        (
          await client.check(
            envoyCheckRequest({ principal: CHECKOUT_WEB, host: 'p', method: 'GET', path: '/' }),
          )
        ).status?.code === 7,
      'new policy served',
    );
    client.close();
    const text = await metrics(serve.adminPort);
    expect(
      text.split('\n').filter((l) => l === '# TYPE gatehouse_policy_reloads_total counter'),
    ).toHaveLength(1);
    expect(value(text, 'gatehouse_policy_reloads_total{result="ok"}')).toBe(1);
    expect(value(text, 'gatehouse_policy_reloads_total{result="rejected"}')).toBe(1);
    // Sizes of the bounds are summed over the workers, as the pod holds them.
    expect(value(text, 'gatehouse_buckets')).toBe(0);
    expect(text).toContain('gatehouse_checks_shed_total{reason="in_flight"} 0');
  } finally {
    serve.child.kill('SIGTERM');
    expect(await serve.exited).toBe(0);
  }
});
