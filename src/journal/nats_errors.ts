/**
 * What a failed NATS connect means, for the library and the CLI alike: the server refused the
 * credentials (or TLS failed) — {@link NatsAuthError}, the CLI's exit 5 — as opposed to no
 * server answering (`NatsUnreachableError`, exit 3).
 *
 * @module
 */

import { UnavailableError } from "../errors.ts";

/** NATS refused our credentials, or TLS failed (the CLI exits with 5). */
export class NatsAuthError extends UnavailableError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NatsAuthError";
  }
}

/** Walks an error's causes. */
export function* causes(err: unknown): Generator<Error> {
  for (let e = err, i = 0; e instanceof Error && i < 10; e = e.cause, i++) yield e;
}

/** True when NATS refused credentials somewhere in `err`'s causes. */
export function isAuthFailure(err: unknown): boolean {
  for (const e of causes(err)) {
    if (e instanceof NatsAuthError) return true;
    if (/^(AuthorizationError|UserAuthenticationExpiredError)$/.test(e.name)) return true;
  }
  return false;
}
