/**
 * The story of one object: its transitions in order, how long it stayed in each state, the
 * intent each outcome answers and the errors it met. Reads the journal only.
 *
 * @module
 */

import type { NatsConnection } from "@nats-io/transport-node";
import type { RecordedEvent } from "./events.ts";
import type { ErrorRecord } from "../errors.ts";
import { InvalidArgumentError, NotFoundError } from "../errors.ts";
import { foldAll, type FoldWarning, stateOf } from "./fold.ts";
import { TRANSIENT_STATES } from "../../actors/mod.ts";
import { decodeAt, type RawObject, scanStream } from "./scan.ts";
import { borrowConnection, type NatsTarget } from "./watch.ts";

/** One transition of an object. */
export interface Transition {
  seq: number;
  at: string;
  type: string;
  from: string | null;
  to: string;
  host: string;
  /** Milliseconds spent in `from` before this event; null for the first event. */
  inStateMs: number | null;
  /** Sequence of the intent this outcome answers (when found). */
  causeSeq?: number;
  /** Milliseconds the driver effect took (outcomes). */
  elapsedMs?: number;
  /** The error of a `*.failed` outcome. */
  error?: ErrorRecord;
  event: RecordedEvent;
}

/** An object that shares the looked-up name. */
export interface OtherObject {
  kind: string;
  id: string;
  name: string;
  created: string;
}

/** The history of one object. */
export interface ObjectHistory {
  kind: string;
  id: string;
  name: string;
  host: string;
  /** Current state according to the fold of its events. */
  state: string;
  /** For endpoints: the network. */
  network?: { id: string; name: string };
  transitions: Transition[];
  /** Total milliseconds per state; the current state counts until `now`. */
  durations: Record<string, number>;
  /** Set when the object sits in a transient state: the intent still waiting for its outcome. */
  pending?: { state: string; sinceMs: number; intentSeq: number };
  /** For sandboxes: join and leave events of endpoints that named this sandbox. */
  related: Transition[];
  /** Other objects with the same name (e.g. a re-created container). */
  others: OtherObject[];
  /** Events of this object that do not apply (a corrupt or foreign history). */
  warnings: FoldWarning[];
}

/**
 * Builds an object's history from its events (pure; `now` closes the current state).
 *
 * @throws {InvalidArgumentError} when `events` is empty.
 */
export async function historyOf(
  events: RecordedEvent[],
  now: Date = new Date(),
): Promise<Omit<ObjectHistory, "network" | "related" | "others">> {
  if (!events.length) throw new InvalidArgumentError("history of no events");
  const fold = await foldAll(events);
  const first = events[0];
  const obj = fold.objects.get(first.objectId);
  const state = obj ? stateOf(obj.snapshot) : events.at(-1)!.to;
  const seqOf = new Map(events.map((e) => [e.eventId, e.seq]));
  const durations: Record<string, number> = {};
  const transitions = events.map((e, i): Transition => {
    const prev = events[i - 1];
    const inStateMs = prev ? Date.parse(e.at) - Date.parse(prev.at) : null;
    if (prev && inStateMs !== null) durations[prev.to] = (durations[prev.to] ?? 0) + inStateMs;
    const d = e.data as { elapsedMs?: number; error?: ErrorRecord };
    const causeSeq = e.cause ? seqOf.get(e.cause) : undefined;
    return {
      seq: e.seq,
      at: e.at,
      type: e.type,
      from: e.from,
      to: e.to,
      host: e.host,
      inStateMs,
      ...(causeSeq !== undefined ? { causeSeq } : {}),
      ...(typeof d.elapsedMs === "number" ? { elapsedMs: d.elapsedMs } : {}),
      ...(d.error ? { error: d.error } : {}),
      event: e,
    };
  });
  const last = events.at(-1)!;
  const sinceMs = Math.max(0, now.getTime() - Date.parse(last.at));
  if (state !== "deleted") durations[state] = (durations[state] ?? 0) + sinceMs;
  return {
    kind: first.kind,
    id: first.objectId,
    name: String((first.data as { name?: unknown }).name ?? ""),
    host: first.host,
    state,
    transitions,
    durations,
    ...(TRANSIENT_STATES.has(state) ? { pending: { state, sinceMs, intentSeq: last.seq } } : {}),
    warnings: fold.warnings,
  };
}

/** Options of {@link history}. */
export interface HistoryOptions {
  /** Connect options (own connection, closed at the end) or a connection to borrow. */
  nats: NatsTarget;
  /** Stream name. Default `CNM`. */
  stream?: string;
  /** Subject prefix. Default `cnm`. */
  prefix?: string;
  /** Only look for objects of this kind. */
  kind?: string;
  /** Closes the current state's duration. Default: now. */
  now?: Date;
}

/**
 * The history of the object with this id, unique id prefix, or name (the newest object of
 * that name wins, preferring one that is not deleted; the others are listed).
 *
 * @throws {NotFoundError} when nothing matches.
 * @throws {InvalidArgumentError} when an id prefix matches several objects.
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
  const { nc, release } = await borrowConnection(options.nats);
  try {
    const scan = await scanStream(nc, options);
    const all = [...scan.objects.values()].filter((o) => !options.kind || o.kind === options.kind);
    const target = resolve(all, ref);
    const events = target.seqs.map((_, i) => decodeAt(target, i));
    const base = await historyOf(events, options.now);
    const others = all.filter((o) => o !== target && nameOf(o) === base.name && base.name !== "")
      .map((o) => {
        const c = decodeAt(o, 0);
        return { kind: o.kind, id: o.id, name: base.name, created: c.at };
      });
    const result: ObjectHistory = { ...base, related: [], others };
    if (base.kind === "endpoint") {
      const netId = String((events[0].data as { networkId?: string }).networkId ?? "");
      const net = scan.objects.get(netId);
      result.network = { id: netId, name: net ? nameOf(net) : "" };
    }
    if (base.kind === "sandbox") result.related = await relatedJoins(nc, all, target.id);
    return result;
  } finally {
    await release();
  }
}

function nameOf(o: RawObject): string {
  try {
    return String((decodeAt(o, 0).data as { name?: unknown }).name ?? "");
  } catch {
    return "";
  }
}

function resolve(all: RawObject[], ref: string): RawObject {
  const exact = all.find((o) => o.id === ref);
  if (exact) return exact;
  const named = all.filter((o) => nameOf(o) === ref);
  if (named.length) {
    const live = named.filter((o) => !/\.deleted$/.test(decodeAt(o, o.seqs.length - 1).type));
    return (live.length ? live : named).at(-1)!;
  }
  const prefixed = all.filter((o) => o.id.startsWith(ref));
  if (prefixed.length === 1) return prefixed[0];
  if (prefixed.length > 1) {
    throw new InvalidArgumentError(
      `id prefix ${ref} is ambiguous: ${prefixed.length} objects match (` +
        prefixed.slice(0, 5).map((o) => `${o.kind} ${o.id}`).join(", ") + ")",
    );
  }
  throw new NotFoundError(`no network, endpoint or sandbox has the name or id ${ref}`);
}

/** Join/leave transitions of endpoints that named `sandboxId` in a join request. */
async function relatedJoins(
  _nc: NatsConnection,
  all: RawObject[],
  sandboxId: string,
): Promise<Transition[]> {
  const out: Transition[] = [];
  for (const o of all) {
    if (o.kind !== "endpoint") continue;
    const events = o.seqs.map((_, i) => decodeAt(o, i));
    let inSandbox = false;
    const h = await historyOf(events);
    for (const t of h.transitions) {
      const d = t.event.data as { sandboxId?: string };
      if (t.type === "endpoint.join.requested") inSandbox = d.sandboxId === sandboxId;
      if (inSandbox && /^endpoint\.(join|joined|leave|left)|^endpoint\.delete/.test(t.type)) {
        out.push(t);
      }
      if (t.type === "endpoint.left" || t.type === "endpoint.join.failed") inSandbox = false;
    }
  }
  return out.sort((a, b) => a.seq - b.seq);
}
