import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { flagName } from '../../src/cli/option-table';
import { SERVE_FLAGS_BEGIN, SERVE_FLAGS_END, serveFlagTable } from '../../src/cli/serve-docs';
import { addServeOptions, SERVE_OPTIONS, serveFlagsProblem } from '../../src/cli/serve-options';

const DOCS = path.resolve(__dirname, '..', '..', 'docs', 'cli.md');

function parse(args: string[]): Record<string, unknown> {
  const command = addServeOptions(new Command()).exitOverride();
  command.parse(args, { from: 'user' });
  return command.opts();
}

test('the serve flag table of docs/cli.md is the one the option table renders (run `make docs`)', () => {
  const text = readFileSync(DOCS, 'utf8');
  const begin = text.indexOf(SERVE_FLAGS_BEGIN);
  const end = text.indexOf(SERVE_FLAGS_END);
  expect(begin).toBeGreaterThan(0);
  expect(end).toBeGreaterThan(begin);
  expect(text.slice(begin + SERVE_FLAGS_BEGIN.length + 1, end)).toBe(serveFlagTable());
});

test('the docs table names every serve flag and every environment twin', () => {
  const table = serveFlagTable();
  for (const row of Object.values(SERVE_OPTIONS)) {
    expect(table).toContain(`\`${flagName(row)}`);
    if (row.env) expect(table.includes(row.env) || table.includes('`GATEHOUSE_…`')).toBe(true);
  }
});

test('each environment twin is GATEHOUSE_ and the flag in capitals', () => {
  for (const row of Object.values(SERVE_OPTIONS)) {
    const name = flagName(row);
    if (name.startsWith('--no-')) expect(row.env).toBeUndefined();
    else expect(row.env).toBe(`GATEHOUSE_${name.slice(2).replace(/-/g, '_').toUpperCase()}`);
  }
});

describe('flags received over IPC are checked again', () => {
  const flags = parse(['--grpc-port', '0', '--trust-domain', 'a.example,b.example']);

  test('flags as commander parsed them pass', () => {
    expect(serveFlagsProblem(flags)).toEqual(flags);
    expect(serveFlagsProblem(parse(['--listen-address', '[::1]', '--trust-xfcc']))).toMatchObject({
      listenAddress: '::1',
      trustXfcc: true,
    });
  });

  test.each([
    ['not an object', 'x', 'not an object of flags'],
    ['an array', [], 'not an object of flags'],
    [
      'a key outside the table',
      { ...flags, nodeOptions: '--inspect' },
      'nodeOptions is not a serve flag',
    ],
    ['a key of every object', JSON.parse('{"constructor": 1}'), 'constructor is not a serve flag'],
    [
      'a prototype key',
      JSON.parse('{"__proto__": {"grpcPort": 1}}'),
      '__proto__ is not a serve flag',
    ],
    [
      'a port out of range',
      { ...flags, grpcPort: 65536 },
      '--grpc-port must be a port number from 0 to 65535',
    ],
    ['a number as text', { ...flags, grpcPort: '9191' }, '--grpc-port is not a parsed value'],
    ['a fraction', { ...flags, jwtLeeway: 1.5 }, '--jwt-leeway must be seconds from 0 to 300'],
    [
      'a choice not offered',
      { ...flags, httpDialect: 'haproxy' },
      '--http-dialect must be one of envoy, nginx, traefik',
    ],
    [
      'a switch that is text',
      { ...flags, trustXfcc: 'false' },
      '--trust-xfcc must be true or false',
    ],
    [
      'a list with a number',
      { ...flags, trustDomain: ['a.example', 7] },
      '--trust-domain must be a list of strings',
    ],
    ['a path that is a number', { ...flags, auditLog: 7 }, '--audit-log must be a string'],
    ['an unbracketed bad address', { ...flags, listenAddress: 'a b' }, '--listen-address'],
    [
      'a defaulted flag left out',
      { ...flags, drainTimeout: undefined },
      '--drain-timeout is missing',
    ],
  ])('%s is refused', (_what, value, problem) => {
    expect(serveFlagsProblem(value)).toEqual(expect.stringContaining(problem));
  });
});
