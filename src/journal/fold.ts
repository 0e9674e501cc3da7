/**
 * Folding events into actor snapshots, purely: no actor is started, no driver is called.
 * The controller uses it to rebuild itself; `replay()` uses it to show the past.
 *
 * @module
 */

import { type AnyStateMachine, createActor } from "xstate";
import { CONTEXT_FROM, MACHINES, TRANSIENT_STATES } from "../../actors/mod.ts";
import { DRIVER_KIND, type Kind, type RecordedEvent } from "./events.ts";
import { type DriverConfigState, foldDriverEvent } from "./driver_config.ts";

// deno-lint-ignore no-explicit-any
type Snapshot = any;

/** One object's folded history. */
export interface FoldedObject {
  kind: Kind;
  id: string;
  /** The host that created it. */
  host: string;
  snapshot: Snapshot;
  /** Stream sequence of its last event. */
  lastSeq: number;
  /** Stream sequence of its first event (objects list in this order). */
  firstSeq: number;
  /** Its first event (absent when rebuilt from a snapshot past `creating`). */
  createIntent?: RecordedEvent;
  /** When in a transient state: the intent that put it there … */
  intent?: RecordedEvent;
  /** … and the snapshot before that intent. */
  before?: Snapshot;
  /** Number of events folded. */
  events: number;
  /** Sandboxes: the endpoints attached now (joining, joined, leaving), in join order. */
  members?: string[];
  /** Sandboxes: every endpoint that ever asked to join it (its history shows them). */
  joins?: string[];
  /** Endpoints: sequence of the join request of the current attachment (orders `members`). */
  joinedSeq?: number;
}

/** An event that could not be applied, with the reason. */
export interface FoldWarning {
  seq: number;
  objectId: string;
  type: string;
  reason: string;
}

/** Pure fold state: objects by id, in order of creation. */
export interface FoldState {
  objects: Map<string, FoldedObject>;
  /** Driver configurations in force, by `<hostId>.<driver>` (kind `driver`). */
  drivers: Map<string, DriverConfigState>;
  warnings: FoldWarning[];
  /** Highest sequence folded. */
  lastSeq: number;
  /** When set, every object an event changes is added (the snapshot writer's dirty set). */
  touched?: Set<string>;
}

/** An empty fold. */
export function emptyFold(): FoldState {
  return { objects: new Map(), drivers: new Map(), warnings: [], lastSeq: 0 };
}

/**
 * One inert actor scope per machine, reused for every pure step. XState's own
 * `transition()`/`initialTransition()` build a throwaway actor per call, which costs about 3×
 * the step itself; the scope here never runs actions, never starts children and is never
 * started, so sharing it keeps the fold pure.
 */
const scopes = new Map<AnyStateMachine, unknown>();

function scopeOf(machine: AnyStateMachine, input: unknown): any {
  let scope = scopes.get(machine);
  if (!scope) {
    const self = createActor(machine, { input });
    scope = {
      self,
      defer: () => {},
      id: "",
      logger: () => {},
      sessionId: "",
      stopChild: () => {},
      system: self.system,
      emit: () => {},
      actionExecutor: () => {},
    };
    scopes.set(machine, scope);
  }
  return scope;
}

/** Pure initial snapshot of `machine` for `input` (no actions run, no children started). */
export function initialSnapshot(machine: AnyStateMachine, input: unknown): Snapshot {
  return machine.getInitialSnapshot(scopeOf(machine, input), input);
}

/** Pure next snapshot of `machine` for `event`. */
export function nextSnapshot(
  machine: AnyStateMachine,
  snapshot: Snapshot,
  event: unknown,
): Snapshot {
  return machine.transition(snapshot, event, scopeOf(machine, { event }));
}

/** The top-level state name of a snapshot. */
export function stateOf(snapshot: Snapshot): string {
  const v = snapshot.value;
  return typeof v === "string" ? v : Object.keys(v)[0];
}

/**
 * Applies one event to the fold (mutates `fold`): objects with a machine, and driver
 * configurations (kind `driver`); other kinds (e.g. `host`) are ignored. `known` is the
 * snapshot a live actor reached by applying this very event (the controller's snapshot writer
 * hands it over instead of computing it again); it is used only when it is in the event's
 * `to` state.
 */
export function foldEvent(fold: FoldState, event: RecordedEvent, known?: Snapshot): void {
  if (known !== undefined && stateOf(known) !== event.to) known = undefined;
  fold.lastSeq = Math.max(fold.lastSeq, event.seq);
  const warn = (reason: string): void => {
    fold.warnings.push({ seq: event.seq, objectId: event.objectId, type: event.type, reason });
  };
  if (event.kind === DRIVER_KIND) {
    const reason = foldDriverEvent(fold.drivers, event);
    if (reason) warn(reason);
    return;
  }
  const machine = MACHINES[event.kind as Kind];
  if (!machine) return;
  const obj = fold.objects.get(event.objectId);
  if (!obj) {
    if (event.type !== `${event.kind}.create.requested`) {
      return warn(`first event of ${event.kind} ${event.objectId} is not a create request`);
    }
    // The state the machine starts in, built from its context (4 µs, where the machine's
    // initial-snapshot path costs 18): every object starts in `creating`.
    const snapshot = known ?? machine.resolveState({
      value: "creating",
      context: CONTEXT_FROM[event.kind as Kind](event) as never,
    });
    fold.objects.set(event.objectId, {
      kind: event.kind as Kind,
      id: event.objectId,
      host: event.host,
      snapshot,
      lastSeq: event.seq,
      firstSeq: event.seq,
      createIntent: event,
      intent: event,
      events: 1,
      ...(event.kind === "sandbox" ? { members: [], joins: [] } : {}),
    });
    fold.touched?.add(event.objectId);
    return;
  }
  obj.lastSeq = event.seq;
  obj.events++;
  fold.touched?.add(obj.id);
  if (!known && !obj.snapshot.can(event)) {
    return warn(`${event.type} does not apply in state ${stateOf(obj.snapshot)}`);
  }
  const before = obj.snapshot;
  const next = known ?? nextSnapshot(machine, before, event);
  obj.snapshot = next;
  if (event.kind === "endpoint") {
    relate(fold, obj, event, before.context.sandboxId, next.context.sandboxId);
  }
  if (TRANSIENT_STATES.has(stateOf(next))) {
    obj.intent = event;
    obj.before = before;
  } else {
    obj.intent = undefined;
    obj.before = undefined;
  }
}

/** Keeps sandboxes' `members` and `joins` current as an endpoint's sandbox changes. */
function relate(
  fold: FoldState,
  ep: FoldedObject,
  event: RecordedEvent,
  was: string | null | undefined,
  now: string | null | undefined,
): void {
  if (event.type === "endpoint.join.requested" && now) {
    const joins = fold.objects.get(now)?.joins;
    if (joins && !joins.includes(ep.id)) joins.push(ep.id);
    fold.touched?.add(now);
  }
  if (was === now) return;
  if (was) fold.touched?.add(was);
  if (now) fold.touched?.add(now);
  if (was) {
    const m = fold.objects.get(was)?.members;
    const i = m ? m.indexOf(ep.id) : -1;
    if (i >= 0) m!.splice(i, 1);
    ep.joinedSeq = undefined;
  }
  if (!now) return;
  ep.joinedSeq = event.seq;
  const m = fold.objects.get(now)?.members;
  if (!m) return;
  // In order of joining, also when objects are folded one after another (replay's scan).
  let i = m.length;
  while (i > 0 && (fold.objects.get(m[i - 1])?.joinedSeq ?? 0) > event.seq) i--;
  m.splice(i, 0, ep.id);
}

/** Folds a whole sequence of events. */
export async function foldAll(
  events: AsyncIterable<RecordedEvent> | Iterable<RecordedEvent>,
  filter?: (e: RecordedEvent) => boolean,
): Promise<FoldState> {
  const fold = emptyFold();
  for await (const e of events) {
    if (!filter || filter(e)) foldEvent(fold, e);
  }
  return fold;
}

/**
 * An independent copy of a fold, for a second reader that keeps folding on its own (the
 * snapshot writer beside the controller's world). Snapshots are immutable — a fold replaces
 * them, it never changes one — so each object is copied shallowly, with its own lists.
 */
export function forkFold(fold: FoldState): FoldState {
  const objects = new Map<string, FoldedObject>();
  for (const [id, o] of fold.objects) {
    objects.set(id, {
      ...o,
      ...(o.members ? { members: [...o.members] } : {}),
      ...(o.joins ? { joins: [...o.joins] } : {}),
    });
  }
  return {
    ...fold,
    objects,
    drivers: new Map([...fold.drivers].map(([k, v]) => [k, { ...v }])),
    warnings: [...fold.warnings],
  };
}
