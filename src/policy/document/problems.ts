export type Severity = 'error' | 'warning';

export interface PolicyProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly severity: Severity;
  readonly message: string;
}

/** An error with a file or directory as a whole (unreadable, empty): line 0, no position. */
export function wholeFileError(file: string, message: string): PolicyProblem {
  return { file, line: 0, col: 0, severity: 'error', message };
}

/** The files readSources refused for their size, each an error at its first line. */
export function tooLargeErrors(files: readonly string[], message: string): PolicyProblem[] {
  return files.map((file) => ({ file, line: 1, col: 1, severity: 'error', message }));
}

export function formatProblem(p: PolicyProblem): string {
  // Line 0 means the problem is with the file or directory as a whole: no position to show.
  const where = p.line > 0 ? `${p.file}:${p.line}:${p.col}` : `${p.file}:`;
  return `${where} ${p.severity === 'warning' ? 'warning: ' : ''}${p.message}`;
}
