/**
 * The overlay driver's contract with the controller: its options, and the peer and device
 * API beyond the Driver contract ({@link OverlayDriver}).
 *
 * @module
 */

import type { Driver, DriverNetwork, EffectContext } from "../driver.ts";
import type { DeviceState, StrayDevice } from "./_devices.ts";
import type { OverlayPeer, PeerState } from "./_peers.ts";

/** Options of `createOverlayDriver` (mod.ts). */
export interface OverlayDriverOptions {
  /**
   * This host's VTEP (underlay IPv4 address): put into join facts, and peers with it are this
   * host's own and never programmed. A configured `advertiseAddress` overrides it; set back to
   * none, this one is in force again. Default: the first IPv4 address of the device holding
   * the host namespace's default route (detected at the first join after start or after the
   * configured address is removed).
   */
  advertiseAddress?: string;
  /** Controller identity in ownership marks, e.g. `ownerId(stream, hostId)`. Default `ownerId("CNM", hostname)`. */
  owner?: string;
  /** VXLAN UDP port, 1024-49151. Default 4789. */
  port?: number;
}

/** What peer operations need: the controller's kernel and name prefix. */
export type PeerContext = Pick<EffectContext, "kernel" | "prefix">;

/** What a peer operation did. */
export interface PeerSync {
  /** The network's namespace here, or null when there is none (entries kept for later). */
  namespace: string | null;
  /** Neighbour/FDB changes sent to the kernel. */
  changes: number;
}

/** The overlay driver: the Driver contract plus the peer API the controller drives. */
export interface OverlayDriver extends Driver {
  /** Replaces the network's peer table and reconciles the kernel with it (missing, stale, learned). */
  setPeers(network: DriverNetwork, peers: OverlayPeer[], ctx: PeerContext): Promise<PeerSync>;
  /** Adds peers (a known IP with another VTEP or MAC moves), programmed with replace. */
  addPeers(network: DriverNetwork, peers: OverlayPeer[], ctx: PeerContext): Promise<PeerSync>;
  /** Removes peers (ignored when the table holds their IP at another location meanwhile). */
  removePeers(network: DriverNetwork, peers: OverlayPeer[], ctx: PeerContext): Promise<PeerSync>;
  /** Compares the kernel's entries with the peer table. Reads only. */
  peerState(network: DriverNetwork, ctx: PeerContext): Promise<PeerState>;
  /** The peer table of a network (empty when unknown). */
  peers(networkId: string): OverlayPeer[];
  /** This controller's overlay namespaces, with the network id prefix each carries. */
  ownedNamespaces(ctx: PeerContext): Promise<{ name: string; networkId12: string }[]>;
  /** Removes one of this controller's overlay namespaces (an orphan), VXLAN devices first. */
  removeOrphan(name: string, ctx: PeerContext): Promise<void>;
  /** Compares the network's VXLAN devices here (when it has a namespace) with it. Reads only. */
  deviceState(network: DriverNetwork, ctx: PeerContext): Promise<DeviceState>;
  /**
   * Re-creates what is missing or different in the network's namespace (when it has one here:
   * bridges, VXLAN devices), then replaces its peer table and programs it (as setPeers).
   */
  repairDevices(network: DriverNetwork, peers: OverlayPeer[], ctx: PeerContext): Promise<PeerSync>;
  /** VXLAN devices with an overlay mark where none belongs (`live`: 12-char network ids). */
  strayDevices(live: ReadonlySet<string>, ctx: PeerContext): Promise<StrayDevice[]>;
  /** Removes a stray VXLAN device of this controller (refused for anyone else's). */
  removeStrayDevice(device: { name: string; netns?: string }, ctx: PeerContext): Promise<void>;
}
