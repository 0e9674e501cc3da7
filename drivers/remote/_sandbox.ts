/**
 * What a remote driver's Join asks of the sandbox, done as Docker does: the plugin's `SrcName`
 * link (made in the host namespace) is moved into the sandbox and renamed to `DstName` or
 * `DstPrefix` + lowest free index, given the endpoint's MAC and addresses, brought up, and
 * routed (gateway, static routes). Leave moves it back under its `SrcName`, so the plugin
 * finds its link again when it deletes the endpoint.
 *
 * The link carries an alias `<prefix>:<endpointId>:<srcName>` so a re-run after a crash
 * recognises a link it already moved, and leave knows the name to give back.
 *
 * The kernel interface has no "move link into namespace" yet: `ip link set … netns … name …`
 * through `exec` stands in for it (a rtnetlink `moveLink` would save two process spawns).
 *
 * @module
 */

import type { DriverSandbox, EffectContext } from "../driver.ts";
import { DriverError } from "../../src/errors.ts";
import type { LinkInfo, RouteSpec } from "../../src/kernel/types.ts";

/** The interface part of a Join answer. */
export interface JoinInterface {
  srcName: string;
  dstPrefix: string;
  dstName: string;
}

/** What to program on the moved link. */
export interface SandboxProgram {
  macAddress?: string;
  ipv4Address?: string; // CIDR
  ipv6Address?: string; // CIDR
  gateway?: string;
  gatewayIPv6?: string;
  staticRoutes: { destination: string; routeType: 0 | 1; nextHop?: string }[];
}

function markOf(ctx: EffectContext, endpointId: string): string {
  return `${ctx.prefix}:${endpointId}:`;
}

function ours(links: LinkInfo[], mark: string): LinkInfo | undefined {
  return links.find((l) => l.alias?.startsWith(mark));
}

/** The name the link gets inside the sandbox. */
function chooseName(iface: JoinInterface, sandbox: DriverSandbox, taken: Set<string>): string {
  if (iface.dstName) return iface.dstName;
  const prefix = iface.dstPrefix || "eth"; // neither given: the controller's usual prefix
  const rest = sandbox.ifname.slice(prefix.length);
  if (sandbox.ifname.startsWith(prefix) && /^\d+$/.test(rest) && !taken.has(sandbox.ifname)) {
    return sandbox.ifname; // the controller's choice agrees with the plugin's prefix
  }
  for (let i = 0;; i++) if (!taken.has(`${prefix}${i}`)) return `${prefix}${i}`;
}

/**
 * Moves the plugin's link into the sandbox and programs it; returns the name it got there.
 * Safe to re-run: a link already moved (found by its alias) is reprogrammed, not moved.
 *
 * @throws {DriverError} when `SrcName` does not exist or a kernel step fails.
 */
export async function attachToSandbox(
  ctx: EffectContext,
  endpointId: string,
  sandbox: DriverSandbox,
  iface: JoinInterface,
  program: SandboxProgram,
): Promise<string> {
  const { kernel } = ctx;
  const mark = markOf(ctx, endpointId);
  const inside = await kernel.listLinks(sandbox.key);
  let dst = ours(inside, mark)?.name;
  if (!dst) {
    if (!(await kernel.listLinks()).some((l) => l.name === iface.srcName)) {
      throw new DriverError(
        `remote: NetworkDriver.Join: the plugin's SrcName ${iface.srcName} does not exist`,
      );
    }
    dst = chooseName(iface, sandbox, new Set(inside.map((l) => l.name)));
    await kernel.exec(["ip", "link", "set", "dev", iface.srcName, "alias", mark + iface.srcName]);
    await kernel.exec([
      "ip",
      "link",
      "set",
      "dev",
      iface.srcName,
      "netns",
      sandbox.key,
      "name",
      dst,
    ]);
  }
  const batch = [
    ...(program.macAddress ? [`link set dev ${dst} address ${program.macAddress}`] : []),
    ...(program.ipv4Address ? [`addr replace ${program.ipv4Address} dev ${dst}`] : []),
    ...(program.ipv6Address ? [`addr replace ${program.ipv6Address} dev ${dst} nodad`] : []),
    `link set dev ${dst} up`,
  ];
  await kernel.exec(["ip", "-batch", "-"], { stdin: batch.join("\n") + "\n", netns: sandbox.key });
  const routes: RouteSpec[] = [];
  for (const r of program.staticRoutes) {
    routes.push(
      r.routeType === 1 ? { dst: r.destination, dev: dst } : {
        dst: r.destination,
        via: r.nextHop,
        dev: dst,
      },
    );
  }
  if (program.gateway) routes.push({ dst: "default", via: program.gateway, dev: dst });
  if (program.gatewayIPv6) routes.push({ dst: "default", via: program.gatewayIPv6, dev: dst });
  for (const route of routes) await kernel.ensureRoute(route, sandbox.key);
  return dst;
}

/**
 * Moves the endpoint's link back to the host namespace under its `SrcName`. Nothing to do
 * when the sandbox is gone (its links went with it) or the link was already moved back.
 */
export async function detachFromSandbox(
  ctx: EffectContext,
  endpointId: string,
  sandbox: DriverSandbox,
): Promise<void> {
  const { kernel } = ctx;
  if (!sandbox.key || !(await kernel.netnsExists(sandbox.key))) return;
  const mark = markOf(ctx, endpointId);
  const link = ours(await kernel.listLinks(sandbox.key), mark);
  if (!link) return;
  const src = link.alias!.slice(mark.length);
  // `$$` is the shell, which runs in the controller's host namespace (exec's default): the
  // target of the move without knowing that namespace's path. `&& :` keeps the shell alive.
  await kernel.exec([
    "sh",
    "-c",
    'nsenter --net="$1" ip link set dev "$2" netns "$$" name "$3" && :',
    "sh",
    sandbox.key,
    link.name,
    src,
  ]);
}
