/**
 * A cnm controller answering the Docker API on a unix socket in a temp dir, and the clients
 * the tests drive it with: the real `docker` CLI (with its own `DOCKER_CONFIG`, `TZ=UTC`),
 * raw HTTP/1.1 exchanges, and a Go-`tabwriter` rendering of `docker network ls` tables.
 * Never a Docker daemon: the CLI only talks to cnm's socket.
 *
 * @module
 */

import type { Controller } from "../../mod.ts";
import type { ValidateNetworkOptions } from "../../drivers/driver.ts";
import { type DockerBackend, type DockerServer, serveDocker } from "../../src/api/docker/mod.ts";
import { type CommandOutput, output } from "./command.ts";
import { startEnv, type TestEnv } from "./env.ts";

/**
 * The `docker` client binary: `$CNM_DOCKER_CLI`, else the first `docker` on PATH.
 *
 * @throws {Error} naming how to install it when there is none.
 */
export async function dockerCli(): Promise<string> {
  return (await dockerCliInfo()).cli;
}

/**
 * The `docker` client binary and its major version (28 on this project's machines, 20 when
 * ./run took Debian's). The server's bytes are the same for both; what the client prints
 * around them differs (`--format json`, `exit status 1`, its own not-found wording).
 */
export async function dockerCliInfo(): Promise<{ cli: string; major: number }> {
  const candidate = Deno.env.get("CNM_DOCKER_CLI") ?? "docker";
  try {
    const o = await new Deno.Command(candidate, { args: ["--version"], stdout: "piped" }).output();
    const major = Number(/version (\d+)\./.exec(new TextDecoder().decode(o.stdout))?.[1]);
    if (o.success && major) return { cli: candidate, major };
  } catch { /* not found */ }
  throw new Error(
    "these tests need the docker CLI (client only; ./run's bootstrap installs it from " +
      "Debian's docker.io without its daemon) or CNM_DOCKER_CLI=/path/to/docker",
  );
}

/** What a Docker API test gets. */
export interface DockerEnv {
  env: TestEnv;
  cnm: Controller;
  server: DockerServer;
  /** The socket's path. */
  path: string;
  /** The docker CLI binary. */
  cli: string;
  /** Its major version (see {@link dockerCliInfo}). */
  cliMajor: number;
  /** The second argument of every createNetwork the socket made. */
  createFlags: (ValidateNetworkOptions | undefined)[];
  /** Runs the docker CLI against the socket. */
  docker(...args: string[]): Promise<CommandOutput>;
  /** The environment variables that point the docker CLI at the socket. */
  dockerEnv: Record<string, string>;
  /** One raw HTTP/1.1 exchange on a connection of its own (`Connection: close`). */
  raw(request: string): Promise<RawResponse>;
  cleanup(): Promise<void>;
}

/** A parsed raw answer. */
export interface RawResponse {
  status: number;
  /** Header names lower-cased. */
  headers: Record<string, string>;
  body: string;
}

/** Starts nats-server, a throwaway host, a controller and the Docker socket. */
export async function startDockerEnv(label: string): Promise<DockerEnv> {
  const { cli, major } = await dockerCliInfo();
  const env = await startEnv(label);
  const dir = await Deno.makeTempDir({ prefix: "cnm-docker-" });
  const path = `${dir}/docker.sock`;
  let server: DockerServer | undefined;
  try {
    const cnm = await env.open();
    const createFlags: (ValidateNetworkOptions | undefined)[] = [];
    // The controller as the socket sees it, recording what createNetwork is asked.
    const backend: DockerBackend & { stream: string; prefix: string } = {
      hostId: cnm.hostId,
      stream: cnm.stream,
      prefix: cnm.prefix,
      events$: cnm.events$,
      createNetwork: (o, how) => {
        createFlags.push(how);
        return cnm.createNetwork(o, how);
      },
      deleteNetwork: (n) => cnm.deleteNetwork(n),
      createEndpoint: (n, o) => cnm.createEndpoint(n, o),
      deleteEndpoint: (e, o) => cnm.deleteEndpoint(e, o),
      join: (e, s) => cnm.join(e, s),
      leave: (e, s) => cnm.leave(e, s),
      networks: () => cnm.networks(),
      endpoints: (f) => cnm.endpoints(f),
      sandboxes: () => cnm.sandboxes(),
    };
    server = await serveDocker(backend, { path, nats: { servers: env.nats.url } });
    const dockerEnv = {
      DOCKER_HOST: `unix://${path}`,
      DOCKER_CONFIG: dir,
      DOCKER_CONTEXT: "default",
      DOCKER_CLI_HINTS: "false",
      TZ: "UTC",
    };
    const srv = server;
    return {
      env,
      cnm,
      server: srv,
      path,
      cli,
      cliMajor: major,
      createFlags,
      dockerEnv,
      docker: (...args) => output([cli, ...args], { env: dockerEnv }),
      raw: (request) => rawExchange(path, request),
      async cleanup() {
        const errors: unknown[] = [];
        await srv.close().catch((e) => errors.push(e));
        await env.cleanup().catch((e) => errors.push(e));
        await Deno.remove(dir, { recursive: true }).catch((e) => errors.push(e));
        if (errors.length) throw new AggregateError(errors, "docker test cleanup failed");
      },
    };
  } catch (err) {
    await server?.close().catch(() => {});
    await env.cleanup().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}

/** Sends `request` verbatim on a new unix connection and reads the answer to EOF. */
export async function rawExchange(path: string, request: string): Promise<RawResponse> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await conn.write(new TextEncoder().encode(request));
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = new TextDecoder().decode(
      chunks.reduce((a, c) => new Uint8Array([...a, ...c]), new Uint8Array()),
    );
    const split = text.indexOf("\r\n\r\n");
    const [statusLine, ...lines] = text.slice(0, split).split("\r\n");
    const headers: Record<string, string> = {};
    for (const l of lines) {
      const i = l.indexOf(":");
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    let body = text.slice(split + 4);
    if (headers["transfer-encoding"] === "chunked") body = unchunk(body);
    return { status: Number(statusLine.split(" ")[1]), headers, body };
  } finally {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
}

function unchunk(text: string): string {
  let out = "";
  let rest = text;
  for (;;) {
    const nl = rest.indexOf("\r\n");
    const size = parseInt(rest.slice(0, nl), 16);
    if (!size) return out;
    out += rest.slice(nl + 2, nl + 2 + size);
    rest = rest.slice(nl + 2 + size + 2);
  }
}

/** Go's `sortorder.NaturalLess`, the order `docker network ls` sorts names in. */
export function naturalLess(a: string, b: string): boolean {
  const re = /(\d+|\D+)/g;
  const pa = a.match(re) ?? [], pb = b.match(re) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] === pb[i]) continue;
    const na = /^\d/.test(pa[i]), nb = /^\d/.test(pb[i]);
    if (na && nb && Number(pa[i]) !== Number(pb[i])) return Number(pa[i]) < Number(pb[i]);
    return pa[i] < pb[i];
  }
  return pa.length < pb.length;
}

/** Renders rows as the docker CLI's tabwriter does (min width 10, padding 3). */
export function goTable(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(10, ...rows.map((r) => r[i].length + 3)));
  return rows.map((r) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("") + "\n"
  ).join("");
}
