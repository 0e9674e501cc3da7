/**
 * The overlay's peer table and what it means for the kernel: per remote endpoint one
 * permanent neighbour entry (IP → MAC) and one permanent `self` FDB entry (MAC → VTEP) on
 * the VXLAN device of the endpoint's subnet, nothing for local endpoints or this host's own
 * VTEP. Pure: computes desired entries, diffs them against what the kernel lists, and turns
 * table updates into neighbour/FDB changes; the driver applies them.
 *
 * @module
 */

import { InvalidArgumentError } from "../../src/errors.ts";
import type { FdbInfo, NeighborChange, NeighborInfo } from "../../src/kernel/types.ts";
import { type OverlayConfig, subnetOf } from "./_config.ts";

/** A remote endpoint of an overlay network, as another host's join outcome records it. */
export interface OverlayPeer {
  /** The endpoint's IPv4 address (a CIDR is accepted; its prefix is ignored). */
  ip: string;
  mac: string;
  /** Underlay address of the host the endpoint lives on. */
  vtep: string;
}

const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(\/\d{1,2})?$/;

/** A dotted IPv4 address (an optional /len is dropped), canonical; undefined when malformed. */
function v4(s: unknown, allowPrefix: boolean): string | undefined {
  const m = typeof s === "string" ? V4.exec(s) : null;
  if (!m || (m[5] && (!allowPrefix || Number(m[5].slice(1)) > 32))) return undefined;
  const o = [m[1], m[2], m[3], m[4]].map(Number);
  return o.every((x) => x <= 255) ? o.join(".") : undefined;
}

/**
 * Validates peers at the edge and normalises them (bare IP, lower-case MAC). Hand-written
 * rather than a schema: it runs for every peer of every update, on the hot path.
 *
 * @throws {InvalidArgumentError} naming the peer and the field.
 */
export function parsePeers(peers: unknown): OverlayPeer[] {
  if (!Array.isArray(peers)) throw new InvalidArgumentError("invalid peers: expected an array");
  return peers.map((p, i) => {
    const bad = (field: string, what: string) =>
      new InvalidArgumentError(`invalid peer ${i}: ${field}: ${what}`);
    if (typeof p !== "object" || p === null) throw bad("value", "expected an object");
    const ip = v4(p.ip, true);
    if (!ip) throw bad("ip", "not an IPv4 address");
    if (typeof p.mac !== "string" || !MAC.test(p.mac)) throw bad("mac", "not a MAC address");
    const vtep = v4(p.vtep, false);
    if (!vtep) throw bad("vtep", "not an IPv4 address");
    return { ip, mac: p.mac.toLowerCase(), vtep };
  });
}

/** One kernel entry of a peer, in the driver's words. */
export interface PeerEntry {
  kind: "neighbor" | "fdb";
  /** The VXLAN device. */
  dev: string;
  /** Neighbour entries: the endpoint's IP. */
  ip?: string;
  mac: string;
  /** FDB entries: the remote VTEP. */
  vtep?: string;
}

/** What the kernel holds for a network against its peer table (for reconcile). */
export interface PeerState {
  networkId: string;
  /** The network's namespace on this host, or null when it has no local endpoint here. */
  namespace: string | null;
  /** Remote peers in the table (own VTEP and local endpoints excluded). */
  remotePeers: number;
  /** Entries present as desired. */
  ok: number;
  /** Desired entries the kernel lacks, or holds with another value (then also in `stale`). */
  missing: PeerEntry[];
  /** Entries in the kernel that are not desired, or hold another value than desired. */
  stale: PeerEntry[];
  /** Entries the kernel holds but not as permanent (learned or dynamic). */
  learned: PeerEntry[];
}

/** Which endpoints are this host's own: its VTEP, and the IPs/MACs joined here. */
export interface LocalView {
  vtep?: string;
  ips: ReadonlySet<string>;
  macs: ReadonlySet<string>;
}

/** Whether a peer is this host's own (never programmed). */
export function isLocal(p: OverlayPeer, local: LocalView): boolean {
  return p.vtep === local.vtep || local.ips.has(p.ip) || local.macs.has(p.mac);
}

/** Desired entries: neighbours by `dev|ip` → MAC, FDB by `dev|mac` → VTEP (last peer wins). */
export interface Desired {
  neighbors: Map<string, PeerEntry>;
  fdb: Map<string, PeerEntry>;
  remote: number;
}

/** Computes the desired entries of `peers` (peers outside every subnet are skipped). */
export function desired(
  cfg: OverlayConfig,
  peers: Iterable<OverlayPeer>,
  local: LocalView,
): Desired {
  const neighbors = new Map<string, PeerEntry>();
  const fdb = new Map<string, PeerEntry>();
  let remote = 0;
  for (const p of peers) {
    if (isLocal(p, local)) continue;
    const sub = subnetOf(cfg, p.ip);
    if (!sub) continue;
    remote++;
    neighbors.set(`${sub.vxlan}|${p.ip}`, {
      kind: "neighbor",
      dev: sub.vxlan,
      ip: p.ip,
      mac: p.mac,
    });
    fdb.set(`${sub.vxlan}|${p.mac}`, { kind: "fdb", dev: sub.vxlan, mac: p.mac, vtep: p.vtep });
  }
  return { neighbors, fdb, remote };
}

const isUnicastV4 = (ip: string) =>
  /^\d+\.\d+\.\d+\.\d+$/.test(ip) && Number(ip.split(".")[0]) < 224;
const isGroupMac = (mac: string) => (parseInt(mac.slice(0, 2), 16) & 1) === 1;

/** Diffs desired entries against the kernel's lists (VXLAN devices of `cfg` only). */
export function diff(
  cfg: OverlayConfig,
  want: Desired,
  neighbors: NeighborInfo[],
  fdb: FdbInfo[],
): Omit<PeerState, "networkId" | "namespace"> {
  const devs = new Set(cfg.subnets.map((s) => s.vxlan));
  const state = {
    remotePeers: want.remote,
    ok: 0,
    missing: [] as PeerEntry[],
    stale: [] as PeerEntry[],
    learned: [] as PeerEntry[],
  };
  const seenN = new Set<string>();
  for (const n of neighbors) {
    if (!devs.has(n.dev) || !isUnicastV4(n.ip)) continue; // multicast/IPv6 noise of the device
    const key = `${n.dev}|${n.ip}`;
    const have: PeerEntry = { kind: "neighbor", dev: n.dev, ip: n.ip, mac: n.mac ?? "" };
    const w = want.neighbors.get(key);
    seenN.add(key);
    if (!n.permanent) state.learned.push(have);
    if (!w) state.stale.push(have);
    else if (w.mac !== have.mac) state.stale.push(have), state.missing.push(w);
    else if (n.permanent) state.ok++;
  }
  for (const [key, w] of want.neighbors) if (!seenN.has(key)) state.missing.push(w);
  const seenF = new Set<string>();
  for (const f of fdb) {
    if (!devs.has(f.dev) || !f.self || isGroupMac(f.mac) && f.mac !== "00:00:00:00:00:00") continue;
    const key = `${f.dev}|${f.mac}`;
    const have: PeerEntry = {
      kind: "fdb",
      dev: f.dev,
      mac: f.mac,
      ...(f.dst ? { vtep: f.dst } : {}),
    };
    const w = want.fdb.get(key);
    if (seenF.has(key)) { // a second remote for one MAC: never desired
      state.stale.push(have);
      continue;
    }
    seenF.add(key);
    if (!f.permanent) state.learned.push(have);
    if (!w) state.stale.push(have);
    else if (w.vtep !== have.vtep) state.stale.push(have), state.missing.push(w);
    else if (f.permanent) state.ok++;
  }
  for (const [key, w] of want.fdb) if (!seenF.has(key)) state.missing.push(w);
  return state;
}

/** The kernel change that writes (replace) one desired entry. */
export function addChange(e: PeerEntry): NeighborChange {
  return e.kind === "neighbor"
    ? { op: "add", neighbor: { dev: e.dev, ip: e.ip!, mac: e.mac } }
    : { op: "add", fdb: { dev: e.dev, mac: e.mac, dst: e.vtep! } };
}

/** The kernel change that removes one entry (a whole FDB entry, every remote of it). */
export function deleteChange(e: PeerEntry): NeighborChange {
  return e.kind === "neighbor"
    ? { op: "delete", neighbor: { dev: e.dev, ip: e.ip! } }
    : { op: "delete", fdb: { dev: e.dev, mac: e.mac } };
}

/**
 * Changes that make the kernel match a diff: deletes of undesired entries first (FDB before
 * neighbour), then replaces of missing, different and learned desired ones (neighbour before
 * FDB, as flannel orders them). A learned entry is rewritten, never deleted first, so traffic
 * does not see a gap. Undesired entries for which `keep` is true stay (an incomplete table).
 */
export function repairChanges(
  d: Omit<PeerState, "networkId" | "namespace">,
  want: Desired,
  keep: (e: PeerEntry) => boolean = () => false,
): NeighborChange[] {
  const key = (e: PeerEntry) => `${e.kind}|${e.dev}|${e.kind === "neighbor" ? e.ip : e.mac}`;
  const wanted = new Set([...want.neighbors.values(), ...want.fdb.values()].map(key));
  // Undesired entries go entirely; a desired FDB entry holding a wrong remote loses just that
  // remote (NDA_DST), which also clears a second remote the replace below would not touch.
  const dels: NeighborChange[] = [];
  for (const e of d.stale) {
    if (!wanted.has(key(e))) {
      if (!keep(e)) dels.push(deleteChange(e));
    } else if (e.kind === "fdb" && e.vtep) {
      dels.push({ op: "delete", fdb: { dev: e.dev, mac: e.mac, dst: e.vtep } });
    }
  }
  const adds = new Map<string, PeerEntry>();
  for (const e of d.missing) adds.set(key(e), e);
  for (const e of d.learned) {
    const w = e.kind === "neighbor"
      ? want.neighbors.get(`${e.dev}|${e.ip}`)
      : want.fdb.get(`${e.dev}|${e.mac}`);
    if (w) adds.set(key(w), w);
  }
  const byKind = (k: PeerEntry["kind"], list: Iterable<PeerEntry>) =>
    [...list].filter((e) => e.kind === k);
  const fdbFirst = (c: NeighborChange) => ("fdb" in c ? 0 : 1);
  return [
    ...dels.sort((a, b) => fdbFirst(a) - fdbFirst(b)),
    ...byKind("neighbor", adds.values()).map(addChange),
    ...byKind("fdb", adds.values()).map(addChange),
  ];
}

/**
 * One network's peer table: remote endpoints by IP (an IP lives in one place at a time; a
 * later add for the same IP is a move and replaces the earlier one).
 */
export class PeerTable {
  readonly #byIp = new Map<string, OverlayPeer>();
  /** MAC → IPs of the peers using it (an index, so "still in use" is not a scan). */
  readonly #byMac = new Map<string, Set<string>>();

  /** Every peer. */
  all(): OverlayPeer[] {
    return [...this.#byIp.values()];
  }

  /** Replaces the whole table. */
  reset(peers: OverlayPeer[]): void {
    this.#byIp.clear();
    this.#byMac.clear();
    for (const p of peers) this.#set(p);
  }

  #set(p: OverlayPeer): OverlayPeer | undefined {
    const old = this.#byIp.get(p.ip);
    if (old) this.#unindex(old);
    this.#byIp.set(p.ip, p);
    let ips = this.#byMac.get(p.mac);
    if (!ips) this.#byMac.set(p.mac, ips = new Set());
    ips.add(p.ip);
    return old;
  }

  #delete(ip: string): void {
    const old = this.#byIp.get(ip);
    if (!old) return;
    this.#byIp.delete(ip);
    this.#unindex(old);
  }

  #unindex(p: OverlayPeer): void {
    const ips = this.#byMac.get(p.mac);
    ips?.delete(p.ip);
    if (ips?.size === 0) this.#byMac.delete(p.mac);
  }

  /**
   * Adds peers; returns the kernel changes for a namespace that holds the table so far:
   * replaces for the new entries, and deletes for what they displace (a moved IP's old MAC
   * when no other peer still uses it, entries of peers that became local).
   */
  add(cfg: OverlayConfig, peers: OverlayPeer[], local: LocalView): NeighborChange[] {
    const dels: PeerEntry[] = [];
    const adds: PeerEntry[] = [];
    for (const p of peers) {
      const old = this.#set(p);
      const sub = subnetOf(cfg, p.ip);
      if (!sub) continue;
      if (old && old.mac !== p.mac && !this.#macInUse(old.mac, sub.vxlan, cfg, local)) {
        dels.push({ kind: "fdb", dev: sub.vxlan, mac: old.mac });
      }
      if (isLocal(p, local)) {
        if (old && !isLocal(old, local)) {
          dels.push({ kind: "neighbor", dev: sub.vxlan, ip: p.ip, mac: old.mac });
          if (!this.#macInUse(old.mac, sub.vxlan, cfg, local)) {
            dels.push({ kind: "fdb", dev: sub.vxlan, mac: old.mac });
          }
        }
        continue;
      }
      adds.push({ kind: "neighbor", dev: sub.vxlan, ip: p.ip, mac: p.mac });
      adds.push({ kind: "fdb", dev: sub.vxlan, mac: p.mac, vtep: p.vtep });
    }
    return [...dels.map(deleteChange), ...adds.map(addChange)];
  }

  /**
   * Removes peers (matched by IP; when the table holds that IP with another VTEP or MAC, the
   * removal is of an older location and changes nothing). Returns the kernel deletes.
   */
  remove(cfg: OverlayConfig, peers: OverlayPeer[], local: LocalView): NeighborChange[] {
    const dels: PeerEntry[] = [];
    for (const p of peers) {
      const cur = this.#byIp.get(p.ip);
      if (cur && (cur.vtep !== p.vtep || cur.mac !== p.mac)) continue; // moved meanwhile
      this.#delete(p.ip);
      const sub = subnetOf(cfg, p.ip);
      if (!sub || isLocal(p, local)) continue;
      dels.push({ kind: "neighbor", dev: sub.vxlan, ip: p.ip, mac: p.mac });
      if (!this.#macInUse(p.mac, sub.vxlan, cfg, local)) {
        dels.push({ kind: "fdb", dev: sub.vxlan, mac: p.mac });
      }
    }
    return [
      ...dels.filter((e) => e.kind === "fdb").map(deleteChange),
      ...dels.filter((e) => e.kind === "neighbor").map(deleteChange),
    ];
  }

  #macInUse(mac: string, dev: string, cfg: OverlayConfig, local: LocalView): boolean {
    for (const ip of this.#byMac.get(mac) ?? []) {
      const p = this.#byIp.get(ip)!;
      if (!isLocal(p, local) && subnetOf(cfg, p.ip)?.vxlan === dev) return true;
    }
    return false;
  }
}
