/**
 * The crash test's probes after each kill: a join that must work on a fresh controller (and
 * get the first free pool and address, or IPAM leaked), and the clean-up of old objects.
 * The model and the kernel comparison are in _crash_model.ts and _crash_kernel.ts.
 *
 * @module
 */

import type { Controller, EndpointInfo, NetworkInfo, SandboxInfo } from "../mod.ts";
import { ipOf, type Verdict } from "./_crash_model.ts";
import { userEndpoints, userNetworks } from "./_crash_workload.ts";
import { base, ipAddrs } from "./_crash_probe.ts";
import { heldSockets } from "./_crash_ports.ts";
import { parsePortSpec } from "../mod.ts";

// ------------------------------------------------------------------ probes

/** The first default pool (172.17–31.0.0/16) no live network overlaps. */
export function expectedPool(nets: NetworkInfo[]): string | undefined {
  const used = nets.flatMap((n) => n.ipam.config.map((c) => c.subnet))
    .filter((s) => s.startsWith("172."));
  for (let b = 17; b <= 31; b++) {
    const cand = `172.${b}.0.0/16`;
    if (!used.some((s) => s.split(".")[1] === String(b))) return cand;
  }
}

/** Lowest free host address of an IPv4 subnet given the taken ones (first-free IPAM). */
export function expectedAddress(subnet: string, taken: Set<string>): string | undefined {
  const [addr, len] = subnet.split("/");
  const n = addr.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(len));
  for (let i = 1; i < size - 1; i++) {
    const v = n + i;
    const s = [24, 16, 8, 0].map((sh) => Math.floor(v / 2 ** sh) % 256).join(".");
    if (!taken.has(s)) return s;
  }
}

/** A fixed port of the workload's no live endpoint holds (a freed one, often), if any. */
function freePort(cnm: Controller): number | undefined {
  const held = new Set(cnm.endpoints().flatMap((e) => e.ports ?? []).map((m) => m.hostPort));
  return [8080, 9000, 9001].find((p) => !held.has(p));
}

/**
 * A new network (auto subnet: the first free pool), a sandbox and an endpoint on an existing
 * network (auto address: the first free one) publishing a fixed port no live endpoint holds,
 * join (the interface, the address and the held port appear), leave (they go), then delete it
 * all. A wrong pool or address means IPAM leaked; a port refused or not held means a stale
 * port decision or socket (moby#25981).
 */
export async function probe(
  cnm: Controller,
  tag: string,
  v: Verdict,
  hostNs?: string,
): Promise<void> {
  // Bridge networks: the overlay has its own probe (_crash_traffic.ts). The gwbridge holds a
  // default pool too.
  const bridges = cnm.networks().filter((n) => n.driver === "bridge" && n.state === "active");
  const nets = userNetworks(cnm).filter((n) => n.driver === "bridge" && n.state === "active");
  let net: NetworkInfo | undefined;
  let sb: SandboxInfo | undefined;
  let ep: EndpointInfo | undefined;
  try {
    const pool = expectedPool(bridges);
    net = await cnm.createNetwork({ name: `probe${tag}` });
    if (pool && net.ipam.config[0]?.subnet !== pool) {
      v.leaks.push(`IPAM: probe network got ${net.ipam.config[0]?.subnet}, first free is ${pool}`);
    }
    const target = nets.find((n) => n.ipam.config.some((c) => !c.subnet.includes(":"))) ?? net;
    const v4 = target.ipam.config.find((c) => !c.subnet.includes(":"))!;
    const taken = new Set(
      cnm.endpoints({ network: target.id }).map((e) => ipOf(e.ipv4Address) ?? ""),
    );
    if (v4.gateway) taken.add(v4.gateway);
    const want = expectedAddress(v4.subnet, taken);
    sb = await cnm.createSandbox({ name: `probe${tag}` });
    const port = freePort(cnm);
    ep = await cnm.createEndpoint(target.id, {
      name: `probe${tag}`,
      ...(port ? { portBindings: parsePortSpec(`${port}:80`) } : {}),
    });
    const sock = `tcp 0.0.0.0:${port}`;
    if (ipOf(ep.ipv4Address) !== want) {
      v.leaks.push(
        `IPAM: probe endpoint on ${target.name} got ${ep.ipv4Address}, first free is ${want}`,
      );
    }
    const joined = await cnm.join(ep.id, sb.id);
    const inside = await ipAddrs(base(sb.key));
    const l = inside.find((x) => x.ifname === joined.ifname);
    if (!l?.addr_info?.some((a) => a.local === ipOf(ep!.ipv4Address))) {
      v.divergences.push(`probe: ${joined.ifname} with ${ep.ipv4Address} not in ${sb.name}`);
    }
    if (port && hostNs && !(await heldSockets(hostNs)).includes(sock)) {
      v.divergences.push(`probe: ${sock} not held after the join`);
    }
    await cnm.leave(ep.id, sb.id);
    if (port && hostNs && (await heldSockets(hostNs)).includes(sock)) {
      v.leaks.push(`probe: ${sock} still held after the leave`);
    }
    if ((await ipAddrs(base(sb.key))).some((x) => x.ifname === joined.ifname)) {
      v.divergences.push(`probe: ${joined.ifname} still in ${sb.name} after leave`);
    }
    await cnm.deleteEndpoint(ep.id);
    ep = undefined;
    await cnm.deleteSandbox(sb.id);
    sb = undefined;
    await cnm.deleteNetwork(net.id);
    net = undefined;
  } catch (err) {
    v.divergences.push(`probe failed: ${(err as Error).name}: ${(err as Error).message}`);
    // Best effort, so one failure does not cascade into the next rounds.
    if (ep) await cnm.deleteEndpoint(ep.id, { force: true }).catch(() => {});
    if (sb) await cnm.deleteSandbox(sb.id).catch(() => {});
    if (net) await cnm.deleteNetwork(net.id).catch(() => {});
  }
}

/**
 * Deletes the given old objects: sandboxes (with their endpoints), endpoints, networks
 * without endpoints (`empty` says so for a global network: its endpoints are on every host).
 */
export async function cleanupOld(
  cnm: Controller,
  old: Set<string>,
  empty: (n: NetworkInfo) => boolean = (n) => !cnm.endpoints({ network: n.id }).length,
): Promise<string[]> {
  const errors: string[] = [];
  const attempt = async (f: () => Promise<void>) => {
    try {
      await f();
    } catch (err) {
      errors.push(`cleanup: ${(err as Error).name}: ${(err as Error).message}`);
    }
  };
  for (const s of cnm.sandboxes()) if (old.has(s.id)) await attempt(() => cnm.deleteSandbox(s.id));
  for (const e of userEndpoints(cnm)) {
    if (old.has(e.id)) await attempt(() => cnm.deleteEndpoint(e.id, { force: true }));
  }
  for (const n of userNetworks(cnm)) {
    if (old.has(n.id) && empty(n)) {
      await attempt(() => cnm.deleteNetwork(n.id));
    }
  }
  return errors;
}
