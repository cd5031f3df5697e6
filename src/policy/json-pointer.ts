/** A location inside a JSON value (or the YAML it was read from): keys and array indexes. */
export type JsonPath = readonly (string | number)[];

/** A JSON pointer (`/spec/rules/0`, as ajv reports) as a path; array indexes as numbers. */
export function pointerToPath(pointer: string): JsonPath {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}
