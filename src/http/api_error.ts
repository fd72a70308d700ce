/**
 * The one error shape every route answers with: `{"error": {"code", "message", …}}`.
 *
 * @module
 */
import type { ContentfulStatusCode } from "hono/utils/http-status";

/** JSON body of an error response. */
export interface ErrorBody {
  error: { code: string; message: string } & Record<string, unknown>;
}

/** An error a route throws to answer with `status` and a JSON body naming the problem and fix. */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** The response body. */
  toJSON(): ErrorBody {
    return { error: { code: this.code, message: this.message, ...this.details } };
  }
}
