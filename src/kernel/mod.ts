/**
 * Kernel access over rtnetlink: links (bridges, veths, VXLAN devices), addresses, routes,
 * neighbour and FDB entries, and namespaces, spoken directly to
 * the kernel through Deno FFI (one cached netlink socket per namespace), with `ip netns` and
 * `nsenter` execs only off the hot path. Every mutating call is an idempotent ensure. NAT tables
 * inside a namespace, over nf_tables netlink, are `nat_table.ts` (by namespace path, with no
 * Kernel object: the DNS resolver's per-sandbox table).
 *
 * @example
 * ```ts ignore
 * import { createKernel } from "./mod.ts";
 * const kernel = await createKernel({ hostNamespace: "/var/run/netns/cnm-host" });
 * await kernel.ensureBridge({ name: "br0", addresses: ["10.0.0.1/24"] });
 * await kernel.close();
 * ```
 *
 * @module
 */

import { CnmError, DriverError, InvalidArgumentError } from "../errors.ts";
import { HeldPorts } from "./_held_ports.ts";
import * as links from "./_links.ts";
import * as neigh from "./_neigh.ts";
import { isNetns, NamespaceTable, NETNS_DIR, run } from "./_netns.ts";
import * as routes from "./_routes.ts";
import * as vxlan from "./_vxlan.ts";
import type { Kernel } from "./types.ts";

export type {
  AddrInfo,
  BridgeSpec,
  FdbInfo,
  FdbSpec,
  HeldPort,
  Kernel,
  LinkInfo,
  LinkOptions,
  NeighborBatchResult,
  NeighborChange,
  NeighborInfo,
  NeighborSpec,
  RouteInfo,
  RouteSpec,
  VethSpec,
  VxlanInfo,
  VxlanSpec,
} from "./types.ts";
export { VNI_EXISTS } from "./_vxlan.ts";

/** Options of {@link createKernel}. */
export interface KernelOptions {
  /** Netns path the controller treats as its host; default: the process's own namespace. */
  hostNamespace?: string;
}

/**
 * Runs a synchronous netlink operation as a promise; failures that are not already typed
 * become a DriverError whose message names the operation and the object.
 */
function settle<T>(f: () => T): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (err) {
    if (err instanceof CnmError) return Promise.reject(err);
    return Promise.reject(new DriverError((err as Error).message, { cause: err }));
  }
}

function checkNetnsName(name: string): string {
  if (
    typeof name !== "string" || !/^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/.test(name) || /^\.+$/.test(name)
  ) {
    throw new InvalidArgumentError(`invalid network namespace name ${JSON.stringify(name)}`);
  }
  return name;
}

/**
 * Creates the rtnetlink-backed {@link Kernel}, opening a netlink socket in the host namespace.
 *
 * @throws {InvalidArgumentError} when `hostNamespace` is not a network namespace.
 */
export function createKernel(options: KernelOptions = {}): Promise<Kernel> {
  const hostNs = options.hostNamespace;
  if (hostNs !== undefined && !isNetns(hostNs)) {
    return Promise.reject(
      new InvalidArgumentError(`host namespace ${hostNs} is not a network namespace`),
    );
  }
  const table = new NamespaceTable();
  const ns = (path?: string) => table.get(path ?? hostNs);
  try {
    ns();
  } catch (err) {
    table.close();
    return Promise.reject(err);
  }
  const names = (path?: string) => new Map(links.rawLinks(ns(path)).map((l) => [l.index, l.name]));
  const vx: vxlan.VxlanEnv = {
    table,
    hostNs,
    allNetns() {
      try {
        return [...Deno.readDirSync(NETNS_DIR)].map((e) => `${NETNS_DIR}/${e.name}`).sort();
      } catch {
        return [];
      }
    },
  };
  const held = new HeldPorts((fn) => table.inside(hostNs, fn));

  const kernel: Kernel = {
    async ensureNetns(name) {
      const path = `${NETNS_DIR}/${checkNetnsName(name)}`;
      if (!isNetns(path)) {
        table.forget(path);
        // A crashed `ip netns add` can leave an unmounted placeholder file behind.
        await Deno.remove(path).catch(() => {});
        await run(["ip", "netns", "add", name]).catch((err) => {
          if (!isNetns(path)) throw err; // else: lost a race with another creator, fine
        });
      }
      await kernel.ensureLoopbackUp(path);
      return path;
    },
    async deleteNetns(name) {
      const path = `${NETNS_DIR}/${checkNetnsName(name)}`;
      table.forget(path);
      if (isNetns(path)) {
        await run(["ip", "netns", "del", name]).catch((err) => {
          if (isNetns(path)) throw err;
        });
      } else await Deno.remove(path).catch(() => {});
    },
    async listNetns(prefix) {
      const found: string[] = [];
      try {
        for await (const e of Deno.readDir(NETNS_DIR)) {
          if (e.name.startsWith(prefix)) found.push(e.name);
        }
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      return found.sort();
    },
    netnsExists: (path) => Promise.resolve(isNetns(path)),
    ensureLoopbackUp: (path) => settle(() => links.setUp(ns(path), "lo")),

    ensureBridge: (spec) => settle(() => links.ensureBridge(ns, spec)),
    ensureVeth: (spec) => settle(() => links.ensureVeth(ns, spec)),
    async deleteLink(name, netns) {
      const req = links.deleteLinkRequestFor(name);
      const path = netns ?? hostNs;
      if (path !== undefined && !isNetns(path)) return; // namespace gone: so is the link
      // Deleting a veth costs the kernel milliseconds of RCU waits: keep it off the loop.
      await table.lend(path, (sock) => sock.transactAsync([req])).catch((err) => {
        if (err instanceof CnmError) throw err;
        throw new DriverError((err as Error).message, { cause: err });
      });
    },
    listLinks: (netns) => settle(() => links.listLinks(ns(netns))),
    listAddrs: (netns) => settle(() => links.listAddrs(ns(netns), names(netns))),
    listRoutes: (netns) => settle(() => routes.listRoutes(ns(netns), names(netns))),
    ensureRoute: (route, netns) => settle(() => routes.ensureRoute(ns(netns), route)),
    deleteRoute: (route, netns) => settle(() => routes.deleteRoute(ns(netns), route)),

    ensureVxlan: (spec) => settle(() => vxlan.ensureVxlan(vx, spec)),
    listVxlans: (netns) => settle(() => vxlan.listVxlans(vx, netns)),
    findVxlans: (vni, opts) => settle(() => vxlan.findVxlans(vx, vni, opts)),

    ensureNeighbor: (spec, netns) =>
      settle(() => neigh.applyOne(ns(netns), { op: "add", neighbor: spec })),
    deleteNeighbor: (spec, netns) =>
      settle(() => neigh.applyOne(ns(netns), { op: "delete", neighbor: spec })),
    listNeighbors: (netns, dev) => settle(() => neigh.listNeighbors(ns(netns), dev)),
    ensureFdb: (spec, netns) => settle(() => neigh.applyOne(ns(netns), { op: "add", fdb: spec })),
    deleteFdb: (spec, netns) =>
      settle(() => neigh.applyOne(ns(netns), { op: "delete", fdb: spec })),
    listFdb: (netns, dev) => settle(() => neigh.listFdb(ns(netns), dev)),
    applyNeighbors: (changes, netns) => settle(() => neigh.applyNeighbors(ns(netns), changes)),
    setLinkOptions: (name, o) => settle(() => links.setLinkOptions(ns(), name, o)),
    holdPort: (port) => settle(() => held.hold(port)),
    releasePort: (port) => settle(() => held.release(port)),
    heldPorts: () => Promise.resolve(held.list()),

    exec: (argv, opts = {}) => run(argv, { stdin: opts.stdin, netns: opts.netns ?? hostNs }),
    close: () =>
      settle(() => {
        held.close();
        table.close();
      }),
  };
  return Promise.resolve(kernel);
}
