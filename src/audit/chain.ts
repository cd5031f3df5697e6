import * as crypto from 'node:crypto';

/** SHA-256 in hex; the one-shot `crypto.hash` (Node ≥ 20.12) skips building a Hash object. */
export const sha256Hex: (text: string) => string =
  typeof crypto.hash === 'function' ? (text) => crypto.hash('sha256', text, 'hex') : (text) => crypto.createHash('sha256').update(text).digest('hex');

export const GENESIS_HASH = '0'.repeat(64);

/**
 * Tamper evidence for the audit log. Every record of a chain (one per process) carries the
 * chain id, a sequence number, the hash of the previous record and its own hash, which is
 * the SHA-256 of the record's exact JSON text without the hash field. Editing, removing or
 * reordering a record breaks the chain at that record.
 */
export class HashChain {
  readonly id = crypto.randomBytes(8).toString('hex');
  private seq = 0;
  private prev = GENESIS_HASH;

  /** `line`: one serialized record, `{...}` and a newline. */
  readonly seal = (line: string): string => this.sealFields(line.slice(1, line.lastIndexOf('}')));

  /** `fields`: a record's JSON members without the braces. Returns the sealed line. */
  sealFields(fields: string): string {
    const body = `{"chain":"${this.id}","seq":${this.seq},"prev_hash":"${this.prev}",${fields}}`;
    const hash = sha256Hex(body);
    this.prev = hash;
    this.seq++;
    return `${body.slice(0, -1)},"hash":"${hash}"}\n`;
  }
}

export interface VerifyResult {
  ok: boolean;
  records: number;
  chains: number;
  /** The first broken record: 1-based line and why. */
  error?: { line: number; message: string };
}

interface ChainState {
  seq: number;
  hash: string;
}

/** Verifies every chain in the text (several chains may be interleaved, e.g. workers on stdout). */
export function verifyAuditText(text: string): VerifyResult {
  const chains = new Map<string, ChainState>();
  const lines = text.split('\n');
  const last = lines.length - 1;
  let records = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const lineNo = i + 1;
    if (line === '') {
      if (i === last) break;
      return fail(lineNo, 'empty line inside the log');
    }
    if (i === last) return fail(lineNo, 'last record is truncated (no final newline)');
    let record: { chain?: unknown; seq?: unknown; prev_hash?: unknown; hash?: unknown };
    try {
      record = JSON.parse(line) as typeof record;
    } catch {
      return fail(lineNo, 'not a JSON record (altered or truncated)');
    }
    const { chain, seq, prev_hash: prevHash, hash } = record;
    if (typeof chain !== 'string' || typeof seq !== 'number' || typeof prevHash !== 'string' || typeof hash !== 'string') {
      return fail(lineNo, 'record has no chain, seq, prev_hash or hash');
    }
    const suffix = `,"hash":"${hash}"}`;
    if (!/^[0-9a-f]{64}$/.test(hash) || !line.endsWith(suffix)) {
      return fail(lineNo, 'hash field is not where the writer puts it (record altered)');
    }
    const body = `${line.slice(0, -suffix.length)}}`;
    if (sha256Hex(body) !== hash) return fail(lineNo, `record altered: content does not match its hash (chain ${chain}, seq ${seq})`);
    const state = chains.get(chain);
    const expectedSeq = state ? state.seq + 1 : 0;
    const expectedPrev = state ? state.hash : GENESIS_HASH;
    if (seq !== expectedSeq) {
      return fail(lineNo, seq > expectedSeq ? `record(s) removed: chain ${chain} jumps from seq ${expectedSeq - 1} to ${seq}` : `record out of order: chain ${chain} seq ${seq} after ${expectedSeq - 1}`);
    }
    if (prevHash !== expectedPrev) return fail(lineNo, `prev_hash does not match the previous record of chain ${chain} (seq ${seq})`);
    chains.set(chain, { seq, hash });
    records++;
  }
  return { ok: true, records, chains: chains.size };

  function fail(line: number, message: string): VerifyResult {
    return { ok: false, records, chains: chains.size, error: { line, message } };
  }
}
