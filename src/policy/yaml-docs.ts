import { isMap, isScalar, LineCounter, parseAllDocuments, Scalar, visit, type Document, type Node } from 'yaml';
import type { PolicyProblem, Severity } from './types';
import type { SourceFile } from './source';

export type YamlPath = readonly (string | number)[];

/** One YAML document with what is needed to point at any of its nodes. */
export interface LocatedDoc {
  readonly file: string;
  readonly value: unknown;
  readonly doc: Document.Parsed;
  readonly lines: LineCounter;
  /** A problem located at `at` (or at the nearest ancestor that has a position). */
  problem(at: YamlPath, message: string, severity?: Severity): PolicyProblem;
  /** 1-based line of the node at `at`. */
  lineOf(at: YamlPath): number;
  /** A problem located at the key `key` of the map at `at`. */
  keyProblem(at: YamlPath, key: string, message: string): PolicyProblem;
  /** A problem at character `offset` of the string scalar at `at` (an expression inside YAML). */
  problemInText(at: YamlPath, offset: number, message: string): PolicyProblem;
}

/** Parses every document of a file, keeping positions. Syntax errors become problems. */
export function parseYamlDocuments(source: SourceFile): { docs: LocatedDoc[]; problems: PolicyProblem[] } {
  const lines = new LineCounter();
  const problems: PolicyProblem[] = [];
  const docs: LocatedDoc[] = [];
  const parsed = parseAllDocuments(source.text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if ('empty' in parsed) {
    // A file of only comments or whitespace: an EmptyStream with its own errors.
    for (const e of parsed.errors) problems.push(at(source.file, lines, e.pos[0], firstLine(e.message)));
    return { docs, problems };
  }
  for (const doc of parsed) {
    const errors = [...doc.errors, ...doc.warnings];
    for (const e of errors) problems.push(at(source.file, lines, e.pos[0], firstLine(e.message)));
    if (doc.errors.length > 0 || doc.contents === null) continue;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      problems.push(unreadable(source.file, lines, doc, err as Error));
      continue;
    }
    docs.push(locate(source.file, doc, lines, value, source.text));
  }
  return { docs, problems };
}

function locate(file: string, doc: Document.Parsed, lines: LineCounter, value: unknown, text: string): LocatedDoc {
  const offsetOf = (path: YamlPath): number => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true) as Node | undefined;
      if (node && typeof node === 'object' && 'range' in node && node.range) return node.range[0];
    }
    return doc.range[0];
  };
  return {
    file,
    value,
    doc,
    lines,
    problem: (path, message, severity = 'error') => at(file, lines, offsetOf(path), message, severity),
    lineOf: (path) => lines.linePos(offsetOf(path)).line,
    problemInText: (path, offset, message) => {
      const node = doc.getIn(path, true);
      if (!isScalar(node) || !node.range) return at(file, lines, offsetOf(path), message);
      return at(file, lines, scalarOffset(node, text, offset), message);
    },
    keyProblem: (path, key, message) => {
      const map = doc.getIn(path, true);
      if (isMap(map)) {
        for (const pair of map.items) {
          if (isScalar(pair.key) && pair.key.value === key && pair.key.range) {
            return at(file, lines, pair.key.range[0], message);
          }
        }
      }
      return at(file, lines, offsetOf(path), message);
    },
  };
}

/**
 * Where character `offset` of a scalar's value is in the file. Exact for plain and quoted
 * scalars without escapes and for block scalars (`|`, `>`); otherwise the nearest line.
 */
function scalarOffset(node: Scalar, text: string, offset: number): number {
  const start = node.range![0];
  const value = String(node.value);
  const lineInValue = value.slice(0, offset).split('\n').length - 1;
  const colInValue = offset - (value.lastIndexOf('\n', offset - 1) + 1);
  if (node.type === Scalar.BLOCK_LITERAL || node.type === Scalar.BLOCK_FOLDED) {
    // Content starts on the line after the header; every content line shares one indent.
    let lineStart = text.indexOf('\n', start) + 1;
    for (let i = 0; i < lineInValue && lineStart > 0; i++) lineStart = text.indexOf('\n', lineStart) + 1;
    if (lineStart <= 0) return start;
    let indent = 0;
    while (text.charCodeAt(lineStart + indent) === 0x20) indent++;
    return lineStart + indent + colInValue;
  }
  const quoted = node.type === Scalar.QUOTE_DOUBLE || node.type === Scalar.QUOTE_SINGLE ? 1 : 0;
  if (lineInValue === 0) return start + quoted + colInValue;
  let lineStart = start;
  for (let i = 0; i < lineInValue; i++) lineStart = text.indexOf('\n', lineStart) + 1;
  return lineStart;
}

/** Points at the alias that could not be resolved: in policies that is usually an unquoted `*`. */
function unreadable(file: string, lines: LineCounter, doc: Document.Parsed, err: Error): PolicyProblem {
  let offset = doc.range[0];
  let hint = '';
  visit(doc, {
    Alias(_key, alias) {
      if (alias.resolve(doc) === undefined && alias.range) {
        offset = alias.range[0];
        hint = `; '*${alias.source}' is read as a YAML alias: quote values that start with '*'`;
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return at(file, lines, offset, `cannot read document: ${firstLine(err.message)}${hint}`);
}

function at(file: string, lines: LineCounter, offset: number, message: string, severity: Severity = 'error'): PolicyProblem {
  const pos = lines.linePos(offset);
  return { file, line: pos.line, col: pos.col, severity, message };
}

function firstLine(message: string): string {
  const i = message.indexOf('\n');
  return i === -1 ? message : message.slice(0, i);
}

/** `spec.rules[0].name` from ['spec','rules',0,'name'], for messages. */
export function describePath(path: YamlPath): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  return out;
}
