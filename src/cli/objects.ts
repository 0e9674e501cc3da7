/**
 * `cnm network|sandbox|endpoint ls|create|inspect|rm`, `cnm connect`, `cnm disconnect`.
 * Reads (ls, inspect) come from the stream (its snapshot plus the events after it) and need
 * no controller; they show `--host` (default: this machine) unless `--all-hosts`. Writes go to
 * the host's controller through the NATS API; their options are checked before connecting.
 *
 * @module
 */

import { type ApiClient, createApiClient } from "../api/client.ts";
import { NotFoundError } from "../errors.ts";
import { formatInspect, networkResource } from "../api/docker/mod.ts";
import { replay, type ReplayState } from "../journal/replay.ts";
import { type FlagSpecs, pairs } from "./_args.ts";
import { type Ctx, expectArgs, json, progress, short, table, type Verb } from "./_context.ts";
import { filtered, find, parseFilters, scoped } from "./_scope.ts";
import { networkOptions, unused } from "./_network_options.ts";
import { PUBLISH_FLAGS, publishOptions } from "./_publish.ts";

/** The current state of `kinds` on every host (snapshot + tail; a progress bar when slow). */
async function wholeState(ctx: Ctx, kinds?: string[]): Promise<ReplayState> {
  const bar = progress(ctx.io, "reading");
  try {
    return await replay({
      nats: await ctx.connect(),
      stream: ctx.stream,
      prefix: ctx.prefix,
      ...(kinds ? { kinds } : {}),
      onProgress: bar.onProgress,
    });
  } finally {
    bar.done();
  }
}

/** The current state of `kinds` (snapshot + tail; a progress bar when it is slow), in view. */
export async function currentState(ctx: Ctx, kinds?: string[]): Promise<ReplayState> {
  return scoped(ctx, await wholeState(ctx, kinds));
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

const LS_FLAGS: FlagSpecs = {
  quiet: { type: "boolean", short: "q", help: "print only ids" },
  filter: {
    type: "string",
    multi: true,
    arg: "KEY=VALUE",
    help: "only matching objects: id (prefix), name (part), label, driver, scope, state, host",
  },
  all: { type: "boolean", short: "a", help: "also list failed creates, with their error" },
};

/**
 * Prints a listing: ids only with -q, JSON with --format json, else the table. Failed
 * creates only with `--all`, the table then gaining an ERROR column saying why each failed.
 */
function listing<T extends { id: string; state: string; error?: { message: string } }>(
  ctx: Ctx,
  items: T[],
  header: string[],
  row: (i: T) => (string | number | null | undefined)[],
): void {
  const all = ctx.flags.all === true;
  const shown = filtered(
    all ? items : items.filter((i) => i.state !== "failed"),
    parseFilters(ctx.flags.filter as string[] | undefined),
  );
  if (ctx.flags.quiet) {
    if (ctx.json) return json(ctx.io, shown.map((i) => i.id));
    for (const i of shown) ctx.io.out(short(i.id));
    return;
  }
  if (ctx.json) return json(ctx.io, shown);
  if (!all) return table(ctx.io, header, shown.map(row));
  table(ctx.io, [...header, "ERROR"], shown.map((i) => [...row(i), i.error?.message ?? ""]));
}

/** `rm` of several refs; with `--force`, a missing one is not an error. */
async function removeAll(
  ctx: Ctx,
  refs: string[],
  rm: (api: ApiClient, ref: string) => Promise<void>,
): Promise<void> {
  const deleted: string[] = [];
  await withApi(ctx, async (api) => {
    for (const r of refs) {
      try {
        await rm(api, r);
      } catch (err) {
        if (ctx.flags.force === true && err instanceof NotFoundError) continue;
        throw err;
      }
      deleted.push(r);
      if (!ctx.json) ctx.io.out(r);
    }
  });
  if (ctx.json) json(ctx.io, { deleted });
}

const RM_FORCE: FlagSpecs = {
  force: { type: "boolean", short: "f", help: "do not fail when it does not exist" },
};

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
      const state = await currentState(ctx, [what]);
      const items = state[kind] as unknown as { id: string; name: string; host: string }[];
      json(ctx.io, refs.map((r) => find(ctx, items, r, what)));
    },
  };
}

/** `cnm network …` */
export const network: Record<string, Verb> = {
  ls: {
    usage: "cnm network ls [-q] [--all] [--filter KEY=VALUE]...",
    summary: "Lists networks (read from the stream; no controller needed).",
    flags: LS_FLAGS,
    async run(ctx) {
      expectArgs(ctx, 0, 0, "no arguments");
      const { networks } = await currentState(ctx, ["network"]);
      listing(
        ctx,
        networks,
        ["NETWORK ID", "NAME", "DRIVER", "SCOPE", "STATE", "SUBNETS", "HOST"],
        (n) => [
          short(n.id),
          n.name,
          n.driver,
          n.scope,
          n.state,
          n.ipam.config.map((c) => c.subnet).join(","),
          n.host,
        ],
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
      "aux-address": {
        type: "string",
        multi: true,
        arg: "NAME=IP",
        help: "reserve an address of a --subnet (never given to an endpoint)",
      },
      "ipam-driver": { type: "string", arg: "NAME", help: "IPAM driver (default default)" },
      "ipam-opt": { type: "string", multi: true, arg: "KEY=VALUE", help: "IPAM driver option" },
      internal: { type: "boolean", help: "no external connectivity" },
      ipv6: { type: "boolean", help: "enable IPv6" },
      ...LABEL,
      ...OPT,
    },
    extra: "Example: cnm network create --driver bridge --subnet 10.10.0.0/24 web",
    async run(ctx) {
      const [name] = expectArgs(ctx, 1, 1, "a network name");
      const options = networkOptions(ctx, name);
      printed(ctx, await withApi(ctx, (api) => api.createNetwork(options)));
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
      const whole = await wholeState(ctx);
      const state = scoped(ctx, whole);
      if (ctx.format !== "docker") {
        const found = refs.map((r) => find(ctx, state.networks, r, "network"));
        return json(ctx.io, await Promise.all(found.map((n) => withGlobalView(ctx, whole, n))));
      }
      // Like `docker network inspect A B`: the ones found, then the first miss as the error.
      const found = [];
      let missing: unknown;
      for (const r of refs) {
        try {
          found.push(find(ctx, state.networks, r, "network"));
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
    usage: "cnm network rm [-f] NETWORK...",
    summary: "Deletes networks (by id, name or id prefix) on the host's controller.",
    flags: RM_FORCE,
    async run(ctx) {
      const refs = expectArgs(ctx, 1, Infinity, "one or more networks");
      await removeAll(ctx, refs, (api, r) => api.deleteNetwork(r));
    },
  },
  prune: {
    usage: "cnm network prune [-f]",
    summary: "Deletes every network of the host that has no endpoints (not none, host, bridge).",
    flags: {
      force: { type: "boolean", short: "f", help: "accepted for docker's sake (no prompt)" },
    },
    async run(ctx) {
      expectArgs(ctx, 0, 0, "no arguments");
      const deleted = await withApi(ctx, async (api) => {
        const out: string[] = [];
        for (const n of await unused(api)) {
          try {
            await api.deleteNetwork(n.id);
            out.push(n.name);
            if (!ctx.json) ctx.io.out(n.name);
          } catch (err) {
            // Gained an endpoint meanwhile, or already gone: not ours to prune then.
            if (!(err instanceof Error) || !/active endpoints|not found/.test(err.message)) {
              throw err;
            }
          }
        }
        return out;
      });
      if (ctx.json) json(ctx.io, { deleted });
    },
  },
};

/** `cnm sandbox …` */
export const sandbox: Record<string, Verb> = {
  ls: {
    usage: "cnm sandbox ls [-q] [--all] [--filter KEY=VALUE]...",
    summary: "Lists sandboxes (read from the stream; no controller needed).",
    flags: LS_FLAGS,
    async run(ctx) {
      expectArgs(ctx, 0, 0, "no arguments");
      const { sandboxes } = await currentState(ctx, ["sandbox"]);
      listing(
        ctx,
        sandboxes,
        ["SANDBOX ID", "NAME", "STATE", "ENDPOINTS", "KEY", "HOST"],
        (s) => [short(s.id), s.name, s.state, s.endpointIds.length, s.key, s.host],
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
      const options = {
        name,
        labels: pairs(f.label as string[], "label"),
        ...(f.key ? { key: f.key as string } : {}),
        ...(f.hostname ? { hostname: f.hostname as string } : {}),
        ...(f.dns ? { dns: f.dns as string[] } : {}),
        ...(f["dns-search"] ? { dnsSearch: f["dns-search"] as string[] } : {}),
        ...(f["add-host"] ? { extraHosts: f["add-host"] as string[] } : {}),
      };
      printed(ctx, await withApi(ctx, (api) => api.createSandbox(options)));
    },
  },
  inspect: inspect("sandboxes", "sandbox"),
  rm: {
    usage: "cnm sandbox rm [-f] SANDBOX...",
    summary: "Deletes sandboxes (leaving and deleting their endpoints first).",
    flags: RM_FORCE,
    async run(ctx) {
      const refs = expectArgs(ctx, 1, Infinity, "one or more sandboxes");
      await removeAll(ctx, refs, (api, r) => api.deleteSandbox(r));
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
    usage: "cnm endpoint ls [-q] [--all] [--network NETWORK] [--filter KEY=VALUE]...",
    summary: "Lists endpoints (read from the stream; no controller needed).",
    flags: {
      network: { type: "string", arg: "NETWORK", help: "only this network's endpoints" },
      ...LS_FLAGS,
    },
    async run(ctx) {
      expectArgs(ctx, 0, 0, "no arguments");
      const state = await currentState(ctx);
      let eps = state.endpoints;
      if (ctx.flags.network) {
        const net = find(ctx, state.networks, ctx.flags.network as string, "network");
        eps = eps.filter((e) => e.networkId === net.id);
      }
      const netName = new Map(state.networks.map((n) => [n.id, n.name]));
      const sbName = new Map(state.sandboxes.map((s) => [s.id, s.name]));
      listing(
        ctx,
        eps.map((e) => ({ ...e, networkName: netName.get(e.networkId) })),
        ["ENDPOINT ID", "NAME", "NETWORK", "SANDBOX", "STATE", "IPV4", "MAC"],
        (e) => [
          short(e.id),
          e.name,
          netName.get(e.networkId) ?? short(e.networkId),
          e.sandboxId ? sbName.get(e.sandboxId) ?? short(e.sandboxId) : "",
          e.state,
          e.ipv4Address,
          e.macAddress,
        ],
      );
    },
  },
  create: {
    usage: "cnm endpoint create [OPTIONS] NETWORK NAME",
    summary: "Creates an endpoint in a network on the host's controller.",
    flags: { ...ADDRESS_FLAGS, ...PUBLISH_FLAGS, ...LABEL, ...OPT },
    async run(ctx) {
      const [net, name] = expectArgs(ctx, 2, 2, "a network and an endpoint name");
      const options = endpointOptions(ctx, name);
      printed(ctx, await withApi(ctx, (api) => api.createEndpoint(net, options)));
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
    const given = endpointOptions(ctx, "");
    const joined = await withApi(ctx, async (api) => {
      const box = await api.sandbox(sb);
      if (!box) throw new NotFoundError(`sandbox ${sb} not found`);
      const name = (ctx.flags.name as string | undefined) ?? box.name;
      const ep = await api.createEndpoint(net, { ...given, name });
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
