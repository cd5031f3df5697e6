export type Severity = 'error' | 'warning';

export interface PolicyProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly severity: Severity;
  readonly message: string;
}

export function formatProblem(p: PolicyProblem): string {
  // Line 0 means the problem is with the file or directory as a whole: no position to show.
  const where = p.line > 0 ? `${p.file}:${p.line}:${p.col}` : `${p.file}:`;
  return `${where} ${p.severity === 'warning' ? 'warning: ' : ''}${p.message}`;
}
