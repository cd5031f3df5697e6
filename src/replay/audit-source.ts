import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';

/** An audit line longer than this is not one Gatehouse wrote; it is skipped without being held. */
export const MAX_AUDIT_LINE = 256 * 1024;

export interface AuditLine {
  readonly text: string;
  /** `file:line`, for messages. */
  readonly where: string;
}

export interface SourceCounts {
  /** Lines dropped for being longer than MAX_AUDIT_LINE. */
  overlong: number;
}

/**
 * The lines of each audit file in turn (rotated pieces oldest first, as given; `-` is stdin),
 * streamed: memory holds one chunk and at most one line, whatever the files' size.
 */
export async function* auditLines(
  files: readonly string[],
  counts: SourceCounts,
  stdin: Readable = process.stdin,
): AsyncGenerator<AuditLine> {
  for (const file of files) {
    const stream = file === '-' ? stdin : createReadStream(file);
    const name = file === '-' ? '(stdin)' : file;
    let pending = '';
    let skipping = false;
    let lineNo = 0;
    stream.setEncoding('utf8');
    for await (const chunk of stream as AsyncIterable<string>) {
      let start = 0;
      for (let nl = chunk.indexOf('\n'); nl !== -1; nl = chunk.indexOf('\n', start)) {
        lineNo++;
        const piece = chunk.slice(start, nl);
        start = nl + 1;
        if (skipping || pending.length + piece.length > MAX_AUDIT_LINE) {
          if (!skipping) counts.overlong++;
          skipping = false;
          pending = '';
          continue;
        }
        const text = pending === '' ? piece : pending + piece;
        pending = '';
        if (text.length > 0) yield { text, where: `${name}:${lineNo}` };
      }
      if (skipping) continue;
      const rest = chunk.slice(start);
      if (pending.length + rest.length > MAX_AUDIT_LINE) {
        counts.overlong++;
        skipping = true;
        pending = '';
      } else {
        pending += rest;
      }
    }
    if (pending.length > 0 && !skipping) yield { text: pending, where: `${name}:${lineNo + 1}` };
  }
}
