import { createHash, createHmac, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { AuditLog } from '../../src/audit/audit-log';
import { HashChain, verifyAuditText } from '../../src/audit/chain';
import { MIN_AUDIT_KEY_BYTES, readAuditKey } from '../../src/audit/key';
import type { Decision } from '../../src/pipeline/decision';
import { sampleDecision } from '../helpers/decision';

const newKey = (): KeyObject => createSecretKey(randomBytes(32));
const sha256 = (body: string): string => createHash('sha256').update(body).digest('hex');

function chainOf(n: number, chain: HashChain): string[] {
  return Array.from({ length: n }, (_, i) =>
    chain.seal(
      `{"level":30,"msg":"decision","i":${i},"result":"deny","reason":"a \\"quoted\\" }"}\n`,
    ),
  );
}

/** The record's text without its hash, exactly as the writer hashed it. */
function bodyOf(line: string): string {
  return `${line.slice(0, line.lastIndexOf(',"hash":"'))}}`;
}

/**
 * What someone who can edit the file does after changing a record: recompute the hash of
 * that record and of every later one, relinking prev_hash, with whatever `digest` they have.
 */
function rehashFrom(lines: string[], from: number, digest: (body: string) => string): void {
  for (let i = from; i < lines.length; i++) {
    let body = bodyOf(lines[i]!);
    if (i > 0)
      body = body.replace(
        /"prev_hash":"[0-9a-f]{64}"/,
        `"prev_hash":"${(JSON.parse(lines[i - 1]!) as { hash: string }).hash}"`,
      );
    lines[i] = `${body.slice(0, -1)},"hash":"${digest(body)}"}\n`;
  }
}

describe('keyed audit chain (HMAC-SHA256)', () => {
  test('verifies with its key; mac follows prev_hash and hash stays the last field', () => {
    const key = newKey();
    const lines = chainOf(5, new HashChain(key));
    expect(verifyAuditText(lines.join(''), key)).toMatchObject({ ok: true, records: 5, chains: 1 });
    for (const line of lines) {
      expect(Object.keys(JSON.parse(line) as object)).toEqual([
        'chain',
        'seq',
        'prev_hash',
        'mac',
        'level',
        'msg',
        'i',
        'result',
        'reason',
        'hash',
      ]);
      expect(JSON.parse(line)).toMatchObject({ mac: 'hmac-sha256' });
      // The MAC covers the mac member itself, so it cannot be stripped or changed unnoticed.
      expect((JSON.parse(line) as { hash: string }).hash).toBe(
        createHmac('sha256', key).update(bodyOf(line)).digest('hex'),
      );
    }
  });

  test('the attack: a record altered and every later hash recomputed without the key is caught at that record', () => {
    const key = newKey();
    const lines = chainOf(5, new HashChain(key));
    lines[2] = lines[2]!.replace('"result":"deny"', '"result":"allow"');
    rehashFrom(lines, 2, sha256);
    const result = verifyAuditText(lines.join(''), key);
    expect(result.ok).toBe(false);
    expect(result.error).toEqual({
      line: 3,
      message: expect.stringContaining('does not match its HMAC'),
    });
    expect(result.records).toBe(2);

    // Nor does an HMAC under a key of the attacker's own help.
    const own = newKey();
    rehashFrom(lines, 2, (body) => createHmac('sha256', own).update(body).digest('hex'));
    expect(verifyAuditText(lines.join(''), key).error?.line).toBe(3);
  });

  test('the same attack on an unkeyed log succeeds: what the key is for', () => {
    const lines = chainOf(5, new HashChain());
    lines[2] = lines[2]!.replace('"result":"deny"', '"result":"allow"');
    rehashFrom(lines, 2, sha256);
    expect(verifyAuditText(lines.join(''))).toMatchObject({ ok: true, records: 5, chains: 1 });
  });

  test('stripping the mac members and rehashing the whole log with SHA-256 fails verification with the key', () => {
    const key = newKey();
    const lines = chainOf(4, new HashChain(key)).map((l) => l.replace(',"mac":"hmac-sha256"', ''));
    rehashFrom(lines, 0, sha256);
    const result = verifyAuditText(lines.join(''), key);
    expect(result.ok).toBe(false);
    expect(result.error).toEqual({
      line: 1,
      message: expect.stringContaining('not keyed, but a key was given'),
    });
  });

  test('a wrong key fails at record 1', () => {
    const lines = chainOf(3, new HashChain(newKey()));
    const result = verifyAuditText(lines.join(''), newKey());
    expect(result.ok).toBe(false);
    expect(result.records).toBe(0);
    expect(result.error).toEqual({ line: 1, message: expect.stringContaining('wrong key') });
  });

  test('without a key, verification fails at the first keyed record and says a key is needed', () => {
    const unkeyed = chainOf(2, new HashChain());
    const keyedChain = new HashChain(newKey());
    const keyed = chainOf(2, keyedChain);
    const result = verifyAuditText([unkeyed[0], unkeyed[1], keyed[0], keyed[1]].join(''));
    expect(result.ok).toBe(false);
    expect(result.records).toBe(2);
    expect(result.error!.line).toBe(3);
    expect(result.error!.message).toContain('a key is needed');
    expect(result.error!.message).toContain(`chain ${keyedChain.id}, seq 0`);
  });

  test('an unknown mac value is refused, with or without a key', () => {
    const key = newKey();
    const lines = chainOf(2, new HashChain(key));
    lines[1] = lines[1]!.replace('"mac":"hmac-sha256"', '"mac":"none"');
    expect(verifyAuditText(lines.join(''), key).error).toEqual({
      line: 2,
      message: expect.stringContaining('unknown mac'),
    });
    expect(verifyAuditText(lines.join('')).error?.line).toBe(1);
  });
});

describe('unkeyed audit chain', () => {
  test('is unchanged: no mac member, hash is SHA-256 of the record without it, verifies without a key', () => {
    const chain = new HashChain();
    const lines = chainOf(3, chain);
    expect(verifyAuditText(lines.join(''))).toMatchObject({ ok: true, records: 3, chains: 1 });
    let prev = '0'.repeat(64);
    lines.forEach((line, seq) => {
      const expectedBody = `{"chain":"${chain.id}","seq":${seq},"prev_hash":"${prev}","level":30,"msg":"decision","i":${seq},"result":"deny","reason":"a \\"quoted\\" }"}`;
      prev = sha256(expectedBody);
      expect(line).toBe(`${expectedBody.slice(0, -1)},"hash":"${prev}"}\n`);
    });
  });

  test('verifying it with a key fails: under a key every record must be keyed', () => {
    const result = verifyAuditText(chainOf(2, new HashChain()).join(''), newKey());
    expect(result.ok).toBe(false);
    expect(result.error).toEqual({ line: 1, message: expect.stringContaining('not keyed') });
  });
});

describe('AuditLog with a key', () => {
  test('writes keyed records that verify with the key only', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'gatehouse-audit-key-')), 'audit.log');
    const key = newKey();
    const audit = new AuditLog(file, { key });
    const d = (id: string): Decision => sampleDecision(id);
    for (let i = 0; i < 3; i++) audit.record(d(`k-${i}`));
    await audit.flush();
    const text = readFileSync(file, 'utf8');
    expect(verifyAuditText(text, key)).toMatchObject({ ok: true, records: 3, chains: 1 });
    expect(verifyAuditText(text).error?.message).toContain('a key is needed');
    expect(text.split('\n')[0]).toMatch(
      /^\{"chain":"[0-9a-f]{16}","seq":0,"prev_hash":"0{64}","mac":"hmac-sha256","level":30,"time":/,
    );
  });
});

describe('readAuditKey', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-key-'));
  const write = (name: string, content: string | Buffer): string => {
    const file = path.join(dir, name);
    writeFileSync(file, content, { mode: 0o600 });
    return file;
  };

  test('the key is the file less one trailing newline; 32 bytes are enough', async () => {
    const secret = 'k'.repeat(MIN_AUDIT_KEY_BYTES);
    for (const file of [
      write('lf', `${secret}\n`),
      write('crlf', `${secret}\r\n`),
      write('bare', secret),
    ]) {
      const key = await readAuditKey(file);
      expect(key.export().toString('latin1')).toBe(secret);
    }
    const binary = randomBytes(48);
    binary[47] = 0x41;
    expect((await readAuditKey(write('bin', binary))).export().equals(binary)).toBe(true);
  });

  test('a short key is refused with its length, never its bytes', async () => {
    const secret = 'short-secret-abcdefghijklmnopqr'; // 31 bytes
    const file = write('short', `${secret}\n`);
    await expect(readAuditKey(file)).rejects.toThrow(
      `audit key ${file} is 31 byte(s); it needs at least 32`,
    );
    const message = await readAuditKey(file).catch((e: Error) => e.message);
    expect(message).not.toContain(secret);
    await expect(readAuditKey(write('empty', '\n'))).rejects.toThrow('is 0 byte(s)');
  });

  test('an unreadable file is named with its error code', async () => {
    await expect(readAuditKey(path.join(dir, 'missing'))).rejects.toThrow(
      `audit key ${path.join(dir, 'missing')} does not exist`,
    );
  });

  test('the key prints and serializes without its material', async () => {
    const secret = 'printable-secret-'.repeat(3);
    const key = await readAuditKey(write('p', secret));
    expect(JSON.stringify({ key })).toBe('{"key":{}}');
    expect(inspect(key)).not.toContain(secret);
  });
});
