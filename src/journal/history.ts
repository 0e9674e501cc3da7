/**
 * The story of one object: its transitions in order, how long it stayed in each state, the
 * intent each outcome answers and the errors it met. Reads the journal only: the object's
 * own subject (and, for a sandbox, its endpoints' subjects), after resolving the name with
 * the snapshot — a full scan only for an object the snapshot does not hold (deleted). The
 * history built from the events (historyOf, pure) is history_of.ts.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { RecordedEvent } from "./events.ts";
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import { stateOf } from "./fold.ts";
import { decodeAt, type RawObject, scanStream } from "./scan.ts";
import { loadCurrent } from "./current.ts";
import { borrowConnection, type NatsTarget, readEvents } from "./watch.ts";
import { type Candidate, NAME_PRECEDENCE, resolveRef } from "../refs.ts";
import { historyOf, type ObjectHistory, type Transition } from "./history_of.ts";

export { historyOf } from "./history_of.ts";
export type { ObjectHistory, OtherObject, Transition } from "./history_of.ts";

/** Options of {@link history}. */
export interface HistoryOptions {
  /** Connect options (own connection, closed at the end) or a connection to borrow. */
  nats: NatsTarget;
  /** Stream name. Default `CNM`. */
  stream?: string;
  /** Subject prefix. Default `cnm`. */
  prefix?: string;
  /** Only look for objects of this kind (`network`, `endpoint`, `sandbox`, `host`). */
  kind?: string;
  /** Only look for objects of this host (names are per host). Default: every host. */
  host?: string;
  /** Closes the current state's duration. Default: now. */
  now?: Date;
  /** Progress of a full scan (only for an object the snapshot does not hold). */
  onProgress?: (read: number, total: number) => void;
}

/** Kinds `history` knows. */
export const HISTORY_KINDS = ["network", "endpoint", "sandbox", "host", "driver"];

interface Found extends Candidate {
  host: string;
  deleted: boolean;
  created?: string;
  networkId?: string;
  /** Sandboxes: the endpoints that ever asked to join it. */
  joins?: string[];
}

/**
 * The history of the object with this id, name or unique id prefix (see refs.ts: a name
 * several kinds share picks the sandbox, then the network, then the endpoint; the others
 * are listed). With `kind: "host"`, `ref` is a host id and the history is that host's own
 * subject (`host.reconciled`: orphans reconcile removed).
 *
 * @throws {NotFoundError} when nothing matches.
 * @throws {InvalidArgumentError} when an id prefix matches several objects, or the kind is
 *   unknown.
 * @example
 * ```ts ignore
 * const h = await history("web-1", { nats: { servers: "127.0.0.1:4222" } });
 * for (const t of h.transitions) console.log(t.at, t.from, "→", t.to, t.inStateMs);
 * ```
 */
export async function history(
  objectIdOrName: string,
  options: HistoryOptions,
): Promise<ObjectHistory> {
  const ref = objectIdOrName;
  if (typeof ref !== "string" || ref === "") {
    throw new InvalidArgumentError("invalid object: must not be empty");
  }
  if (options.kind !== undefined && !HISTORY_KINDS.includes(options.kind)) {
    throw new InvalidArgumentError(
      `invalid kind ${JSON.stringify(options.kind)}: one of ${HISTORY_KINDS.join(", ")}`,
    );
  }
  const sel = { stream: options.stream ?? "CNM", prefix: options.prefix ?? "cnm" };
  const { nc, release } = await borrowConnection(options.nats);
  try {
    if (options.kind === "host") return await hostHistory(nc, sel, ref, options.now);
    // A driver configuration (`<hostId>.<driver>`): found by id, on its own subject.
    if (options.kind === "driver" || (options.kind === undefined && ref.includes("."))) {
      const events = await readObject(nc, sel, "driver", ref);
      if (events.length) {
        const base = await historyOf(events, options.now);
        return {
          ...base,
          name: String((events[0].data as { driver?: unknown }).driver ?? ref),
          related: [],
          others: [],
        };
      }
      if (options.kind === "driver") {
        throw new NotFoundError(`driver configuration ${ref} not found`);
      }
    }
    const cur = await loadCurrent(nc, sel);
    const live: Found[] = [];
    for (const o of cur.fold.objects.values()) {
      if (stateOf(o.snapshot) === "deleted") continue;
      if (options.kind && o.kind !== options.kind) continue;
      if (options.host && o.host !== options.host) continue;
      const c = o.snapshot.context as { name?: string; networkId?: string; createdAt?: string };
      live.push({
        kind: o.kind,
        id: o.id,
        name: String(c.name ?? ""),
        host: o.host,
        deleted: false,
        created: c.createdAt,
        ...(c.networkId ? { networkId: c.networkId } : {}),
        ...(o.joins ? { joins: o.joins } : {}),
      });
    }
    let target: Found;
    let others: Found[];
    try {
      ({ hit: target, others } = resolveRef(live, ref, "object"));
      // Same name, same kind, other hosts: listed too.
      others.push(
        ...live.filter((o) =>
          o !== target && o.name === target.name && target.name && !others.includes(o)
        ),
      );
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      ({ target, others } = await fromScan(nc, sel, ref, options));
    }
    const events = await readObject(nc, sel, target.kind, target.id);
    if (!events.length) throw new NotFoundError(`no events for ${target.kind} ${target.id}`);
    const base = await historyOf(events, options.now);
    const result: ObjectHistory = {
      ...base,
      related: [],
      others: others.map((o) => ({
        kind: o.kind,
        id: o.id,
        name: o.name,
        created: o.created ?? "",
      })),
    };
    const networkName = namesOf(nc, sel, cur.fold.objects);
    if (base.kind === "endpoint") {
      const netId = String((events[0].data as { networkId?: string }).networkId ?? "");
      result.network = { id: netId, name: await networkName(netId) };
    }
    if (base.kind === "sandbox") {
      result.related = await relatedJoins(nc, sel, target.id, target.joins ?? [], networkName);
    }
    return result;
  } finally {
    await release();
  }
}

type Sel = { stream: string; prefix: string };

/** One object's events, from its own subject. */
async function readObject(nc: NatsConnection, sel: Sel, kind: string, id: string) {
  const out: RecordedEvent[] = [];
  for await (const e of readEvents(nc, { ...sel, kinds: [kind], objectId: id })) out.push(e);
  return out;
}

/** The history of a host's own subject (what reconcile removed that no object owned). */
async function hostHistory(
  nc: NatsConnection,
  sel: Sel,
  hostId: string,
  now?: Date,
): Promise<ObjectHistory> {
  const events = await readObject(nc, sel, "host", hostId);
  if (!events.length) {
    throw new NotFoundError(`host ${hostId} has no events of its own (nothing reconciled yet)`);
  }
  const base = await historyOf(events, now);
  return { ...base, name: hostId, related: [], others: [] };
}

/** Network names by id: live ones from the fold, others from their first event. */
function namesOf(
  nc: NatsConnection,
  sel: Sel,
  objects: Map<string, { kind: string; snapshot: { context: unknown } }>,
): (id: string) => Promise<string> {
  const cache = new Map<string, Promise<string>>();
  return (id) => {
    const o = objects.get(id);
    if (o?.kind === "network") {
      return Promise.resolve(String((o.snapshot.context as { name: string }).name));
    }
    let p = cache.get(id);
    if (!p) {
      p = readObject(nc, sel, "network", id).then((evs) =>
        String((evs[0]?.data as { name?: string } | undefined)?.name ?? "")
      ).catch(() => "");
      cache.set(id, p);
    }
    return p;
  };
}

/**
 * Resolves `ref` by scanning the whole stream (an object the snapshot does not hold:
 * deleted). A name picks the newest object of the preferred kind, preferring one not deleted;
 * the others are listed.
 */
async function fromScan(
  nc: NatsConnection,
  sel: Sel,
  ref: string,
  options: HistoryOptions,
): Promise<{ target: Found; others: Found[] }> {
  const scan = await scanStream(nc, { ...sel, onProgress: options.onProgress });
  const all: Found[] = [];
  const joins = new Map<string, string[]>();
  for (const o of scan.objects.values()) {
    if (options.kind && o.kind !== options.kind) continue;
    let first: RecordedEvent;
    try {
      first = decodeAt(o, 0);
    } catch {
      continue;
    }
    if (options.host && first.host !== options.host) continue;
    const d = first.data as { name?: string; networkId?: string };
    all.push({
      kind: o.kind,
      id: o.id,
      name: String(d.name ?? ""),
      host: first.host,
      deleted: isDeleted(o),
      created: first.at,
      ...(d.networkId ? { networkId: d.networkId } : {}),
    });
  }
  const find = (): Found => {
    const exact = all.find((o) => o.id === ref);
    if (exact) return exact;
    const named = all.filter((o) => o.name === ref);
    if (named.length) {
      const rank = (k: string) => (NAME_PRECEDENCE.indexOf(k) + 100) % 100;
      const kind = named.map((n) => n.kind).sort((x, y) => rank(x) - rank(y))[0];
      const same = named.filter((n) => n.kind === kind);
      const alive = same.filter((n) => !n.deleted);
      return (alive.length ? alive : same).at(-1)!;
    }
    const prefixed = all.filter((o) => o.id.startsWith(ref));
    if (prefixed.length === 1) return prefixed[0];
    if (prefixed.length > 1) return resolveRef(prefixed, ref, "object").hit; // throws
    throw new NotFoundError(`no network, endpoint or sandbox has the name or id ${ref}`);
  };
  const target = find();
  if (target.kind === "sandbox") {
    for (const o of scan.objects.values()) {
      if (o.kind !== "endpoint") continue;
      for (let i = 0; i < o.seqs.length; i++) {
        const e = decodeAt(o, i);
        if (
          e.type === "endpoint.join.requested" &&
          (e.data as { sandboxId?: string }).sandboxId === target.id
        ) {
          joins.set(target.id, [...joins.get(target.id) ?? [], o.id]);
          break;
        }
      }
    }
    target.joins = joins.get(target.id) ?? [];
  }
  const others = target.name ? all.filter((o) => o !== target && o.name === target.name) : [];
  return { target, others };
}

function isDeleted(o: RawObject): boolean {
  try {
    return /\.deleted$/.test(decodeAt(o, o.seqs.length - 1).type);
  } catch {
    return false;
  }
}

/** Join/leave transitions of the endpoints that asked to join `sandboxId`, with networks. */
async function relatedJoins(
  nc: NatsConnection,
  sel: Sel,
  sandboxId: string,
  endpointIds: string[],
  networkName: (id: string) => Promise<string>,
): Promise<Transition[]> {
  const out: Transition[] = [];
  for (const id of endpointIds) {
    const events = await readObject(nc, sel, "endpoint", id);
    if (!events.length) continue;
    const d0 = events[0].data as { name?: string; networkId?: string };
    const netId = String(d0.networkId ?? "");
    const endpoint = {
      id,
      name: String(d0.name ?? ""),
      network: { id: netId, name: await networkName(netId) },
    };
    let inSandbox = false;
    const h = await historyOf(events);
    for (const t of h.transitions) {
      const d = t.event.data as { sandboxId?: string };
      if (t.type === "endpoint.join.requested") inSandbox = d.sandboxId === sandboxId;
      if (inSandbox && /^endpoint\.(join|joined|leave|left)|^endpoint\.delete/.test(t.type)) {
        out.push({ ...t, endpoint });
      }
      if (t.type === "endpoint.left" || t.type === "endpoint.join.failed") inSandbox = false;
    }
  }
  return out.sort((a, b) => a.seq - b.seq);
}
