/**
 * The TypeScript type of the values a JSON Schema accepts, for the keywords the policy schemas
 * use (const, enum, type, properties, required, additionalProperties, items, anyOf). The
 * document types are derived with it, so the schema is the one description of a document and
 * the types cannot drift from what ajv lets through. Keywords that only narrow a value
 * (pattern, minimum, minItems, …) do not change its type.
 */
export type FromSchema<S> = S extends { readonly const: infer C }
  ? C
  : S extends { readonly enum: readonly (infer E)[] }
    ? E
    : S extends { readonly anyOf: readonly (infer A)[] }
      ? A extends unknown
        ? FromSchema<A>
        : never
      : S extends { readonly type: 'string' }
        ? string
        : S extends { readonly type: 'integer' | 'number' }
          ? number
          : S extends { readonly type: 'boolean' }
            ? boolean
            : S extends { readonly type: 'array'; readonly items: infer I }
              ? FromSchema<I>[]
              : S extends { readonly type: 'object'; readonly properties: infer P }
                ? ObjectOf<P, S extends { readonly required: readonly (infer R)[] } ? R : never>
                : S extends { readonly type: 'object'; readonly additionalProperties: infer V }
                  ? V extends false
                    ? Record<string, never>
                    : Record<string, FromSchema<V>>
                  : S extends { readonly type: 'object' }
                    ? Record<string, unknown>
                    : unknown;

type ObjectOf<P, Required> = Flatten<
  { -readonly [K in keyof P & Required]: FromSchema<P[K]> } & {
    -readonly [K in Exclude<keyof P, Required>]?: FromSchema<P[K]>;
  }
>;

type Flatten<T> = { [K in keyof T]: T[K] };
