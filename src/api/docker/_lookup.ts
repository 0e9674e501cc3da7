/**
 * What the Docker API needs of a controller ({@link DockerBackend}), and dockerd's lookups:
 * a network by full id, exact name, then unique id prefix (with its ambiguity messages), and
 * a "container" — a sandbox — by id, name (a leading `/` allowed, as Docker names carry
 * one) or unique id prefix.
 *
 * @module
 */

import type { Observable } from "rxjs";
import type { RecordedEvent } from "../../journal/events.ts";
import type { EndpointInfo, NetworkInfo, SandboxInfo } from "../../info.ts";
import type {
  CreateEndpointOptions,
  CreateNetworkOptions,
  DeleteEndpointOptions,
} from "../../controller/inputs.ts";
import type { ValidateNetworkOptions } from "../../../drivers/driver.ts";
import { DockerApiError } from "./_errors.ts";

/**
 * The controller calls the Docker API makes. A `Controller` satisfies it; the second
 * argument of `createNetwork` asks the driver to accept options it does not know (Docker
 * echoes them) — a controller that does not take it yet validates strictly.
 */
export interface DockerBackend {
  readonly hostId: string;
  readonly events$: Observable<RecordedEvent>;
  createNetwork(options: CreateNetworkOptions, how?: ValidateNetworkOptions): Promise<NetworkInfo>;
  deleteNetwork(idOrName: string): Promise<void>;
  createEndpoint(network: string, options: CreateEndpointOptions): Promise<EndpointInfo>;
  deleteEndpoint(endpointId: string, options?: DeleteEndpointOptions): Promise<void>;
  join(endpointId: string, sandbox: string): Promise<EndpointInfo>;
  leave(endpointId: string, sandbox: string): Promise<void>;
  networks(): NetworkInfo[];
  endpoints(filter?: { network?: string }): EndpointInfo[];
  sandboxes(): SandboxInfo[];
}

/** How an ambiguity is worded: inspect's, or delete/connect's. */
export type AmbiguityStyle = "inspect" | "other";

/**
 * dockerd's `findUniqueNetwork`: full id, then exact name, then unique id prefix.
 *
 * @throws {DockerApiError} 404 `network X not found`, 400 when ambiguous.
 */
export function findNetwork(
  networks: readonly NetworkInfo[],
  term: string,
  style: AmbiguityStyle,
): NetworkInfo {
  const byId = networks.find((n) => n.id === term);
  if (byId) return byId;
  const tryList = (list: NetworkInfo[], basis: string): NetworkInfo | undefined => {
    if (list.length === 1) return list[0];
    if (list.length > 1) {
      throw new DockerApiError(
        400,
        style === "inspect"
          ? `${list.length} matches found based on ${basis}: network ${term} is ambiguous`
          : `network ${term} is ambiguous (${list.length} matches found based on ${basis})`,
      );
    }
    return undefined;
  };
  const found = tryList(networks.filter((n) => n.name === term), "name") ??
    tryList(networks.filter((n) => n.id.startsWith(term)), "ID prefix");
  if (!found) throw new DockerApiError(404, `network ${term} not found`);
  return found;
}

/**
 * A container reference resolved to a sandbox: full id, name (`c1` or `/c1`), unique id
 * prefix.
 *
 * @throws {DockerApiError} 400 for an empty reference or an ambiguous prefix, 404
 * `No such container: X`.
 */
export function findSandbox(sandboxes: readonly SandboxInfo[], ref: string): SandboxInfo {
  if (ref === "") throw new DockerApiError(400, 'invalid name or ID supplied: ""');
  const hit = sandboxes.find((s) => s.id === ref) ??
    sandboxes.find((s) => s.name === ref || `/${s.name}` === ref);
  if (hit) return hit;
  const pre = sandboxes.filter((s) => s.id.startsWith(ref));
  if (pre.length === 1) return pre[0];
  if (pre.length > 1) {
    throw new DockerApiError(400, `multiple IDs found with provided prefix: ${ref}`);
  }
  throw new DockerApiError(404, `No such container: ${ref}`);
}
