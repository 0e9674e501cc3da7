/**
 * Facts about the object machines that both sides use — the journal's pure fold and the
 * controller's runtime: which machine each kind has, which states run a driver effect, and
 * where an effect's outcome leads.
 *
 * @module
 */

import type { AnyStateMachine } from "xstate";
import { endpointContextFrom, endpointMachine } from "./endpoint.ts";
import { networkContextFrom, networkMachine } from "./network.ts";
import { sandboxContextFrom, sandboxMachine } from "./sandbox.ts";
import type { CnmEvent, Kind } from "../src/journal/events.ts";

/** The machine of each object kind. */
export const MACHINES: Record<Kind, AnyStateMachine> = {
  network: networkMachine,
  endpoint: endpointMachine,
  sandbox: sandboxMachine,
};

/**
 * The context each machine starts with, from its `<kind>.create.requested` event (what the
 * machines' own `context` factories compute). Every object starts in `creating`.
 */
export const CONTEXT_FROM: Record<Kind, (event: CnmEvent) => unknown> = {
  network: networkContextFrom,
  endpoint: endpointContextFrom,
  sandbox: sandboxContextFrom,
};

/** States in which a driver effect is running. */
export const TRANSIENT_STATES: ReadonlySet<string> = new Set([
  "creating",
  "joining",
  "leaving",
  "deleting",
]);

/** `creating` → `create`, `joining` → `join`, … (for `<kind>.<verb>.failed`). */
export function verbOf(state: string): string {
  return { creating: "create", joining: "join", leaving: "leave", deleting: "delete" }[state] ??
    state;
}

/**
 * The state an effect's outcome leads to (the event's `to`): `state` is the transient state
 * that ran the effect, `resume` the stable state a failure returns to.
 */
export function outcomeTarget(type: string, state: string, resume = "failed"): string {
  if (type.endsWith(".failed")) return state === "creating" ? "failed" : resume;
  switch (type) {
    case "network.created":
      return "active";
    case "sandbox.created":
      return "ready";
    case "endpoint.created":
    case "endpoint.left":
      return "created";
    case "endpoint.joined":
      return "joined";
    default:
      return "deleted";
  }
}
