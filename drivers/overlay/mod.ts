/**
 * The `overlay` driver: one network across hosts over VXLAN, libnetwork's data plane. Per
 * network and host a namespace `<namePrefix>ov-<owner>-<nid12>` holds, per IPv4 subnet, a
 * bridge `ov-<vni>-<nid5>` with the gateway address and a VXLAN device `vx-<vni>-<nid5>`
 * (UDP 4789, learning off, proxy ARP) whose socket stays in the host namespace. It is made
 * when the first local endpoint joins and removed with the last; each container's interface
 * is a veth from the sandbox into that bridge. Remote endpoints are programmed from a peer
 * table the controller feeds ({@link OverlayDriver.setPeers} & co.): one permanent neighbour
 * and one permanent `self` FDB entry each, written with replace semantics and batched.
 *
 * The VNIs are decided by the controller (cluster-wide) and travel in the network's options
 * as `com.docker.network.driver.overlay.vxlanid_list`, one per IPv4 subnet, exactly as
 * libnetwork's manager hands them to every node. `com.docker.network.driver.mtu` is the
 * underlay-side MTU (default 1500); containers get 50 less (1450). `encrypted` is refused on
 * kernels without ESP/AES-GCM, naming what is missing.
 *
 * Ownership: the namespace name and the link aliases (`cnm:<owner>:overlay:<nid12>`,
 * `cnm:<owner>:endpoint:<eid12>`) carry the controller's identity ({@link ownerId}).
 *
 * @example
 * ```ts ignore
 * import { createOverlayDriver, ownerId } from "./mod.ts";
 * const overlay = createOverlayDriver({
 *   advertiseAddress: "192.0.2.1",
 *   owner: ownerId("CNM", "h1"),
 * });
 * ```
 *
 * @module
 */

import type { DriverEndpoint, DriverNetwork, EffectContext, JoinResult } from "../driver.ts";
import { InvalidArgumentError } from "../../src/errors.ts";
import { addressOf } from "../../src/ipam/cidr.ts";
import type { NeighborChange } from "../../src/kernel/types.ts";
import {
  checkPort,
  DEFAULT_VXLAN_PORT,
  hostVethName,
  macFromIp,
  type OverlayConfig,
  overlayConfig,
  overlayNames,
  OverlayOptions,
  ownerId,
  subnetOf,
} from "./_config.ts";
import { checkAddress, detectVtep, isIPv4, macOf, vethOf } from "./_endpoint.ts";
import { ipsecRefusal, probeIpsec } from "./_ipsec.ts";
import {
  OVERLAY_NEW_NETWORKS_ONLY,
  OVERLAY_NEXT_JOINS,
  OverlayConfigSchema,
  type OverlayDriverConfig,
} from "./config.ts";
import {
  ensureNamespace,
  hasEndpoints,
  type NamespaceEnv,
  namespacePath,
  ownedNamespaces,
  removeNamespace,
  removeOrphan,
} from "./_namespace.ts";
import { deviceDrift, removeStrayDevice, strayDevices } from "./_devices.ts";
import type { OverlayDriver, OverlayDriverOptions, PeerContext, PeerSync } from "./_api.ts";
import {
  desired,
  diff,
  type LocalView,
  type OverlayPeer,
  parsePeers,
  type PeerEntry,
  type PeerState,
  PeerTable,
  repairChanges,
} from "./_peers.ts";

export { OverlayOptions, ownerId } from "./_config.ts";
export type { OverlayPeer, PeerEntry, PeerState } from "./_peers.ts";
export type { DeviceDrift, DeviceState, StrayDevice } from "./_devices.ts";
export type { OverlayDriver, OverlayDriverOptions, PeerContext, PeerSync } from "./_api.ts";

interface NetState {
  table: PeerTable;
  /** Endpoints joined here: id → IP and MAC. */
  local: Map<string, { ip: string; mac: string }>;
  lock: Promise<unknown>;
  /**
   * Whether the controller has handed over the whole table (setPeers) since this driver
   * started. Until then the table may be incomplete, so entries the kernel has and the table
   * lacks are kept, not deleted: a restarted controller re-running a join must not wipe the
   * peers it has not re-read yet.
   */
  complete: boolean;
}

/** Creates the overlay driver. */
export function createOverlayDriver(options: OverlayDriverOptions = {}): OverlayDriver {
  const port = checkPort(options.port ?? DEFAULT_VXLAN_PORT);
  const names = overlayNames(options.owner ?? ownerId("CNM", Deno.hostname()));
  if (options.advertiseAddress !== undefined && !isIPv4(options.advertiseAddress)) {
    throw new InvalidArgumentError(
      `invalid advertise address ${JSON.stringify(options.advertiseAddress)}: not an IPv4 address`,
    );
  }
  let vtep = options.advertiseAddress;
  const nets = new Map<string, NetState>();

  const net = (id: string): NetState => {
    let st = nets.get(id);
    if (!st) {
      nets.set(
        id,
        st = { table: new PeerTable(), local: new Map(), lock: Promise.resolve(), complete: false },
      );
    }
    return st;
  };
  // One operation per network at a time: joins, leaves and peer updates see each other whole.
  const locked = <T>(id: string, fn: (st: NetState) => Promise<T>): Promise<T> => {
    const st = net(id);
    const run = st.lock.then(() => fn(st), () => fn(st));
    st.lock = run.catch(() => {});
    return run;
  };
  /**
   * The VXLAN port of a network: the one its creator's configuration recorded (every host of
   * the network must agree), else this driver's.
   */
  const portOf = (network?: DriverNetwork): number => {
    const p = (network?.driverConfig as { vxlanPort?: unknown } | undefined)?.vxlanPort;
    return typeof p === "number" ? p : port;
  };
  const env = (ctx: PeerContext, network?: DriverNetwork): NamespaceEnv => ({
    kernel: ctx.kernel,
    namePrefix: ctx.prefix,
    names,
    port: portOf(network),
  });
  const config = (network: DriverNetwork): OverlayConfig => {
    const cfg = overlayConfig(network);
    if (cfg.encrypted) throw new InvalidArgumentError(ipsecRefusal(probeIpsec()));
    return cfg;
  };
  const advertise = async (ctx: PeerContext): Promise<string> =>
    vtep ??= await detectVtep(ctx.kernel);
  const localView = (st: NetState): LocalView => ({
    vtep,
    ips: new Set([...st.local.values()].map((l) => l.ip)),
    macs: new Set([...st.local.values()].map((l) => l.mac)),
  });

  /** Makes the kernel match the table: the reconcile behind setPeers and every namespace creation. */
  const reconcile = async (st: NetState, cfg: OverlayConfig, path: string, ctx: PeerContext) => {
    const want = desired(cfg, st.table.all(), localView(st));
    const [neighbors, fdb] = await Promise.all([
      ctx.kernel.listNeighbors(path),
      ctx.kernel.listFdb(path),
    ]);
    const local = localView(st);
    const keep = st.complete
      ? undefined
      : (e: PeerEntry) => !(e.ip !== undefined && local.ips.has(e.ip)) && !local.macs.has(e.mac);
    const changes = repairChanges(diff(cfg, want, neighbors, fdb), want, keep);
    if (changes.length) await ctx.kernel.applyNeighbors(changes, path);
    return changes.length;
  };
  const existing = async (network: DriverNetwork, ctx: PeerContext): Promise<string | null> => {
    const path = namespacePath(env(ctx), network.id);
    return (await ctx.kernel.netnsExists(path)) ? path : null;
  };
  /** Removes an endpoint's veth and, when it was the last, the namespace. */
  const detach = (network: DriverNetwork, ep: DriverEndpoint, ctx: EffectContext) =>
    locked(network.id, async (st) => {
      const e = env(ctx, network);
      const path = namespacePath(e, network.id);
      await ctx.kernel.deleteLink(vethOf(ep), path);
      st.local.delete(ep.id);
      if (!(await hasEndpoints(e, path))) await removeNamespace(e, network.id);
    });

  const peerOp = async (
    network: DriverNetwork,
    peers: OverlayPeer[],
    ctx: PeerContext,
    apply: (
      st: NetState,
      cfg: OverlayConfig,
      parsed: OverlayPeer[],
      local: LocalView,
    ) => NeighborChange[] | "reset",
    /** Run first when the namespace exists (the devices' repair). */
    ensure?: () => Promise<unknown>,
  ) => {
    const parsed = parsePeers(peers);
    const cfg = overlayConfig(network);
    return await locked(network.id, async (st): Promise<PeerSync> => {
      if (!vtep) await advertise(ctx).catch(() => {}); // own peers are recognised by it
      const changes = apply(st, cfg, parsed, localView(st));
      const path = await existing(network, ctx);
      if (!path) return { namespace: null, changes: 0 };
      await ensure?.();
      if (changes === "reset") {
        return { namespace: path, changes: await reconcile(st, cfg, path, ctx) };
      }
      if (changes.length) await ctx.kernel.applyNeighbors(changes, path);
      return { namespace: path, changes: changes.length };
    });
  };

  /** setPeers' change: the whole table replaced, then the kernel reconciled with it. */
  const replaceTable = (st: NetState, _cfg: OverlayConfig, parsed: OverlayPeer[]) => {
    st.table.reset(parsed);
    st.complete = true;
    return "reset" as const;
  };

  return {
    name: "overlay",
    configSchema: OverlayConfigSchema,
    configNewNetworksOnly: OVERLAY_NEW_NETWORKS_ONLY,
    configNextJoins: OVERLAY_NEXT_JOINS,
    configure(config) {
      // This host's VTEP from the configuration in force (joins from now on record it); none
      // configured: the factory's, else detected again at the next join.
      vtep = (config as OverlayDriverConfig).advertiseAddress ?? options.advertiseAddress;
    },
    capabilities: () => ({
      dataScope: "global",
      connectivityScope: "global",
      vniOption: OverlayOptions.vxlanIdList,
    }),
    validateNetwork(network) {
      const cfg = overlayConfig(network, { requireVnis: false });
      if (cfg.encrypted) throw new InvalidArgumentError(ipsecRefusal(probeIpsec()));
    },

    async createNetwork(network) {
      // Nothing in the kernel yet: the namespace comes with the first local join.
      const cfg = config(network);
      return await Promise.resolve({
        vnis: cfg.subnets.map((s) => s.vni),
        mtu: cfg.mtu,
        port: portOf(network),
        subnets: cfg.subnets.map((s) => ({
          pool: s.pool,
          vni: s.vni,
          bridge: s.bridge,
          vxlan: s.vxlan,
        })),
      });
    },

    deleteNetwork: (network, ctx) =>
      locked(network.id, async () => {
        await removeNamespace(env(ctx, network), network.id);
        nets.delete(network.id);
      }),

    async createEndpoint(network, ep) {
      const cfg = config(network);
      const ip = checkAddress(cfg, network, ep);
      return await Promise.resolve({
        macAddress: ep.macAddress ?? macFromIp(ip),
        hostVeth: hostVethName(ep.id),
        mtu: cfg.mtu,
      });
    },

    deleteEndpoint: (network, ep, ctx) => detach(network, ep, ctx),

    join: (network, ep, sandbox, ctx) =>
      locked(network.id, async (st): Promise<JoinResult> => {
        const cfg = config(network);
        const ip = checkAddress(cfg, network, ep);
        const sub = subnetOf(cfg, ip)!;
        const mac = macOf(ep, ip);
        const self = await advertise(ctx);
        // Local first: its IP and MAC must never be programmed as a remote peer here.
        st.local.set(ep.id, { ip, mac });
        try {
          const path = await ensureNamespace(env(ctx, network), cfg);
          await reconcile(st, cfg, path, ctx);
          const gw = sub.gateway ? addressOf(sub.gateway) : undefined;
          const others = gw ? cfg.subnets.filter((s) => s !== sub) : [];
          await ctx.kernel.ensureVeth({
            hostName: vethOf(ep),
            hostNetns: path,
            master: sub.bridge,
            mtu: cfg.mtu,
            netns: sandbox.key,
            peerName: sandbox.ifname,
            peerMac: mac,
            addresses: [ep.ipv4Address!],
            routes: others.map((s) => ({ dst: s.pool, via: gw! })),
            alias: names.endpointMark(ep.id),
          });
          return {
            ip,
            mac,
            vtep: self,
            vni: sub.vni,
            overlayNamespace: names.namespace(ctx.prefix, network.id),
            bridge: sub.bridge,
            vxlan: sub.vxlan,
            hostVeth: vethOf(ep),
            mtu: cfg.mtu,
            ...(others.length
              ? {
                staticRoutes: others.map((s) => ({
                  destination: s.pool,
                  routeType: 0 as const,
                  nextHop: gw,
                })),
              }
              : {}),
          };
        } catch (err) {
          st.local.delete(ep.id);
          throw err;
        }
      }),

    leave: (network, ep, _sandbox, ctx) => detach(network, ep, ctx),

    setPeers: (network, peers, ctx) => peerOp(network, peers, ctx, replaceTable),
    addPeers: (network, peers, ctx) =>
      peerOp(network, peers, ctx, (st, cfg, parsed, local) => st.table.add(cfg, parsed, local)),
    removePeers: (network, peers, ctx) =>
      peerOp(network, peers, ctx, (st, cfg, parsed, local) => st.table.remove(cfg, parsed, local)),

    peerState: async (network, ctx) => {
      const cfg = overlayConfig(network);
      return await locked(network.id, async (st): Promise<PeerState> => {
        const want = desired(cfg, st.table.all(), localView(st));
        const path = await existing(network, ctx);
        if (!path) {
          return {
            networkId: network.id,
            namespace: null,
            remotePeers: want.remote,
            ok: 0,
            missing: [],
            stale: [],
            learned: [],
          };
        }
        const [neighbors, fdb] = await Promise.all([
          ctx.kernel.listNeighbors(path),
          ctx.kernel.listFdb(path),
        ]);
        return { networkId: network.id, namespace: path, ...diff(cfg, want, neighbors, fdb) };
      });
    },
    peers: (id) => nets.get(id)?.table.all() ?? [],
    ownedNamespaces: (ctx) => ownedNamespaces(env(ctx)),
    removeOrphan: (name, ctx) => removeOrphan(env(ctx), name),
    deviceState: (network, ctx) => deviceDrift(env(ctx, network), overlayConfig(network)),
    repairDevices: (network, peers, ctx) =>
      peerOp(
        network,
        peers,
        ctx,
        replaceTable,
        () => ensureNamespace(env(ctx, network), config(network)),
      ),
    strayDevices: (live, ctx) => strayDevices(env(ctx), live),
    removeStrayDevice: (device, ctx) => removeStrayDevice(env(ctx), device),
  };
}
