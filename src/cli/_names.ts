/**
 * What a host id, a stream name and a subject prefix may be, checked at the command line so a
 * bad one is a usage error naming its flag instead of a raw NATS error (`invalid key: cnm.a b`).
 * Host ids are one subject token (`<prefix>-api.<host>.<verb>`, `<prefix>.host.<host>`) and
 * part of a KV key; stream names also name the lease bucket (`<stream>_LEASES`); a prefix is
 * one or more subject tokens.
 *
 * @module
 */

import { UsageError } from "./_args.ts";

const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const STREAM = /^[A-Za-z0-9][A-Za-z0-9_-]{0,56}$/;
const PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/**
 * Checks a host id.
 *
 * @param source how it was given, e.g. `--host` or `$CNM_HOST_ID`.
 * @throws {UsageError} naming `source`.
 */
export function checkHostId(value: string, source: string): string {
  if (!HOST_ID.test(value)) {
    throw new UsageError(
      `${source} takes a host id of letters, digits, "-" and "_" (1 to 64, starting with a ` +
        `letter or digit; no dots or spaces: it is one NATS subject token), got ${
          JSON.stringify(value)
        }`,
    );
  }
  return value;
}

/**
 * Checks a JetStream stream name.
 *
 * @throws {UsageError} naming `source`.
 */
export function checkStream(value: string, source: string): string {
  if (!STREAM.test(value)) {
    throw new UsageError(
      `${source} takes a stream name of letters, digits, "-" and "_" (1 to 57, starting ` +
        `with a letter or digit), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

/**
 * Checks a subject prefix.
 *
 * @throws {UsageError} naming `source`.
 */
export function checkPrefix(value: string, source: string): string {
  if (!PREFIX.test(value) || value.length > 64) {
    throw new UsageError(
      `${source} takes a subject prefix of letters, digits, "-" and "_", in tokens separated ` +
        `by single dots (at most 64), got ${JSON.stringify(value)}`,
    );
  }
  return value;
}
