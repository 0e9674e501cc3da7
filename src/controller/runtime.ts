/**
 * The event-sourced write path, generic over object kinds (DESIGN §3): a command's intent is
 * appended (`expect.lastSubjectSequence`, msgID) → the actor takes it and its transient state
 * runs the effect → the outcome is appended → the actor applies it → the command settles.
 * Also: the actor registry, intents whose append timed out (settled before the object is used
 * again), reload of an object another writer changed, and fencing once the lease is lost.
 * The effect half (effect → outcome durable → settle) is outcomes.ts; the registry,
 * the waiters and the uncertain intents have their own files too.
 *
 * The runtime knows the machines (actors/mod.ts) and the journal, nothing about networks,
 * endpoints or sandboxes: what an effect does is the `runEffect` it is given.
 *
 * @module
 */

import { type Observable, Subject } from "rxjs";
import { MACHINES } from "../../actors/mod.ts";
import { type CnmEvent, EVENT_VERSION, type Kind, type RecordedEvent } from "../journal/events.ts";
import type { Journal } from "../journal/journal.ts";
import { stateOf } from "../journal/fold.ts";
import { ConflictError, fromErrorRecord, type toErrorRecord, UnavailableError } from "../errors.ts";
import { newEventId } from "../ids.ts";
import { KeyedMutex } from "./locks.ts";
import { createUncertainIntents } from "./uncertain.ts";
import { createWaiters } from "./waiters.ts";
import { type ChangeListener, createRegistry, type Rec } from "./registry.ts";
import { type BuildEvent, createEffectMachines, type RunEffect } from "./outcomes.ts";

/** Where {@link RuntimeOptions.hook} is called (crash tests kill the process there). */
export type CrashPoint = "intent-appended" | "effect-done" | "outcome-appended";

export type { Outcome } from "./outcomes.ts";
export type { ChangeListener, Rec } from "./registry.ts";

/** Options of {@link createRuntime}. */
export interface RuntimeOptions {
  journal: Journal;
  /** Written into every event's `host`. */
  hostId: string;
  /** Milliseconds a command waits for its outcome. */
  commandTimeoutMs: number;
  /** Runs the effect of `kind` in transient `state`; throws on failure. */
  runEffect: RunEffect;
  /** Called once an outcome is durable, before its command settles. */
  onOutcome?(kind: Kind, context: unknown, outcome: CnmEvent): void;
  /** Fault-injection points (crash tests). */
  hook?(point: CrashPoint, event: CnmEvent): void;
}

/** The write path and the actor registry. */
export interface Runtime {
  readonly hostId: string;
  readonly journal: Journal;
  /** Every event this runtime appends, once durable. */
  readonly events$: Observable<RecordedEvent>;
  /** Keyed locks: commands on one object run one at a time. */
  readonly locks: KeyedMutex;
  /** Live objects by kind and id (deleted ones leave). */
  readonly objects: Readonly<Record<Kind, Map<string, Rec>>>;
  /**
   * 12-character ids of every object this runtime has held, deleted ones included (recovery
   * adds those it found deleted in the journal): what "the journal knows" for old marks.
   */
  readonly known: Set<string>;
  /**
   * Calls `listener` whenever an object is registered, its actor's snapshot changes, or it
   * leaves the registry (deleted, reloaded, closed). Returns the unsubscribe function.
   * Indexes over the registry (names, relations) are kept by such listeners, so the
   * runtime stays generic.
   */
  onChange(listener: ChangeListener): () => void;
  /** Called with every event once it is durable (before `events$` subscribers). */
  onAppended(listener: (event: RecordedEvent) => void): () => void;
  /** Top-level state of an object. */
  state(rec: Rec): string;
  /** Context of an object's actor. */
  context<C>(rec: Rec): C;
  /** The intent that creates a new object: `from` null, a fresh effectId. */
  createIntent(kind: Kind, id: string, data: Record<string, unknown>): CnmEvent;
  /** An intent for an existing object: `from` its current state, a fresh effectId. */
  intent(rec: Rec, type: string, to: string, data: Record<string, unknown>): CnmEvent;
  /**
   * Appends an intent for `rec` (or, without `rec`, creates the object it starts) and hands
   * it to the actor. `done` resolves once the outcome is durable and rejects with the
   * recorded error for `*.failed` outcomes. Locks that only guard the decision may be
   * released as soon as this returns; the effect runs on.
   */
  begin(kind: Kind, rec: Rec | undefined, intent: CnmEvent): Promise<{ done: Promise<CnmEvent> }>;
  /** {@link begin}, then waits for the outcome. */
  decide(kind: Kind, rec: Rec | undefined, intent: CnmEvent): Promise<CnmEvent>;
  /** An actor rebuilt from the journal (not started): from its create intent, or a snapshot. */
  restore(
    kind: Kind,
    id: string,
    from: { intent: CnmEvent } | { snapshot: unknown },
    lastSeq: number,
  ): Rec;
  /**
   * Replaces an object's actor with one at `snapshot` (the world's fold after another host's
   * event), started; `passive` when that host is running the object's effect. A deleted
   * snapshot removes the object.
   */
  adopt(kind: Kind, id: string, snapshot: unknown, lastSeq: number, passive: boolean): void;
  /** The eventId of the intent a restored, not yet started `creating` actor carries. */
  pendingEventId(rec: Rec): string;
  /** Waits for the outcome of the intent `eventId`. */
  waitOutcome(eventId: string): Promise<CnmEvent>;
  /** Appends a non-transition event (e.g. `network.reconciled`) to a live object. */
  note(rec: Rec, type: string, data: Record<string, unknown>): Promise<void>;
  /**
   * Appends an event to a subject no actor folds (e.g. `host.reconciled`, `driver.configured`)
   * and returns its sequence. `expectSeq` is the subject's last sequence as the caller knows it
   * (0 = none; a mismatch is a ConflictError); default: whatever the journal has last. The
   * first event of a subject gets `from: null`, as every object's first event.
   */
  append(event: CnmEvent, expectSeq?: number): Promise<number>;
  /** Builds an event of this host. */
  event: BuildEvent;
  /** Rebuilds one object's actor from its events in the journal. */
  reload(kind: Kind, id: string): Promise<void>;
  /** Throws when closed or fenced. */
  assertOpen(): void;
  /** Stops all writes: another controller owns this host now. */
  fence(reason: string): void;
  /** Tells the runtime whether NATS is connected; a reconnect settles uncertain intents. */
  setConnected(connected: boolean): void;
  /** Stops every actor and fails every waiting command. */
  close(): void;
}

/** Creates the runtime. */
export function createRuntime(options: RuntimeOptions): Runtime {
  const { journal, hostId } = options;
  const hook = options.hook ?? (() => {});
  const events = new Subject<RecordedEvent>();
  const locks = new KeyedMutex();
  const waiters = createWaiters(options.commandTimeoutMs);
  let connected = true;
  let closed = false;
  let fenced: string | undefined;
  const appendListeners = new Set<(event: RecordedEvent) => void>();

  const state = (rec: Rec) => stateOf(rec.actor.getSnapshot());
  const context = <C>(rec: Rec) => rec.actor.getSnapshot().context as C;
  const emit = (event: CnmEvent, seq: number) => {
    const recorded = { ...event, seq };
    for (const l of appendListeners) l(recorded);
    events.next(recorded);
  };

  const event: Runtime["event"] = (kind, objectId, type, from, to, data, extra = {}) => ({
    v: EVENT_VERSION,
    eventId: newEventId(),
    kind,
    objectId,
    type,
    from,
    to,
    at: new Date().toISOString(),
    host: hostId,
    data,
    ...(extra.effectId ? { effectId: extra.effectId } : {}),
    ...(extra.cause ? { cause: extra.cause } : {}),
  });

  const assertOpen = () => {
    if (closed) throw new UnavailableError("controller is closed");
    if (fenced) throw new ConflictError(`controller stopped writing: ${fenced}`);
  };

  const provided = createEffectMachines({
    journal,
    waiters,
    object: (kind, id) => objects[kind].get(id),
    runEffect: options.runEffect,
    onOutcome: options.onOutcome,
    hook,
    event,
    emit,
    closed: () => closed,
  });

  const registry = createRegistry({
    journal,
    machine: (kind, passive) => passive ? MACHINES[kind] : provided(kind),
  });
  const { objects, restore, reload } = registry;

  const uncertain = createUncertainIntents({
    journal,
    locks,
    abandon: (intent, to) =>
      event(
        intent.kind,
        intent.objectId,
        intent.type.replace(/\.requested$/, ".failed"),
        intent.to,
        to,
        {
          error: {
            name: "UnavailableError",
            code: "UNAVAILABLE",
            message:
              "abandoned: the journal did not acknowledge the intent in time; nothing was changed",
          },
        },
        { effectId: intent.effectId, cause: intent.eventId },
      ),
    stateOf: (kind, id) => {
      const rec = objects[kind].get(id);
      return rec ? state(rec) : undefined;
    },
    emit,
    reload,
  });

  async function begin(
    kind: Kind,
    rec: Rec | undefined,
    intent: CnmEvent,
  ): Promise<{ done: Promise<CnmEvent> }> {
    assertOpen();
    if (!connected) {
      throw new UnavailableError("journal unavailable: the NATS connection is down (reconnecting)");
    }
    if (rec?.passive) {
      throw new ConflictError(
        `${kind} ${intent.objectId} is busy (state ${state(rec)} on another host); ` +
          "its pending operation completes first",
      );
    }
    if (rec && !rec.actor.getSnapshot().can(intent)) {
      throw new ConflictError(
        `${kind} ${intent.objectId} cannot take ${intent.type} in state ${state(rec)}`,
      );
    }
    await uncertain.settle(intent.objectId);
    let seq: number;
    try {
      ({ seq } = await journal.append(intent, rec?.lastSeq ?? 0));
    } catch (err) {
      // A timeout may still have stored it: remember, and settle before the object is used.
      if (err instanceof UnavailableError) uncertain.add(kind, intent);
      // Someone else wrote this object: take the journal's view.
      if (err instanceof ConflictError && rec) await reload(kind, rec.id).catch(() => {});
      throw err;
    }
    emit(intent, seq);
    hook("intent-appended", intent);
    const done = waiters.wait(intent.eventId);
    if (rec) {
      rec.lastSeq = seq;
      rec.actor.send(intent);
    } else {
      restore(kind, intent.objectId, { intent }, seq).actor.start();
    }
    const checked = done.then((outcome) => {
      if (outcome.type.endsWith(".failed")) {
        throw fromErrorRecord((outcome.data as { error: ReturnType<typeof toErrorRecord> }).error);
      }
      return outcome;
    });
    checked.catch(() => {}); // awaited by the caller; never an unhandled rejection
    return { done: checked };
  }

  return {
    hostId,
    journal,
    events$: events.asObservable(),
    locks,
    objects,
    known: registry.known,
    onChange: registry.onChange,
    onAppended(listener) {
      appendListeners.add(listener);
      return () => void appendListeners.delete(listener);
    },
    state,
    context,
    event,
    createIntent: (kind, id, data) =>
      event(kind, id, `${kind}.create.requested`, null, "creating", data, {
        effectId: newEventId(),
      }),
    intent: (rec, type, to, data) =>
      event(rec.kind, rec.id, type, state(rec), to, data, { effectId: newEventId() }),
    begin,
    decide: async (kind, rec, intent) => await (await begin(kind, rec, intent)).done,
    restore: (kind, id, from, lastSeq) => restore(kind, id, from, lastSeq),
    adopt: registry.adopt,
    // A fresh actor in `creating` carries its create intent as `pending`.
    pendingEventId: (rec) =>
      (rec.actor.getSnapshot().context as { pending?: { eventId: string } }).pending?.eventId ??
        "",
    waitOutcome: (eventId) => waiters.wait(eventId),
    async note(rec, type, data) {
      const s = state(rec);
      const e = event(rec.kind, rec.id, type, s, s, data);
      const { seq } = await journal.append(e, rec.lastSeq);
      rec.lastSeq = seq;
      rec.actor.send(e);
      emit(e, seq);
    },
    async append(event, expectSeq) {
      const expected = expectSeq ?? (await journal.last(event.kind, event.objectId))?.seq ?? 0;
      const e = expected === 0 ? { ...event, from: null } : event;
      const { seq } = await journal.append(e, expected);
      emit(e, seq);
      return seq;
    },
    reload,
    assertOpen,
    fence(reason) {
      fenced = reason;
      console.error(`cnm: ${reason}; this controller no longer writes`);
    },
    setConnected(c) {
      connected = c;
      if (c) uncertain.settleAll();
    },
    close() {
      if (closed) return;
      closed = true;
      registry.stopAll();
      uncertain.close();
      waiters.failAll(new UnavailableError("controller closed"));
      events.complete();
    },
  };
}
