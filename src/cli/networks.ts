/**
 * `cnm network ls|create|inspect|rm|prune`. `inspect` of a global network also shows its
 * endpoints on every host and the peer entries the host's controller programmed.
 *
 * @module
 */

import { formatInspect, networkResource } from "../api/docker/mod.ts";
import type { ReplayState } from "../journal/replay.ts";
import { type Ctx, expectArgs, json, short, type Verb } from "./_context.ts";
import { find, scoped } from "./_scope.ts";
import { networkOptions, unused } from "./_network_options.ts";
import {
  currentState,
  inspect,
  LABEL,
  listing,
  LS_FLAGS,
  OPT,
  printed,
  removeAll,
  RM_FORCE,
  wholeState,
  withApi,
} from "./objects.ts";

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
