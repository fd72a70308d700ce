/**
 * The post-call analysis a caller asks for: a JSON Schema for the result and optional
 * instructions. The schema must work with OpenAI's strict structured outputs, which accept only
 * a subset of JSON Schema; checking that here turns a request that would fail after the call
 * into a 400 at `/start` that names the problem.
 *
 * @module
 */

/** What to extract from a call. */
export interface AnalysisSpec {
  schema: Record<string, unknown>;
  instructions?: string;
}

/** Largest analysis request (schema and instructions as JSON). */
export const MAX_ANALYSIS_BYTES = 16 * 1024;
/** Nesting limit of strict structured outputs. */
const MAX_DEPTH = 10;
/** Property limit of strict structured outputs (all objects together). */
const MAX_PROPERTIES = 5000;
const TYPES = new Set(["string", "number", "integer", "boolean", "object", "array", "null"]);

type Node = Record<string, unknown>;

const isObject = (v: unknown): v is Node =>
  v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Checks a JSON Schema for strict structured outputs. Returns the first problem with the path
 * where it is (e.g. `schema.properties.time`) and how to fix it, or undefined.
 */
export function strictSchemaProblem(schema: unknown): string | undefined {
  if (!isObject(schema)) return 'schema must be a JSON Schema object, e.g. {"type": "object", …}';
  if (schema.type !== "object") {
    return 'schema must have "type": "object" at its root (wrap a single value in an object)';
  }
  const defs = schema.$defs;
  if (defs !== undefined && !isObject(defs)) return "schema.$defs must be an object of schemas";
  let properties = 0;

  const check = (node: unknown, path: string, depth: number): string | undefined => {
    if (!isObject(node)) return `${path} must be a schema object`;
    if (depth > MAX_DEPTH) return `${path} is nested more than ${MAX_DEPTH} levels deep`;
    if (typeof node.$ref === "string") {
      const name = /^#\/\$defs\/([^/]+)$/.exec(node.$ref)?.[1];
      // "#" (the root) is not accepted: the root is wrapped with the summary before sending.
      if (!name || !isObject(defs) || !(name in defs)) {
        return `${path}.$ref ${JSON.stringify(node.$ref)} must point to an entry of schema.$defs`;
      }
      return undefined;
    }
    if (Array.isArray(node.anyOf)) {
      for (const [i, option] of node.anyOf.entries()) {
        const problem = check(option, `${path}.anyOf[${i}]`, depth + 1);
        if (problem) return problem;
      }
      return undefined;
    }
    const types = Array.isArray(node.type) ? node.type : [node.type];
    if (node.type === undefined) {
      if (node.enum !== undefined || node.const !== undefined) return undefined;
      return `${path} needs a "type" (${[...TYPES].join(", ")})`;
    }
    for (const type of types) {
      if (typeof type !== "string" || !TYPES.has(type)) {
        return `${path}.type ${JSON.stringify(type)} is not one of ${[...TYPES].join(", ")}`;
      }
    }
    if (node.enum !== undefined && (!Array.isArray(node.enum) || node.enum.length === 0)) {
      return `${path}.enum must be a non-empty array`;
    }
    if (types.includes("object")) {
      if (!isObject(node.properties)) {
        return `${path} is an object schema, so it needs "properties" (an object of schemas)`;
      }
      const names = Object.keys(node.properties);
      properties += names.length;
      if (properties > MAX_PROPERTIES) return `schema has more than ${MAX_PROPERTIES} properties`;
      const required = node.required;
      const listed = Array.isArray(required) ? required : [];
      const missing = names.filter((n) => !listed.includes(n));
      if (!Array.isArray(required) || missing.length > 0) {
        return `${path}.required must list every property (strict mode)` +
          (missing.length > 0 ? `; missing: ${missing.join(", ")}` : "") +
          '. Make a field optional with a null type, e.g. "type": ["string", "null"]';
      }
      const unknown = listed.filter((n) => typeof n !== "string" || !names.includes(n));
      if (unknown.length > 0) {
        return `${path}.required names ${unknown.join(", ")}, which ${path}.properties lacks`;
      }
      if (node.additionalProperties !== false) {
        return `${path} must set "additionalProperties": false (strict mode)`;
      }
      for (const name of names) {
        const problem = check(node.properties[name], `${path}.properties.${name}`, depth + 1);
        if (problem) return problem;
      }
    }
    if (types.includes("array")) {
      if (!isObject(node.items)) {
        return `${path} is an array schema, so it needs "items" (a schema)`;
      }
      return check(node.items, `${path}.items`, depth + 1);
    }
    return undefined;
  };

  if (isObject(defs)) {
    for (const [name, def] of Object.entries(defs)) {
      const problem = check(def, `schema.$defs.${name}`, 1);
      if (problem) return problem;
    }
  }
  return check(schema, "schema", 1);
}

/**
 * Validates an `analysis` value from `/start` (or `ANALYSIS_SCHEMA` wrapped as one). Returns the
 * spec, or the problem named for the caller.
 */
export function parseAnalysisSpec(
  value: unknown,
): { spec: AnalysisSpec } | { problem: string } {
  if (!isObject(value)) {
    return {
      problem: 'analysis must be an object: {"schema": {JSON Schema}, "instructions": "…"}',
    };
  }
  const size = new TextEncoder().encode(JSON.stringify(value)).length;
  if (size > MAX_ANALYSIS_BYTES) {
    return {
      problem: `analysis is ${size} bytes of JSON; the limit is ${MAX_ANALYSIS_BYTES}. ` +
        "Ask for fewer fields or shorten the descriptions.",
    };
  }
  const extra = Object.keys(value).filter((k) => k !== "schema" && k !== "instructions");
  if (extra.length > 0) {
    return { problem: `analysis has unknown fields ${extra.join(", ")}; use schema, instructions` };
  }
  if (value.instructions !== undefined && typeof value.instructions !== "string") {
    return { problem: "analysis.instructions must be a string" };
  }
  const problem = strictSchemaProblem(value.schema);
  if (problem) return { problem: `analysis.${problem}` };
  return {
    spec: {
      schema: value.schema as Record<string, unknown>,
      ...(value.instructions ? { instructions: value.instructions as string } : {}),
    },
  };
}
