/**
 * The port publishing lab (root only), built on the firewall lab (`_fw_netns.ts`): a host
 * namespace with br_netfilter's per-namespace switches pinned, a "remote" client namespace
 * joined to it by a veth (198.51.100.53 / 2001:db8:100::53, routes to the container subnets
 * via the host), and one dual-stack bridge network made by the bridge driver itself, driven
 * directly (no controller), with sandboxes joined to it.
 *
 * @module
 */

import { createBridgeDriver } from "../../drivers/bridge/mod.ts";
import type {
  Driver,
  DriverEndpoint,
  DriverNetwork,
  EffectContext,
  PortMapping,
} from "../../drivers/driver.ts";
import { createKernel, type Kernel } from "../../src/kernel/mod.ts";
import { type Lab, run, withLab } from "./_fw_netns.ts";
import { addRemote } from "../_harness/ports_env.ts";

/** Addresses of the lab. */
export { HOST4, HOST6, REMOTE4, REMOTE6 } from "../_harness/ports_env.ts";
export const GW4 = "172.30.0.1", GW6 = "fd30::1";

const hex = (n: number) =>
  Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, "0"))
    .join("");

/** A sandbox joined to the lab's network. */
export interface Box {
  /** Namespace name. */
  ns: string;
  ep: DriverEndpoint;
  ipv4: string;
  ipv6: string;
}

/** What a ports test gets. */
export interface PortsLab {
  lab: Lab;
  /** The host namespace's name (the controller's host). */
  host: string;
  remote: string;
  kernel: Kernel;
  driver: Driver;
  ctx: EffectContext;
  net: DriverNetwork;
  /** Sandboxes `s1`, `s2`, … (172.30.0.2, .3, …), joined. */
  boxes: Box[];
  /** Publishes `mappings` on a box's endpoint. */
  program(box: Box, mappings: PortMapping[]): Promise<PortMapping[]>;
  revoke(box: Box, mappings?: PortMapping[]): Promise<void>;
  /** Runs a command in the host namespace. */
  inHost(argv: string[]): Promise<string>;
}

/** `tcp 0.0.0.0:8080->80` style shorthand: a mapping. */
export function mapping(
  hostIp: string,
  hostPort: number,
  containerPort: number,
  proto: "tcp" | "udp" = "tcp",
): PortMapping {
  return { proto, hostIp, hostPort, containerPort };
}

/**
 * Runs `fn` in a fresh lab with `net.bridge.bridge-nf-call-ip{,6}tables` = `brNetfilter` in
 * the host namespace and `boxes` sandboxes; everything is removed afterwards.
 */
export async function withPortsLab(
  brNetfilter: boolean,
  boxes: number,
  fn: (p: PortsLab) => Promise<void>,
): Promise<void> {
  await withLab(async (lab) => {
    const host = lab.host;
    const ip = (...args: string[]) => run(["ip", ...args]);
    const inHost = (argv: string[]) => lab.inNs(host, argv);
    const v = brNetfilter ? 1 : 0;
    await inHost([
      "sysctl",
      "-qw",
      `net.bridge.bridge-nf-call-iptables=${v}`,
      `net.bridge.bridge-nf-call-ip6tables=${v}`,
    ]);
    const remote = `${lab.prefix}-r`, veth = `${lab.prefix}rv`;
    await addRemote(ip, host, remote, veth, "172.30.0.0/24", "fd30::/64");

    const kernel = await createKernel({ hostNamespace: `/var/run/netns/${host}` });
    try {
      const driver = createBridgeDriver();
      const ctx: EffectContext = { effectId: hex(8), kernel, prefix: `${lab.prefix}-` };
      const net: DriverNetwork = {
        id: hex(32),
        internal: false,
        enableIPv6: true,
        options: { "com.docker.network.bridge.name": `${lab.prefix}br` },
        labels: {},
        ipv4: [{
          addressSpace: "LocalDefault",
          pool: "172.30.0.0/24",
          gateway: `${GW4}/24`,
          auxAddresses: {},
        }],
        ipv6: [{
          addressSpace: "LocalDefault",
          pool: "fd30::/64",
          gateway: `${GW6}/64`,
          auxAddresses: {},
        }],
        facts: {},
      };
      net.facts = (await driver.createNetwork(net, ctx)) ?? {};
      const list: Box[] = [];
      for (let i = 1; i <= boxes; i++) {
        const ipv4 = `172.30.0.${i + 1}`, ipv6 = `fd30::${i + 1}`;
        const ep: DriverEndpoint = {
          id: hex(32),
          networkId: net.id,
          options: {},
          ipv4Address: `${ipv4}/24`,
          ipv6Address: `${ipv6}/64`,
          facts: {},
        };
        ep.facts = (await driver.createEndpoint(net, ep, ctx)) ?? {};
        const key = await kernel.ensureNetns(`${lab.prefix}-s${i}`);
        await driver.join(net, ep, { id: `sb${i}`, key, ifname: "eth0", labels: {} }, ctx);
        await kernel.ensureRoute({ dst: "default", via: GW4 }, key);
        await kernel.ensureRoute({ dst: "default", via: GW6 }, key);
        list.push({ ns: `${lab.prefix}-s${i}`, ep, ipv4, ipv6 });
      }
      // Until the bridge's link-local address has passed DAD (a second or two after its first
      // port comes up), the kernel cannot send neighbour solicitations for forwarded IPv6
      // (ndisc needs a non-tentative link-local source): wait, as a long-lived host would be.
      const settled = await within(
        5000,
        async () =>
          (await inHost(["ip", "-6", "addr", "show", "dev", `${lab.prefix}br`, "tentative"]))
            .trim() === "",
      );
      if (settled === null) throw new Error("the bridge's IPv6 link-local address stays tentative");
      await fn({
        lab,
        host,
        remote,
        kernel,
        driver,
        ctx,
        net,
        boxes: list,
        program: async (box, mappings) => {
          const facts = await driver.programExternalConnectivity!(net, box.ep, mappings, ctx);
          return (facts as { ports: PortMapping[] }).ports;
        },
        revoke: (box, mappings = []) =>
          driver.revokeExternalConnectivity!(net, box.ep, mappings, ctx),
        inHost,
      });
    } finally {
      await kernel.close();
    }
  });
}

/** Polls `f` every 50 ms until it is true or `ms` have passed; returns the elapsed ms or null. */
export async function within(
  ms: number,
  f: () => boolean | Promise<boolean>,
): Promise<number | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await f()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}
