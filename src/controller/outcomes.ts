/**
 * The effect half of the write path: each kind's machine gets an `effect` actor that runs its
 * transient state's effect (the runtime's `runEffect`), builds the outcome event (`*.failed`
 * with the error when the effect throws) and appends it, retrying until it is durable, before
 * the actor applies it; then the command waiting for it settles. Generic over kinds, like the
 * runtime (runtime.ts) that uses it.
 *
 * @module
 */

import { type AnyStateMachine, fromCallback } from "xstate";
import { MACHINES, outcomeTarget, verbOf } from "../../actors/mod.ts";
import type { EffectInput } from "../../actors/_common.ts";
import type { CnmEvent, Kind } from "../journal/events.ts";
import type { Journal } from "../journal/journal.ts";
import { ConflictError, toErrorRecord, UnavailableError } from "../errors.ts";
import type { Rec } from "./registry.ts";
import type { Waiters } from "./waiters.ts";

/** What an effect produced: the outcome event's type and data. */
export interface Outcome {
  type: string;
  data: Record<string, unknown>;
}

/**
 * Runs the effect of `kind` in transient `state`; throws on failure. `intentSeq` is the
 * stream sequence of the intent it carries out.
 */
export type RunEffect = (
  kind: Kind,
  state: string,
  context: unknown,
  effectId: string,
  intentSeq: number,
) => Promise<Outcome>;

/** Builds an event of this host. */
export type BuildEvent = (
  kind: string,
  objectId: string,
  type: string,
  from: string | null,
  to: string,
  data: Record<string, unknown>,
  extra?: { effectId?: string; cause?: string },
) => CnmEvent;

/** Options of {@link createEffectMachines}: the runtime's parts the effect half uses. */
export interface EffectMachinesOptions {
  journal: Journal;
  waiters: Waiters;
  /** The live object `kind`/`id`, if it is still registered. */
  object(kind: Kind, id: string): Rec | undefined;
  /** Runs the effect of `kind` in transient `state` (RuntimeOptions.runEffect). */
  runEffect: RunEffect;
  /** Called once an outcome is durable, before its command settles. */
  onOutcome?(kind: Kind, context: unknown, outcome: CnmEvent): void;
  /** Fault-injection points (crash tests). */
  hook(point: "effect-done" | "outcome-appended", event: CnmEvent): void;
  /** Builds an event of this host (Runtime.event). */
  event: BuildEvent;
  /** Tells a durable event to the runtime's listeners. */
  emit(event: CnmEvent, seq: number): void;
  /** Whether the runtime is closed (an outcome append stops retrying). */
  closed(): boolean;
}

/** Returns the machine of a kind whose effect actor runs the effect and journals its outcome. */
export function createEffectMachines(
  options: EffectMachinesOptions,
): (kind: Kind) => AnyStateMachine {
  const { journal, waiters, object, hook, event, emit, closed } = options;

  /** Runs a transient state's effect and journals its outcome; returns the outcome. */
  async function runEffect(
    kind: Kind,
    input: EffectInput<unknown>,
    cancelled: () => boolean,
  ): Promise<CnmEvent | undefined> {
    const ctx = input.context as {
      id: string;
      resume?: string;
      pending?: { eventId: string; effectId: string };
    };
    const pending = ctx.pending!;
    const started = performance.now();
    let outcome: Outcome;
    try {
      const intentSeq = object(kind, ctx.id)?.lastSeq ?? 0;
      outcome = await options.runEffect(
        kind,
        input.state,
        input.context,
        pending.effectId,
        intentSeq,
      );
    } catch (err) {
      outcome = {
        type: `${kind}.${verbOf(input.state)}.failed`,
        data: { error: toErrorRecord(err) },
      };
    }
    outcome.data.elapsedMs = Math.round((performance.now() - started) * 1000) / 1000;
    const e = event(
      kind,
      ctx.id,
      outcome.type,
      input.state,
      outcomeTarget(outcome.type, input.state, ctx.resume),
      outcome.data,
      { effectId: pending.effectId, cause: pending.eventId },
    );
    const rec = object(kind, ctx.id);
    if (!rec) return undefined;
    hook("effect-done", e);
    // The outcome must be durable before the actor applies it: retry until it is.
    for (let attempt = 0; !closed() && !cancelled(); attempt++) {
      try {
        const { seq } = await appendOutcome(e, rec.lastSeq, attempt);
        rec.lastSeq = seq;
        emit(e, seq);
        hook("outcome-appended", e);
        options.onOutcome?.(kind, input.context, e);
        waiters.settle(pending.eventId, e);
        return e;
      } catch (err) {
        if (err instanceof ConflictError) {
          waiters.fail(pending.eventId, err);
          return undefined;
        }
        await sleep(Math.min(2000, 100 * 2 ** Math.min(attempt, 5)));
      }
    }
    waiters.fail(
      pending.eventId,
      new UnavailableError("controller closed before the outcome was journaled"),
    );
    return undefined;
  }

  /**
   * Appends an outcome. A retry after a lost answer may find the subject moved on: when the
   * journal's last event there is this very outcome (the earlier attempt was stored; a
   * cluster's leader change can forget the dedup answer), it is durable — not a conflict.
   */
  async function appendOutcome(e: CnmEvent, expectSeq: number, attempt: number) {
    try {
      return await journal.append(e, expectSeq);
    } catch (err) {
      if (!(err instanceof ConflictError) || attempt === 0) throw err;
      const last = await journal.last(e.kind, e.objectId);
      if (last?.eventId === e.eventId) return { seq: last.seq, duplicate: true };
      throw err;
    }
  }

  /**
   * The machine of `kind` with the effect actor that runs {@link runEffect}: built once per
   * kind (a machine is a tree of state nodes; one per actor would cost CPU and memory).
   */
  const machines = new Map<Kind, ReturnType<typeof buildMachine>>();
  const provided = (kind: Kind) => {
    let m = machines.get(kind);
    if (!m) machines.set(kind, m = buildMachine(kind));
    return m;
  };
  const buildMachine = (kind: Kind) => {
    const effect = fromCallback<CnmEvent, EffectInput<unknown>>(({ input, sendBack }) => {
      let cancelled = false;
      runEffect(kind, input, () => cancelled).then((outcome) => {
        if (outcome && !cancelled) sendBack(outcome);
      });
      return () => (cancelled = true);
    });
    return MACHINES[kind].provide({ actors: { effect } });
  };

  return provided;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
