/**
 * The crash tests' readers of the kernel, without the controller's help: `ip -j` (links and
 * addresses, routes), `nft -j` (the ruleset and cnm's tables in it), the namespaces of a
 * prefix; and where a controller under test lives ({@link Site}).
 *
 * @module
 */

/** Runs a command; its stdout, or an error with its stderr. */
export async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

interface IpAddrLink {
  ifname: string;
  address?: string;
  master?: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
}

/** `ip -n <ns> -d -j addr show`. */
export async function ipAddrs(ns: string): Promise<IpAddrLink[]> {
  return JSON.parse(await run("ip", ["-n", ns, "-d", "-j", "addr", "show"]) || "[]");
}

/** Default IPv4 routes' gateways in `ns`. */
export async function defaultGateways(ns: string): Promise<string[]> {
  const routes = JSON.parse(await run("ip", ["-n", ns, "-j", "route", "show"]) || "[]") as {
    dst: string;
    gateway?: string;
  }[];
  return routes.filter((r) => r.dst === "default").map((r) => r.gateway ?? "");
}

/** `nft -j list ruleset` inside `ns`, parsed. */
export async function nftRuleset(ns: string): Promise<Record<string, any>[]> {
  const out = await run("ip", ["netns", "exec", ns, "nft", "-j", "list", "ruleset"]);
  return (JSON.parse(out).nftables ?? []) as Record<string, any>[];
}

/** Our tables' chains and rules (`inet cnm`, `bridge cnm`), with handles stripped. */
export function cnmFirewall(ruleset: Record<string, any>[]): {
  chains: string[];
  rules: { chain: string; key: string }[];
} {
  const ours = (o: { family: string; table: string }) =>
    o.table === "cnm" && (o.family === "inet" || o.family === "bridge");
  const chains = ruleset.filter((x) => x.chain && ours(x.chain)).map((x) =>
    `${x.chain.family} ${x.chain.name}`
  );
  const rules = ruleset.filter((x) => x.rule && ours(x.rule)).map((x) => ({
    chain: `${x.rule.family} ${x.rule.chain}`,
    key: JSON.stringify([x.rule.expr, x.rule.comment ?? null]),
  }));
  return { chains: chains.sort(), rules };
}

/** Namespaces in /var/run/netns starting with `prefix`. */
export async function netnsWithPrefix(prefix: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir("/var/run/netns")) {
    if (e.name.startsWith(prefix)) names.push(e.name);
  }
  return names.sort();
}

export const base = (key: string) => key.slice(key.lastIndexOf("/") + 1);

/** Where the controller under test lives. */
export interface Site {
  /** Name of the throwaway host namespace. */
  hostNs: string;
  /** Name prefix of the sandboxes' namespaces (the host's name excluded). */
  namePrefix: string;
  /** The controller's `stateDir` (per-sandbox files), when they should be checked too. */
  stateDir?: string;
  /** Links of the host namespace that are not cnm's (a lab host's underlay port `ul0`). */
  ignoreLinks?: string[];
}

/** The name prefix of a controller's overlay namespaces on a site (they are no sandboxes). */
export const overlayNsPrefix = (site: Site) => `${site.namePrefix}ov-`;
