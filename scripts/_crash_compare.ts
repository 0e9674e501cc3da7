/**
 * The crash test's check of a controller against the model (_crash_model.ts) after a kill:
 * acknowledged commands reflected (either outcome for the ones in flight), unique addresses,
 * nothing stuck.
 *
 * @module
 */

import type { Controller } from "../mod.ts";
import { ipOf, type Model, portsOf, type Verdict } from "./_crash_model.ts";
import { type Op, userEndpoints, userNetworks, vnisOf } from "./_crash_workload.ts";

const STABLE = new Set(["active", "ready", "created", "joined"]);

/**
 * Checks a controller (host `host`) against the model, allowing either outcome for the
 * commands in flight when a child died: `flight` on this host, `globalFlight` any host's
 * command on a global network (a create or delete another host resumes). Adds to `v`.
 */
export function compareModel(
  cnm: Controller,
  m: Model,
  flight: Op | undefined,
  v: Verdict,
  host = cnm.hostId,
  globalFlight: Op[] = flight ? [flight] : [],
): void {
  const nets = userNetworks(cnm);
  const sbs = cnm.sandboxes();
  const eps = userEndpoints(cnm);
  const mNets = [...m.nets.values()].filter((n) => n.global || n.host === host);
  const mSbs = [...m.sbs.values()].filter((s) => s.host === host);
  const mEps = [...m.eps.values()].filter((e) => e.host === host);
  const flightNet = flight && "network" in flight ? flight.network : undefined;
  const netOps = [...globalFlight, ...(flight ? [flight] : [])];
  const touchesNet = (name: string) =>
    netOps.some((f) => (f.op === "createNetwork" || f.op === "deleteNetwork") && f.name === name);
  const touchesSb = (name: string) =>
    (flight?.op === "createSandbox" || flight?.op === "deleteSandbox") && flight.name === name;
  const sbDeleting = flight?.op === "deleteSandbox"
    ? mSbs.find((s) => s.name === flight.name)?.id
    : undefined;
  const netName = (id: string) => m.nets.get(id)?.name ?? nets.find((n) => n.id === id)?.name ?? id;
  const touchesEp = (e: { name: string; networkId: string; sandboxId: string | null }) =>
    (flight && "network" in flight && flightNet === netName(e.networkId) &&
      flight.name === e.name) || (sbDeleting !== undefined && e.sandboxId === sbDeleting);
  const at = ` on ${host}`;

  for (const x of [...nets, ...sbs, ...eps] as { name: string; state: string }[]) {
    // A failed create is a refused command's record; it holds nothing.
    if (!STABLE.has(x.state) && x.state !== "failed") {
      v.divergences.push(`${x.name} is ${x.state} after recovery${at} (stuck)`);
    }
  }

  for (const n of nets) {
    if (n.state === "failed") continue;
    const want = m.nets.get(n.id);
    if (!want) {
      if (!touchesNet(n.name)) {
        v.divergences.push(`network ${n.name} exists${at} but was never acknowledged`);
      }
      continue;
    }
    const subnets = n.ipam.config.map((c) => c.subnet);
    if (JSON.stringify(subnets) !== JSON.stringify(want.subnets)) {
      v.divergences.push(
        `network ${n.name}${at}: subnets ${subnets}, acknowledged ${want.subnets}`,
      );
    }
    if (want.global && JSON.stringify(vnisOf(n)) !== JSON.stringify(want.vnis)) {
      v.divergences.push(`network ${n.name}${at}: VNIs ${vnisOf(n)}, acknowledged ${want.vnis}`);
    }
  }
  for (const want of mNets) {
    const have = nets.find((n) => n.id === want.id && n.state !== "failed");
    if (!have && !touchesNet(want.name)) {
      v.divergences.push(`acknowledged network ${want.name} is gone${at}`);
    }
  }
  for (const s of sbs) {
    if (s.state === "failed") continue;
    if (!m.sbs.has(s.id) && !(flight?.op === "createSandbox" && flight.name === s.name)) {
      v.divergences.push(`sandbox ${s.name} exists${at} but was never acknowledged`);
    }
  }
  for (const want of mSbs) {
    if (!sbs.some((s) => s.id === want.id) && !touchesSb(want.name)) {
      v.divergences.push(`acknowledged sandbox ${want.name} is gone${at}`);
    }
  }
  for (const e of eps) {
    if (e.state === "failed") continue;
    const want = m.eps.get(e.id);
    if (!want) {
      if (!(flight?.op === "createEndpoint" && touchesEp(e))) {
        v.divergences.push(`endpoint ${e.name} exists${at} but was never acknowledged`);
      }
      continue;
    }
    if (e.ipv4Address !== want.ipv4Address || e.ipv6Address !== want.ipv6Address) {
      v.divergences.push(
        `endpoint ${e.name}${at}: ${e.ipv4Address}/${e.ipv6Address}, acknowledged ${want.ipv4Address}/${want.ipv6Address}`,
      );
    }
    if (JSON.stringify(portsOf(e.ports)) !== JSON.stringify(want.ports)) {
      v.divergences.push(
        `endpoint ${e.name}${at}: ports ${
          portsOf(e.ports)
        }, acknowledged ${want.ports} (decided again?)`,
      );
    }
    if (e.sandboxId !== want.sandboxId && !touchesEp(want)) {
      v.divergences.push(
        `endpoint ${e.name}${at}: sandbox ${e.sandboxId}, acknowledged ${want.sandboxId}`,
      );
    }
  }
  for (const want of mEps) {
    if (!eps.some((e) => e.id === want.id && e.state !== "failed") && !touchesEp(want)) {
      v.divergences.push(`acknowledged endpoint ${want.name} is gone${at}`);
    }
  }

  // No address on two live endpoints of one network, none equal to its gateway. (Addresses
  // of different networks may repeat: overlay networks overlap the bridge pools' space.)
  const owners = new Map<string, string>();
  for (const n of nets) {
    if (n.state === "failed") continue;
    for (const c of n.ipam.config) {
      if (c.gateway) owners.set(`${n.id} ${c.gateway}`, `gateway of ${n.name}`);
    }
  }
  for (const e of cnm.endpoints()) {
    if (e.state === "failed") continue;
    for (const a of [ipOf(e.ipv4Address), ipOf(e.ipv6Address)]) {
      if (!a) continue;
      const k = `${e.networkId} ${a}`;
      const other = owners.get(k);
      if (other) {
        v.divergences.push(`address ${a} of ${e.name}${at} is also the ${other} (moby#27404)`);
      }
      owners.set(k, `address of endpoint ${e.name}`);
    }
  }
}
