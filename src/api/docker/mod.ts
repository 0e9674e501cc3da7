/**
 * The Docker Engine API for networks, on a unix socket: the real `docker` CLI, dockerode and
 * other Docker SDKs manage a cnm controller's networks unchanged
 * (`DOCKER_HOST=unix:///run/cnm/docker.sock docker network ls`). API 1.41 (dockerd 20.10's),
 * paths with `/v1.24`…`/v1.41` prefixes or none; the contract is
 * `../shared/reference/docker-api.md`, its mapping decisions are in the README ("Docker API").
 *
 * Routes: `HEAD|GET /_ping`, `GET /version`, `GET /networks`, `GET /networks/{id}`,
 * `POST /networks/create`, `DELETE /networks/{id}`, `POST /networks/{id}/connect`,
 * `POST /networks/{id}/disconnect`, `POST /networks/prune`, `GET /events`.
 *
 * HTTP/1.1 is Deno's server (`Deno.serve({ path })`): it lets every header dockerd sends be
 * set as dockerd sets it; it adds only `date` and `content-length`, which dockerd sends too.
 *
 * @example
 * ```ts ignore
 * import { createController } from "../../../mod.ts";
 * import { serveDocker } from "./mod.ts";
 *
 * const nats = { servers: "127.0.0.1:4222" };
 * const cnm = await createController({ nats, hostId: "h1" });
 * const docker = await serveDocker(cnm, { path: "/run/cnm/docker.sock", nats });
 * // DOCKER_HOST=unix:///run/cnm/docker.sock docker network ls
 * await docker.close();
 * await cnm.close();
 * ```
 *
 * @module
 */

import { InvalidArgumentError } from "../../errors.ts";
import type { NatsTarget } from "../../journal/watch.ts";
import { connect, disconnect } from "./_connect.ts";
import { createNetwork } from "./_create.ts";
import { createEventSource } from "./_events.ts";
import { createHandler, type RequestLog, type Route } from "./_http.ts";
import type { DockerBackend } from "./_lookup.ts";
import { deleteNetwork, inspectNetwork, listNetworks, pruneNetworks } from "./_networks.ts";
import { ping, version } from "./_system.ts";

export type { DockerBackend } from "./_lookup.ts";
export { API_VERSION } from "./_http.ts";
export { formatInspect, isPredefined, networkResource, rfc3339Nano } from "./network_resource.ts";
export type { EndpointResource, NetworkResource, ResourceContext } from "./network_resource.ts";

/** Options of {@link serveDocker}. */
export interface DockerServeOptions {
  /** Path of the unix socket. A stale socket there (nobody answering) is replaced. */
  path: string;
  /**
   * Permissions of the socket, `0` to `0o777`. Default `0o660`: its owner (root) and group
   * may use it — as with Docker's socket, whoever may connect may manage the host's networks.
   */
  mode?: number;
  /**
   * Group id to give the socket (like Docker's `docker` group), `0` to `4294967294`.
   * Default: the process's.
   */
  group?: number;
  /**
   * The journal's NATS, for `GET /events` with `since`/`until` (the whole history). Without
   * it `/events` streams live events only.
   */
  nats?: NatsTarget;
  /** Stream of the journal. Default: the controller's, else `CNM`. */
  stream?: string;
  /** Subject prefix of the journal. Default: the controller's, else `cnm`. */
  prefix?: string;
  /** Called after each answer with method, path, status and milliseconds. */
  onRequest?: RequestLog;
}

/** A running Docker API socket. */
export interface DockerServer {
  /** The socket's path. */
  readonly path: string;
  /** Ends event streams, waits for other requests, stops listening, removes the socket. */
  close(): Promise<void>;
}

async function clearStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  if (!info.isSocket) throw new Error(`${path} exists and is not a socket`);
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
  } catch {
    await Deno.remove(path); // nobody answers: a socket left by a server that died
    return;
  }
  throw new Error(`${path} is in use by a running server`);
}

/** Checks `mode` and `group` before anything is made. */
function checkAccess(options: DockerServeOptions): void {
  const { mode, group } = options;
  const bad = (field: string, problem: string, value: string) =>
    new InvalidArgumentError(
      `invalid Docker socket options: ${field}: must be ${problem}, got ${value}`,
    );
  // 4294967295 is (gid_t)-1, which chown reads as "leave the group unchanged".
  if (group !== undefined && !(Number.isInteger(group) && group >= 0 && group <= 4294967294)) {
    throw bad("group", "a group id (an integer from 0 to 4294967294)", String(group));
  }
  if (mode !== undefined && !(Number.isInteger(mode) && mode >= 0 && mode <= 0o777)) {
    const shown = Number.isInteger(mode) && mode >= 0 ? `0o${mode.toString(8)}` : String(mode);
    throw bad("mode", "permission bits from 0 to 0o777", shown);
  }
}

/** Gives the socket its mode and group; a refusal (EPERM: not root, not in the group) says which. */
async function setAccess(path: string, mode: number, group: number | undefined): Promise<void> {
  try {
    await Deno.chmod(path, mode);
  } catch (err) {
    throw new Error(
      `cannot set the Docker socket ${path} to mode 0o${mode.toString(8)}: ${
        (err as Error).message
      }`,
      { cause: err },
    );
  }
  if (group === undefined) return;
  try {
    await Deno.chown(path, null, group);
  } catch (err) {
    throw new Error(
      `cannot give the Docker socket ${path} group ${group}: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * Serves the Docker Engine API for `controller`'s networks on a unix socket.
 *
 * @throws {InvalidArgumentError} for a `mode` or `group` that is not one; nothing is made.
 * @throws {Error} when the path is taken (a live socket, or not a socket), or when the
 *   socket cannot be given its mode or group (it is removed again, nothing keeps running).
 * @example
 * ```ts ignore
 * const docker = await serveDocker(cnm, { path: "/tmp/cnm.sock", nats });
 * await docker.close();
 * ```
 */
export async function serveDocker(
  controller: DockerBackend & { readonly stream?: string; readonly prefix?: string },
  options: DockerServeOptions,
): Promise<DockerServer> {
  checkAccess(options);
  const events = createEventSource(controller, {
    ...(options.nats ? { nats: options.nats } : {}),
    stream: options.stream ?? controller.stream ?? "CNM",
    prefix: options.prefix ?? controller.prefix ?? "cnm",
  });
  const c = controller;
  const routes: Route[] = [
    { method: "HEAD", pattern: "/_ping", handler: (x) => ping(x.req) },
    { method: "GET", pattern: "/_ping", handler: (x) => ping(x.req) },
    { method: "GET", pattern: "/version", handler: () => version() },
    { method: "GET", pattern: "/events", handler: (x) => events.handle(x) },
    { method: "GET", pattern: "/networks", handler: (x) => listNetworks(c, x) },
    { method: "GET", pattern: "/networks/", handler: (x) => listNetworks(c, x) },
    { method: "POST", pattern: "/networks/create", handler: (x) => createNetwork(c, x) },
    {
      method: "POST",
      pattern: "/networks/prune",
      handler: (x) => pruneNetworks(c, x, (names) => events.pruned(names)),
    },
    { method: "POST", pattern: "/networks/:id/connect", handler: (x) => connect(c, x) },
    { method: "POST", pattern: "/networks/:id/disconnect", handler: (x) => disconnect(c, x) },
    { method: "GET", pattern: "/networks/:id", handler: (x) => inspectNetwork(c, x) },
    { method: "DELETE", pattern: "/networks/:id", handler: (x) => deleteNetwork(c, x) },
  ];
  await clearStaleSocket(options.path);
  const handler = createHandler(routes, options.onRequest);
  const listening = Promise.withResolvers<void>();
  const server = Deno.serve({
    path: options.path,
    onListen: () => listening.resolve(),
    onError: () => new Response(null, { status: 500 }),
  }, handler);
  await listening.promise;
  try {
    await setAccess(options.path, options.mode ?? 0o660, options.group);
  } catch (err) {
    await events.closeAll();
    await server.shutdown();
    await Deno.remove(options.path).catch(() => {});
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    path: options.path,
    close() {
      closing ??= (async () => {
        const ended = events.closeAll();
        await server.shutdown();
        await ended;
        await Deno.remove(options.path).catch(() => {});
      })();
      return closing;
    },
  };
}
