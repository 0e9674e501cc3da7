/**
 * What a failed NATS connect means, for the library and the CLI alike: the server refused the
 * credentials (or TLS failed) — {@link NatsAuthError}, the CLI's exit 5 — as opposed to no
 * server answering (`NatsUnreachableError`, exit 3).
 *
 * @module
 */

import { NotFoundError, UnavailableError } from "../errors.ts";

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

const SOCKET_RESET = /ECONNRESET|EPIPE/;
let guards = 0;
let listening = false;

/**
 * Runs a connect with the process guarded against a socket reset that nats.js's node
 * transport throws from a socket callback when a server closes the connection on us (as it
 * does after refusing credentials): uncaught, it would end the caller's process. Only resets
 * raised from a socket read or write are caught, and only while a connect is in flight and for
 * a few seconds after it failed.
 */
export async function guardedConnect<T>(connect: () => Promise<T>): Promise<T> {
  if (!listening) {
    listening = true;
    globalThis.addEventListener("error", (ev) => {
      const err = ev.error as Error | undefined;
      if (guards === 0 || !(err instanceof Error) || !SOCKET_RESET.test(err.message)) return;
      if (!/onStreamRead|afterWrite|TCPWrap/.test(err.stack ?? "")) return;
      ev.preventDefault();
    });
  }
  guards++;
  try {
    const nc = await connect();
    guards--;
    return nc;
  } catch (err) {
    Deno.unrefTimer(setTimeout(() => guards--, 3000) as unknown as number);
    throw err;
  }
}

/**
 * Rethrows a consumer/stream failure as a typed error.
 *
 * @throws {NotFoundError} when the stream does not exist; else {@link UnavailableError}.
 */
export function streamError(err: unknown, stream: string): never {
  if (/stream not found/i.test((err as Error).message)) {
    throw new NotFoundError(
      `stream ${stream} not found (nothing journaled yet, or wrong --stream)`,
      {
        cause: err,
      },
    );
  }
  throw new UnavailableError(`cannot read stream ${stream}: ${(err as Error).message}`, {
    cause: err,
  });
}
