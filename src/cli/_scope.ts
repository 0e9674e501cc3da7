/**
 * What the read verbs show: names are per host, so `ls`, `inspect`, `history`, `state`,
 * `diff` and `events` look at `--host` (or this machine's host id) unless `--all-hosts`;
 * global-scope networks belong to every host. References resolve with the same rules as
 * the controller's (src/refs.ts). Also `ls --filter`.
 *
 * @module
 */

import type { ReplayState } from "../journal/replay.ts";
import { resolveRef } from "../refs.ts";
import { UsageError } from "./_args.ts";
import type { Ctx } from "./_context.ts";

/** The host the read verbs look at, or undefined with `--all-hosts`. */
export function scopeHost(ctx: Ctx): string | undefined {
  return ctx.flags["all-hosts"] === true ? undefined : ctx.host;
}

/** True when an object of `host` (a network of `scope`) is in view. */
export function inScope(ctx: Ctx, o: { host: string; scope?: string }): boolean {
  const h = scopeHost(ctx);
  return h === undefined || o.host === h || o.scope === "global";
}

/** The state limited to what is in view. */
export function scoped(ctx: Ctx, s: ReplayState): ReplayState {
  if (scopeHost(ctx) === undefined) return s;
  const networks = s.networks.filter((n) => inScope(ctx, n));
  const ids = new Set(networks.map((n) => n.id));
  return {
    ...s,
    networks,
    endpoints: s.endpoints.filter((e) => inScope(ctx, e)),
    sandboxes: s.sandboxes.filter((b) => inScope(ctx, b)),
    ipam: {
      pools: s.ipam.pools.filter((p) => ids.has(p.networkId)),
      addresses: s.ipam.addresses.filter((a) => ids.has(a.networkId)),
    },
  };
}

/**
 * Finds one object of a kind by id, name or unique id prefix (src/refs.ts), among those in
 * view.
 *
 * @throws {NotFoundError} `<what> <ref> not found` (naming the host when scoped).
 * @throws {InvalidArgumentError} when ambiguous.
 */
export function find<T extends { id: string; name: string; host: string }>(
  ctx: Ctx,
  items: T[],
  ref: string,
  what: string,
): T {
  const kind = what;
  try {
    return resolveRef(items.map((i) => ({ ...i, kind })), ref, what).hit as unknown as T;
  } catch (err) {
    const h = scopeHost(ctx);
    if (h !== undefined && (err as Error).name === "NotFoundError") {
      (err as Error).message += ` on host ${h} (--all-hosts to look everywhere)`;
    }
    throw err;
  }
}

/** One `--filter KEY=VALUE`: which objects it keeps. */
export type Filter = (o: Record<string, unknown>) => boolean;

const FILTER_KEYS = ["id", "name", "driver", "scope", "state", "host", "label", "network"];

/**
 * Parses `--filter` values (docker's keys: `id` prefix, `name` substring, `label` key or
 * key=value, and exact `driver`, `scope`, `state`, `host`, `network`).
 *
 * @throws {UsageError} for an unknown key or a missing `=`.
 */
export function parseFilters(values: string[] | undefined): Filter[] {
  return (values ?? []).map((v) => {
    const eq = v.indexOf("=");
    if (eq <= 0) throw new UsageError(`--filter takes KEY=VALUE, got ${JSON.stringify(v)}`);
    const key = v.slice(0, eq);
    const want = v.slice(eq + 1);
    if (!FILTER_KEYS.includes(key)) {
      throw new UsageError(`--filter: unknown key ${key} (one of ${FILTER_KEYS.join(", ")})`);
    }
    switch (key) {
      case "id":
        return (o) => String(o.id).startsWith(want);
      case "name":
        return (o) => String(o.name).includes(want);
      case "label": {
        const i = want.indexOf("=");
        const k = i < 0 ? want : want.slice(0, i);
        return (o) => {
          const labels = (o.labels ?? {}) as Record<string, string>;
          return k in labels && (i < 0 || labels[k] === want.slice(i + 1));
        };
      }
      case "network":
        return (o) => o.networkId === want || o.networkName === want;
      default:
        return (o) => String(o[key]) === want;
    }
  });
}

/** Keeps what every filter keeps. */
export function filtered<T>(items: T[], filters: Filter[]): T[] {
  return items.filter((i) => filters.every((f) => f(i as Record<string, unknown>)));
}
