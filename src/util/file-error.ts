/**
 * A failed file or directory read in words a user acts on, instead of Node's errno text
 * (`ENOENT: no such file or directory, stat …`). `what` names the role: "policy directory",
 * "--bundle-key", "audit log"; `file` is left out where the caller already prints it.
 */
export function fileErrorText(err: unknown, what: string, file = ''): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const subject = file === '' ? what : `${what} ${file}`;
  switch (code) {
    case 'ENOENT':
      return `${subject} does not exist`;
    case 'EACCES':
    case 'EPERM':
      return `${subject} cannot be read: permission denied`;
    case 'EISDIR':
      return `${subject} is a directory, not a file`;
    case 'ENOTDIR':
      return `${subject} is not a directory (or a part of its path is a file)`;
    case 'ELOOP':
      return `${subject} is a loop of symbolic links`;
    default:
      return `${subject} cannot be read: ${code ?? (err instanceof Error ? err.message : String(err))}`;
  }
}
