/**
 * Ownership marks: which controller made a kernel object. Several controllers may share one
 * kernel namespace (different host ids, streams, name prefixes); each must touch only what it
 * made, and report — never remove — what another one made.
 *
 * A controller's owner id is {@link ownerId}: the first 8 hex digits of SHA-256(`<stream>
 * NUL <hostId>`), the pair that names its journal and its lease, so a restarted controller
 * keeps its id and two controllers that could both run at once never share one. Every mark
 * carries it:
 * - bridges and host-side veths: link alias `cnm:<owner>:<network|endpoint>:<id12>` (the
 *   overlay driver's are `cnm:<owner>:overlay:<id12>` and `cnm:<owner>:endpoint:<id12>`);
 * - namespaces of owned sandboxes: `<namePrefix><owner>-<id12>` (overlay namespaces:
 *   `<namePrefix>ov-<owner>-<id12>`);
 * - firewall rules of a network: comment `cnm:<owner>:<id12> <fingerprint>` (its chains
 *   `net-|nat-|icc-<id12>` belong to whoever owns their rules).
 *
 * Marks written by older versions name no controller (`cnm:network:<id12>`, namespaces
 * `<namePrefix><id12>`, comments `cnm:<id12> <fp>`). Such an object is treated as ours only
 * when this controller's journal knows the object id (any state, deleted included): then it
 * is an orphan like any other. Otherwise it is reported as `foreign` and left alone.
 *
 * @module
 */

/** What a mark says: the object's short id and, for current marks, the owner. */
export interface Mark {
  id12: string;
  owner?: string;
}

/** Who a marked object belongs to, from this controller's point of view. */
export type Ownership =
  | { ours: true }
  | { ours: false; why: string };

/** What the classification needs to know about this controller. */
export interface Self {
  owner: string;
  /** 12-character ids of every object this controller's journal has (deleted ones too). */
  known: ReadonlySet<string>;
}

export { ownerId } from "../ids.ts";

/** The namespace name of a sandbox this controller owns. */
export function sandboxNetnsName(namePrefix: string, owner: string, id: string): string {
  return `${namePrefix}${owner}-${id.slice(0, 12)}`;
}

const netnsMark = /([0-9a-f]{8})-([0-9a-f]{12})$/;

/**
 * The mark of a namespace listed under `namePrefix`: `<owner>-<id12>` at its end, or (an old
 * mark) whatever follows the prefix. Undefined when the name lacks the prefix.
 */
export function parseNetnsMark(name: string, namePrefix: string): Mark | undefined {
  if (!name.startsWith(namePrefix)) return undefined;
  const rest = name.slice(namePrefix.length);
  const m = netnsMark.exec(rest);
  if (m && (m.index === 0 || rest[m.index - 1] === "-")) return { id12: m[2], owner: m[1] };
  return { id12: rest };
}

/** Whether a marked object is this controller's (see the module doc for old marks). */
export function ownershipOf(mark: Mark, self: Self): Ownership {
  if (mark.owner === self.owner) return { ours: true };
  if (mark.owner !== undefined) return { ours: false, why: `made by controller ${mark.owner}` };
  if (self.known.has(mark.id12)) return { ours: true };
  return { ours: false, why: "an old mark naming no controller, unknown to this journal" };
}
