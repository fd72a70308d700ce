/** A strict-mode analysis schema using every feature the checks know: null types, arrays, $defs. */
export const APPOINTMENT_SCHEMA = {
  type: "object",
  additionalProperties: false,
  required: ["confirmed", "new_time", "topics"],
  properties: {
    confirmed: { type: "boolean" },
    new_time: { type: ["string", "null"] },
    topics: { type: "array", items: { $ref: "#/$defs/topic" } },
  },
  $defs: {
    topic: { type: "string", enum: ["price", "time", "other"] },
  },
};
