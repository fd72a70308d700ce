import assert from "node:assert/strict";
import { parseAnalysisSpec, strictSchemaProblem } from "../../src/analysis/analysis_spec.ts";
import { schemaMismatch } from "../../src/analysis/schema_match.ts";
import { APPOINTMENT_SCHEMA } from "../helpers/analysis_fixtures.ts";

Deno.test("a strict-mode object schema is accepted", () => {
  assert.equal(strictSchemaProblem(APPOINTMENT_SCHEMA), undefined);
  const parsed = parseAnalysisSpec({ schema: APPOINTMENT_SCHEMA, instructions: "Be brief." });
  assert.ok("spec" in parsed);
  assert.equal(parsed.spec.instructions, "Be brief.");
});

Deno.test("schemas strict mode cannot use are refused, naming the place and the fix", () => {
  const cases: [unknown, RegExp][] = [
    [[], /must be a JSON Schema object/],
    [{ type: "string" }, /"type": "object" at its root/],
    [{ type: "object" }, /needs "properties"/],
    [
      { type: "object", properties: { a: { type: "string" } }, required: [] },
      /schema\.required must list every property.*missing: a.*null type/,
    ],
    [
      { type: "object", properties: { a: { type: "string" } }, required: ["a"] },
      /"additionalProperties": false/,
    ],
    [
      {
        type: "object",
        additionalProperties: false,
        required: ["a"],
        properties: { a: { type: "object", properties: {}, required: [] } },
      },
      /schema\.properties\.a must set "additionalProperties": false/,
    ],
    [
      {
        type: "object",
        additionalProperties: false,
        required: ["a"],
        properties: { a: { type: "array" } },
      },
      /schema\.properties\.a is an array schema, so it needs "items"/,
    ],
    [
      {
        type: "object",
        additionalProperties: false,
        required: ["a"],
        properties: { a: { type: "date" } },
      },
      /"date" is not one of/,
    ],
    [
      {
        type: "object",
        additionalProperties: false,
        required: ["a"],
        properties: { a: { $ref: "#/$defs/missing" } },
      },
      /must point to an entry of schema\.\$defs/,
    ],
  ];
  for (const [schema, expected] of cases) {
    assert.match(strictSchemaProblem(schema) ?? "(accepted)", expected, JSON.stringify(schema));
  }
});

Deno.test("an analysis request over 16 KiB, or with unknown fields, is refused", () => {
  const big = {
    schema: { ...APPOINTMENT_SCHEMA, description: "x".repeat(17_000) },
  };
  const tooBig = parseAnalysisSpec(big);
  assert.ok("problem" in tooBig);
  assert.match(tooBig.problem, /limit is 16384/);
  const extra = parseAnalysisSpec({ schema: APPOINTMENT_SCHEMA, model: "gpt-5" });
  assert.ok("problem" in extra);
  assert.match(extra.problem, /unknown fields model/);
  const notObject = parseAnalysisSpec("confirmed?");
  assert.ok("problem" in notObject);
});

Deno.test("schemaMismatch finds wrong types, missing and extra fields, bad enum values", () => {
  const ok = { confirmed: true, new_time: null, topics: ["price"] };
  assert.equal(schemaMismatch(ok, APPOINTMENT_SCHEMA), undefined);
  assert.match(
    schemaMismatch({ ...ok, confirmed: "yes" }, APPOINTMENT_SCHEMA)!,
    /value\.confirmed: expected boolean, got string/,
  );
  assert.match(
    schemaMismatch({ confirmed: true, topics: [] }, APPOINTMENT_SCHEMA)!,
    /new_time: missing/,
  );
  assert.match(
    schemaMismatch({ ...ok, extra: 1 }, APPOINTMENT_SCHEMA)!,
    /extra: not in the schema/,
  );
  assert.match(schemaMismatch({ ...ok, topics: ["weather"] }, APPOINTMENT_SCHEMA)!, /topics\[0\]/);
});
