/**
 * An object's history built from its events (pure): its transitions in order, how long it
 * stayed in each state, the intent each outcome answers, the errors it met, and the intent
 * still pending when it sits in a transient state. history.ts finds the events in the
 * journal.
 *
 * @module
 */

import type { RecordedEvent } from "./events.ts";
import type { ErrorRecord } from "../errors.ts";
import { InvalidArgumentError } from "../errors.ts";
import { foldAll, type FoldWarning, stateOf } from "./fold.ts";
import { TRANSIENT_STATES } from "../../actors/mod.ts";

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
  /** For a sandbox's related transitions: the endpoint and its network. */
  endpoint?: { id: string; name: string; network: { id: string; name: string } };
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
    name: nameIn(first),
    host: first.host,
    state,
    transitions,
    durations,
    ...(TRANSIENT_STATES.has(state) ? { pending: { state, sinceMs, intentSeq: last.seq } } : {}),
    warnings: fold.warnings,
  };
}

/** An object's name: `data.name` of its first event (for driver configurations, the driver). */
function nameIn(first: RecordedEvent): string {
  const d = first.data as { name?: unknown; driver?: unknown };
  return String((first.kind === "driver" ? d.driver : d.name) ?? "");
}
