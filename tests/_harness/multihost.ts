/**
 * Several "hosts" on one machine (reference/networking.md §1.8): each host is a network
 * namespace `<prefix>-h<i>` whose `ul0` is a veth port on the bridge `br-ul` of an underlay
 * namespace `<prefix>-ul`, addressed `192.0.2.<i>/24` (TEST-NET-1, which exists only inside
 * the lab). A host namespace is what a controller takes as `kernel.hostNamespace`; give its
 * code the name prefix {@link LabHost.namePrefix} so everything it makes is cleaned up with
 * the lab. Needs root.
 *
 * @example
 * ```ts ignore
 * const lab = await createLab({ hosts: 3 });
 * try {
 *   // lab.hosts[0].path is /var/run/netns/<prefix>-h1, lab.hosts[0].address 192.0.2.1
 * } finally {
 *   await lab.cleanup();
 * }
 * ```
 *
 * @module
 */

import { sh } from "./command.ts";
import { deletePrefixed, listPrefixed, requireRoot, runPrefix } from "./netns.ts";

const NETNS_DIR = "/var/run/netns";

/** One host of the lab. */
export interface LabHost {
  /** 1-based. */
  index: number;
  /** Namespace name, `<prefix>-h<i>`. */
  name: string;
  /** `/var/run/netns/<name>`: use it as the controller's `kernel.hostNamespace`. */
  path: string;
  /** Underlay (VTEP) address, `192.0.2.<i>`. */
  address: string;
  /** Name prefix for what code running on this host creates: `<prefix>-h<i>-`. */
  namePrefix: string;
}

/** A running lab. */
export interface Lab {
  /** Per-run prefix every namespace of the lab carries. */
  prefix: string;
  /** The underlay switch namespace, `<prefix>-ul`. */
  underlay: string;
  hosts: LabHost[];
  /** Namespaces of the lab (all of them carry the prefix). */
  namespaces(): Promise<string[]>;
  /** Deletes every `<prefix>*` namespace (hosts, underlay, and what was made on them). */
  cleanup(): Promise<void>;
}

/** Options of {@link createLab}. */
export interface LabOptions {
  /** Number of hosts, 1-250. Default 3. */
  hosts?: number;
  /** Up to 4 letters/digits starting the prefix. Default "ml". */
  label?: string;
  /** MTU of the underlay ports. Default 1500. */
  mtu?: number;
}

/** Builds the lab; on failure, removes what it made. Always call `cleanup()` in `finally`. */
export async function createLab(options: LabOptions = {}): Promise<Lab> {
  requireRoot();
  const count = options.hosts ?? 3;
  if (!Number.isInteger(count) || count < 1 || count > 250) {
    throw new Error(`lab: hosts must be 1-250, got ${count}`);
  }
  const mtu = String(options.mtu ?? 1500);
  const prefix = runPrefix(options.label ?? "ml");
  const underlay = `${prefix}-ul`;
  const hosts: LabHost[] = Array.from({ length: count }, (_, n) => {
    const index = n + 1;
    const name = `${prefix}-h${index}`;
    return {
      index,
      name,
      path: `${NETNS_DIR}/${name}`,
      address: `192.0.2.${index}`,
      namePrefix: `${name}-`,
    };
  });
  const lab: Lab = {
    prefix,
    underlay,
    hosts,
    namespaces: () => listPrefixed(prefix),
    cleanup: () => deletePrefixed(prefix),
  };
  const ip = (...args: string[]) => sh(["ip", ...args.flatMap((a) => a.split(" "))]);
  try {
    await ip("netns", "add", underlay);
    await ip("-n", underlay, "link", "set", "lo", "up");
    await ip("-n", underlay, "link", "add", "br-ul", "type", "bridge");
    await ip("-n", underlay, "link", "set", "br-ul", "up");
    for (const h of hosts) {
      const port = `h${h.index}`;
      await ip("netns", "add", h.name);
      await ip("-n", h.name, "link", "set", "lo", "up");
      await ip(
        "-n",
        h.name,
        `link add ul0 mtu ${mtu} type veth peer name ${port} mtu ${mtu}`,
        "netns",
        underlay,
      );
      await ip("-n", underlay, "link", "set", port, "master", "br-ul", "up");
      await ip("-n", h.name, "addr", "add", `${h.address}/24`, "dev", "ul0");
      await ip("-n", h.name, "link", "set", "ul0", "up");
    }
  } catch (err) {
    await lab.cleanup().catch(() => {});
    throw err;
  }
  return lab;
}

/** Options of {@link ping}. */
export interface PingOptions {
  /** ICMP payload size (`-s`). Default 56. */
  size?: number;
  /** Set DF and never fragment (`-M do`). Default false. */
  dontFragment?: boolean;
  /** Number of echo requests. Default 1. */
  count?: number;
  /** Seconds to wait for each reply. Default 1. */
  waitSeconds?: number;
}

/** Pings `address` from the namespace `netns` (a name); true when every request got a reply. */
export async function ping(netns: string, address: string, options: PingOptions = {}) {
  const args = ["netns", "exec", netns, "ping", "-q", "-n"];
  args.push("-c", String(options.count ?? 1), "-W", String(options.waitSeconds ?? 1));
  if (options.size !== undefined) args.push("-s", String(options.size));
  if (options.dontFragment) args.push("-M", "do");
  const out = await new Deno.Command("ip", {
    args: [...args, address],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return out.success;
}
