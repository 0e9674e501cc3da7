/**
 * Errors of the Docker API: a status and dockerd's message. cnm's typed errors map by class
 * (libnetwork's categories are Docker's `errdefs`), a few messages are reworded where
 * Docker's clients see other words (`plugin "X" not found`, `Invalid address …`,
 * `error while removing network: …`).
 *
 * @module
 */

import { CnmError, ErrorCode } from "../../errors.ts";

/** An answer other than success: HTTP status, dockerd's message, and its content type. */
export class DockerApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** `application/json` (`{"message": …}`) or `text/plain` (the too-old-version case). */
    readonly contentType: "application/json" | "text/plain" = "application/json",
  ) {
    super(message);
    this.name = "DockerApiError";
  }
}

const STATUS: Record<string, number> = {
  [ErrorCode.InvalidArgument]: 400,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.Conflict]: 409,
  [ErrorCode.Unavailable]: 503,
  [ErrorCode.Driver]: 500,
  [ErrorCode.Internal]: 500,
};

const REWORD: [RegExp, string][] = [
  // libnetwork resolves unknown drivers as plugins; Docker's clients see the plugin error.
  [/^unknown (?:IPAM )?driver "(.*)"$/, 'plugin "$1" not found'],
  // dockerd capitalises this one (ipam's ErrIPOutOfRange wording).
  [
    /^invalid address (.*): It does not belong to any of this network's subnets$/,
    "Invalid address $1: It does not belong to any of this network's subnets",
  ],
  // The daemon wraps libnetwork's in-use error.
  [/^(network .* has active endpoints .*)$/, "error while removing network: $1"],
];

/** The Docker answer for anything a handler threw. */
export function toDockerError(err: unknown): DockerApiError {
  if (err instanceof DockerApiError) return err;
  if (err instanceof CnmError) {
    let message = err.message;
    for (const [re, to] of REWORD) {
      if (re.test(message)) {
        message = message.replace(re, to);
        break;
      }
    }
    return new DockerApiError(STATUS[err.code] ?? 500, message);
  }
  return new DockerApiError(500, err instanceof Error ? err.message : String(err));
}
