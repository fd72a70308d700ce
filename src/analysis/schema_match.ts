/**
 * Checks a value against the strict-mode JSON Schema subset {@link strictSchemaProblem} admits.
 * Strict structured outputs should always match, but a model or proxy that ignores `strict`
 * must not put an object of the wrong shape into a call record as if it were the result.
 *
 * @module
 */

type Node = Record<string, unknown>;

const isObject = (v: unknown): v is Node =>
  v !== null && typeof v === "object" && !Array.isArray(v);

function typeOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

/** The first place where `value` does not match `schema` (e.g. `result.time: expected string`). */
export function schemaMismatch(
  value: unknown,
  schema: Node,
  path = "value",
  root: Node = schema,
): string | undefined {
  if (typeof schema.$ref === "string") {
    const name = /^#\/\$defs\/(.+)$/.exec(schema.$ref)?.[1];
    const target = (root.$defs as Node | undefined)?.[name ?? ""];
    if (!isObject(target)) return `${path}: unresolvable $ref ${schema.$ref}`;
    return schemaMismatch(value, target, path, root);
  }
  if (Array.isArray(schema.anyOf)) {
    const fits = schema.anyOf.some((option) =>
      isObject(option) && schemaMismatch(value, option, path, root) === undefined
    );
    return fits ? undefined : `${path}: matches none of anyOf`;
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => deepEqual(e, value))) {
    return `${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`;
  }
  if ("const" in schema && !deepEqual(schema.const, value)) {
    return `${path}: expected ${JSON.stringify(schema.const)}`;
  }
  if (schema.type === undefined) return undefined;
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  const actual = typeOf(value);
  if (!types.includes(actual) && !(actual === "integer" && types.includes("number"))) {
    return `${path}: expected ${types.join(" or ")}, got ${actual}`;
  }
  if (actual === "object" && isObject(schema.properties)) {
    const object = value as Node;
    for (const name of (schema.required as string[] | undefined) ?? []) {
      if (!(name in object)) return `${path}.${name}: missing`;
    }
    for (const [name, field] of Object.entries(object)) {
      const sub = schema.properties[name];
      if (!isObject(sub)) {
        if (schema.additionalProperties === false) return `${path}.${name}: not in the schema`;
        continue;
      }
      const problem = schemaMismatch(field, sub, `${path}.${name}`, root);
      if (problem) return problem;
    }
  }
  if (actual === "array" && isObject(schema.items)) {
    for (const [i, item] of (value as unknown[]).entries()) {
      const problem = schemaMismatch(item, schema.items, `${path}[${i}]`, root);
      if (problem) return problem;
    }
  }
  return undefined;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
