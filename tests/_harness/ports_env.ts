/**
 * The port publishing lab through a real controller (root, nats-server): the test
 * environment's host namespace (br_netfilter's per-namespace switches pinned, its ephemeral
 * range set), a "remote" client namespace joined to it by a veth (198.51.100.53 /
 * 2001:db8:100::53, routes to the network's subnets via the host), and a controller with a
 * dual-stack bridge network `web` (172.30.0.0/24, fd30::/64) on which sandboxes are made.
 *
 * @module
 */

import type { Controller, ControllerOptions, PortBinding, SandboxInfo } from "../../mod.ts";
import { sh } from "./command.ts";
import { startEnv, type TestEnv } from "./env.ts";

/** Addresses of the lab. */
export const HOST4 = "198.51.100.1", REMOTE4 = "198.51.100.53";
export const HOST6 = "2001:db8:100::1", REMOTE6 = "2001:db8:100::53";

/**
 * A "remote client" namespace `remote` on the host's LAN: a veth `veth` (host side in
 * namespace `host`, HOST4/HOST6) to its `eth0` (REMOTE4/REMOTE6), with routes to the
 * container subnets via the host.
 */
export async function addRemote(
  ip: (...args: string[]) => Promise<unknown>,
  host: string,
  remote: string,
  veth: string,
  subnet4: string,
  subnet6: string,
): Promise<void> {
  await ip("netns", "add", remote);
  await ip("-n", remote, "link", "set", "lo", "up");
  await ip(
    "-n",
    host,
    "link",
    "add",
    veth,
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    remote,
  );
  await ip("-n", host, "addr", "add", `${HOST4}/24`, "dev", veth);
  await ip("-n", host, "addr", "add", `${HOST6}/64`, "dev", veth, "nodad");
  await ip("-n", host, "link", "set", veth, "up");
  await ip("-n", remote, "addr", "add", `${REMOTE4}/24`, "dev", "eth0");
  await ip("-n", remote, "addr", "add", `${REMOTE6}/64`, "dev", "eth0", "nodad");
  await ip("-n", remote, "link", "set", "eth0", "up");
  await ip("-n", remote, "route", "add", subnet4, "via", HOST4);
  await ip("-n", remote, "-6", "route", "add", subnet6, "via", HOST6);
}
export const GW4 = "172.30.0.1", GW6 = "fd30::1";
export const SUBNET4 = "172.30.0.0/24", SUBNET6 = "fd30::/64";

/** What a ports test gets. */
export interface PortsEnv {
  env: TestEnv;
  /** The host namespace's name. */
  host: string;
  /** The remote client's namespace. */
  remote: string;
  cnm: Controller;
  /** Runs a command in the host namespace. */
  inHost(argv: string[]): Promise<string>;
  /** A sandbox and an endpoint on `network` (default `web`) with `ports`, joined. */
  box(name: string, ports?: PortBinding[], network?: string): Promise<Box>;
  /** Closes the controller and opens a new one on the same stream. */
  restart(extra?: Partial<ControllerOptions>): Promise<Controller>;
  /** `proto hostIp:port` of the sockets listening (TCP) or bound (UDP) in the host namespace. */
  listening(): Promise<string[]>;
  /** Rules of the firewall whose comment names a published mapping. */
  portRules(): Promise<string[]>;
}

/** A joined sandbox. */
export interface Box {
  sandbox: SandboxInfo;
  /** Its namespace's name. */
  ns: string;
  endpointId: string;
  ipv4: string;
  ipv6?: string;
}

/** Options of {@link withPortsEnv}. */
export interface PortsEnvOptions {
  /** `net.ipv4.ip_local_port_range` of the host namespace. Default: the kernel's. */
  portRange?: string;
}

/** Polls `f` every 50 ms until true or `ms` passed; the elapsed ms, or null. */
export async function within(ms: number, f: () => boolean | Promise<boolean>) {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await f()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}

const base = (key: string) => key.slice(key.lastIndexOf("/") + 1);

/**
 * Runs `fn` in a fresh lab with `net.bridge.bridge-nf-call-ip{,6}tables` = `brNetfilter` in the
 * host namespace; everything (namespaces, nats-server, controllers) is removed afterwards.
 */
export async function withPortsEnv(
  label: string,
  brNetfilter: boolean,
  fn: (p: PortsEnv) => Promise<void>,
  options: PortsEnvOptions = {},
): Promise<void> {
  const env = await startEnv(label);
  try {
    const host = env.host.name;
    const inHost = (argv: string[]) => sh(["ip", "netns", "exec", host, ...argv]);
    const ip = (...args: string[]) => sh(["ip", ...args]);
    const v = brNetfilter ? 1 : 0;
    await inHost([
      "sysctl",
      "-qw",
      `net.bridge.bridge-nf-call-iptables=${v}`,
      `net.bridge.bridge-nf-call-ip6tables=${v}`,
      "net.ipv4.ip_forward=1",
    ]);
    if (options.portRange) {
      await inHost(["sysctl", "-qw", `net.ipv4.ip_local_port_range=${options.portRange}`]);
    }
    const remote = `${env.host.prefix}rm`, veth = `${env.host.prefix}rv`;
    await addRemote(ip, host, remote, veth, SUBNET4, SUBNET6);

    let cnm = await env.open({ defaultBridge: false });
    await cnm.createNetwork({
      name: "web",
      enableIPv6: true,
      ipam: { config: [{ subnet: SUBNET4 }, { subnet: SUBNET6 }] },
    });
    let dadChecked = false;
    const p: PortsEnv = {
      env,
      host,
      remote,
      get cnm() {
        return cnm;
      },
      inHost,
      async box(name, ports, network = "web") {
        const sandbox = await cnm.createSandbox({ name });
        const ep = await cnm.createEndpoint(network, {
          name,
          ...(ports ? { portBindings: ports } : {}),
        });
        await cnm.join(ep.id, sandbox.id);
        if (!dadChecked) {
          // Until the bridge's link-local address passed DAD, the kernel sends no neighbour
          // solicitation for forwarded IPv6: wait, as a long-lived host would have.
          const bridge = String(cnm.network("web")!.driverInfo.bridge);
          const ok = await within(
            5000,
            async () =>
              (await inHost(["ip", "-6", "addr", "show", "dev", bridge, "tentative"]))
                .trim() === "",
          );
          if (ok === null) throw new Error("the bridge's IPv6 link-local address stays tentative");
          dadChecked = true;
        }
        return {
          sandbox,
          ns: base(sandbox.key),
          endpointId: ep.id,
          ipv4: ep.ipv4Address!.split("/")[0],
          ...(ep.ipv6Address ? { ipv6: ep.ipv6Address.split("/")[0] } : {}),
        };
      },
      async restart(extra) {
        await cnm.close();
        cnm = await env.open({ defaultBridge: false, ...extra });
        return cnm;
      },
      async listening() {
        const out = await inHost(["ss", "-Hlntu"]);
        return out.split("\n").filter(Boolean).map((l) => {
          const [proto, , , , local] = l.trim().split(/\s+/);
          return `${proto} ${local}`;
        }).sort();
      },
      async portRules() {
        const out = await inHost(["nft", "list", "table", "inet", "cnm"]);
        return out.split("\n").filter((l) => /comment "cnm:[0-9a-f]{12} /.test(l))
          .map((l) => l.trim());
      },
    };
    await fn(p);
  } finally {
    await env.cleanup();
  }
}
