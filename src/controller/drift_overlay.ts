/**
 * Drift of global (overlay) networks on this host: the per-network namespaces this
 * controller made against the networks the journal knows (an orphan holds its VNIs and is
 * removed); in each live network's namespace its VXLAN devices (missing, or a different VNI,
 * port, bridge or mark: re-created) and every neighbour/FDB entry against the peer table
 * folded from the stream (missing, stale or learned entries are repaired by handing the
 * driver its whole table again, which programs with replace); and VXLAN devices carrying an
 * overlay mark where none belongs (the host namespace, another network's namespace): this
 * controller's are orphans and removed, another controller's are `foreign`, only reported.
 *
 * @module
 */

import type { NetworkContext } from "../../actors/network.ts";
import type { OverlayDriver, PeerState } from "../../drivers/overlay/mod.ts";
import type { ControllerContext } from "./context.ts";
import type { Finding } from "./drift.ts";
import { driverNetwork } from "./effects.ts";
import { isGlobal } from "./global.ts";
import { peerTables } from "./peers.ts";

const NETNS_DIR = "/var/run/netns/";

/** The overlay driver, when it is one this controller has. */
function overlayOf(ctx: ControllerContext): OverlayDriver | undefined {
  const d = ctx.drivers.driver("overlay") as Partial<OverlayDriver> | undefined;
  return d?.ownedNamespaces && d.peerState ? d as OverlayDriver : undefined;
}

/** Compares overlay namespaces and peer entries with the journal's view. Reads only. */
export async function inspectOverlayDrift(ctx: ControllerContext): Promise<Finding[]> {
  const overlay = overlayOf(ctx);
  if (!overlay) return [];
  const rt = ctx.runtime;
  const peerCtx = { kernel: ctx.kernel, prefix: ctx.settings.namePrefix };
  const nets = [...rt.objects.network.values()]
    .map((r) => ({ state: rt.state(r), c: rt.context<NetworkContext>(r) }))
    .filter((n) => isGlobal(n.c) && n.c.driver === "overlay");
  const known = new Set(nets.filter((n) => n.state !== "deleted").map((n) => n.c.id.slice(0, 12)));
  const out: Finding[] = [];
  for (const d of await overlay.strayDevices(known, peerCtx)) {
    const name = d.netns ? `${d.name} in ${d.netns.slice(NETNS_DIR.length)}` : d.name;
    const why = known.has(d.networkId12)
      ? "not this namespace's"
      : rt.known.has(d.networkId12)
      ? "deleted"
      : "unknown to this journal";
    const of = `VNI ${d.vni}, mark of network ${d.networkId12} (${why})`;
    out.push(
      d.mine
        ? { kind: "host", objectId: "", resource: "vxlan", name, problem: "unexpected", actual: of }
        : {
          kind: "host",
          objectId: "",
          resource: "vxlan",
          name,
          problem: "foreign",
          actual: `made by controller ${d.owner}`,
        },
    );
  }
  for (const ns of await overlay.ownedNamespaces(peerCtx)) {
    if (!known.has(ns.networkId12)) {
      out.push({
        kind: "host",
        objectId: "",
        resource: "netns",
        name: ns.name,
        problem: "unexpected",
      });
    }
  }
  for (const n of nets) {
    if (n.state !== "active") continue;
    for (const d of (await overlay.deviceState(driverNetwork(n.c), peerCtx)).devices) {
      out.push({
        kind: "network",
        objectId: n.c.id,
        resource: "vxlan",
        name: d.name,
        problem: d.problem,
        expected: d.expected,
        ...(d.actual ? { actual: d.actual } : {}),
      });
    }
    const state = await overlay.peerState(driverNetwork(n.c), peerCtx);
    if (!state.namespace) continue;
    const entry = (e: { kind: string; dev: string; ip?: string; mac: string; vtep?: string }) =>
      `${e.kind} ${e.ip ?? e.mac} on ${e.dev}`;
    const value = (e: { ip?: string; mac: string; vtep?: string }) =>
      e.vtep ? `${e.mac} via ${e.vtep}` : `${e.ip} at ${e.mac}`;
    for (const e of state.missing) {
      out.push({
        kind: "network",
        objectId: n.c.id,
        resource: "peer",
        name: entry(e),
        problem: "missing",
        expected: value(e),
      });
    }
    for (const e of state.stale) {
      out.push({
        kind: "network",
        objectId: n.c.id,
        resource: "peer",
        name: entry(e),
        problem: "different",
        actual: value(e),
      });
    }
    for (const e of state.learned) {
      out.push({
        kind: "network",
        objectId: n.c.id,
        resource: "peer",
        name: entry(e),
        problem: "different",
        actual: `${value(e)} (learned)`,
      });
    }
  }
  return out;
}

/** Removes an orphan overlay namespace of this controller. */
export async function removeOverlayOrphan(ctx: ControllerContext, name: string): Promise<void> {
  await overlayOf(ctx)!.removeOrphan(name, {
    kernel: ctx.kernel,
    prefix: ctx.settings.namePrefix,
  });
}

/** True when `name` is one of this controller's overlay namespaces. */
export function isOverlayNamespace(ctx: ControllerContext, name: string): boolean {
  return name.startsWith(`${ctx.settings.namePrefix}ov-`);
}

/** Whether reconcile repairs these findings of a network through {@link repairOverlay}. */
export function isOverlayFinding(f: Finding): boolean {
  return f.resource === "peer" || f.resource === "vxlan";
}

/**
 * Repairs a network's data plane here: its VXLAN devices re-created when a finding says so,
 * then its whole peer table programmed with replace (a re-created device has no entries).
 */
export async function repairOverlay(
  ctx: ControllerContext,
  c: NetworkContext,
  findings: Finding[],
): Promise<void> {
  const overlay = overlayOf(ctx);
  if (!overlay) return;
  const peers = [...(peerTables(ctx).get(c.id)?.values() ?? [])];
  const peerCtx = { kernel: ctx.kernel, prefix: ctx.settings.namePrefix };
  if (findings.some((f) => f.resource === "vxlan")) {
    await overlay.repairDevices(driverNetwork(c), peers, peerCtx);
  } else await overlay.setPeers(driverNetwork(c), peers, peerCtx);
}

/** Removes an orphan VXLAN device of this controller, named as its finding names it. */
export async function removeOverlayDevice(ctx: ControllerContext, name: string): Promise<void> {
  const [dev, ns] = name.split(" in ");
  await overlayOf(ctx)!.removeStrayDevice(
    { name: dev, ...(ns ? { netns: `${NETNS_DIR}${ns}` } : {}) },
    { kernel: ctx.kernel, prefix: ctx.settings.namePrefix },
  );
}

/**
 * What this host has programmed for a global network's remote peers against its peer table
 * (`undefined` for a network whose driver programs none).
 */
export async function networkPeers(
  ctx: ControllerContext,
  c: NetworkContext,
): Promise<PeerState | undefined> {
  const overlay = overlayOf(ctx);
  if (!overlay || !isGlobal(c) || c.driver !== "overlay") return undefined;
  return await overlay.peerState(driverNetwork(c), {
    kernel: ctx.kernel,
    prefix: ctx.settings.namePrefix,
  });
}
