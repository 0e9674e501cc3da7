/**
 * A throwaway network lab for the firewall tests (root only): a "host" namespace that plays
 * the controller's host, bridges in it, and "container" namespaces attached by veth pairs.
 * Everything is named `<prefix>…` (prefix = "t" + 5 random hex) and deleted by
 * {@link withLab}, also after failures. nft only ever runs inside the lab's host namespace.
 *
 * @module
 */

import { output } from "../_harness/command.ts";
import { connectTcp, serveTcp } from "../_harness/tcp.ts";
import { deepStrictEqual } from "node:assert/strict";

/** Result of running a command. */
/** Runs a command; rejects with its stderr when it exits non-zero. */
export async function run(argv: string[], stdin?: string): Promise<string> {
  const out = await output(argv, { stdin });
  if (out.code !== 0) {
    throw new Error(`${argv.join(" ")} exited with ${out.code}: ${out.stderr.trim()}`);
  }
  return out.stdout;
}

/** Throws (the test fails, it is not skipped) unless we are root with nft, ip and nsenter. */
export async function requireRoot(): Promise<void> {
  if (Deno.uid() !== 0) throw new Error("the firewall tests need root (run them as root)");
  for (const argv of [["nft", "--version"], ["ip", "-V"], ["nsenter", "--version"]]) {
    try {
      await run(argv);
    } catch (err) {
      throw new Error(`the firewall tests need ${argv[0]}: ${err}`);
    }
  }
}

/** A running TCP server inside a namespace. */
interface Server {
  close(): Promise<void>;
}

/** The lab handed to a test. */
export interface Lab {
  /** "t" + 5 random hex; every namespace and device is named after it. */
  prefix: string;
  /** The host namespace's name. */
  host: string;
  /** Runs argv (argv[0] = "nft") inside the host namespace: the firewall's `exec`. */
  exec(argv: string[], options?: { stdin?: string }): Promise<string>;
  /** Runs a command inside a namespace of the lab. */
  inNs(ns: string, argv: string[]): Promise<string>;
  /** Creates bridge `<prefix><name>` in the host namespace with the gateway address. */
  bridge(name: string, gateway: string): Promise<string>;
  /** Creates namespace `<prefix>-<name>` with eth0 = address, on the bridge, default via gw. */
  container(name: string, bridge: string, address: string, gateway: string): Promise<string>;
  /** Creates `<prefix>-<name>`, linked to the host by veth (host side hostAddress); no routes. */
  outside(name: string, hostAddress: string, address: string): Promise<string>;
  /** Starts a TCP server in ns that answers `ok <peer address>` and closes. */
  serve(ns: string, port: number): Promise<Server>;
  /** Connects from ns; returns the server's answer, or null when it could not connect. */
  connect(ns: string, host: string, port: number): Promise<string | null>;
}

/** Snapshot of what the tests must never change in the root namespace. */
async function rootSnapshot(): Promise<string> {
  const sysctls = ["net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables"];
  const values = await Promise.all(
    sysctls.map((s) => Deno.readTextFile(`/proc/sys/${s}`).catch(() => "absent")),
  );
  return (await run(["nft", "list", "ruleset"])) + "\n" + values.join("");
}

/**
 * Runs `fn` with a fresh lab; deletes every `<prefix>*` namespace afterwards and checks the
 * root namespace's ruleset and sysctls are unchanged.
 */
export async function withLab(fn: (lab: Lab) => Promise<void>): Promise<void> {
  await requireRoot();
  const before = await rootSnapshot();
  const prefix = "t" + crypto.getRandomValues(new Uint8Array(3)).reduce(
    (s, b) => s + b.toString(16).padStart(2, "0"),
    "",
  ).slice(0, 5);
  const host = `${prefix}-host`;
  const servers: Server[] = [];
  const ip = (...args: string[]) => run(["ip", ...args]);
  const inNs = (ns: string, argv: string[]) => run(["ip", "netns", "exec", ns, ...argv]);
  let veths = 0;
  /** A namespace `<prefix>-<name>` (lo up) with `eth0`, the peer of a new host-side veth. */
  const attached = async (name: string) => {
    const ns = `${prefix}-${name}`;
    const veth = `${prefix}v${++veths}`;
    await ip("netns", "add", ns);
    await ip("-n", ns, "link", "set", "lo", "up");
    await ip("-n", host, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns);
    return { ns, veth };
  };
  const lab: Lab = {
    prefix,
    host,
    exec: (argv, options) =>
      run(["nsenter", `--net=/var/run/netns/${host}`, "--", ...argv], options?.stdin),
    inNs,
    async bridge(name, gateway) {
      const br = `${prefix}${name}`;
      await ip("-n", host, "link", "add", br, "type", "bridge");
      await ip("-n", host, "addr", "add", gateway, "dev", br);
      await ip("-n", host, "link", "set", br, "up");
      return br;
    },
    async container(name, bridge, address, gateway) {
      const { ns, veth } = await attached(name);
      await ip("-n", host, "link", "set", veth, "master", bridge, "up");
      await ip("-n", ns, "addr", "add", address, "dev", "eth0");
      await ip("-n", ns, "link", "set", "eth0", "up");
      await ip("-n", ns, "route", "add", "default", "via", gateway);
      return ns;
    },
    async outside(name, hostAddress, address) {
      const { ns, veth } = await attached(name);
      await ip("-n", host, "addr", "add", hostAddress, "dev", veth);
      await ip("-n", host, "link", "set", veth, "up");
      await ip("-n", ns, "addr", "add", address, "dev", "eth0");
      await ip("-n", ns, "link", "set", "eth0", "up");
      return ns;
    },
    async serve(ns, port) {
      const server = await serveTcp(ns, port, "0.0.0.0");
      servers.push(server);
      return server;
    },
    connect: (ns, hostname, port) => connectTcp(ns, hostname, port),
  };
  const errors: unknown[] = [];
  try {
    await ip("netns", "add", host);
    await ip("-n", host, "link", "set", "lo", "up");
    await inNs(host, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await fn(lab);
  } finally {
    for (const server of servers) await server.close().catch((err) => errors.push(err));
    const list = await run(["ip", "netns", "list"]).catch((err) => (errors.push(err), ""));
    for (const line of list.split("\n")) {
      const ns = line.split(" ")[0];
      if (ns.startsWith(prefix)) await ip("netns", "del", ns).catch((err) => errors.push(err));
    }
    // Reported here too, in case the test's own failure is what propagates.
    for (const err of errors) console.error(`lab ${prefix} cleanup:`, err);
  }
  if (errors.length > 0) throw new AggregateError(errors, `lab ${prefix} cleanup failed`);
  deepStrictEqual(await rootSnapshot(), before, "the root namespace's ruleset or sysctls changed");
}
