/**
 * The overlay driver on the multi-host lab, without a controller: one kernel and one driver
 * per host, and helpers that do what a controller would — create networks and endpoints,
 * make sandbox namespaces, join, and hand the peers to every host explicitly.
 *
 * @module
 */

import type { DriverEndpoint, DriverNetwork, EffectContext } from "../../drivers/driver.ts";
import {
  createOverlayDriver,
  type OverlayDriver,
  type OverlayPeer,
} from "../../drivers/overlay/mod.ts";
import { createKernel, type Kernel } from "../../src/kernel/mod.ts";
import { sh } from "../_harness/command.ts";
import { createLab, type Lab, type LabHost } from "../_harness/multihost.ts";
import { requireRoot } from "../_harness/netns.ts";

/** One lab host with its kernel and driver. */
export interface OverlayHost {
  lab: LabHost;
  kernel: Kernel;
  driver: OverlayDriver;
  ctx: EffectContext;
}

/** A joined endpoint: where it lives, its sandbox and its peer record. */
export interface Attached {
  host: OverlayHost;
  endpoint: DriverEndpoint;
  /** Sandbox namespace name. */
  sandbox: string;
  sandboxPath: string;
  peer: OverlayPeer;
  facts: Record<string, unknown>;
}

/** The lab plus the helpers. */
export interface OverlayLab {
  lab: Lab;
  hosts: OverlayHost[];
  /** An overlay network as a controller would hand it to drivers. */
  network(
    n: number,
    options?: { subnet?: string; vni?: number; extra?: Record<string, string> },
  ): DriverNetwork;
  /** createEndpoint + a sandbox namespace + join on `host`; the address is `.<hostIndex+1>` unless given. */
  attach(
    host: OverlayHost,
    net: DriverNetwork,
    options?: { ip?: string; name?: string },
  ): Promise<Attached>;
  /** leave + deleteEndpoint + the sandbox namespace removed. */
  detach(a: Attached, net: DriverNetwork): Promise<void>;
  /** Gives every host the full peer list (`setPeers`). */
  setPeersEverywhere(net: DriverNetwork, peers: OverlayPeer[]): Promise<void>;
  cleanup(): Promise<void>;
}

const hex = (n: number, len: number) => n.toString(16).padStart(len, "0");

/** Starts a lab of `hosts` hosts (default 3) with a driver on each. */
export async function startOverlayLab(hosts = 3): Promise<OverlayLab> {
  const lab = await createLab({ hosts, label: "ov" });
  const list: OverlayHost[] = [];
  try {
    for (const h of lab.hosts) {
      const kernel = await createKernel({ hostNamespace: h.path });
      const driver = createOverlayDriver({
        advertiseAddress: h.address,
        owner: `t${lab.prefix.slice(2)}${h.index}`,
      });
      list.push({
        lab: h,
        kernel,
        driver,
        ctx: { effectId: `fx${h.index}`, kernel, prefix: h.namePrefix },
      });
    }
  } catch (err) {
    for (const h of list) await h.kernel.close();
    await lab.cleanup();
    throw err;
  }
  let seq = 0;
  return {
    lab,
    hosts: list,
    network(n, o = {}) {
      const subnet = o.subnet ?? "10.0.1.0/24";
      const base = subnet.split("/")[0].split(".").slice(0, 3).join(".");
      return {
        id: `${hex(n, 4)}${"ab".repeat(30)}`,
        internal: false,
        enableIPv6: false,
        options: {
          "com.docker.network.driver.overlay.vxlanid_list": String(o.vni ?? 4095 + n),
          ...(o.extra ?? {}),
        },
        labels: {},
        ipv4: [{
          addressSpace: "GlobalDefault",
          pool: subnet,
          gateway: `${base}.1/24`,
          auxAddresses: {},
        }],
        ipv6: [],
        facts: {},
      };
    },
    async attach(host, net, o = {}) {
      const base = net.ipv4[0].pool.split("/")[0].split(".").slice(0, 3).join(".");
      const ip = o.ip ?? `${base}.${host.lab.index + 1}/24`;
      const id = `${hex(++seq, 6)}${"cd".repeat(29)}`;
      const ep: DriverEndpoint = { id, networkId: net.id, options: {}, ipv4Address: ip, facts: {} };
      ep.facts = (await host.driver.createEndpoint(net, ep, host.ctx)) ?? {};
      const sandbox = `${host.lab.namePrefix}${o.name ?? `c${seq}`}`;
      const sandboxPath = await host.kernel.ensureNetns(sandbox);
      const facts = (await host.driver.join(net, ep, {
        id: `sb${seq}`,
        key: sandboxPath,
        ifname: "eth0",
        labels: {},
      }, host.ctx)) ?? {};
      const peer = { ip: String(facts.ip), mac: String(facts.mac), vtep: String(facts.vtep) };
      return { host, endpoint: ep, sandbox, sandboxPath, peer, facts };
    },
    async detach(a, net) {
      const sb = { id: "sb", key: a.sandboxPath, ifname: "eth0", labels: {} };
      await a.host.driver.leave(net, a.endpoint, sb, a.host.ctx);
      await a.host.driver.deleteEndpoint(net, a.endpoint, a.host.ctx);
      await a.host.kernel.deleteNetns(a.sandbox);
    },
    async setPeersEverywhere(net, peers) {
      for (const h of list) await h.driver.setPeers(net, peers, h.ctx);
    },
    async cleanup() {
      for (const h of list) await h.kernel.close();
      await lab.cleanup();
    },
  };
}

/**
 * Runs `fn` on a fresh lab of `hosts` hosts (needs root), then removes it and checks that no
 * namespace of it is left.
 */
export async function withOverlayLab(
  hosts: number,
  fn: (lab: OverlayLab) => Promise<void>,
): Promise<void> {
  requireRoot();
  const lab = await startOverlayLab(hosts);
  try {
    await fn(lab);
  } finally {
    await lab.cleanup();
  }
  const left = await lab.lab.namespaces();
  if (left.length) throw new Error(`namespaces left behind: ${left.join(" ")}`);
}

/** `ip -n NS -j neigh show dev DEV nud permanent`: [ip, mac] pairs. */
export async function kernelNeighbors(ns: string, dev: string): Promise<[string, string][]> {
  const rows = JSON.parse(
    await sh(["ip", "-n", ns, "-j", "neigh", "show", "dev", dev, "nud", "permanent"]),
  );
  return rows.map((r: { dst: string; lladdr: string }) => [r.dst, r.lladdr] as [string, string])
    .sort();
}

/** `bridge -n NS -j fdb show dev DEV`, the device's own remote entries: [mac, dst, state]. */
export async function kernelFdb(ns: string, dev: string): Promise<[string, string, string][]> {
  const rows = JSON.parse(await sh(["bridge", "-n", ns, "-j", "fdb", "show", "dev", dev])) as {
    mac: string;
    dst?: string;
    flags: string[];
    state?: string;
  }[];
  return rows.filter((r) => r.flags.includes("self") && r.dst)
    .map((r) => [r.mac, r.dst!, r.state ?? ""] as [string, string, string]).sort();
}

/** The overlay namespace name of `net` on `host`. */
export function overlayNs(a: Attached | { facts: Record<string, unknown> }): string {
  return String(a.facts.overlayNamespace);
}
