/**
 * `cnm network|sandbox|endpoint ls|create|inspect|rm`, `cnm connect`, `cnm disconnect`.
 * Reads (ls, inspect) replay the stream and need no controller; writes go to the host's
 * controller through the NATS API.
 *
 * @module
 */

import { type ApiClient, createApiClient } from "../api/client.ts";
import { NotFoundError } from "../errors.ts";
import { formatInspect, networkResource } from "../api/docker/mod.ts";
import type { ReplayState } from "../journal/replay.ts";
import { type FlagSpecs, pairs, UsageError } from "./_args.ts";
import { type Ctx, expectArgs, json, short, stateAt, table, type Verb } from "./_context.ts";
import { PUBLISH_FLAGS, publishOptions } from "./_publish.ts";

/** Replays the stream to its end (with a progress bar when slow). */
export function currentState(ctx: Ctx): Promise<ReplayState> {
  return stateAt(ctx, undefined, false);
}

/**
 * Finds by exact id, then name (a failed create holds no name: another object of that name
 * wins), then unique id prefix.
 */
export function find<T extends { id: string; name: string; state?: string }>(
  items: T[],
  ref: string,
  what: string,
): T {
  const named = items.filter((i) => i.name === ref);
  const hit = items.find((i) => i.id === ref) ??
    named.find((i) => i.state !== "failed") ?? named.at(-1);
  if (hit) return hit;
  const pre = items.filter((i) => i.id.startsWith(ref));
  if (pre.length === 1) return pre[0];
  if (pre.length > 1) {
    throw new UsageError(`${what} id prefix ${ref} is ambiguous (${pre.length} match)`);
  }
  throw new NotFoundError(`${what} ${ref} not found`);
}

/**
 * A global network as seen from every host: its endpoints on all hosts (with the host of
 * each), and the peer entries the host's controller programmed (`peers: null` when no
 * controller answers for the host).
 */
async function withGlobalView(ctx: Ctx, state: ReplayState, n: ReplayState["networks"][number]) {
  if (n.scope !== "global") return n;
  const endpoints = state.endpoints.filter((e) => e.networkId === n.id && e.state !== "deleted")
    .map((e) => ({
      id: e.id,
      name: e.name,
      host: e.host,
      state: e.state,
      ...(e.ipv4Address ? { ipv4Address: e.ipv4Address } : {}),
      ...(e.macAddress ? { macAddress: e.macAddress } : {}),
    }));
  const peers = await withApi(ctx, (api) => api.networkPeers(n.id)).catch(() => null);
  return { ...n, endpoints, peers: peers ?? null };
}

async function withApi<T>(ctx: Ctx, f: (api: ApiClient) => Promise<T>): Promise<T> {
  const api = await createApiClient({
    nats: await ctx.connect(),
    prefix: ctx.prefix,
    hostId: ctx.host,
    stream: ctx.stream,
  });
  try {
    return await f(api);
  } finally {
    await api.close();
  }
}

const ALL: FlagSpecs = {
  all: { type: "boolean", short: "a", help: "also list failed creates, with their error" },
};

/** What `ls` lists: failed creates only with `--all`. */
function listed<T extends { state: string }>(ctx: Ctx, items: T[]): T[] {
  return ctx.flags.all ? items : items.filter((i) => i.state !== "failed");
}

type Row = (string | number | null | undefined)[];

/** Prints a table; with `--all`, an ERROR column says why each failed create failed. */
function listTable(
  ctx: Ctx,
  header: string[],
  rows: Row[],
  items: { error?: { message: string } }[],
): void {
  if (!ctx.flags.all) return table(ctx.io, header, rows);
  table(ctx.io, [...header, "ERROR"], rows.map((r, i) => [...r, items[i].error?.message ?? ""]));
}

const LABEL: FlagSpecs = {
  label: { type: "string", multi: true, arg: "KEY=VALUE", help: "label" },
};
const OPT: FlagSpecs = {
  opt: { type: "string", short: "o", multi: true, arg: "KEY=VALUE", help: "driver option" },
};

function printed(ctx: Ctx, info: { id: string }): void {
  if (ctx.json) json(ctx.io, info);
  else ctx.io.out(info.id);
}

function inspect(kind: "networks" | "sandboxes" | "endpoints", what: string): Verb {
  return {
    usage: `cnm ${what} inspect ${what.toUpperCase()}...`,
    summary: `Shows ${what}s (by id, name or id prefix) as JSON, read from the stream.`,
    flags: {},
    async run(ctx) {
      const refs = expectArgs(ctx, 1, Infinity, `one or more ${what}s`);
      const state = await currentState(ctx);
      const items = state[kind] as unknown as { id: string; name: string }[];
      json(ctx.io, refs.map((r) => find(items, r, what)));
    },
  };
}

/** `cnm network …` */
export const network: Record<string, Verb> = {
  ls: {
    usage: "cnm network ls [--all]",
    summary: "Lists networks (read from the stream; no controller needed).",
    flags: ALL,
    async run(ctx) {
      expectArgs(ctx, 0, 0, "no arguments");
      const networks = listed(ctx, (await currentState(ctx)).networks);
      if (ctx.json) return json(ctx.io, networks);
      listTable(
        ctx,
        ["NETWORK ID", "NAME", "DRIVER", "SCOPE", "STATE", "SUBNETS", "HOST"],
        networks.map((n) => [
          short(n.id),
          n.name,
          n.driver,
          n.scope,
          n.state,
          n.ipam.config.map((c) => c.subnet).join(","),
          n.host,
        ]),
        networks,
      );
    },
  },
  create: {
    usage: "cnm network create [OPTIONS] NAME",
    summary: "Creates a network on the host's controller.",
    flags: {
      driver: { type: "string", short: "d", arg: "NAME", help: "driver (default bridge)" },
      subnet: { type: "string", multi: true, arg: "CIDR", help: "subnet" },
      gateway: { type: "string", multi: true, arg: "IP", help: "gateway of the matching --subnet" },
      "ip-range": {
        type: "string",
        multi: true,
        arg: "CIDR",
        help: "allocate from this sub-range",
      },
      "ipam-driver": { type: "string", arg: "NAME", help: "IPAM driver (default default)" },
      internal: { type: "boolean", help: "no external connectivity" },
      ipv6: { type: "boolean", help: "enable IPv6" },
      ...LABEL,
      ...OPT,
    },
    extra: "Example: cnm network create --driver bridge --subnet 10.10.0.0/24 web",
    async run(ctx) {
      const [name] = expectArgs(ctx, 1, 1, "a network name");
      const f = ctx.flags;
      const subnets = (f.subnet as string[] | undefined) ?? [];
      const gateways = (f.gateway as string[] | undefined) ?? [];
      const ranges = (f["ip-range"] as string[] | undefined) ?? [];
      if (gateways.length > subnets.length || ranges.length > subnets.length) {
        throw new UsageError("every --gateway and --ip-range needs a --subnet");
      }
      const config = subnets.map((subnet, i) => ({
        subnet,
        ...(gateways[i] ? { gateway: gateways[i] } : {}),
        ...(ranges[i] ? { ipRange: ranges[i] } : {}),
      }));
      const ipamDriver = f["ipam-driver"] as string | undefined;
      const info = await withApi(ctx, (api) =>
        api.createNetwork({
          name,
          ...(f.driver ? { driver: f.driver as string } : {}),
          labels: pairs(f.label as string[], "label"),
          options: pairs(f.opt as string[], "opt"),
          internal: f.internal === true,
          enableIPv6: f.ipv6 === true,
          ...(config.length || ipamDriver
            ? { ipam: { driver: ipamDriver ?? "default", config } }
            : {}),
        }));
      printed(ctx, info);
    },
  },
  inspect: {
    ...inspect("networks", "network"),
    usage: "cnm network inspect [--format json|docker] NETWORK...",
    summary: "Shows networks (by id, name or id prefix) as JSON, read from the stream; " +
      "--format docker prints what `docker network inspect` prints against `cnm serve " +
      "--docker-socket` (Docker's NetworkResource, its containers being sandboxes).",
    formats: ["docker"],
    async run(ctx) {
      const refs = expectArgs(ctx, 1, Infinity, "one or more networks");
      const state = await currentState(ctx);
      if (ctx.format !== "docker") {
        const found = refs.map((r) => find(state.networks, r, "network"));
        return json(ctx.io, await Promise.all(found.map((n) => withGlobalView(ctx, state, n))));
      }
      // Like `docker network inspect A B`: the ones found, then the first miss as the error.
      const found = [];
      let missing: unknown;
      for (const r of refs) {
        try {
          found.push(find(state.networks, r, "network"));
        } catch (err) {
          missing ??= err;
        }
      }
      const { endpoints, sandboxes } = state;
      ctx.io.out(
        formatInspect(
          found.map((n) => networkResource(n, { endpoints, sandboxes, containers: true })),
        ).trimEnd(),
      );
      if (missing) throw missing;
    },
  },
  rm: {
    usage: "cnm network rm NETWORK...",
    summary: "Deletes networks (by id or name) on the host's controller.",
    flags: {},
    async run(ctx) {
      const refs = expectArgs(ctx, 1, Infinity, "one or more networks");
      await withApi(ctx, async (api) => {
        for (const r of refs) {
          await api.deleteNetwork(r);
          if (!ctx.json) ctx.io.out(r);
        }
      });
      if (ctx.json) json(ctx.io, { deleted: refs });
    },
  },
};

/** `cnm sandbox …` */
export const sandbox: Record<string, Verb> = {
  ls: {
    usage: "cnm sandbox ls [--all]",
    summary: "Lists sandboxes (read from the stream; no controller needed).",
    flags: ALL,
    async run(ctx) {
      expectArgs(ctx, 0, 0, "no arguments");
      const sandboxes = listed(ctx, (await currentState(ctx)).sandboxes);
      if (ctx.json) return json(ctx.io, sandboxes);
      listTable(
        ctx,
        ["SANDBOX ID", "NAME", "STATE", "ENDPOINTS", "KEY", "HOST"],
        sandboxes.map((s) => [short(s.id), s.name, s.state, s.endpointIds.length, s.key, s.host]),
        sandboxes,
      );
    },
  },
  create: {
    usage: "cnm sandbox create [OPTIONS] NAME",
    summary: "Creates a sandbox (a network namespace) on the host's controller.",
    flags: {
      key: {
        type: "string",
        arg: "PATH",
        help: "use this existing namespace instead of creating one",
      },
      hostname: { type: "string", arg: "NAME", help: "hostname for /etc/hosts" },
      dns: { type: "string", multi: true, arg: "IP", help: "resolver" },
      "dns-search": { type: "string", multi: true, arg: "DOMAIN", help: "search domain" },
      "add-host": { type: "string", multi: true, arg: "HOST:IP", help: "extra /etc/hosts entry" },
      ...LABEL,
    },
    async run(ctx) {
      const [name] = expectArgs(ctx, 1, 1, "a sandbox name");
      const f = ctx.flags;
      const info = await withApi(ctx, (api) =>
        api.createSandbox({
          name,
          labels: pairs(f.label as string[], "label"),
          ...(f.key ? { key: f.key as string } : {}),
          ...(f.hostname ? { hostname: f.hostname as string } : {}),
          ...(f.dns ? { dns: f.dns as string[] } : {}),
          ...(f["dns-search"] ? { dnsSearch: f["dns-search"] as string[] } : {}),
          ...(f["add-host"] ? { extraHosts: f["add-host"] as string[] } : {}),
        }));
      printed(ctx, info);
    },
  },
  inspect: inspect("sandboxes", "sandbox"),
  rm: {
    usage: "cnm sandbox rm SANDBOX...",
    summary: "Deletes sandboxes (leaving and deleting their endpoints first).",
    flags: {},
    async run(ctx) {
      const refs = expectArgs(ctx, 1, Infinity, "one or more sandboxes");
      await withApi(ctx, async (api) => {
        for (const r of refs) {
          await api.deleteSandbox(r);
          if (!ctx.json) ctx.io.out(r);
        }
      });
      if (ctx.json) json(ctx.io, { deleted: refs });
    },
  },
};

const ADDRESS_FLAGS: FlagSpecs = {
  ip: { type: "string", arg: "IPV4", help: "IPv4 address" },
  ip6: { type: "string", arg: "IPV6", help: "IPv6 address" },
  mac: { type: "string", arg: "MAC", help: "MAC address" },
  alias: {
    type: "string",
    multi: true,
    arg: "NAME",
    help: "another name of the sandbox on this network (embedded DNS)",
  },
};

function endpointOptions(ctx: Ctx, name: string) {
  const f = ctx.flags;
  return {
    name,
    labels: pairs(f.label as string[], "label"),
    options: pairs(f.opt as string[], "opt"),
    ...(f.ip ? { ipv4Address: f.ip as string } : {}),
    ...(f.ip6 ? { ipv6Address: f.ip6 as string } : {}),
    ...(f.mac ? { macAddress: f.mac as string } : {}),
    ...publishOptions(ctx),
    ...((f.alias as string[] | undefined)?.length ? { aliases: f.alias as string[] } : {}),
  };
}

/** `cnm endpoint …` */
export const endpoint: Record<string, Verb> = {
  ls: {
    usage: "cnm endpoint ls [--network NETWORK] [--all]",
    summary: "Lists endpoints (read from the stream; no controller needed).",
    flags: {
      network: { type: "string", arg: "NETWORK", help: "only this network's endpoints" },
      ...ALL,
    },
    async run(ctx) {
      expectArgs(ctx, 0, 0, "no arguments");
      const state = await currentState(ctx);
      let eps = listed(ctx, state.endpoints);
      if (ctx.flags.network) {
        const net = find(state.networks, ctx.flags.network as string, "network");
        eps = eps.filter((e) => e.networkId === net.id);
      }
      if (ctx.json) return json(ctx.io, eps);
      const netName = new Map(state.networks.map((n) => [n.id, n.name]));
      const sbName = new Map(state.sandboxes.map((s) => [s.id, s.name]));
      listTable(
        ctx,
        ["ENDPOINT ID", "NAME", "NETWORK", "SANDBOX", "STATE", "IPV4", "MAC"],
        eps.map((e) => [
          short(e.id),
          e.name,
          netName.get(e.networkId) ?? short(e.networkId),
          e.sandboxId ? sbName.get(e.sandboxId) ?? short(e.sandboxId) : "",
          e.state,
          e.ipv4Address,
          e.macAddress,
        ]),
        eps,
      );
    },
  },
  create: {
    usage: "cnm endpoint create [OPTIONS] NETWORK NAME",
    summary: "Creates an endpoint in a network on the host's controller.",
    flags: { ...ADDRESS_FLAGS, ...PUBLISH_FLAGS, ...LABEL, ...OPT },
    async run(ctx) {
      const [net, name] = expectArgs(ctx, 2, 2, "a network and an endpoint name");
      const info = await withApi(ctx, (api) => api.createEndpoint(net, endpointOptions(ctx, name)));
      printed(ctx, info);
    },
  },
  inspect: inspect("endpoints", "endpoint"),
  rm: {
    usage: "cnm endpoint rm [--force] ENDPOINT...",
    summary: "Deletes endpoints (by id or id prefix); --force also deletes joined ones.",
    flags: { force: { type: "boolean", short: "f", help: "delete even when joined" } },
    async run(ctx) {
      const refs = expectArgs(ctx, 1, Infinity, "one or more endpoints");
      await withApi(ctx, async (api) => {
        for (const r of refs) {
          await api.deleteEndpoint(r, { force: ctx.flags.force === true });
          if (!ctx.json) ctx.io.out(r);
        }
      });
      if (ctx.json) json(ctx.io, { deleted: refs });
    },
  },
};

/** `cnm connect` */
export const connectVerb: Verb = {
  usage: "cnm connect [OPTIONS] NETWORK SANDBOX",
  summary: "Creates an endpoint in NETWORK (named after the sandbox) and joins it to SANDBOX; " +
    "-p publishes its ports on the sandbox's gateway endpoint while it is joined.",
  flags: {
    name: { type: "string", arg: "NAME", help: "endpoint name (default: the sandbox's name)" },
    ...ADDRESS_FLAGS,
    ...PUBLISH_FLAGS,
    ...LABEL,
    ...OPT,
  },
  async run(ctx) {
    const [net, sb] = expectArgs(ctx, 2, 2, "a network and a sandbox");
    const joined = await withApi(ctx, async (api) => {
      const box = await api.sandbox(sb);
      if (!box) throw new NotFoundError(`sandbox ${sb} not found`);
      const name = (ctx.flags.name as string | undefined) ?? box.name;
      const ep = await api.createEndpoint(net, endpointOptions(ctx, name));
      try {
        return await api.join(ep.id, box.id);
      } catch (err) {
        await api.deleteEndpoint(ep.id, { force: true }).catch(() => {});
        throw err;
      }
    });
    printed(ctx, joined);
  },
};

/** `cnm disconnect` */
export const disconnectVerb: Verb = {
  usage: "cnm disconnect NETWORK SANDBOX",
  summary: "Leaves and deletes the endpoint that joins SANDBOX to NETWORK.",
  flags: {},
  async run(ctx) {
    const [net, sb] = expectArgs(ctx, 2, 2, "a network and a sandbox");
    const id = await withApi(ctx, async (api) => {
      const box = await api.sandbox(sb);
      if (!box) throw new NotFoundError(`sandbox ${sb} not found`);
      const n = await api.network(net);
      if (!n) throw new NotFoundError(`network ${net} not found`);
      const eps = (await api.endpoints({ network: n.id })).filter((e) => e.sandboxId === box.id);
      if (!eps.length) {
        throw new NotFoundError(`sandbox ${box.name} is not connected to network ${n.name}`);
      }
      for (const e of eps) {
        if (e.state === "joined") await api.leave(e.id, box.id);
        await api.deleteEndpoint(e.id);
      }
      return eps.map((e) => e.id);
    });
    if (ctx.json) json(ctx.io, { disconnected: id });
    else ctx.io.out(id.join("\n"));
  },
};
