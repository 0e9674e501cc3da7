/**
 * The sandbox actor: `creating` → `ready` → `deleting` → `deleted`; `failed`.
 * A sandbox is a network namespace; its endpoints are derived from the endpoints' events.
 *
 * @module
 */

import { assign, setup } from "xstate";
import type { CnmEvent } from "../src/journal/events.ts";
import { type BaseContext, idleEffect, intentFields, outcomeFields } from "./_common.ts";

/** Context of a sandbox actor. */
export interface SandboxContext extends BaseContext {
  name: string;
  /** Namespace path. */
  key: string;
  /** True when cnm created the namespace (and so removes it). */
  owned: boolean;
  labels: Record<string, string>;
  /** Directory of its hosts and resolv.conf, as journaled (absent in older events). */
  stateDir?: string;
  /** Options that shape the sandbox's hosts and resolv.conf files. */
  config?: { hostname?: string; dns?: string[]; dnsSearch?: string[]; extraHosts?: string[] };
  facts: Record<string, unknown>;
}

/** Builds the initial context from a `sandbox.create.requested` event. */
export function sandboxContextFrom(event: CnmEvent): SandboxContext {
  const d = event.data as Record<string, any>;
  return {
    id: event.objectId,
    createdAt: event.at,
    name: d.name,
    key: d.key,
    owned: d.owned,
    labels: d.labels ?? {},
    ...(d.stateDir ? { stateDir: d.stateDir } : {}),
    ...(d.config ? { config: d.config } : {}),
    facts: {},
    ...intentFields(event, "failed"),
  };
}

/** The sandbox state machine. */
export const sandboxMachine = setup({
  types: {} as {
    context: SandboxContext;
    events: CnmEvent;
    input: { event: CnmEvent };
  },
  actors: { effect: idleEffect },
  guards: {
    resumeFailed: ({ context }) => context.resume === "failed",
  },
  actions: {
    intent: assign(({ event }, params: { resume: string }) => intentFields(event, params.resume)),
    outcome: assign(({ event }) => outcomeFields(event)),
    reconciled: assign(({ event }) => ({ updatedAt: event.at })),
    facts: assign(({ event }) => ({
      facts: ((event.data as { facts?: Record<string, unknown> }).facts) ?? {},
    })),
  },
}).createMachine({
  id: "sandbox",
  context: ({ input }) => sandboxContextFrom(input.event),
  // Drift repaired by reconcile: recorded, no state change.
  on: { "sandbox.reconciled": { actions: "reconciled" } },
  initial: "creating",
  states: {
    creating: {
      invoke: { src: "effect", input: ({ context }) => ({ state: "creating", context }) },
      on: {
        "sandbox.created": { target: "ready", actions: ["outcome", "facts"] },
        "sandbox.create.failed": { target: "failed", actions: "outcome" },
      },
    },
    ready: {
      on: {
        "sandbox.delete.requested": {
          target: "deleting",
          actions: { type: "intent", params: { resume: "ready" } },
        },
      },
    },
    deleting: {
      invoke: { src: "effect", input: ({ context }) => ({ state: "deleting", context }) },
      on: {
        "sandbox.deleted": { target: "deleted", actions: "outcome" },
        "sandbox.delete.failed": [
          { guard: "resumeFailed", target: "failed", actions: "outcome" },
          { target: "ready", actions: "outcome" },
        ],
      },
    },
    failed: {
      on: {
        "sandbox.delete.requested": {
          target: "deleting",
          actions: { type: "intent", params: { resume: "failed" } },
        },
      },
    },
    deleted: { type: "final" },
  },
});
