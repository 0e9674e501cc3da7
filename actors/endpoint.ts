/**
 * The endpoint actor: `creating` → `created` ⇄ (`joining` → `joined` → `leaving`) →
 * `deleting` → `deleted`; `failed`. A joined endpoint may be deleted when forced.
 *
 * @module
 */

import { assign, setup } from "xstate";
import type { CnmEvent } from "../src/journal/events.ts";
import { type BaseContext, idleEffect, intentFields, outcomeFields } from "./_common.ts";

/** Context of an endpoint actor. */
export interface EndpointContext extends BaseContext {
  name: string;
  networkId: string;
  labels: Record<string, string>;
  options: Record<string, string>;
  ipv4Address?: string;
  ipv6Address?: string;
  macAddress?: string;
  /** Extra names in its network (Docker's aliases). */
  aliases?: string[];
  /** The sandbox this endpoint is joined to (or joining/leaving), else null. */
  sandboxId: string | null;
  /** Interface name inside the sandbox, decided at join time. */
  ifname?: string;
  /** Facts the driver returned from createEndpoint. */
  facts: Record<string, unknown>;
  /** Facts the driver returned from join (gateway, routes, …). */
  joinFacts: Record<string, unknown>;
}

/** Builds the initial context from an `endpoint.create.requested` event. */
export function endpointContextFrom(event: CnmEvent): EndpointContext {
  const d = event.data as Record<string, any>;
  return {
    id: event.objectId,
    createdAt: event.at,
    name: d.name,
    networkId: d.networkId,
    labels: d.labels ?? {},
    options: d.options ?? {},
    ipv4Address: d.ipv4Address,
    ipv6Address: d.ipv6Address,
    macAddress: d.macAddress,
    ...(d.aliases?.length ? { aliases: d.aliases } : {}),
    sandboxId: null,
    facts: {},
    joinFacts: {},
    ...intentFields(event, "failed"),
  };
}

const factsOf = (event: CnmEvent) =>
  ((event.data as { facts?: Record<string, unknown> }).facts) ?? {};

/** The endpoint state machine. */
export const endpointMachine = setup({
  types: {} as {
    context: EndpointContext;
    events: CnmEvent;
    input: { event: CnmEvent };
  },
  actors: { effect: idleEffect },
  guards: {
    forced: ({ event }) => (event.data as { force?: boolean }).force === true,
    resumeJoined: ({ context }) => context.resume === "joined",
    resumeFailed: ({ context }) => context.resume === "failed",
  },
  actions: {
    intent: assign(({ event }, params: { resume: string }) => intentFields(event, params.resume)),
    outcome: assign(({ event }) => outcomeFields(event)),
    reconciled: assign(({ event }) => ({ updatedAt: event.at })),
    created: assign(({ context, event }) => {
      const f = factsOf(event);
      // Drivers may fill in what the request left empty (e.g. a MAC or an address).
      return {
        facts: f,
        ipv4Address: (f.ipv4Address as string | undefined) ?? context.ipv4Address,
        ipv6Address: (f.ipv6Address as string | undefined) ?? context.ipv6Address,
        macAddress: context.macAddress ?? (f.macAddress as string | undefined),
      };
    }),
    attach: assign(({ event }) => {
      const d = event.data as { sandboxId: string; ifname: string };
      return { sandboxId: d.sandboxId, ifname: d.ifname };
    }),
    joined: assign(({ event }) => ({ joinFacts: factsOf(event) })),
    detach: assign({ sandboxId: null, ifname: undefined, joinFacts: {} }),
  },
}).createMachine({
  id: "endpoint",
  context: ({ input }) => endpointContextFrom(input.event),
  // Drift repaired by reconcile: recorded, no state change.
  on: { "endpoint.reconciled": { actions: "reconciled" } },
  initial: "creating",
  states: {
    creating: {
      invoke: { src: "effect", input: ({ context }) => ({ state: "creating", context }) },
      on: {
        "endpoint.created": { target: "created", actions: ["outcome", "created"] },
        "endpoint.create.failed": { target: "failed", actions: "outcome" },
      },
    },
    created: {
      on: {
        "endpoint.join.requested": {
          target: "joining",
          actions: [{ type: "intent", params: { resume: "created" } }, "attach"],
        },
        "endpoint.delete.requested": {
          target: "deleting",
          actions: { type: "intent", params: { resume: "created" } },
        },
      },
    },
    joining: {
      invoke: { src: "effect", input: ({ context }) => ({ state: "joining", context }) },
      on: {
        "endpoint.joined": { target: "joined", actions: ["outcome", "joined"] },
        "endpoint.join.failed": { target: "created", actions: ["outcome", "detach"] },
      },
    },
    joined: {
      on: {
        "endpoint.leave.requested": {
          target: "leaving",
          actions: { type: "intent", params: { resume: "joined" } },
        },
        "endpoint.delete.requested": {
          guard: "forced",
          target: "deleting",
          actions: { type: "intent", params: { resume: "joined" } },
        },
      },
    },
    leaving: {
      invoke: { src: "effect", input: ({ context }) => ({ state: "leaving", context }) },
      on: {
        "endpoint.left": { target: "created", actions: ["outcome", "detach"] },
        "endpoint.leave.failed": { target: "joined", actions: "outcome" },
      },
    },
    deleting: {
      invoke: { src: "effect", input: ({ context }) => ({ state: "deleting", context }) },
      on: {
        "endpoint.deleted": { target: "deleted", actions: ["outcome", "detach"] },
        "endpoint.delete.failed": [
          { guard: "resumeJoined", target: "joined", actions: "outcome" },
          { guard: "resumeFailed", target: "failed", actions: "outcome" },
          { target: "created", actions: "outcome" },
        ],
      },
    },
    failed: {
      on: {
        "endpoint.delete.requested": {
          target: "deleting",
          actions: { type: "intent", params: { resume: "failed" } },
        },
      },
    },
    deleted: { type: "final" },
  },
});
