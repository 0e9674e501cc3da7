/**
 * `cnm endpoint ls|create|inspect|rm`, and `cnm connect` / `cnm disconnect` (an endpoint
 * created and joined, or left and deleted, in one verb).
 *
 * @module
 */

import { NotFoundError } from "../errors.ts";
import { type FlagSpecs, pairs } from "./_args.ts";
import { type Ctx, expectArgs, json, short, type Verb } from "./_context.ts";
import { find } from "./_scope.ts";
import { PUBLISH_FLAGS, publishOptions } from "./_publish.ts";
import {
  currentState,
  inspect,
  LABEL,
  listing,
  LS_FLAGS,
  OPT,
  printed,
  withApi,
} from "./objects.ts";

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
