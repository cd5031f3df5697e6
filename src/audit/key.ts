import { createSecretKey, type KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { fileErrorText } from '../util/file-error';

/** HMAC-SHA256 keys shorter than its 32-byte output only weaken it. */
export const MIN_AUDIT_KEY_BYTES = 32;

/**
 * Reads the operator's audit key. The file's bytes are the key, less one trailing newline
 * (what `echo` and editors add). A KeyObject serializes as `{}` and prints no material, so a
 * stray log of the options cannot leak it. Errors name the file and the length, never bytes
 * of the key.
 */
export async function readAuditKey(file: string): Promise<KeyObject> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw new Error(fileErrorText(err, 'audit key', file), { cause: err });
  }
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) {
    end--;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
  }
  if (end < MIN_AUDIT_KEY_BYTES) {
    bytes.fill(0);
    throw new Error(
      `audit key ${file} is ${end} byte(s); it needs at least ${MIN_AUDIT_KEY_BYTES} (make one with: openssl rand -hex 32 > ${file})`,
    );
  }
  const key = createSecretKey(bytes.subarray(0, end));
  // createSecretKey copied the bytes; do not leave a second copy on the heap.
  bytes.fill(0);
  return key;
}
