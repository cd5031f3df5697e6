import {
  isMap,
  isScalar,
  LineCounter,
  parseAllDocuments,
  Scalar,
  visit,
  type Document,
  type Node,
} from 'yaml';
import type { PolicyProblem, Severity } from './problems';
import type { SourceFile } from './source';

import type { JsonPath } from '../json-pointer';

export type YamlPath = JsonPath;

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
export function parseYamlDocuments(source: SourceFile): {
  docs: LocatedDoc[];
  problems: PolicyProblem[];
} {
  const lines = new LineCounter();
  const problems: PolicyProblem[] = [];
  const docs: LocatedDoc[] = [];
  const parsed = parseAllDocuments(source.text, {
    lineCounter: lines,
    prettyErrors: false,
    uniqueKeys: true,
  });
  if ('empty' in parsed) {
    // A file of only comments or whitespace: an EmptyStream with its own errors.
    for (const e of parsed.errors)
      problems.push(at(source.file, lines, e.pos[0], firstLine(e.message)));
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

function locate(
  file: string,
  doc: Document.Parsed,
  lines: LineCounter,
  value: unknown,
  text: string,
): LocatedDoc {
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
    problem: (path, message, severity = 'error') =>
      at(file, lines, offsetOf(path), message, severity),
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
 * Where character `offset` of a scalar's value is in the file.
 *
 * The value is rebuilt from the source text with YAML's folding and escaping rules, noting
 * where each character came from; the rebuilt value must equal the parsed one, else the
 * scalar's start is returned. Adding the value offset to the scalar's start is wrong after an
 * escape or a `''`, in multi-line plain or quoted scalars, in folded blocks, and in literal
 * lines indented deeper than their block.
 */
function scalarOffset(node: Scalar, text: string, offset: number): number {
  const start = node.range![0];
  const end = node.range![1];
  const value = String(node.value);
  const block = node.type === Scalar.BLOCK_LITERAL || node.type === Scalar.BLOCK_FOLDED;
  const mapped = block
    ? mapBlockScalar(text, start, end, node.type === Scalar.BLOCK_FOLDED)
    : mapFlowScalar(text, start, end, node.type);
  if (mapped === undefined) return start;
  // Block scalars end with line breaks that chomping may keep or drop; they hold nothing to point at.
  const same = block
    ? mapped.value.replace(/\n+$/, '') === value.replace(/\n+$/, '')
    : mapped.value === value;
  if (!same) return start;
  if (offset < mapped.at.length) return mapped.at[offset]!;
  return mapped.end; // just past the last character: "unexpected end of expression"
}

interface MappedScalar {
  value: string;
  /** Source offset of each character of `value`. */
  at: number[];
  /** Source offset just after the last content character. */
  end: number;
}

const SIMPLE_ESCAPES: Record<string, string> = {
  '0': '\0',
  a: '\x07',
  b: '\b',
  t: '\t',
  '\t': '\t',
  n: '\n',
  v: '\v',
  f: '\f',
  r: '\r',
  e: '\x1b',
  ' ': ' ',
  '"': '"',
  '/': '/',
  '\\': '\\',
  N: '\u0085',
  _: '\u00a0',
  L: '\u2028',
  P: '\u2029',
};

/** Plain, single- and double-quoted scalars: line folding, `''` and backslash escapes. */
function mapFlowScalar(
  text: string,
  start: number,
  end: number,
  type: Scalar['type'],
): MappedScalar | undefined {
  const quote = type === Scalar.QUOTE_DOUBLE || type === Scalar.QUOTE_SINGLE ? 1 : 0;
  const from = start + quote;
  const to = end - quote;
  let value = '';
  const at: number[] = [];
  const emit = (chars: string, where: number): void => {
    value += chars;
    for (let k = 0; k < chars.length; k++) at.push(where);
  };
  const isBreak = (i: number): boolean =>
    text[i] === '\n' || (text[i] === '\r' && text[i + 1] === '\n');
  const afterBreak = (i: number): number => (text[i] === '\r' ? i + 2 : i + 1);
  let i = from;
  while (i < to) {
    const c = text[i]!;
    if (c === ' ' || c === '\t') {
      let j = i;
      while (j < to && (text[j] === ' ' || text[j] === '\t')) j++;
      if (j < to && isBreak(j))
        i = j; // trailing white space of a line is folded away
      else for (; i < j; i++) emit(text[i]!, i);
      continue;
    }
    if (isBreak(i)) {
      // A line break becomes a space, or n line feeds when n empty lines follow it.
      let j = afterBreak(i);
      let empty = 0;
      for (;;) {
        while (j < to && (text[j] === ' ' || text[j] === '\t')) j++;
        if (j < to && isBreak(j)) {
          empty++;
          j = afterBreak(j);
        } else break;
      }
      emit(empty === 0 ? ' ' : '\n'.repeat(empty), j);
      i = j;
      continue;
    }
    if (type === Scalar.QUOTE_SINGLE && c === "'" && text[i + 1] === "'") {
      emit("'", i);
      i += 2;
      continue;
    }
    if (type === Scalar.QUOTE_DOUBLE && c === '\\') {
      const e = text[i + 1] ?? '';
      if (isBreak(i + 1)) {
        // An escaped line break joins the lines without a space.
        let j = afterBreak(i + 1);
        while (j < to && (text[j] === ' ' || text[j] === '\t')) j++;
        i = j;
        continue;
      }
      const hex = e === 'x' ? 2 : e === 'u' ? 4 : e === 'U' ? 8 : 0;
      if (hex > 0) {
        const code = Number.parseInt(text.slice(i + 2, i + 2 + hex), 16);
        if (!Number.isInteger(code) || code > 0x10ffff) return undefined;
        emit(String.fromCodePoint(code), i);
        i += 2 + hex;
        continue;
      }
      const simple = SIMPLE_ESCAPES[e];
      if (simple === undefined) return undefined;
      emit(simple, i);
      i += 2;
      continue;
    }
    emit(c, i);
    i++;
  }
  return { value, at, end: to };
}

/** `|` and `>` scalars: content lines after the header, less the block's indentation. */
function mapBlockScalar(
  text: string,
  start: number,
  end: number,
  folded: boolean,
): MappedScalar | undefined {
  const header = text.slice(
    start,
    text.indexOf('\n', start) === -1 ? end : text.indexOf('\n', start),
  );
  if (/[1-9]/.test(header.replace(/#.*$/, ''))) return undefined; // explicit indentation: rare, not mapped
  const lines: { start: number; text: string }[] = [];
  let lineStart = text.indexOf('\n', start) + 1;
  while (lineStart > 0 && lineStart < end) {
    const nl = text.indexOf('\n', lineStart);
    const lineEnd = nl === -1 || nl > end ? end : nl;
    lines.push({ start: lineStart, text: text.slice(lineStart, lineEnd).replace(/\r$/, '') });
    lineStart = nl === -1 ? 0 : nl + 1;
  }
  const first = lines.find((l) => l.text.trim() !== '');
  if (!first) return undefined;
  const indent = first.text.length - first.text.trimStart().length;
  let value = '';
  const at: number[] = [];
  let endAt = start;
  let previous: 'none' | 'normal' | 'more' = 'none';
  let empty = 0;
  for (const line of lines) {
    if (line.text.trim() === '' && line.text.length <= indent) {
      empty++;
      continue;
    }
    const content = line.text.slice(indent);
    const kind = content.startsWith(' ') || content.startsWith('\t') ? 'more' : 'normal';
    const separator =
      previous === 'none'
        ? '\n'.repeat(empty)
        : folded && previous === 'normal' && kind === 'normal'
          ? empty === 0
            ? ' '
            : '\n'.repeat(empty)
          : '\n'.repeat(empty + 1);
    value += separator;
    for (let k = 0; k < separator.length; k++) at.push(line.start + indent);
    for (let k = 0; k < content.length; k++) at.push(line.start + indent + k);
    value += content;
    endAt = line.start + indent + content.length;
    previous = kind;
    empty = 0;
  }
  return { value, at, end: endAt };
}

/** Points at the alias that could not be resolved: in policies that is usually an unquoted `*`. */
function unreadable(
  file: string,
  lines: LineCounter,
  doc: Document.Parsed,
  err: Error,
): PolicyProblem {
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

function at(
  file: string,
  lines: LineCounter,
  offset: number,
  message: string,
  severity: Severity = 'error',
): PolicyProblem {
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
  for (const part of path)
    out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  return out;
}
