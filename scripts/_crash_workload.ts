/**
 * The crash test's workload: the commands (one {@link Op} at a time, objects by name), how
 * one runs against a controller, and the seeded choice of the next one from the
 * controller's current state. Used by the killed child (bridge and overlay) and by the
 * surviving host's controller in the parent (overlay only).
 *
 * @module
 */

import { parsePortSpec } from "../mod.ts";
import type { Controller, EndpointInfo, NetworkInfo } from "../mod.ts";

/** One workload command. Objects are named; endpoints by network and name. */
export type Op =
  | {
    op: "createNetwork";
    name: string;
    subnet?: string;
    ipv6?: boolean;
    /** A global (overlay) network; default a bridge network. */
    driver?: "overlay";
    /** An explicit VNI (`vxlanid_list`). */
    vni?: number;
  }
  | { op: "deleteNetwork"; name: string }
  | { op: "createSandbox"; name: string }
  | { op: "deleteSandbox"; name: string }
  | { op: "createEndpoint"; network: string; name: string; ipv4?: string; ports?: string[] }
  | { op: "deleteEndpoint"; network: string; name: string; force?: boolean }
  | { op: "join"; network: string; name: string; sandbox: string }
  | { op: "leave"; network: string; name: string; sandbox: string };

/** libnetwork's option carrying an overlay network's VNIs. */
export const VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list";
/** The gateway bridge's label (cnm makes it and its endpoints; the workload never touches them). */
export const GWBRIDGE_LABEL = "cnm.gwbridge";

/** VNIs of a network (its `vxlanid_list`). */
export function vnisOf(n: Pick<NetworkInfo, "options">): number[] {
  return (n.options[VNI_OPTION] ?? "").split(",").filter((v) => /^\d+$/.test(v.trim()))
    .map(Number);
}

/** The networks the workload made (bridge and overlay; not `none`, `host`, the gwbridge). */
export function userNetworks(cnm: Controller): NetworkInfo[] {
  return cnm.networks().filter((n) =>
    (n.driver === "bridge" || n.driver === "overlay") && !n.labels[GWBRIDGE_LABEL]
  );
}

/** The endpoints the workload made (not the gwbridge's). */
export function userEndpoints(cnm: Controller): EndpointInfo[] {
  return cnm.endpoints().filter((e) => !e.labels[GWBRIDGE_LABEL]);
}

function findEndpoint(cnm: Controller, network: string, name: string): EndpointInfo {
  const ep = cnm.endpoints({ network }).find((e) => e.name === name);
  if (!ep) throw new Error(`workload: endpoint ${name} of ${network} not found`);
  return ep;
}

/** Runs one command; returns what the parent needs to update its model. */
export async function runOp(cnm: Controller, o: Op): Promise<unknown> {
  switch (o.op) {
    case "createNetwork": {
      const n = await cnm.createNetwork({
        name: o.name,
        ...(o.driver ? { driver: o.driver } : {}),
        ...(o.ipv6 ? { enableIPv6: true } : {}),
        ...(o.subnet ? { ipam: { config: [{ subnet: o.subnet }] } } : {}),
        ...(o.vni ? { options: { [VNI_OPTION]: String(o.vni) } } : {}),
      });
      return {
        id: n.id,
        subnets: n.ipam.config.map((c) => c.subnet),
        bridge: n.driverInfo.bridge,
        scope: n.scope,
        vnis: vnisOf(n),
      };
    }
    case "deleteNetwork":
      return await cnm.deleteNetwork(o.name);
    case "createSandbox": {
      const s = await cnm.createSandbox({ name: o.name });
      return { id: s.id, key: s.key };
    }
    case "deleteSandbox":
      return await cnm.deleteSandbox(o.name);
    case "createEndpoint": {
      const e = await cnm.createEndpoint(o.network, {
        name: o.name,
        ...(o.ipv4 ? { ipv4Address: o.ipv4 } : {}),
        ...(o.ports ? { portBindings: o.ports.flatMap(parsePortSpec) } : {}),
      });
      return {
        id: e.id,
        networkId: e.networkId,
        ipv4Address: e.ipv4Address,
        ipv6Address: e.ipv6Address,
        ...(e.macAddress ? { macAddress: e.macAddress } : {}),
        ...(e.ports ? { ports: e.ports } : {}),
      };
    }
    case "deleteEndpoint":
      return await cnm.deleteEndpoint(findEndpoint(cnm, o.network, o.name).id, {
        force: o.force ?? false,
      });
    case "join": {
      const e = await cnm.join(findEndpoint(cnm, o.network, o.name).id, o.sandbox);
      return { id: e.id, sandboxId: e.sandboxId, ifname: e.ifname };
    }
    case "leave":
      return await cnm.leave(findEndpoint(cnm, o.network, o.name).id, o.sandbox);
  }
}

/**
 * Port bindings for a new endpoint, sometimes: fixed ports from a small pool (so that two
 * endpoints ask for one port and the second is refused), ports cnm chooses, a two-port range
 * (exhausted now and then).
 */
export const PORT_POOL = ["8080:80", "8081:53/udp", "127.0.0.1:8082:80"];
function publishing(rnd: () => number): { ports?: string[] } {
  const r = rnd();
  if (r < 0.2) return { ports: [PORT_POOL[Math.floor(rnd() * PORT_POOL.length)]] };
  if (r < 0.35) return { ports: ["80", "127.0.0.1::53/udp"] };
  if (r < 0.45) return { ports: ["9000-9001:80"] };
  return {};
}

/**
 * The overlay's small pools, so that clashes show: explicit VNIs among the first automatic
 * ones (lowest free ≥ 4096), explicit subnets among the first of GlobalDefault (10.0.0.0/8
 * in /24s, lowest free).
 */
export const VNI_POOL = [4096, 4097, 4098, 4099];
export const OVERLAY_SUBNET_POOL = ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.3.0/24"];

const hex = (rnd: () => number, n: number) =>
  Array.from({ length: n }, () => Math.floor(rnd() * 16).toString(16)).join("");

/** What a workload may do. */
export interface Workload {
  /** Bridge networks (and their endpoints). */
  bridge: boolean;
  /** Overlay networks (and their endpoints). */
  overlay: boolean;
  /** Name prefixes of what it creates. */
  names: { net: string; sb: string; ep: string };
  /** Networks it must not delete (and, with `noEndpoints`, not add endpoints to). */
  keepNetworks?: RegExp;
  noEndpoints?: RegExp;
  /** Recently deleted names it sometimes reuses (must work again). */
  reuse?: { networks: string[]; endpoints: { network: string; name: string }[] };
  /** Limits that keep the state bounded (overlay networks are counted on every host). */
  limits?: { networks: number; sandboxes: number; endpoints: number };
}

/**
 * Picks the next random command from the controller's current state: mostly valid ones,
 * some that libnetwork refuses (a network with endpoints, a joined endpoint without force,
 * a fixed IP, VNI or subnet in use), and names and addresses of deleted objects reused.
 */
export function nextOp(cnm: Controller, rnd: () => number, w: Workload): Op {
  const lim = w.limits ?? { networks: 3, sandboxes: 4, endpoints: 8 };
  const active = userNetworks(cnm).filter((n) => n.state === "active");
  const bridges = active.filter((n) => n.driver === "bridge");
  const overlays = active.filter((n) => n.driver === "overlay");
  const nets = [...(w.bridge ? bridges : []), ...(w.overlay ? overlays : [])];
  const sbs = cnm.sandboxes().filter((s) => s.state === "ready");
  const eps = userEndpoints(cnm);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const netName = () => {
    const reuse = w.reuse?.networks.filter((n) => !active.some((x) => x.name === n)) ?? [];
    return reuse.length && rnd() < 0.3 ? pick(reuse) : `${w.names.net}${hex(rnd, 5)}`;
  };
  const deletable = nets.filter((n) => !w.keepNetworks?.test(n.name));
  const targets = nets.filter((n) => !w.noEndpoints?.test(n.name));
  const choices: [number, () => Op | undefined][] = [
    [w.bridge ? (bridges.length < lim.networks ? 2 : 0.2) : 0, () => {
      const name = netName();
      const r = rnd();
      if (r < 0.4) {
        return {
          op: "createNetwork",
          name,
          subnet: `10.${100 + Math.floor(rnd() * 8)}.${Math.floor(rnd() * 4)}.0/24`,
        };
      }
      return { op: "createNetwork", name, ...(r > 0.8 ? { ipv6: true } : {}) };
    }],
    [w.overlay ? (overlays.length < lim.networks ? 1.5 : 0.2) : 0, () => {
      const r = rnd();
      return {
        op: "createNetwork",
        name: netName(),
        driver: "overlay",
        ...(r < 0.2 || r >= 0.8 ? { vni: pick(VNI_POOL) } : {}),
        ...(r >= 0.6 ? { subnet: pick(OVERLAY_SUBNET_POOL) } : {}),
      };
    }],
    [deletable.length ? 0.7 : 0, () => ({ op: "deleteNetwork", name: pick(deletable).name })],
    [
      sbs.length < lim.sandboxes ? 2 : 0.2,
      () => ({ op: "createSandbox", name: `${w.names.sb}${hex(rnd, 5)}` }),
    ],
    [sbs.length ? 0.8 : 0, () => ({ op: "deleteSandbox", name: pick(sbs).name })],
    [targets.length && eps.length < lim.endpoints ? 3 : 0, () => {
      const net = pick(targets);
      const reuse = (w.reuse?.endpoints ?? []).filter((e) =>
        e.network === net.name && !eps.some((x) => x.networkId === net.id && x.name === e.name)
      );
      const name = reuse.length && rnd() < 0.3 ? pick(reuse).name : `${w.names.ep}${hex(rnd, 5)}`;
      const v4 = net.ipam.config.find((c) => !c.subnet.includes(":"));
      // Overlay endpoints publish nothing (the gwbridge gives no inbound access).
      const ports = net.driver === "bridge" ? publishing(rnd) : {};
      if (v4 && rnd() < 0.35) {
        // A fixed address low in the subnet: often one that is (or was) taken.
        const [a, b, c] = v4.subnet.split("/")[0].split(".");
        return {
          op: "createEndpoint",
          network: net.name,
          name,
          ipv4: `${a}.${b}.${c}.${2 + Math.floor(rnd() * 6)}`,
          ...ports,
        };
      }
      return { op: "createEndpoint", network: net.name, name, ...ports };
    }],
    [eps.length ? 2 : 0, () => {
      const e = pick(eps.filter((x) => x.state === "created" || x.state === "joined"));
      if (!e) return undefined;
      const net = cnm.network(e.networkId)!;
      const force = e.state === "joined" ? rnd() < 0.8 : rnd() < 0.2;
      return { op: "deleteEndpoint", network: net.name, name: e.name, force };
    }],
    [eps.length && sbs.length ? 3 : 0, () => {
      const e = pick(eps.filter((x) => x.state === "created"));
      if (!e) return undefined;
      // One endpoint per network in a sandbox (two addresses of one subnet in one namespace
      // are legal, but not what a container runtime does).
      const free = sbs.filter((s) =>
        !eps.some((x) => x.sandboxId === s.id && x.networkId === e.networkId)
      );
      if (!free.length) return undefined;
      return {
        op: "join",
        network: cnm.network(e.networkId)!.name,
        name: e.name,
        sandbox: pick(free).name,
      };
    }],
    [eps.length ? 2 : 0, () => {
      const e = pick(eps.filter((x) => x.state === "joined"));
      if (!e) return undefined;
      return {
        op: "leave",
        network: cnm.network(e.networkId)!.name,
        name: e.name,
        sandbox: cnm.sandbox(e.sandboxId!)!.name,
      };
    }],
  ];
  for (let attempt = 0; attempt < 20; attempt++) {
    const total = choices.reduce((s, [wt]) => s + wt, 0);
    let r = rnd() * total;
    for (const [wt, f] of choices) {
      r -= wt;
      if (r <= 0) {
        const op = wt > 0 ? f() : undefined;
        if (op) return op;
        break;
      }
    }
  }
  return { op: "createSandbox", name: `${w.names.sb}${hex(rnd, 5)}` };
}
