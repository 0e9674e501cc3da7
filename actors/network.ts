/**
 * The network actor: `creating` → `active` → `deleting` → `deleted`; `failed`.
 * Its events are the journal's events; transient states invoke the driver through the
 * `effect` actor, which the controller provides.
 *
 * @module
 */

import { assign, setup } from "xstate";
import type { CnmEvent } from "../src/journal/events.ts";
import { type BaseContext, idleEffect, intentFields, outcomeFields } from "./_common.ts";

/** IPAM facts of one address family entry, as decided at create time. */
export interface NetworkIpamEntry {
  poolId: string;
  /** The address space the pool came from (default `LocalDefault`). */
  addressSpace?: string;
  pool: string;
  subPool?: string;
  gateway?: string;
  auxAddresses: Record<string, string>;
}

/** Context of a network actor. */
export interface NetworkContext extends BaseContext {
  name: string;
  driver: string;
  scope: "local" | "global";
  internal: boolean;
  enableIPv6: boolean;
  labels: Record<string, string>;
  options: Record<string, string>;
  predefined: boolean;
  ipam?: { driver: string; ipv4: NetworkIpamEntry[]; ipv6: NetworkIpamEntry[] };
  /** What was asked of a non-default IPAM driver; its answer arrives in `network.created`. */
  ipamRequest?: {
    driver: string;
    options: Record<string, string>;
    config: {
      subnet: string;
      ipRange?: string;
      gateway?: string;
      auxAddresses?: Record<string, string>;
    }[];
  };
  /** Facts the driver returned when the network was created. */
  facts: Record<string, unknown>;
  /** The driver configuration in force when the network was created (`driver.configured`). */
  driverConfig?: Record<string, unknown>;
}

/** Builds the initial context from a `network.create.requested` event. */
export function networkContextFrom(event: CnmEvent): NetworkContext {
  const d = event.data as Record<string, any>;
  return {
    id: event.objectId,
    createdAt: event.at,
    name: d.name,
    driver: d.driver,
    scope: d.scope,
    internal: d.internal,
    enableIPv6: d.enableIPv6 ?? false,
    labels: d.labels ?? {},
    options: d.options ?? {},
    predefined: d.predefined ?? false,
    ipam: d.ipam,
    ...(d.ipamRequest ? { ipamRequest: d.ipamRequest } : {}),
    ...(d.driverConfig ? { driverConfig: d.driverConfig } : {}),
    facts: {},
    ...intentFields(event, "failed"),
  };
}

/** The network state machine. */
export const networkMachine = setup({
  types: {} as {
    context: NetworkContext;
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
    facts: assign(({ context, event }) => {
      const facts = ((event.data as { facts?: Record<string, unknown> }).facts) ?? {};
      // A remote IPAM driver's decisions arrive with the outcome.
      const ipam = (facts.ipam as NetworkContext["ipam"]) ?? context.ipam;
      return { facts, ipam };
    }),
  },
}).createMachine({
  id: "network",
  context: ({ input }) => networkContextFrom(input.event),
  // Drift repaired by reconcile: recorded, no state change.
  on: { "network.reconciled": { actions: "reconciled" } },
  initial: "creating",
  states: {
    creating: {
      invoke: { src: "effect", input: ({ context }) => ({ state: "creating", context }) },
      on: {
        "network.created": { target: "active", actions: ["outcome", "facts"] },
        // A failure may say what the driver had made (`facts.made`), for the delete.
        "network.create.failed": { target: "failed", actions: ["outcome", "facts"] },
      },
    },
    active: {
      on: {
        "network.delete.requested": {
          target: "deleting",
          actions: { type: "intent", params: { resume: "active" } },
        },
      },
    },
    deleting: {
      invoke: { src: "effect", input: ({ context }) => ({ state: "deleting", context }) },
      on: {
        "network.deleted": { target: "deleted", actions: "outcome" },
        "network.delete.failed": [
          { guard: "resumeFailed", target: "failed", actions: "outcome" },
          { target: "active", actions: "outcome" },
        ],
      },
    },
    failed: {
      on: {
        "network.delete.requested": {
          target: "deleting",
          actions: { type: "intent", params: { resume: "failed" } },
        },
      },
    },
    deleted: { type: "final" },
  },
});
