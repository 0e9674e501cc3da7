/**
 * VXLAN devices over rtnetlink: the ensure (created through the host namespace's socket and
 * born inside the overlay namespace, so the UDP socket and the VNI stay with the host), the
 * listing, and the search by VNI that finds the device blocking a re-creation.
 *
 * @module
 */

import { DriverError, InvalidArgumentError } from "../errors.ts";
import { checkIfName, checkMtu, parseIp } from "./_addr.ts";
import { type Message, NetlinkError } from "./_netlink.ts";
import type { NamespaceTable, NsHandle } from "./_netns.ts";
import { getLink } from "./_routes.ts";
import {
  createVxlanRequest,
  dumpLinksMessage,
  EEXIST,
  getLinkRequest,
  getNsidRequest,
  parseLink,
  parseVxlan,
  type RawLink,
  type RawVxlan,
  setLinkRequest,
  type VxlanCreate,
} from "./_rtnl.ts";
import type { VxlanInfo, VxlanSpec } from "./types.ts";

/** The kernel's words when a VNI is taken on a port in a namespace. */
export const VNI_EXISTS = "A VXLAN device with the specified VNI already exists";

/** What the VXLAN code needs from kernel access: namespaces and the host's path. */
export interface VxlanEnv {
  table: NamespaceTable;
  /** Host namespace path (undefined: the process's own). */
  hostNs: string | undefined;
  /** Every namespace path in /var/run/netns (for the search by VNI). */
  allNetns(): string[];
}

/** A validated spec: what the create request takes, less where and how it is attached. */
type Validated = Omit<VxlanCreate, "nsFd" | "changes"> & { mtu?: number };

function validate(spec: VxlanSpec): Validated {
  const name = checkIfName(spec?.name, "VXLAN device name");
  if (!Number.isInteger(spec.vni) || spec.vni < 1 || spec.vni > 0xffffff) {
    throw new InvalidArgumentError(`invalid VXLAN id ${spec.vni} for ${name}: must be 1-16777215`);
  }
  const port = spec.port ?? 4789;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`invalid VXLAN port ${spec.port} for ${name}`);
  }
  if (spec.master !== undefined) checkIfName(spec.master, "bridge name");
  const local = spec.local !== undefined ? parseIp(spec.local, "VXLAN local address") : undefined;
  if (local && local.family !== 2) {
    throw new InvalidArgumentError(`invalid VXLAN local address ${spec.local}: IPv4 only`);
  }
  return {
    name,
    vni: spec.vni,
    port,
    learning: spec.learning ?? false,
    proxy: spec.proxy ?? true,
    l2miss: spec.l2miss ?? false,
    l3miss: spec.l3miss ?? false,
    ...(local ? { local: local.bytes } : {}),
    ...(spec.mtu !== undefined ? { mtu: checkMtu(spec.mtu, name) } : {}),
  };
}

/** Looks a link up by name with its VXLAN data (undefined data: not a VXLAN). */
function getVxlanLink(h: NsHandle, name: string): [RawLink, RawVxlan | undefined] | undefined {
  let found: [RawLink, RawVxlan | undefined] | undefined;
  h.sock.transact([getLinkRequest(name, (l, m) => (found = [l, parseVxlan(m)]))]);
  return found;
}

/** Whether a VXLAN device seen from `h` has its socket in the host namespace. */
function socketInHost(env: VxlanEnv, h: NsHandle, x: RawVxlan, isHost: boolean): boolean {
  if (x.linkNetnsId === undefined || x.linkNetnsId < 0) return isHost;
  let id = -1;
  h.sock.transact([getNsidRequest(env.table.fdOf(env.hostNs), (n) => (id = n))]);
  return id === x.linkNetnsId;
}

function isHostPath(env: VxlanEnv, path: string | undefined): boolean {
  return path === undefined || path === env.hostNs;
}

/** Ensures a VXLAN device (see Kernel.ensureVxlan). */
export function ensureVxlan(env: VxlanEnv, spec: VxlanSpec): void {
  const v = validate(spec);
  const host = env.table.get(env.hostNs);
  const inHost = isHostPath(env, spec.netns);
  const target = inHost ? host : env.table.get(spec.netns);
  const where = inHost ? "the host namespace" : spec.netns;
  let master: number | undefined;
  if (spec.master !== undefined) {
    master = getLink(target, spec.master)?.index;
    if (master === undefined) {
      throw new DriverError(`link add ${v.name}: master ${spec.master} does not exist (ENODEV)`);
    }
  }
  const changes = { mtu: v.mtu, master, up: true };
  const existing = getVxlanLink(target, v.name);
  if (!existing) {
    try {
      host.sock.transact([createVxlanRequest({ ...v, nsFd: inHost ? -1 : target.nsFd, changes })]);
    } catch (err) {
      if (!(err instanceof NetlinkError) || err.errno !== EEXIST) throw err;
      if (err.extack?.includes(VNI_EXISTS)) throw vniTaken(env, v, where);
      // Lost a race with another creator of the same name: fall through to the repair.
      return repair(env, target, v, spec, changes, inHost, where);
    }
    if (spec.alias !== undefined) {
      target.sock.transact([setLinkRequest(0, v.name, { alias: spec.alias })]);
    }
    return;
  }
  repair(env, target, v, spec, changes, inHost, where);
}

function repair(
  env: VxlanEnv,
  target: NsHandle,
  v: Validated,
  spec: VxlanSpec,
  changes: { mtu?: number; master?: number; up: boolean },
  inHost: boolean,
  where: string | undefined,
): void {
  const found = getVxlanLink(target, v.name);
  if (!found) throw new DriverError(`link add ${v.name}: VXLAN device vanished in ${where}`);
  const [link, x] = found;
  const what = `link add ${v.name} in ${where}`;
  if (!x) {
    throw new DriverError(`${what}: a ${link.kind ?? "plain"} link of that name exists (EEXIST)`);
  }
  const diffs: string[] = [];
  if (x.vni !== v.vni) diffs.push(`VNI ${x.vni}, not ${v.vni}`);
  if (x.port !== v.port) diffs.push(`port ${x.port}, not ${v.port}`);
  if (x.learning !== v.learning) diffs.push(`learning ${x.learning ? "on" : "off"}`);
  if (x.proxy !== v.proxy) diffs.push(`proxy ${x.proxy ? "on" : "off"}`);
  if (!socketInHost(env, target, x, inHost)) diffs.push("its socket is not in the host namespace");
  if (diffs.length) {
    throw new DriverError(
      `${what}: a different VXLAN device of that name exists (${diffs.join(", ")})`,
    );
  }
  target.sock.transact([setLinkRequest(link.index, v.name, { ...changes, alias: spec.alias })]);
}

/** The VNI clash, naming the device that holds it when it can be found. */
function vniTaken(env: VxlanEnv, v: Validated, where: string | undefined): DriverError {
  const holders = findVxlans(env, v.vni, { port: v.port });
  const by = holders.length
    ? `: held by ${
      holders.map((x) => `${x.name} in ${x.netns ?? "the host namespace"}`).join(", ")
    }`
    : "";
  return new DriverError(
    `link add ${v.name} in ${where}: ${VNI_EXISTS} (VNI ${v.vni}, port ${v.port})${by}`,
  );
}

function toInfo(
  env: VxlanEnv,
  h: NsHandle,
  path: string | undefined,
  m: Message,
  names: Map<number, string>,
): VxlanInfo | undefined {
  const x = parseVxlan(m);
  if (!x) return undefined;
  const l = parseLink(m);
  const isHost = isHostPath(env, path);
  const info: VxlanInfo = {
    name: l.name,
    index: l.index,
    vni: x.vni,
    port: x.port,
    learning: x.learning,
    proxy: x.proxy,
    mtu: l.mtu,
    up: l.up,
    socketInHost: socketInHost(env, h, x, isHost),
  };
  if (!isHost) info.netns = path;
  if (l.master !== undefined) info.master = names.get(l.master);
  if (l.alias) info.alias = l.alias;
  return info;
}

function listIn(env: VxlanEnv, h: NsHandle, path: string | undefined): VxlanInfo[] {
  const msgs = h.sock.dump(dumpLinksMessage(), "link show");
  const names = new Map(msgs.map((m) => {
    const l = parseLink(m);
    return [l.index, l.name];
  }));
  const out: VxlanInfo[] = [];
  for (const m of msgs) {
    const info = toInfo(env, h, path, m, names);
    if (info) out.push(info);
  }
  return out;
}

/** VXLAN devices of one namespace. */
export function listVxlans(env: VxlanEnv, netns?: string): VxlanInfo[] {
  const path = netns ?? env.hostNs;
  return listIn(env, env.table.get(path), path);
}

/**
 * Devices holding `vni` (on `port`, when given) with their socket in the host namespace,
 * searched in the host namespace and `netns` (default every named namespace). Namespaces that
 * vanish or cannot be entered meanwhile are skipped; handles opened only for the search are
 * closed again.
 */
export function findVxlans(
  env: VxlanEnv,
  vni: number,
  options: { port?: number; netns?: string[] } = {},
): VxlanInfo[] {
  const paths = [env.hostNs, ...(options.netns ?? env.allNetns())];
  const seen = new Set<string | undefined>();
  const out: VxlanInfo[] = [];
  for (const path of paths) {
    const key = isHostPath(env, path) ? env.hostNs : path;
    if (seen.has(key)) continue;
    seen.add(key);
    const cached = env.table.has(key);
    try {
      const h = env.table.get(key);
      for (const x of listIn(env, h, key)) {
        if (x.vni !== vni || !x.socketInHost) continue;
        if (options.port !== undefined && x.port !== options.port) continue;
        out.push(x);
      }
    } catch {
      // gone or not enterable: nothing of ours can hide there that we could act on
    } finally {
      if (!cached && key !== env.hostNs) env.table.forget(key);
    }
  }
  return out;
}
