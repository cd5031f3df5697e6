import { Option, type Command } from 'commander';
import { collectList } from './options';

/** How a flag appears in the docs flag table (docs/cli.md); see renderFlagTable. */
export interface FlagDocs {
  /** Placeholder shown after the flag, e.g. `DIR` in `--policies DIR`. */
  readonly value?: string;
  /** The default column when the option's own default does not say it (`none`, `off`, …). */
  readonly default?: string;
  readonly meaning: string;
}

/** Several flags documented in one row (e.g. the TLS trio); the row sits where its first flag is. */
export interface FlagDocsGroup {
  readonly group: string;
  readonly value?: string;
}

/**
 * One row of a declarative option table. The row's key in its table is the attribute name
 * commander derives from `flag` (`--grpc-port` → grpcPort), so the typed flags follow the table.
 */
export interface OptionRow<V> {
  /** Commander flags: `--grpc-port <port>`, `--trust-xfcc`, `--no-watch`. */
  readonly flag: string;
  readonly help: string;
  /** Parses and validates one value; throws commander's InvalidArgumentError with the error text. */
  readonly parse?: (value: string, previous: V | undefined) => V;
  readonly choices?: readonly string[];
  readonly default?: V;
  /** The environment twin, read when the flag is not given. */
  readonly env?: string;
  readonly docs: FlagDocs | FlagDocsGroup;
}

export function option<V>(row: OptionRow<V> & { readonly default: V }): typeof row;
export function option<V>(row: OptionRow<V>): OptionRow<V>;
export function option<V>(row: OptionRow<V>): OptionRow<V> {
  return row;
}

/** Any row, whatever its value type (a parser accepting `never` takes every row's parser). */
export type AnyRow = Omit<OptionRow<unknown>, 'parse'> & {
  readonly parse?: (value: string, previous: never) => unknown;
};
type ValueOf<R> = R extends OptionRow<infer V> ? V : never;
type WithDefault<T> = {
  [K in keyof T]: T[K] extends { readonly default: unknown } ? K : never;
}[keyof T];

/** The parsed flags of a table: a row with a default always has a value, the others may not. */
export type FlagsOf<T extends Record<string, AnyRow>> = {
  -readonly [K in WithDefault<T>]: ValueOf<T[K]>;
} & { -readonly [K in Exclude<keyof T, WithDefault<T>>]?: ValueOf<T[K]> };

/** Adds every row of `table` to `command`, in table order. */
export function addOptionTable(command: Command, table: Record<string, AnyRow>): Command {
  for (const [key, row] of Object.entries(table)) {
    const o = new Option(row.flag, row.help);
    if (o.attributeName() !== key)
      throw new Error(`option table: ${row.flag} is keyed ${key}, not ${o.attributeName()}`);
    if (row.parse) o.argParser(row.parse as (value: string, previous: unknown) => unknown);
    if (row.choices) o.choices(row.choices);
    // commander gives a negated flag its default (true) itself and keeps it out of the help.
    if (row.default !== undefined && !o.negate) o.default(row.default);
    if (row.env) o.env(row.env);
    command.addOption(o);
  }
  return command;
}

/**
 * Reads the environment twins of `table`'s switches as true or false. Commander sets a switch
 * whenever its variable exists, so `GATEHOUSE_TRUST_XFCC=false` would turn trust on: `false`
 * and `0` are removed from `env` before commander reads it, `true` and `1` stay, and any other
 * value is what is wrong, naming the variable (never its value, which may be anything).
 */
export function switchEnvProblem(
  table: Record<string, AnyRow>,
  env: NodeJS.ProcessEnv,
): string | undefined {
  for (const row of Object.values(table)) {
    if (!row.env || takesValue(row) || !Object.hasOwn(env, row.env)) continue;
    const value = env[row.env]!.trim().toLowerCase();
    if (value === 'false' || value === '0') delete env[row.env];
    else if (value !== 'true' && value !== '1')
      return `${row.env} must be true or false (or 1 or 0)`;
  }
  return undefined;
}

interface GroupText {
  /** The env column; by default every member's twin. */
  readonly env?: string;
  readonly default: string;
  readonly meaning: string;
}

/** `--grpc-port` of `--grpc-port <port>`. */
export function flagName(row: AnyRow): string {
  return row.flag.split(' ')[0]!;
}

/** Whether the flag takes a value (`--policies <dir>`) or is a switch (`--trust-xfcc`). */
export function takesValue(row: AnyRow): boolean {
  return row.flag.includes('<');
}

/** One value through the row's parser, as commander would parse it from the command line. */
export function parseValue(row: AnyRow, text: string): unknown {
  return row.parse
    ? (row.parse as (value: string, previous: undefined) => unknown)(text, undefined)
    : text;
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function flagCell(row: AnyRow, value: string | undefined): string {
  return `\`${escapeCell(value ? `${flagName(row)} ${value}` : flagName(row))}\``;
}

function envCell(row: AnyRow): string {
  if (!row.env) return '';
  return row.parse === collectList ? `\`${row.env}\` (comma list)` : `\`${row.env}\``;
}

function defaultCell(row: AnyRow, docs: FlagDocs): string {
  if (docs.default !== undefined) return docs.default;
  return row.default === undefined ? 'none' : `\`${String(row.default)}\``;
}

function tableRow(cells: readonly string[]): string {
  return `|${cells.map((c) => (c === '' ? ' ' : ` ${c} `)).join('|')}|`;
}

/** The markdown flag table of `table`, one row per flag or group, in table order. */
export function renderFlagTable(
  table: Record<string, AnyRow>,
  groups: Record<string, GroupText>,
): string {
  const rows = Object.values(table);
  const lines = ['| flag | env | default | meaning |', '|---|---|---|---|'];
  const done = new Set<string>();
  for (const row of rows) {
    const docs = row.docs;
    if (!('group' in docs)) {
      lines.push(
        tableRow([flagCell(row, docs.value), envCell(row), defaultCell(row, docs), docs.meaning]),
      );
      continue;
    }
    if (done.has(docs.group)) continue;
    done.add(docs.group);
    const text = groups[docs.group];
    if (!text) throw new Error(`option table: ${row.flag} names unknown docs group ${docs.group}`);
    const members = rows.filter((r) => 'group' in r.docs && r.docs.group === docs.group);
    const flags = members.map((r) => flagCell(r, (r.docs as FlagDocsGroup).value)).join(', ');
    const env = text.env ?? members.map(envCell).join(', ');
    lines.push(tableRow([flags, env, text.default, text.meaning]));
  }
  return `${lines.join('\n')}\n`;
}
