/**
 * `GET /networks`, `GET /networks/{id}`, `DELETE /networks/{id}` and `POST /networks/prune`,
 * with dockerd's filters, lookups and messages.
 *
 * @module
 */

import type { NetworkInfo } from "../../info.ts";
import { DockerApiError } from "./_errors.ts";
import {
  exactMatch,
  type Filters,
  matchLabels,
  parseFilters,
  parseTime,
  regexpMatch,
  validateKeys,
} from "./_filters.ts";
import { compareVersions, type Reply, type RequestContext } from "./_http.ts";
import { type DockerBackend, findNetwork } from "./_lookup.ts";
import { isPredefined, networkResource } from "./network_resource.ts";

const LIST_FILTERS = ["dangling", "driver", "id", "label", "name", "scope", "type"];
const PRUNE_FILTERS = ["label", "label!", "until"];

/** Whether a network has endpoints (joined or not). */
const inUse = (backend: DockerBackend, net: NetworkInfo) =>
  backend.endpoints({ network: net.id }).length > 0;

/** moby's `FilterNetworks`; `dangling` looks at endpoints (20.10 wrongly did not). */
function filterNetworks(
  backend: DockerBackend,
  nets: NetworkInfo[],
  f: Filters,
): NetworkInfo[] {
  let out = nets.filter((n) =>
    exactMatch(f, "driver", n.driver) && regexpMatch(f, "name", n.name) &&
    regexpMatch(f, "id", n.id) && matchLabels(f, "label", n.labels) &&
    exactMatch(f, "scope", n.scope)
  );
  const dangling = f.get("dangling");
  if (dangling?.length) {
    if (dangling.length > 1) {
      throw new DockerApiError(400, 'got more than one value for filter key "dangling"');
    }
    const v = dangling[0];
    if (!["0", "1", "true", "false"].includes(v)) {
      throw new DockerApiError(
        400,
        `invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")`,
      );
    }
    const only = v === "1" || v === "true";
    out = out.filter((n) => {
      const unused = !isPredefined(n) && !inUse(backend, n);
      return only ? unused : !unused;
    });
  }
  const types = f.get("type");
  if (types?.length) {
    const picked: NetworkInfo[] = [];
    for (const t of types) {
      if (t !== "builtin" && t !== "custom") {
        throw new DockerApiError(400, `invalid filter: 'type'='${t}'`);
      }
      picked.push(...out.filter((n) => isPredefined(n) === (t === "builtin")));
    }
    out = picked;
  }
  return out;
}

/** Handles `GET /networks` (Containers filled below API 1.28, as dockerd does). */
export function listNetworks(backend: DockerBackend, ctx: RequestContext): Reply {
  const f = parseFilters(ctx.url.searchParams.get("filters"));
  validateKeys(f, LIST_FILTERS);
  const nets = filterNetworks(backend, backend.networks(), f);
  const containers = compareVersions(ctx.version, "1.28") < 0;
  const endpoints = containers ? backend.endpoints() : [];
  const sandboxes = containers ? backend.sandboxes() : [];
  return { json: nets.map((n) => networkResource(n, { endpoints, sandboxes, containers })) };
}

/** Handles `GET /networks/{id}` (`verbose` adds nothing for local networks). */
export function inspectNetwork(backend: DockerBackend, ctx: RequestContext): Reply {
  const verbose = ctx.url.searchParams.get("verbose");
  if (verbose && !/^(1|t|T|TRUE|true|True|0|f|F|FALSE|false|False)$/.test(verbose)) {
    throw new DockerApiError(
      400,
      `invalid value for verbose: ${verbose}: strconv.ParseBool: parsing ${
        JSON.stringify(verbose)
      }: invalid syntax`,
    );
  }
  const scope = ctx.url.searchParams.get("scope");
  const term = ctx.params.id;
  const candidates = backend.networks().filter((n) => !scope || n.scope === scope);
  const net = findNetwork(candidates, term, "inspect");
  return {
    json: networkResource(net, {
      endpoints: backend.endpoints({ network: net.id }),
      sandboxes: backend.sandboxes(),
      containers: true,
    }),
  };
}

/** Handles `DELETE /networks/{id}`. */
export async function deleteNetwork(backend: DockerBackend, ctx: RequestContext): Promise<Reply> {
  const net = findNetwork(backend.networks(), ctx.params.id, "other");
  if (isPredefined(net)) {
    throw new DockerApiError(403, `${net.name} is a pre-defined network and cannot be removed`);
  }
  await backend.deleteNetwork(net.id);
  return { empty: true, status: 204 };
}

/** The prune in progress, if any (dockerd runs one at a time). */
const running = new WeakSet<DockerBackend>();

/**
 * Handles `POST /networks/prune`: deletes every custom network without endpoints that
 * matches `label`, `label!` and `until`; reports their names (`null` when none).
 */
export async function pruneNetworks(
  backend: DockerBackend,
  ctx: RequestContext,
  onPruned: (names: string[]) => void,
): Promise<Reply> {
  const f = parseFilters(ctx.url.searchParams.get("filters"));
  validateKeys(f, PRUNE_FILTERS);
  const untilValues = f.get("until") ?? [];
  if (untilValues.length > 1) throw new DockerApiError(400, "more than one until filter specified");
  const until = untilValues.length ? parseTime(untilValues[0]) : undefined;
  if (running.has(backend)) throw new DockerApiError(409, "a prune operation is already running");
  running.add(backend);
  try {
    const deleted: string[] = [];
    for (const n of backend.networks()) {
      if (isPredefined(n) || inUse(backend, n)) continue;
      if (until !== undefined && BigInt(Date.parse(n.created)) * 1_000_000n > until) continue;
      if (!matchLabels(f, "label", n.labels)) continue;
      if (f.get("label!")?.length && matchLabels(f, "label!", n.labels)) continue;
      try {
        await backend.deleteNetwork(n.id);
        deleted.push(n.name);
      } catch { /* gained an endpoint meanwhile, or already gone: dockerd skips it too */ }
    }
    onPruned(deleted);
    return { json: { NetworksDeleted: deleted.length ? deleted : null } };
  } finally {
    running.delete(backend);
  }
}
