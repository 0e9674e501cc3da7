/**
 * Pieces the three object machines share: the effect actor's input, the pending-intent
 * record, and the context fields every object has.
 *
 * @module
 */

import { fromCallback } from "xstate";
import type { CnmEvent } from "../src/journal/events.ts";
import type { ErrorRecord } from "../src/errors.ts";

/** The intent an object is working on (set on entering a transient state). */
export interface PendingIntent {
  eventId: string;
  effectId: string;
  type: string;
  data: Record<string, unknown>;
}

/** Fields every object context carries. */
export interface BaseContext {
  id: string;
  /** Time of the first event. */
  createdAt: string;
  /** Time of the latest event. */
  updatedAt: string;
  /** The intent being carried out while in a transient state. */
  pending?: PendingIntent;
  /** The stable state to return to if the pending effect fails. */
  resume?: string;
  /** The error of the last failed effect, if any. */
  error?: ErrorRecord;
}

/** What the `effect` actor receives when a transient state is entered. */
export interface EffectInput<C> {
  /** Which transient state invoked it (`creating`, `joining`, …). */
  state: string;
  context: C;
}

/**
 * The default effect: does nothing and never answers. The controller provides the real one
 * with `machine.provide({ actors: { effect } })`; pure folds (replay) never start it.
 */
export const idleEffect = fromCallback<CnmEvent, EffectInput<unknown>>(() => {});

/** Context update shared by every intent event. */
export function intentFields(event: CnmEvent, resume: string) {
  return {
    pending: {
      eventId: event.eventId,
      effectId: event.effectId ?? event.eventId,
      type: event.type,
      data: event.data,
    },
    resume,
    updatedAt: event.at,
  };
}

/** Context update shared by every outcome event. */
export function outcomeFields(event: CnmEvent) {
  const error = (event.data as { error?: ErrorRecord }).error;
  return { pending: undefined, resume: undefined, updatedAt: event.at, error };
}
