/**
 * A network's namespace on one host (libnetwork's overlay sandbox): per IPv4 subnet a bridge
 * carrying the gateway and a VXLAN device whose socket stays in the host namespace. Made
 * when the first local endpoint joins, removed with the last one. Orphans of this controller
 * that hold the VNI are removed; anything of another controller is reported, never touched.
 *
 * @module
 */

import { DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { type Kernel, VNI_EXISTS } from "../../src/kernel/mod.ts";
import type { OverlayConfig, OverlayNames, OverlaySubnet } from "./_config.ts";

/** What the namespace code needs. */
export interface NamespaceEnv {
  kernel: Kernel;
  /** The controller's name prefix (`cnm-`). */
  namePrefix: string;
  names: OverlayNames;
  port: number;
}

const NETNS_DIR = "/var/run/netns";

/** The path of a network's namespace (whether or not it exists). */
export function namespacePath(env: NamespaceEnv, networkId: string): string {
  return `${NETNS_DIR}/${env.names.namespace(env.namePrefix, networkId)}`;
}

/** Ensures the namespace with its bridges and VXLAN devices; returns its path. */
export async function ensureNamespace(env: NamespaceEnv, cfg: OverlayConfig): Promise<string> {
  const path = await env.kernel.ensureNetns(env.names.namespace(env.namePrefix, cfg.networkId));
  const alias = env.names.networkMark(cfg.networkId);
  for (const sub of cfg.subnets) {
    await env.kernel.ensureBridge({
      name: sub.bridge,
      netns: path,
      mtu: cfg.mtu,
      addresses: sub.gateway ? [sub.gateway] : [],
      alias,
    });
    await ensureVxlan(env, cfg, sub, path, alias);
  }
  if (cfg.subnets.length > 1) {
    // Between its subnets the namespace routes (containers reach the others via their
    // gateway); a new namespace does not forward unless the root one does. Set here only.
    await env.kernel.exec(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], { netns: path });
  }
  return path;
}

async function ensureVxlan(
  env: NamespaceEnv,
  cfg: OverlayConfig,
  sub: OverlaySubnet,
  path: string,
  alias: string,
): Promise<void> {
  const spec = {
    name: sub.vxlan,
    vni: sub.vni,
    port: env.port,
    // libnetwork's flags, except learning: with learning on, a permanent entry that a moved
    // endpoint's packets contradict makes the kernel drop them (moby#53004, #53663).
    learning: false,
    proxy: true,
    l2miss: true,
    l3miss: true,
    mtu: cfg.mtu,
    netns: path,
    master: sub.bridge,
    alias,
  };
  try {
    await env.kernel.ensureVxlan(spec);
    return;
  } catch (err) {
    if (!(err instanceof DriverError)) throw err;
    if (err.message.includes(VNI_EXISTS)) await clearVni(env, sub.vni, path, sub.vxlan);
    else if (err.message.includes("a different VXLAN device of that name exists")) {
      await env.kernel.deleteLink(sub.vxlan, path); // in our namespace, under our name
    } else throw err;
  }
  await env.kernel.ensureVxlan(spec);
}

/**
 * Removes this controller's orphans holding `vni` (a device of ours anywhere but where it
 * belongs, and the namespace of ours it sat in); refuses, naming the holder, when the VNI is
 * held by anything else.
 */
async function clearVni(env: NamespaceEnv, vni: number, path: string, name: string) {
  const holders = await env.kernel.findVxlans(vni, { port: env.port });
  const ours = env.names.namespacePrefix(env.namePrefix);
  const foreign = holders.filter((h) => !env.names.isMine(h.alias));
  if (foreign.length) {
    const who = foreign.map((h) => `${h.name} in ${h.netns ?? "the host namespace"}`);
    throw new DriverError(
      `${VNI_EXISTS}: VXLAN id ${vni} on port ${env.port} is held by ${
        who.join(", ")
      }, which this controller did not make; remove it or choose another VNI`,
    );
  }
  for (const h of holders) {
    if (h.netns === path && h.name === name) continue;
    // Ours but with endpoints attached is not an orphan: two live networks share the VNI,
    // which the controller's allocation rules out; say so rather than break one of them.
    if (h.netns && h.netns !== path && await hasEndpoints(env, h.netns)) {
      throw new DriverError(
        `${VNI_EXISTS}: VXLAN id ${vni} is in use by ${h.name} in ${h.netns}, which has endpoints`,
      );
    }
    await env.kernel.deleteLink(h.name, h.netns);
    const nsName = h.netns?.slice(NETNS_DIR.length + 1);
    if (h.netns && h.netns !== path && nsName?.startsWith(ours)) {
      await env.kernel.deleteNetns(nsName);
    }
  }
}

/** Whether the namespace still has a local endpoint (a veth on one of its bridges). */
export async function hasEndpoints(env: NamespaceEnv, path: string): Promise<boolean> {
  if (!(await env.kernel.netnsExists(path))) return false;
  return (await env.kernel.listLinks(path)).some((l) => l.kind === "veth");
}

/**
 * Removes the namespace: VXLAN devices first (deleting the namespace alone can keep the VNI
 * held for a moment), then the namespace with everything in it.
 */
export async function removeNamespace(env: NamespaceEnv, networkId: string): Promise<void> {
  const path = namespacePath(env, networkId);
  if (!(await env.kernel.netnsExists(path))) return;
  const errors: unknown[] = [];
  for (const l of await env.kernel.listLinks(path)) {
    if (l.kind === "vxlan") await env.kernel.deleteLink(l.name, path).catch((e) => errors.push(e));
  }
  await env.kernel.deleteNetns(env.names.namespace(env.namePrefix, networkId)).catch((e) =>
    errors.push(e)
  );
  if (errors.length) {
    throw new AggregateError(errors, `removing the overlay namespace of network ${networkId}`);
  }
}

/** Names of this controller's overlay namespaces with the network id prefix each carries. */
export async function ownedNamespaces(
  env: NamespaceEnv,
): Promise<{ name: string; networkId12: string }[]> {
  const start = env.names.namespacePrefix(env.namePrefix);
  return (await env.kernel.listNetns(start)).map((name) => ({
    name,
    networkId12: name.slice(start.length),
  }));
}

/**
 * Removes one of this controller's overlay namespaces (an orphan), VXLAN devices first.
 *
 * @throws {InvalidArgumentError} for a name that is not one of them.
 */
export async function removeOrphan(env: NamespaceEnv, name: string): Promise<void> {
  const start = env.names.namespacePrefix(env.namePrefix);
  const mine = (await ownedNamespaces(env)).find((n) => n.name === name);
  if (!name.startsWith(start) || !mine) {
    throw new InvalidArgumentError(
      `${name} is not an overlay namespace of this controller (${start}*)`,
    );
  }
  const path = `${NETNS_DIR}/${name}`;
  for (const l of await env.kernel.listLinks(path)) {
    if (l.kind === "vxlan") await env.kernel.deleteLink(l.name, path);
  }
  await env.kernel.deleteNetns(name);
}
