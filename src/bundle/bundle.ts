import {
  CompactSign,
  compactVerify,
  decodeProtectedHeader,
  importPKCS8,
  importSPKI,
  type KeyLike,
} from 'jose';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { runPolicyTests } from '../policy-test/run';
import { loadPolicyDir } from '../policy/load';
import { isPolicyFile, isPolicyTestFile, listFiles } from '../policy/document/source';
import { formatProblem } from '../policy/document/problems';
import { GIT_VERSION_FILE, parseGitVersion, type GitVersion } from '../policy/document/git';
import { keyKindProblem } from './key-pem';

export const BUNDLE_TYPE = 'gatehouse-bundle+jws';
export const MAX_BUNDLE_BYTES = 10 * 1024 * 1024;
const ALGORITHMS = ['EdDSA', 'ES256', 'ES384'];

/** What a bundle carries: the files of a validated, tested policy set. */
export interface BundlePayload {
  readonly gatehouse_bundle: 1;
  /** Monotonic: a bundle is only ever replaced by one with a higher revision. */
  readonly revision: number;
  readonly created: string;
  /** Content hash of the policy set, as `serve` will compute it. */
  readonly version: string;
  readonly git: GitVersion | null;
  /** Relative file name → content; policies and their *.test.yaml files. */
  readonly files: Record<string, string>;
}

export class BundleError extends Error {}

/** `gatehouse bundle build`: validate, test, pack and sign. */
export async function buildBundle(
  dir: string,
  privateKeyPem: string,
  revision = Date.now(),
): Promise<{ jws: string; payload: BundlePayload; testsRun: number }> {
  const loaded = await loadPolicyDir(dir);
  if (!loaded.ok)
    throw new BundleError(
      `policies are invalid:\n${loaded.problems.map(formatProblem).join('\n')}`,
    );
  const tests = await runPolicyTests(dir);
  if (!tests.ok)
    throw new BundleError(
      `policy tests cannot run:\n${tests.problems.map(formatProblem).join('\n')}`,
    );
  const failed = tests.results.filter((r) => !r.passed);
  if (failed.length > 0)
    throw new BundleError(
      `${failed.length} policy test(s) fail: ${failed.map((f) => `${f.suite} › ${f.name}`).join('; ')}`,
    );

  const files: Record<string, string> = {};
  for (const file of await listFiles(dir, (n) => isPolicyFile(n) || isPolicyTestFile(n))) {
    files[path.relative(dir, file)] = await readFile(file, 'utf8');
  }
  const payload: BundlePayload = {
    gatehouse_bundle: 1,
    revision,
    created: new Date().toISOString(),
    version: loaded.set.version,
    git: loaded.set.git ?? null,
    files,
  };
  const { key, alg } = await privateKey(privateKeyPem);
  const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg, typ: BUNDLE_TYPE })
    .sign(key);
  return { jws, payload, testsRun: tests.results.length };
}

/**
 * Verifies a bundle's signature with the operator's public key and checks its shape. Throws
 * BundleError for anything unsigned, tampered, signed by another key or malformed.
 */
export async function verifyBundle(text: string, publicKeyPem: string): Promise<BundlePayload> {
  if (text.length > MAX_BUNDLE_BYTES) throw new BundleError('bundle is too large');
  let header;
  try {
    header = decodeProtectedHeader(text.trim());
  } catch {
    throw new BundleError('not a signed bundle (expected a compact JWS)');
  }
  if (header.typ !== BUNDLE_TYPE)
    throw new BundleError(`not a Gatehouse bundle (typ ${String(header.typ)})`);
  if (typeof header.alg !== 'string' || !ALGORITHMS.includes(header.alg))
    throw new BundleError(`bundle algorithm ${String(header.alg)} is not accepted`);
  const key = await publicKey(publicKeyPem, header.alg);
  let payloadBytes: Uint8Array;
  try {
    ({ payload: payloadBytes } = await compactVerify(text.trim(), key, { algorithms: ALGORITHMS }));
  } catch {
    throw new BundleError(
      'bundle signature does not verify (tampered, or signed with another key)',
    );
  }
  let payload: BundlePayload;
  try {
    payload = JSON.parse(new TextDecoder().decode(payloadBytes)) as BundlePayload;
  } catch {
    throw new BundleError('bundle payload is not JSON');
  }
  if (
    payload.gatehouse_bundle !== 1 ||
    !Number.isSafeInteger(payload.revision) ||
    typeof payload.files !== 'object' ||
    payload.files === null
  ) {
    throw new BundleError('bundle payload has an unknown shape');
  }
  for (const [name, content] of Object.entries(payload.files)) {
    if (!safeName(name) || typeof content !== 'string')
      throw new BundleError(`bundle holds an unsafe file name or content: ${name.slice(0, 64)}`);
  }
  return payload;
}

/** Writes the bundle's files to a fresh private directory, then validates and tests them there. */
export async function unpackBundle(payload: BundlePayload): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `gatehouse-bundle-${payload.revision}-`));
  try {
    await chmod(dir, 0o700);
    for (const [name, content] of Object.entries(payload.files)) {
      await mkdir(path.dirname(path.join(dir, name)), { recursive: true, mode: 0o700 });
      await writeFile(path.join(dir, name), content, { mode: 0o600 });
    }
    // The commit travels in the signed payload; served from here, /v1/policy and audit records keep it.
    const git = parseGitVersion(payload.git);
    if (git)
      await writeFile(path.join(dir, GIT_VERSION_FILE), JSON.stringify(git), { mode: 0o600 });
    const loaded = await loadPolicyDir(dir);
    // Problems name files as the bundle does, not by the random folder: the message is the cause, stable across polls.
    if (!loaded.ok)
      throw new BundleError(
        `bundle policies are invalid:\n${loaded.problems.map((p) => formatProblem({ ...p, file: path.relative(dir, p.file) })).join('\n')}`,
      );
    if (loaded.set.version !== payload.version)
      throw new BundleError('bundle version does not match its content');
    const tests = await runPolicyTests(dir);
    if (!tests.ok || tests.results.some((r) => !r.passed))
      throw new BundleError('bundle policy tests do not pass');
    return dir;
  } catch (err) {
    await removeBundleDir(dir);
    throw err;
  }
}

/** Removes a folder unpackBundle made; never throws (a leftover is not worth a failed poll). */
export async function removeBundleDir(dir: string): Promise<void> {
  if (!path.basename(dir).startsWith('gatehouse-bundle-')) return;
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

/** Relative paths of plain segments only (no absolute paths, no traversal), policy files only. */
function safeName(name: string): boolean {
  const segments = name.split('/');
  const last = segments[segments.length - 1]!;
  return (
    segments.length <= 8 &&
    segments.every((s) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(s) && !s.includes('..')) &&
    (isPolicyFile(last) || isPolicyTestFile(last))
  );
}

async function privateKey(pem: string): Promise<{ key: KeyLike; alg: string }> {
  const problem = keyKindProblem(pem, 'private', 'the signing key');
  if (problem) throw new BundleError(problem);
  const key = decodeKey(() => createPrivateKey(pem), 'the signing key');
  const alg = algorithmOf(key);
  // Exported as PKCS#8 so SEC1 (`EC PRIVATE KEY`) files sign too.
  return {
    key: await importPKCS8(key.export({ type: 'pkcs8', format: 'pem' }).toString(), alg),
    alg,
  };
}

async function publicKey(pem: string, headerAlg: string): Promise<KeyLike> {
  const problem = keyKindProblem(pem, 'public', 'the bundle key');
  if (problem) throw new BundleError(problem);
  const alg = algorithmOf(decodeKey(() => createPublicKey(pem), 'the bundle key'));
  if (alg !== headerAlg)
    throw new BundleError(`bundle is signed with ${headerAlg} but the bundle key is ${alg}`);
  return importSPKI(pem, alg);
}

/** OpenSSL's decoder errors (`DECODER routines::unsupported`) in words. */
function decodeKey(decode: () => KeyObject, what: string): KeyObject {
  try {
    return decode();
  } catch {
    throw new BundleError(
      `${what} cannot be decoded: a damaged PEM, or a key type other than Ed25519 or ECDSA P-256/P-384`,
    );
  }
}

function algorithmOf(key: KeyObject): string {
  if (key.asymmetricKeyType === 'ed25519') return 'EdDSA';
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'ES256';
    if (curve === 'secp384r1') return 'ES384';
  }
  throw new BundleError('bundle keys must be Ed25519 or ECDSA P-256/P-384');
}
