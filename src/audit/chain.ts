import * as crypto from 'node:crypto';
import type { KeyObject } from 'node:crypto';

/** SHA-256 in hex; the one-shot `crypto.hash` (Node ≥ 20.12) skips building a Hash object. */
export const sha256Hex: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'hex')
    : (text) => crypto.createHash('sha256').update(text).digest('hex');

export const GENESIS_HASH = '0'.repeat(64);

/** A record's hash: HMAC-SHA256 with the operator's key, plain SHA-256 without one. */
function recordDigest(key: KeyObject | undefined): (body: string) => string {
  return key ? (body) => crypto.createHmac('sha256', key).update(body).digest('hex') : sha256Hex;
}

/** The record member that marks a keyed record; also the only algorithm there is. */
export const MAC_ALGORITHM = 'hmac-sha256';

/**
 * Tamper evidence for the audit log. Every record of a chain (one per process) carries the
 * chain id, a sequence number, the hash of the previous record and its own hash, which is
 * the SHA-256 of the record's exact JSON text without the hash field. Editing, removing or
 * reordering a record breaks the chain at that record.
 *
 * Anyone who can write the file can also recompute every hash after an edit. With an
 * operator-held `key`, the hash is HMAC-SHA256(key, text) instead and the record says so
 * (`"mac":"hmac-sha256"`, after `prev_hash`, so it is covered by the MAC and the hash stays
 * last); without the key nobody can produce a record that verifies.
 */
export class HashChain {
  readonly id = crypto.randomBytes(8).toString('hex');
  private seq = 0;
  private prev = GENESIS_HASH;
  // Everything that is the same for every record is joined once here, so an unkeyed chain
  // builds its records with no more work than before keys existed.
  private readonly head = `{"chain":"${this.id}","seq":`;
  private readonly afterPrev: string;
  private readonly digest: (body: string) => string;

  constructor(key?: KeyObject) {
    this.afterPrev = key ? `","mac":"${MAC_ALGORITHM}",` : '",';
    this.digest = recordDigest(key);
  }

  /** `line`: one serialized record, `{...}` and a newline. */
  readonly seal = (line: string): string => this.sealFields(line.slice(1, line.lastIndexOf('}')));

  /** `fields`: a record's JSON members without the braces. Returns the sealed line. */
  sealFields(fields: string): string {
    const body = `${this.head}${this.seq},"prev_hash":"${this.prev}${this.afterPrev}${fields}}`;
    const hash = this.digest(body);
    this.prev = hash;
    this.seq++;
    return `${body.slice(0, -1)},"hash":"${hash}"}\n`;
  }
}

export interface VerifyResult {
  ok: boolean;
  records: number;
  chains: number;
  /** The first broken record: 1-based line (of `piece`, when several were given) and why. */
  error?: { line: number; message: string; piece?: string };
  /** Where each chain ends: the anchor (`--from-seq`, `--from-hash`) for verifying the piece after this one. */
  ends?: ChainEnd[];
  /** Chains that started mid-way, accepted on their own first record (`midChain`): nothing before them was checked. */
  unanchored?: ChainEnd[];
}

export interface ChainEnd {
  chain: string;
  seq: number;
  hash: string;
}

/** Where verification picks up when a piece does not start at a chain's first record. */
export interface VerifyOptions {
  /** The last record before the first piece: the chain that continues from it must start at `seq + 1` with `prev_hash` = `hash`. */
  readonly anchor?: { readonly seq: number; readonly hash: string };
  /** Accept chains that start mid-way on their first record's own `prev_hash`, and say so. */
  readonly midChain?: boolean;
}

interface ChainState {
  seq: number;
  hash: string;
}

/**
 * Verifies every chain in the text (several chains may be interleaved, e.g. workers on stdout).
 * With `key`, every record must be keyed and carry that key's HMAC: an unkeyed record is
 * refused, since stripping the `mac` member and recomputing plain hashes is exactly how the
 * keyless attacker would rewrite a keyed log. Without `key`, a keyed record is refused rather
 * than passed unchecked.
 */
export function verifyAuditText(
  text: string,
  key?: KeyObject,
  options: VerifyOptions = {},
): VerifyResult {
  return verifyAuditPieces([{ name: '', text }], key, options);
}

/**
 * Verifies rotated pieces of one log, oldest first, as one stream: a chain may run on from one
 * piece into the next (logrotate renames the file; the writer reopens it and the chain goes on).
 */
export function verifyAuditPieces(
  pieces: readonly { name: string; text: string }[],
  key?: KeyObject,
  options: VerifyOptions = {},
): VerifyResult {
  const digest = recordDigest(key);
  const chains = new Map<string, ChainState>();
  const unanchored: ChainEnd[] = [];
  let anchorUsed = false;
  let records = 0;
  let piece = '';
  for (const p of pieces) {
    piece = p.name;
    const broken = verifyPiece(p.text);
    if (broken) return broken;
  }
  if (options.anchor && !anchorUsed) {
    return fail(
      0,
      `no chain continues from the anchor (seq ${options.anchor.seq}, hash ${options.anchor.hash.slice(0, 16)}…): the first record after it is missing or altered`,
    );
  }
  const ends = [...chains.entries()].map(([chain, s]) => ({ chain, seq: s.seq, hash: s.hash }));
  return {
    ok: true,
    records,
    chains: chains.size,
    ends,
    ...(unanchored.length > 0 ? { unanchored } : {}),
  };

  function verifyPiece(text: string): VerifyResult | undefined {
    const lines = text.split('\n');
    const last = lines.length - 1;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      const lineNo = i + 1;
      if (line === '') {
        if (i === last) break;
        return fail(lineNo, 'empty line inside the log');
      }
      if (i === last) return fail(lineNo, 'last record is truncated (no final newline)');
      let record: {
        chain?: unknown;
        seq?: unknown;
        prev_hash?: unknown;
        mac?: unknown;
        hash?: unknown;
      };
      try {
        record = JSON.parse(line) as typeof record;
      } catch {
        return fail(lineNo, 'not a JSON record (altered or truncated)');
      }
      const { chain, seq, prev_hash: prevHash, mac, hash } = record;
      if (
        typeof chain !== 'string' ||
        typeof seq !== 'number' ||
        typeof prevHash !== 'string' ||
        typeof hash !== 'string'
      ) {
        return fail(lineNo, 'record has no chain, seq, prev_hash or hash');
      }
      const suffix = `,"hash":"${hash}"}`;
      if (!/^[0-9a-f]{64}$/.test(hash) || !line.endsWith(suffix)) {
        return fail(lineNo, 'hash field is not where the writer puts it (record altered)');
      }
      if (mac !== undefined && mac !== MAC_ALGORITHM) {
        return fail(
          lineNo,
          `record has an unknown mac ${JSON.stringify(mac).slice(0, 40)} (record altered)`,
        );
      }
      if (key && mac === undefined) {
        return fail(
          lineNo,
          `record is not keyed, but a key was given: without a MAC anyone could have written it (chain ${chain}, seq ${seq})`,
        );
      }
      if (!key && mac !== undefined) {
        return fail(
          lineNo,
          `record is keyed (${MAC_ALGORITHM}): a key is needed to verify it (audit verify --key FILE) (chain ${chain}, seq ${seq})`,
        );
      }
      const body = `${line.slice(0, -suffix.length)}}`;
      // Constant time, so timing does not reveal how much of a forged HMAC was right.
      if (
        !crypto.timingSafeEqual(Buffer.from(digest(body), 'latin1'), Buffer.from(hash, 'latin1'))
      ) {
        return fail(
          lineNo,
          key
            ? `record altered or wrong key: content does not match its HMAC (chain ${chain}, seq ${seq})`
            : `record altered: content does not match its hash (chain ${chain}, seq ${seq})`,
        );
      }
      const state = chains.get(chain) ?? startOf(chain, seq, prevHash);
      if (typeof state === 'string') return fail(lineNo, state);
      const expectedSeq = state.seq + 1;
      if (seq !== expectedSeq) {
        return fail(
          lineNo,
          seq > expectedSeq
            ? `record(s) removed: chain ${chain} jumps from seq ${expectedSeq - 1} to ${seq}`
            : `record out of order: chain ${chain} seq ${seq} after ${expectedSeq - 1}`,
        );
      }
      if (prevHash !== state.hash)
        return fail(
          lineNo,
          `prev_hash does not match the previous record of chain ${chain} (seq ${seq})`,
        );
      chains.set(chain, { seq, hash });
      records++;
    }
    return undefined;
  }

  /** The state "before" a chain's first record seen, or why that record cannot start it. */
  function startOf(chain: string, seq: number, prevHash: string): ChainState | string {
    if (seq === 0) return { seq: -1, hash: GENESIS_HASH };
    const anchor = options.anchor;
    if (anchor && !anchorUsed && seq === anchor.seq + 1) {
      anchorUsed = true;
      if (prevHash !== anchor.hash)
        return `chain ${chain} seq ${seq} does not continue from the anchor: its prev_hash is not the given hash (a record between them was altered or removed)`;
      return { seq: anchor.seq, hash: anchor.hash };
    }
    if (options.midChain && seq > 0) {
      unanchored.push({ chain, seq, hash: prevHash });
      return { seq: seq - 1, hash: prevHash };
    }
    return (
      `chain ${chain} starts at seq ${seq}, not 0: its first record(s) were removed, or this piece follows an earlier one (a rotated file). Verify the pieces together, oldest first, ` +
      `or give the last record before it (--from-seq ${seq - 1} --from-hash <its hash>), or accept the start unchecked (--mid-chain)`
    );
  }

  function fail(line: number, message: string): VerifyResult {
    return {
      ok: false,
      records,
      chains: chains.size,
      error: { line, message, ...(pieces.length > 1 || piece !== '' ? { piece } : {}) },
    };
  }
}
