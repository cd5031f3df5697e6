/**
 * What kind of key a PEM text holds, from its armour label, so a public key given where a
 * private one is needed (or the reverse) is named in words before OpenSSL's decoder reports
 * `DECODER routines::unsupported`.
 */
export type PemKind = 'private' | 'encrypted-private' | 'public' | 'certificate' | 'other' | 'none';

export function pemKind(text: string): PemKind {
  const label = /-----BEGIN ([A-Z0-9 ]{1,40})-----/.exec(text.slice(0, 64 * 1024))?.[1];
  if (label === undefined) return 'none';
  if (label === 'ENCRYPTED PRIVATE KEY') return 'encrypted-private';
  if (label === 'PRIVATE KEY' || label === 'EC PRIVATE KEY' || label === 'RSA PRIVATE KEY')
    return 'private';
  if (label === 'PUBLIC KEY' || label === 'RSA PUBLIC KEY') return 'public';
  if (label === 'CERTIFICATE') return 'certificate';
  return 'other';
}

/** Why `text` cannot be the key `needed`, or undefined when its kind fits. `flag` names where it came from. */
export function keyKindProblem(
  text: string,
  needed: 'private' | 'public',
  flag: string,
): string | undefined {
  const kind = pemKind(text);
  if (kind === needed) return undefined;
  const want =
    needed === 'private'
      ? 'a private key (PKCS#8 PEM, -----BEGIN PRIVATE KEY-----)'
      : 'a public key (PEM, -----BEGIN PUBLIC KEY-----)';
  switch (kind) {
    case 'public':
      return `${flag} is a public key; it must be ${want}, the one you keep secret and sign with`;
    case 'private':
      return `${flag} is a private key; it must be ${want} (make it with: openssl pkey -in private.pem -pubout -out public.pem), so no server holds the signing key`;
    case 'encrypted-private':
      return `${flag} is an encrypted private key; it must be ${want}, unencrypted`;
    case 'certificate':
      return `${flag} is a certificate; it must be ${want}`;
    case 'none':
      return `${flag} is not a PEM file; it must be ${want}`;
    default:
      return `${flag} holds an unknown PEM block; it must be ${want}`;
  }
}
