/**
 * The live objects: one actor per object this host runs (and per global network, mirrored),
 * by kind and id, with the stream sequence of its last event. Actors are restored from the
 * journal's facts — a create intent or a folded snapshot — never decided anew; a deleted
 * object leaves the registry by itself. A change hook tells every registration, snapshot
 * change and removal (objects.ts keeps its indexes with it). Generic: it knows actors and
 * kinds, nothing about what a network or an endpoint is.
 *
 * @module
 */

import { type AnyActorRef, type AnyStateMachine, createActor, type Subscription } from "xstate";
import { MACHINES, TRANSIENT_STATES } from "../../actors/mod.ts";
import type { CnmEvent, Kind, RecordedEvent } from "../journal/events.ts";
import { foldAll, stateOf } from "../journal/fold.ts";
import type { Journal } from "../journal/journal.ts";

/** One live object: its actor and the stream sequence of its last event. */
export interface Rec {
  kind: Kind;
  id: string;
  actor: AnyActorRef;
  lastSeq: number;
  sub?: Subscription;
  /**
   * Mirrors an object another host is changing (a global network in another host's
   * transient state): its actor runs no effect, and this host cannot write it meanwhile.
   */
  passive?: boolean;
}

/** Told when an object enters the registry, changes its snapshot, or leaves (`removed`). */
export type ChangeListener = (rec: Rec, removed: boolean) => void;

/** Where an actor is restored from. */
export type RestoreFrom = { intent: CnmEvent } | { snapshot: unknown };

/** Options of {@link createRegistry}. */
export interface RegistryOptions {
  journal: Journal;
  /** The machine to run for `kind`: with the real effect, or inert when `passive`. */
  machine(kind: Kind, passive: boolean): AnyStateMachine;
}

/** The registry. */
export interface Registry {
  readonly objects: Readonly<Record<Kind, Map<string, Rec>>>;
  /**
   * 12-character ids of every object this registry has held, deleted ones included (recovery
   * adds those it found deleted in the journal): what "the journal knows" for old marks.
   */
  readonly known: Set<string>;
  /** Registers an actor restored from the journal (not started). */
  restore(kind: Kind, id: string, from: RestoreFrom, lastSeq: number, passive?: boolean): Rec;
  /** Replaces an object's actor with one at `snapshot`, started (deleted: removes it). */
  adopt(kind: Kind, id: string, snapshot: unknown, lastSeq: number, passive: boolean): void;
  /** Rebuilds one object's actor from its events in the journal. */
  reload(kind: Kind, id: string): Promise<void>;
  /** Stops every actor. */
  stopAll(): void;
  /** Calls `listener` on every registration, snapshot change and removal; returns the undo. */
  onChange(listener: ChangeListener): () => void;
}

/** Creates the registry. */
export function createRegistry(options: RegistryOptions): Registry {
  const { journal } = options;
  const objects: Record<Kind, Map<string, Rec>> = {
    network: new Map(),
    endpoint: new Map(),
    sandbox: new Map(),
  };
  const known = new Set<string>();
  const listeners = new Set<ChangeListener>();
  const changed = (rec: Rec, removed: boolean) => {
    for (const l of listeners) l(rec, removed);
  };

  const register = (kind: Kind, id: string, actor: AnyActorRef, lastSeq: number): Rec => {
    const rec: Rec = { kind, id, actor, lastSeq };
    const old = objects[kind].get(id);
    if (old) unregister(kind, id);
    objects[kind].set(id, rec);
    known.add(id.slice(0, 12));
    changed(rec, false);
    rec.sub = actor.subscribe((snap: { value: unknown }) => {
      if (objects[kind].get(id) !== rec) return;
      if (stateOf(snap) === "deleted") {
        objects[kind].delete(id);
        rec.sub?.unsubscribe();
        changed(rec, true);
      } else changed(rec, false);
    });
    return rec;
  };

  const restore: Registry["restore"] = (kind, id, from, lastSeq, passive = false) => {
    const machine = options.machine(kind, passive);
    const actor = "intent" in from
      ? createActor(machine, { input: { event: from.intent } })
      : createActor(machine, {
        snapshot: MACHINES[kind].getPersistedSnapshot(from.snapshot as never),
      });
    const rec = register(kind, id, actor, lastSeq);
    if (passive) rec.passive = true;
    return rec;
  };

  function unregister(kind: Kind, id: string): void {
    const old = objects[kind].get(id);
    if (!old) return;
    old.sub?.unsubscribe();
    old.actor.stop();
    objects[kind].delete(id);
    changed(old, true);
  }

  return {
    objects,
    known,
    restore,
    adopt(kind, id, snapshot, lastSeq, passive) {
      unregister(kind, id);
      if (stateOf(snapshot) === "deleted") return;
      restore(kind, id, { snapshot }, lastSeq, passive).actor.start();
    },
    async reload(kind, id) {
      const list: RecordedEvent[] = [];
      for await (const e of journal.read({ subject: `${journal.prefix}.${kind}.${id}` })) {
        list.push(e);
      }
      const obj = (await foldAll(list)).objects.get(id);
      unregister(kind, id);
      if (!obj || stateOf(obj.snapshot) === "deleted") return;
      const s = stateOf(obj.snapshot);
      if (TRANSIENT_STATES.has(s) && obj.intent) {
        // Another writer left it mid-effect; run it like recovery does.
        const rec = s === "creating"
          ? restore(kind, id, { intent: obj.createIntent ?? obj.intent! }, obj.lastSeq)
          : restore(kind, id, { snapshot: obj.before }, obj.lastSeq);
        rec.actor.start();
        if (s !== "creating") rec.actor.send(obj.intent);
        return;
      }
      restore(kind, id, { snapshot: obj.snapshot }, obj.lastSeq).actor.start();
    },
    onChange(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    stopAll() {
      for (const m of [objects.sandbox, objects.network, objects.endpoint]) {
        for (const rec of m.values()) {
          rec.sub?.unsubscribe();
          rec.actor.stop();
        }
      }
    },
  };
}
