/**
 * Identifiers. Object ids are 64 hex characters like Docker's; event and effect ids are
 * UUIDs. Ids are decided once, written into the first event, and never decided again.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** A new 64-hex-character object id. */
export function newObjectId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A new event or effect id. */
export function newEventId(): string {
  return crypto.randomUUID();
}

/** The 12-character short form of an object id. */
export function shortId(id: string): string {
  return id.slice(0, 12);
}

/**
 * A short identity of a controller for ownership marks: the first 8 hex digits of
 * SHA-256(stream NUL hostId). Two controllers on one kernel (other stream or other host id)
 * get different marks, so neither mistakes the other's devices for its orphans.
 */
export function ownerId(stream: string, hostId: string): string {
  return createHash("sha256").update(`${stream}\0${hostId}`).digest("hex").slice(0, 8);
}
