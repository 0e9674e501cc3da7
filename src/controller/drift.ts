/**
 * Drift between the journal's view and the kernel: what should exist (from the actors)
 * against what does (namespaces, bridges, veths, sandbox addresses, firewall chains).
 * Kernel objects carrying this controller's ownership mark but unknown to the journal are
 * orphans; those another controller made (or that carry an old mark this journal does not
 * know) are `foreign`: reported, never repaired (ownership.ts has the marks).
 *
 * @module
 */

import type { EndpointContext } from "../../actors/endpoint.ts";
import type { NetworkContext } from "../../actors/network.ts";
import type { SandboxContext } from "../../actors/sandbox.ts";
import { hostVethName, parseOwnershipAlias } from "../../drivers/bridge/mod.ts";
import type { Kernel } from "../kernel/types.ts";
import { netnsNameOf } from "./effects.ts";
import type { Firewall } from "../../drivers/bridge/_firewall.ts";
import { errText } from "../errors.ts";
import { type Mark, ownershipOf, parseNetnsMark, type Self } from "./ownership.ts";

/** One difference between the journal's view and the kernel. */
export interface Finding {
  /** The object it concerns (`host` for orphans). */
  kind: "network" | "endpoint" | "sandbox" | "host";
  objectId: string;
  resource:
    | "netns"
    | "bridge"
    | "veth"
    | "address"
    | "firewall"
    | "peer"
    | "vxlan"
    | "dns"
    | "port-rule"
    | "port-element"
    | "held-port";
  name: string;
  /** `foreign`: another controller's (or an unknown old mark); reported, never repaired. */
  problem: "missing" | "unexpected" | "different" | "foreign";
  expected?: string;
  actual?: string;
}

/** What reconcile found and, unless dry, did. */
export interface ReconcileReport {
  dryRun: boolean;
  findings: (Finding & { repaired: boolean; error?: string })[];
  ms: number;
}

/** What the inspection reads from the controller. */
export interface DriftView {
  kernel: Kernel;
  namePrefix: string;
  /** This controller's owner id and the object ids its journal knows. */
  self: Self;
  /** Path of the controller's host namespace (never an orphan). */
  hostNamespace?: string;
  networks: { state: string; c: NetworkContext }[];
  endpoints: { state: string; c: EndpointContext }[];
  sandboxes: { state: string; c: SandboxContext }[];
  /** Namespaces carrying the name prefix that are not sandboxes (e.g. overlay namespaces). */
  notSandbox?(name: string): boolean;
  /**
   * Network ids (12 chars) with firewall chains, each with the owner its rules name (null:
   * none), or undefined when there is no firewall.
   */
  firewallNetworks(): Promise<Record<string, string | null> | undefined>;
}

/** Compares the journal's view with the kernel. Reads only. */
export async function inspectDrift(v: DriftView): Promise<Finding[]> {
  const out: Finding[] = [];
  const hostNs = v.hostNamespace ? netnsNameOf(v.hostNamespace) : undefined;
  /** A kernel object no live object of ours explains: an orphan if ours, else foreign. */
  const stray = (resource: Finding["resource"], name: string, mark: Mark): Finding => {
    const owned = ownershipOf(mark, v.self);
    return owned.ours
      ? { kind: "host", objectId: "", resource, name, problem: "unexpected" }
      : { kind: "host", objectId: "", resource, name, problem: "foreign", actual: owned.why };
  };

  // Namespaces of owned sandboxes.
  const nsNames = new Set(await v.kernel.listNetns(v.namePrefix));
  const knownNs = new Set(v.sandboxes.filter((s) => s.c.owned).map((s) => netnsNameOf(s.c.key)));
  for (const s of v.sandboxes) {
    if (s.state !== "ready") continue;
    // (An owned namespace may carry an older name prefix than the controller's current one.)
    const present = (s.c.owned && nsNames.has(netnsNameOf(s.c.key))) ||
      await v.kernel.netnsExists(s.c.key);
    if (!present) {
      out.push({
        kind: "sandbox",
        objectId: s.c.id,
        resource: "netns",
        name: s.c.key,
        problem: "missing",
      });
    }
  }
  for (const name of nsNames) {
    if (name === hostNs || knownNs.has(name) || v.notSandbox?.(name)) continue;
    out.push(stray("netns", name, parseNetnsMark(name, v.namePrefix)!));
  }

  // Bridges and veths in the host namespace.
  const links = await v.kernel.listLinks();
  const byName = new Map(links.map((l) => [l.name, l]));
  const bridgeNets = v.networks.filter((n) => n.c.driver === "bridge");
  const activeBridges = bridgeNets.filter((n) => n.state === "active");
  for (const n of activeBridges) {
    const name = String(n.c.facts.bridge ?? "");
    if (name && !byName.has(name)) {
      out.push({ kind: "network", objectId: n.c.id, resource: "bridge", name, problem: "missing" });
    }
  }
  const knownNetIds = new Set(bridgeNets.map((n) => n.c.id.slice(0, 12)));
  const knownEpIds = new Set(v.endpoints.map((e) => e.c.id.slice(0, 12)));
  for (const l of links) {
    const mark = parseOwnershipAlias(l.alias);
    if (!mark) continue;
    const known = mark.kind === "network" ? knownNetIds : knownEpIds;
    const mine = mark.owner === undefined || mark.owner === v.self.owner;
    if (mine && known.has(mark.id12)) continue;
    out.push(stray(mark.kind === "network" ? "bridge" : "veth", l.name, mark));
  }

  // Joined bridge endpoints: the host end on its bridge, the address inside the sandbox.
  const netById = new Map(v.networks.map((n) => [n.c.id, n]));
  const sbById = new Map(v.sandboxes.map((s) => [s.c.id, s]));
  for (const e of v.endpoints) {
    const net = netById.get(e.c.networkId);
    if (e.state !== "joined" || net?.c.driver !== "bridge") continue;
    const vethName = typeof e.c.facts.hostVeth === "string"
      ? e.c.facts.hostVeth
      : hostVethName(e.c.id);
    const veth = byName.get(vethName);
    const bridge = String(net.c.facts.bridge ?? "");
    if (!veth) {
      out.push({
        kind: "endpoint",
        objectId: e.c.id,
        resource: "veth",
        name: vethName,
        problem: "missing",
      });
      continue;
    }
    if (veth.master !== bridge) {
      out.push({
        kind: "endpoint",
        objectId: e.c.id,
        resource: "veth",
        name: veth.name,
        problem: "different",
        expected: `master ${bridge}`,
        actual: veth.master ? `master ${veth.master}` : "no master",
      });
    }
    const sb = e.c.sandboxId ? sbById.get(e.c.sandboxId) : undefined;
    if (!sb || !e.c.ifname || !(await v.kernel.netnsExists(sb.c.key))) continue;
    const addrs = (await v.kernel.listAddrs(sb.c.key)).filter((a) => a.link === e.c.ifname);
    for (const want of [e.c.ipv4Address, e.c.ipv6Address]) {
      if (want && !addrs.some((a) => a.address === want)) {
        out.push({
          kind: "endpoint",
          objectId: e.c.id,
          resource: "address",
          name: `${e.c.ifname} in ${sb.c.name}`,
          problem: addrs.length ? "different" : "missing",
          expected: want,
          actual: addrs.map((a) => a.address).join(",") || undefined,
        });
      }
    }
  }

  // Firewall chains (not for networks made with the bridge's firewallBackend `none`).
  const fw = await v.firewallNetworks();
  if (fw) {
    const have = new Set(Object.keys(fw));
    for (const n of activeBridges.filter((n) => hasFirewall(n.c))) {
      if (!have.has(n.c.id.slice(0, 12))) {
        out.push({
          kind: "network",
          objectId: n.c.id,
          resource: "firewall",
          name: `net-${n.c.id.slice(0, 12)}`,
          problem: "missing",
        });
      }
    }
    for (const [id, owner] of Object.entries(fw)) {
      const mine = owner === null || owner === v.self.owner;
      if (mine && knownNetIds.has(id)) continue;
      out.push(stray("firewall", `net-${id}`, { id12: id, ...(owner ? { owner } : {}) }));
    }
  }
  return out;
}

/** Whether a bridge network was made with firewall rules (its recorded driver configuration). */
export function hasFirewall(c: NetworkContext): boolean {
  return c.driver === "bridge" && c.driverConfig?.firewallBackend !== "none";
}

/** What a repair needs from the controller. */
export interface RepairDeps {
  kernel: Kernel;
  firewall: Firewall;
  /** Runs `f` on the object's current context while holding its lock (skipped if gone). */
  withObject(
    kind: "network" | "endpoint" | "sandbox",
    id: string,
    f: (context: unknown) => Promise<void>,
  ): Promise<void>;
  /** Endpoints joined to a sandbox. */
  joinedTo(sandboxId: string): EndpointContext[];
  /** Re-runs a network's create effect (idempotent ensure), given what was found. */
  ensureNetwork(c: NetworkContext, findings: Finding[]): Promise<void>;
  /** Removes an orphan namespace (default: the kernel's deleteNetns). */
  removeNamespace?(name: string): Promise<void>;
  /** Removes an orphan VXLAN device, named as its finding names it. */
  removeVxlan?(name: string): Promise<void>;
  /** Re-runs a joined endpoint's join effect (idempotent ensure). */
  ensureJoined(c: EndpointContext): Promise<void>;
  /** Repairs a sandbox's embedded DNS (`dns` findings: listener, DNAT table). */
  repairDns?(sandboxId: string, findings: Finding[]): Promise<void>;
  /** Journals the repair of one object (or orphan) as a `*.reconciled` event. */
  record(
    kind: Finding["kind"],
    objectId: string,
    findings: Finding[],
    error: unknown,
  ): Promise<void>;
}

/**
 * Repairs findings object by object — sandboxes first (their namespace), then networks
 * (bridge, rules), endpoints (interfaces), and last orphans (removed) — and records each.
 * Foreign findings are passed through unrepaired and unrecorded.
 */
export async function repairDrift(
  findings: Finding[],
  deps: RepairDeps,
): Promise<ReconcileReport["findings"]> {
  const out: ReconcileReport["findings"] = [];
  const order = { sandbox: 0, network: 1, endpoint: 2, host: 3 };
  const groups = new Map<string, Finding[]>();
  for (const f of [...findings].sort((a, b) => order[a.kind] - order[b.kind])) {
    if (f.problem === "foreign") {
      out.push({ ...f, repaired: false });
      continue;
    }
    const key = f.kind === "host" ? `host:${f.resource}:${f.name}` : `${f.kind}:${f.objectId}`;
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  for (const group of groups.values()) {
    const { kind, objectId } = group[0];
    let error: unknown;
    try {
      if (kind === "host") {
        const f = group[0];
        if (f.resource === "netns") {
          await (deps.removeNamespace ?? ((n) => deps.kernel.deleteNetns(n)))(f.name);
        } else if (f.resource === "firewall") {
          await deps.firewall.removeNetwork(f.name.replace(/^net-/, ""));
        } else if (f.resource === "vxlan") {
          if (!deps.removeVxlan) throw new Error(`no way to remove VXLAN device ${f.name}`);
          await deps.removeVxlan(f.name);
        } else await deps.kernel.deleteLink(f.name);
      } else {
        await deps.withObject(kind, objectId, async (context) => {
          if (kind === "sandbox") {
            const c = context as SandboxContext;
            if (!group.every((f) => f.resource === "dns")) {
              if (c.owned) await deps.kernel.ensureNetns(netnsNameOf(c.key));
              for (const ep of deps.joinedTo(c.id)) await deps.ensureJoined(ep);
            }
            if (group.some((f) => f.resource === "dns")) await deps.repairDns?.(c.id, group);
          } else if (kind === "network") {
            await deps.ensureNetwork(context as NetworkContext, group);
          } else {
            await deps.ensureJoined(context as EndpointContext);
          }
        });
      }
    } catch (err) {
      error = err;
    }
    const repaired = error === undefined;
    for (const f of group) {
      out.push({ ...f, repaired, ...(error ? { error: errText(error) } : {}) });
    }
    await deps.record(kind, objectId, group, error).catch((err) =>
      console.error(`cnm: cannot journal a reconcile repair: ${errText(err)}`)
    );
  }
  return out;
}
