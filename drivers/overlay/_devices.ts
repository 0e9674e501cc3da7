/**
 * The overlay driver's VXLAN devices against what the networks need, for reconcile: in a
 * network's namespace, each subnet's device with its VNI, port, bridge and mark (missing or
 * different); and devices carrying an overlay mark where none belongs — anywhere in the host
 * namespace (this driver makes its devices inside the networks' namespaces only), or in one
 * network's namespace with another network's mark. Reads only; the repairs are the namespace
 * ensure (`_namespace.ts`) and {@link removeStrayDevice}.
 *
 * @module
 */

import { InvalidArgumentError } from "../../src/errors.ts";
import type { VxlanInfo } from "../../src/kernel/types.ts";
import type { OverlayConfig } from "./_config.ts";
import { type NamespaceEnv, namespacePath, ownedNamespaces } from "./_namespace.ts";

/** A network's VXLAN device that is not as the network needs it. */
export interface DeviceDrift {
  /** The device's name in the network's namespace. */
  name: string;
  problem: "missing" | "different";
  /** What it should be (only what differs, for `different`). */
  expected: string;
  /** What it is (only what differs). */
  actual?: string;
}

/** What {@link deviceDrift} found for one network. */
export interface DeviceState {
  /** The network's namespace here, or null when there is none (nothing to compare). */
  namespace: string | null;
  devices: DeviceDrift[];
}

/** A VXLAN device with an overlay mark where no device of that mark belongs. */
export interface StrayDevice {
  name: string;
  /** Path of the namespace it is in; undefined: the host namespace. */
  netns?: string;
  /** The network id prefix and owner its mark names. */
  networkId12: string;
  owner: string;
  /** True when the mark is this driver's owner's. */
  mine: boolean;
  vni: number;
}

const MARK = /^cnm:([a-z0-9]{1,16}):overlay:([0-9a-f]{1,12})$/;

/** The owner and network id prefix of an overlay mark (`cnm:<owner>:overlay:<nid12>`). */
export function parseOverlayMark(
  alias: string | undefined,
): { owner: string; networkId12: string } | undefined {
  const m = MARK.exec(alias ?? "");
  return m ? { owner: m[1], networkId12: m[2] } : undefined;
}

/** What reconcile compares of a VXLAN device, in words, in a fixed order. */
function describe(
  x: Pick<
    VxlanInfo,
    "vni" | "port" | "master" | "learning" | "socketInHost" | "up" | "mtu" | "alias"
  >,
): string[] {
  return [
    `VNI ${x.vni}`,
    `port ${x.port}`,
    x.master ? `master ${x.master}` : "no master",
    `learning ${x.learning ? "on" : "off"}`,
    x.socketInHost ? "socket in the host namespace" : "socket not in the host namespace",
    x.up ? "up" : "down",
    `MTU ${x.mtu}`,
    x.alias ? `mark ${x.alias}` : "no mark",
  ];
}

/** Compares the network's VXLAN devices here with its configuration. Reads only. */
export async function deviceDrift(env: NamespaceEnv, cfg: OverlayConfig): Promise<DeviceState> {
  const path = namespacePath(env, cfg.networkId);
  if (!(await env.kernel.netnsExists(path))) return { namespace: null, devices: [] };
  const have = new Map((await env.kernel.listVxlans(path)).map((x) => [x.name, x]));
  const mark = env.names.networkMark(cfg.networkId);
  const devices: DeviceDrift[] = [];
  for (const sub of cfg.subnets) {
    const x = have.get(sub.vxlan);
    const want = describe({
      vni: sub.vni,
      port: env.port,
      master: sub.bridge,
      learning: false,
      socketInHost: true,
      up: true,
      mtu: cfg.mtu,
      alias: mark,
    });
    if (!x) {
      devices.push({ name: sub.vxlan, problem: "missing", expected: want.slice(0, 3).join(", ") });
      continue;
    }
    const got = describe(x);
    const differs = want.map((w, i) => [w, got[i]]).filter(([w, g]) => w !== g);
    if (differs.length) {
      devices.push({
        name: sub.vxlan,
        problem: "different",
        expected: differs.map(([w]) => w).join(", "),
        actual: differs.map(([, g]) => g).join(", "),
      });
    }
  }
  return { namespace: path, devices };
}

/**
 * VXLAN devices carrying an overlay mark where none belongs: every one in the host namespace,
 * and in this driver's namespace of a network in `live` (12-char ids), those naming another
 * network. (Namespaces of networks not in `live` are orphans as a whole.) Reads only.
 */
export async function strayDevices(
  env: NamespaceEnv,
  live: ReadonlySet<string>,
): Promise<StrayDevice[]> {
  const out: StrayDevice[] = [];
  const add = (x: VxlanInfo, netns: string | undefined, belongs?: string) => {
    const mark = parseOverlayMark(x.alias);
    if (!mark || mark.networkId12 === belongs) return;
    out.push({
      name: x.name,
      ...(netns ? { netns } : {}),
      networkId12: mark.networkId12,
      owner: mark.owner,
      mine: env.names.isMine(x.alias),
      vni: x.vni,
    });
  };
  for (const x of await env.kernel.listVxlans()) add(x, undefined);
  for (const ns of await ownedNamespaces(env)) {
    if (!live.has(ns.networkId12)) continue;
    const path = `/var/run/netns/${ns.name}`;
    for (const x of await env.kernel.listVxlans(path)) add(x, path, ns.networkId12);
  }
  return out;
}

/**
 * Removes a stray VXLAN device of this driver (see {@link strayDevices}), looked up again by
 * name where it was found.
 *
 * @throws {InvalidArgumentError} when no such device carries this driver's mark.
 */
export async function removeStrayDevice(
  env: NamespaceEnv,
  device: { name: string; netns?: string },
): Promise<void> {
  const found = (await env.kernel.listVxlans(device.netns)).find((x) => x.name === device.name);
  if (!found) return;
  if (!env.names.isMine(found.alias) || !parseOverlayMark(found.alias)) {
    throw new InvalidArgumentError(
      `VXLAN device ${device.name} in ${
        device.netns ?? "the host namespace"
      } does not carry this controller's overlay mark`,
    );
  }
  await env.kernel.deleteLink(device.name, device.netns);
}
