/**
 * The CNM view of the runtime's actor registry: lookups by id, id prefix or name, and the
 * relations between kinds (the endpoints of a network or of a sandbox).
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import type { Rec, Runtime } from "./runtime.ts";

/**
 * A network by id, name or unique id prefix. A failed create holds no name: a name finds the
 * object that is not failed, else the latest failed one of that name.
 */
export function findNetwork(rt: Runtime, ref: string): Rec | undefined {
  const m = rt.objects.network;
  const byId = m.get(ref);
  if (byId) return byId;
  const all = [...m.values()];
  return byName(rt, all.filter((r) => rt.context<NetworkContext>(r).name === ref)) ??
    unique(all.filter((r) => r.id.startsWith(ref)));
}

/** A sandbox by id, name or unique id prefix (names as {@link findNetwork}). */
export function findSandbox(rt: Runtime, ref: string): Rec | undefined {
  const m = rt.objects.sandbox;
  const byId = m.get(ref);
  if (byId) return byId;
  const all = [...m.values()];
  return byName(rt, all.filter((r) => rt.context<SandboxContext>(r).name === ref)) ??
    unique(all.filter((r) => r.id.startsWith(ref)));
}

/** Of the objects carrying one name: the one holding it, else the latest failed one. */
function byName(rt: Runtime, named: Rec[]): Rec | undefined {
  const holder = named.find((r) => rt.state(r) !== "failed");
  if (holder) return holder;
  const created = (r: Rec) => rt.context<{ createdAt: string }>(r).createdAt;
  return named.sort((a, b) => created(b).localeCompare(created(a)))[0];
}

/**
 * Whether an object holds its name: everything but a failed create (libnetwork rolls a
 * failed create back, so its name is free again).
 */
export function holdsName(rt: Runtime, rec: Rec): boolean {
  return rt.state(rec) !== "failed";
}

/** An endpoint by id or unique id prefix. */
export function findEndpoint(rt: Runtime, ref: string): Rec | undefined {
  const m = rt.objects.endpoint;
  return m.get(ref) ?? unique([...m.values()].filter((r) => r.id.startsWith(ref)));
}

/** Endpoints whose context passes `filter`. */
export function endpointsOf(rt: Runtime, filter: (c: EndpointContext) => boolean): Rec[] {
  return [...rt.objects.endpoint.values()].filter((r) => filter(rt.context<EndpointContext>(r)));
}

/** The context of a live network, by id. */
export function networkContext(rt: Runtime, id: string): NetworkContext | undefined {
  const r = rt.objects.network.get(id);
  return r ? rt.context<NetworkContext>(r) : undefined;
}

/** The context of a live sandbox, by id. */
export function sandboxContext(rt: Runtime, id: string): SandboxContext | undefined {
  const r = rt.objects.sandbox.get(id);
  return r ? rt.context<SandboxContext>(r) : undefined;
}

/** True unless the object failed or is gone: it holds names, pools and addresses. */
export function isLive(rt: Runtime, rec: Rec): boolean {
  return !["failed", "deleted"].includes(rt.state(rec));
}

function unique(recs: Rec[]): Rec | undefined {
  return recs.length === 1 ? recs[0] : undefined;
}
