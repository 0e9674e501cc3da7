/**
 * How a reference names an object — the same rules for `inspect`, `history`, `rm` and the
 * controller's lookups: an exact id, else a name, else a unique id prefix. A name several
 * kinds share picks the sandbox, then the network, then the endpoint (`cnm connect web c1`
 * names the endpoint after its sandbox; the operator means the container); the others are
 * named so `--kind` can choose. A failed create holds no name: a live object of that name
 * wins over it. An id prefix several objects share is refused, naming them.
 *
 * @module
 */

import { InvalidArgumentError, NotFoundError } from "./errors.ts";

/** What a reference is resolved against. */
export interface Candidate {
  kind: string;
  id: string;
  name: string;
  /** `failed` for a failed create, which holds no name: a live object of that name wins. */
  state?: string;
}

/** Kinds in the order a shared name prefers them. */
export const NAME_PRECEDENCE = ["sandbox", "network", "endpoint", "host"];

const rank = (kind: string) => {
  const i = NAME_PRECEDENCE.indexOf(kind);
  return i < 0 ? NAME_PRECEDENCE.length : i;
};

const describe = (c: Candidate) => `${c.kind} ${c.id.slice(0, 12)}${c.name ? ` "${c.name}"` : ""}`;

/** The error for an id prefix several objects share. */
export function ambiguousPrefix(ref: string, hits: Candidate[]): InvalidArgumentError {
  const kinds = new Set(hits.map((h) => h.kind));
  const list = hits.slice(0, 5).map(describe).join(", ") + (hits.length > 5 ? ", …" : "");
  return new InvalidArgumentError(
    `id prefix ${ref} is ambiguous: it matches ${hits.length} objects (${list}); ` +
      (kinds.size > 1 ? "choose one with --kind, or give more characters" : "give more characters"),
  );
}

/** The error for a name several objects of one kind share (endpoint names are per network). */
export function ambiguousName(ref: string, hits: Candidate[]): InvalidArgumentError {
  const list = hits.slice(0, 5).map(describe).join(", ") + (hits.length > 5 ? ", …" : "");
  return new InvalidArgumentError(
    `name ${ref} is ambiguous: ${hits.length} ${hits[0].kind}s have it (${list}); give the id`,
  );
}

/** What {@link resolveRef} found: the object, and others that share its name. */
export interface Resolved<T extends Candidate> {
  hit: T;
  /** Objects of other kinds with the same name (choose them with `--kind`). */
  others: T[];
}

/**
 * Resolves `ref` among `items` (exact id, name, unique id prefix).
 *
 * @throws {NotFoundError} `<what> <ref> not found` when nothing matches.
 * @throws {InvalidArgumentError} when an id prefix, or a name within one kind, is ambiguous.
 * @example
 * ```ts
 * import { resolveRef } from "./refs.ts";
 * import assert from "node:assert/strict";
 *
 * const items = [
 *   { kind: "endpoint", id: "8a01", name: "web" },
 *   { kind: "sandbox", id: "8b02", name: "web" },
 * ];
 * assert.equal(resolveRef(items, "web", "object").hit.kind, "sandbox");
 * assert.throws(() => resolveRef(items, "8", "object"), /id prefix 8 is ambiguous/);
 * ```
 */
export function resolveRef<T extends Candidate>(
  items: Iterable<T>,
  ref: string,
  what: string,
): Resolved<T> {
  const named: T[] = [];
  const prefixed: T[] = [];
  for (const i of items) {
    if (i.id === ref) return { hit: i, others: [] };
    if (i.name === ref) named.push(i);
    else if (i.id.startsWith(ref)) prefixed.push(i);
  }
  if (named.length) {
    // A failed create holds no name: a live object of the name wins, else the latest failure.
    const live = named.filter((n) => n.state !== "failed");
    if (!live.length) return { hit: named.at(-1)!, others: [] };
    named.splice(0, named.length, ...live);
    named.sort((a, b) => rank(a.kind) - rank(b.kind));
    const kind = named[0].kind;
    const same = named.filter((n) => n.kind === kind);
    if (same.length > 1) throw ambiguousName(ref, same);
    return { hit: named[0], others: named.filter((n) => n.kind !== kind) };
  }
  if (prefixed.length === 1) return { hit: prefixed[0], others: [] };
  if (prefixed.length > 1) throw ambiguousPrefix(ref, prefixed);
  throw new NotFoundError(`${what} ${ref} not found`);
}
