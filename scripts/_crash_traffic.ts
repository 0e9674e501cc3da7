/**
 * The crash test's overlay probe, after the checks of a round: a new overlay network made on
 * the crashed host must get the lowest free VNI and subnet (a leaked claim shows up here),
 * then over each live overlay network a container on the crashed host pings one on the other
 * host: one already joined there, else a probe container joined for it (which must get the
 * lowest free address of the network: a leaked address shows up here). Then the probes are
 * deleted again.
 *
 * @module
 */

import type { Controller, NetworkInfo, SandboxInfo } from "../mod.ts";
import { claimKey } from "../src/controller/claims.ts";
import { ping } from "../tests/_harness/multihost.ts";
import { base } from "./_crash_probe.ts";
import { ipOf, type Verdict } from "./_crash_model.ts";
import { globalNets, overlaps, type OverlaySite } from "./_crash_overlay.ts";
import { vnisOf } from "./_crash_workload.ts";
import { expectedAddress } from "./_crash_check.ts";

/** The lowest VNI ≥ 4096 no live global network uses and no dead claim holds. */
function expectedVni(nets: NetworkInfo[], dead: Set<string>, prefix: string): number {
  const used = new Set(nets.flatMap(vnisOf));
  let vni = 4096;
  while (used.has(vni) || dead.has(claimKey.vni(prefix, vni))) vni++;
  return vni;
}

/** The lowest /24 of 10.0.0.0/8 no live global network overlaps and no dead claim holds. */
function expectedSubnet(nets: NetworkInfo[], dead: Set<string>, prefix: string): string {
  const used = nets.flatMap((n) => n.ipam.config.map((c) => c.subnet));
  for (let i = 0; i < 65536; i++) {
    const s = `10.${i >> 8}.${i & 255}.0/24`;
    if (!used.some((u) => overlaps(u, s)) && !dead.has(claimKey.subnet(prefix, s))) return s;
  }
  return "none";
}

async function until(f: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await f()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Runs the probe (see the module doc) from `hosts[0]` (the crashed host) to `hosts[1]`.
 * `dead` holds the claim keys dead objects still hold (compareClaims).
 */
export async function probeOverlay(
  hosts: OverlaySite[],
  tag: string,
  v: Verdict,
  dead: Set<string>,
  prefix: string,
): Promise<void> {
  const [a, b] = hosts;
  let net: NetworkInfo | undefined;
  const sbs: [Controller, SandboxInfo][] = [];
  try {
    const live = globalNets(a.ctl);
    const vni = expectedVni(live, dead, prefix);
    const subnet = expectedSubnet(live, dead, prefix);
    net = await a.ctl.createNetwork({ name: `probeov${tag}`, driver: "overlay" });
    if (vnisOf(net)[0] !== vni || net.ipam.config[0]?.subnet !== subnet) {
      v.leaks.push(
        `claims: probe overlay network got VNI ${vnisOf(net)} and ${net.ipam.config[0]?.subnet}, ` +
          `lowest free are ${vni} and ${subnet}`,
      );
    }
    const probeNet = net;
    if (!(await until(() => b.ctl.network(probeNet.id) !== undefined, 2000))) {
      v.divergences.push(`probe: ${b.hostId} does not see the network ${net.name}`);
      return;
    }
    const targets = globalNets(a.ctl).filter((n) => n.state === "active");
    /** A joined endpoint of `h` on `n` (a workload one, else a new probe one): ns and address. */
    const member = async (h: OverlaySite, n: NetworkInfo) => {
      for (const e of h.ctl.endpoints({ network: n.id })) {
        const sb = e.state === "joined" && e.sandboxId ? h.ctl.sandbox(e.sandboxId) : undefined;
        if (sb?.state === "ready") return { ns: base(sb.key), ip: ipOf(e.ipv4Address)! };
      }
      let sb = sbs.find(([c]) => c === h.ctl)?.[1];
      if (!sb) {
        sb = await h.ctl.createSandbox({ name: `probe${tag}` });
        sbs.push([h.ctl, sb]);
      }
      const taken = new Set<string>();
      for (const o of hosts) {
        for (const e of o.ctl.endpoints({ network: n.id }).filter((e) => e.state !== "failed")) {
          taken.add(ipOf(e.ipv4Address) ?? "");
        }
      }
      const v4 = n.ipam.config.find((c) => !c.subnet.includes(":"))!;
      if (v4.gateway) taken.add(v4.gateway);
      let want = expectedAddress(v4.subnet, taken);
      while (want && dead.has(claimKey.address(prefix, n.id, want))) {
        taken.add(want);
        want = expectedAddress(v4.subnet, taken);
      }
      const ep = await h.ctl.createEndpoint(n.id, { name: `probe${tag}` });
      if (ipOf(ep.ipv4Address) !== want) {
        v.leaks.push(
          `IPAM: probe endpoint on ${n.name} on ${h.hostId} got ${ep.ipv4Address}, ` +
            `lowest free is ${want}`,
        );
      }
      await h.ctl.join(ep.id, sb.id);
      return { ns: base(sb.key), ip: ipOf(ep.ipv4Address)! };
    };
    for (const n of targets) {
      const from = await member(a, n);
      const to = await member(b, n);
      if (!(await until(() => ping(from.ns, to.ip, { waitSeconds: 0.5 }), 3000))) {
        v.divergences.push(
          `traffic: ${from.ip} on ${a.hostId} does not reach ${to.ip} on ${b.hostId} over ${n.name}`,
        );
      }
    }
  } catch (err) {
    v.divergences.push(`overlay probe failed: ${(err as Error).name}: ${(err as Error).message}`);
  } finally {
    // Best effort after a failure, so one does not cascade into the next rounds.
    await Promise.all(
      sbs.map(([ctl, sb]) =>
        ctl.deleteSandbox(sb.id).catch((err) =>
          v.divergences.push(`probe: deleting ${sb.name}: ${(err as Error).message}`)
        )
      ),
    );
    if (net) {
      const id = net.id;
      let last: unknown;
      const gone = await until(async () => {
        if (!a.ctl.network(id)) return true;
        try {
          await a.ctl.deleteNetwork(id);
          return true;
        } catch (err) {
          last = err;
          return false;
        }
      }, 2000);
      if (!gone) v.divergences.push(`probe: deleting ${net.name}: ${(last as Error)?.message}`);
      // The other host has folded the delete before the model takes its view.
      else if (!(await until(() => !b.ctl.network(id), 2000))) {
        v.divergences.push(`probe: ${b.hostId} still sees ${net.name} 2 s after its delete`);
      }
    }
  }
}
