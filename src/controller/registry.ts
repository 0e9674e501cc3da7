/**
 * The actor registry: the live objects by kind and id, each with its actor and the stream
 * sequence of its last event, and the change hook indexes are kept with (objects.ts).
 * Generic: it knows actors and kinds, nothing about what a network or an endpoint is.
 *
 * @module
 */

import type { AnyActorRef, Subscription } from "xstate";
import type { Kind } from "../journal/events.ts";
import { stateOf } from "../journal/fold.ts";

/** One live object: its actor and the stream sequence of its last event. */
export interface Rec {
  kind: Kind;
  id: string;
  actor: AnyActorRef;
  lastSeq: number;
  sub?: Subscription;
}

/** Told when an object enters the registry, changes its snapshot, or leaves (`removed`). */
export type ChangeListener = (rec: Rec, removed: boolean) => void;

/** The registry. */
export interface Registry {
  /** Live objects by kind and id (deleted ones leave). */
  readonly objects: Readonly<Record<Kind, Map<string, Rec>>>;
  /** Adds an object (replacing one with its id); it leaves once its actor is `deleted`. */
  register(kind: Kind, id: string, actor: AnyActorRef, lastSeq: number): Rec;
  /** Takes an object out (its actor is not stopped). */
  unregister(rec: Rec): void;
  /** Calls `listener` on every registration, snapshot change and removal; returns the undo. */
  onChange(listener: ChangeListener): () => void;
}

/** Creates an empty registry. */
export function createRegistry(): Registry {
  const objects: Record<Kind, Map<string, Rec>> = {
    network: new Map(),
    endpoint: new Map(),
    sandbox: new Map(),
  };
  const listeners = new Set<ChangeListener>();
  const changed = (rec: Rec, removed: boolean) => {
    for (const l of listeners) l(rec, removed);
  };
  const unregister = (rec: Rec) => {
    rec.sub?.unsubscribe();
    if (objects[rec.kind].get(rec.id) === rec) {
      objects[rec.kind].delete(rec.id);
      changed(rec, true);
    }
  };
  return {
    objects,
    unregister,
    register(kind, id, actor, lastSeq) {
      const rec: Rec = { kind, id, actor, lastSeq };
      const old = objects[kind].get(id);
      if (old) unregister(old);
      objects[kind].set(id, rec);
      changed(rec, false);
      rec.sub = actor.subscribe((snap: { value: unknown }) => {
        if (stateOf(snap) === "deleted") unregister(rec);
        else if (objects[kind].get(id) === rec) changed(rec, false);
      });
      return rec;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
  };
}
