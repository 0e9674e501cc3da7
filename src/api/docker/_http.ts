/**
 * The HTTP side of the Docker API: version prefixes (`/v1.24`…`/v1.41` and none), dockerd's
 * headers, its answers for unknown routes and refused versions, and a small route table.
 * Handlers return a {@link Reply} or throw; this module turns both into `Response`s.
 *
 * @module
 */

import { DockerApiError, toDockerError } from "./_errors.ts";
import { goJson, parseBody } from "./_json.ts";

/** The API version cnm answers (dockerd 20.10's). */
export const API_VERSION = "1.41";
/** The oldest version accepted in a path prefix. */
export const MIN_API_VERSION = "1.24";
/** cnm's version, in `Server` and `/version`. */
export const CNM_VERSION = "0.1.0";

/** Headers dockerd sets on every routed answer. */
export function baseHeaders(): Headers {
  return new Headers({
    "Api-Version": API_VERSION,
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Server": `cnm/${CNM_VERSION} (linux)`,
  });
}

/** What a handler answers. */
export type Reply =
  | { json: unknown; status?: number }
  | { empty: true; status?: number }
  | { stream: ReadableStream<Uint8Array> }
  | { response: Response };

/** One request as handlers see it. */
export interface RequestContext {
  req: Request;
  url: URL;
  /** Negotiated version: the path's, or {@link API_VERSION} for unversioned paths. */
  version: string;
  /** Path parameters (`id`). */
  params: Record<string, string>;
}

/** A route: method, path pattern (`:id` matches anything, slashes included), handler. */
export interface Route {
  method: string;
  pattern: string;
  handler: (ctx: RequestContext) => Promise<Reply> | Reply;
}

/** Compares dotted versions numerically (`1.9` < `1.24`). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d < 0 ? -1 : 1;
  }
  return 0;
}

function compile(pattern: string): RegExp {
  const re = pattern.split("/").map((part) => (part === ":id" ? "(?<id>.*)" : escape(part)));
  return new RegExp(`^${re.join("/")}$`);
}
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const pageNotFound = () =>
  new Response(goJson({ message: "page not found" }), {
    status: 404,
    headers: { "Content-Type": "application/json" },
  });

/** An error answer with dockerd's headers (`{"message": …}` or text/plain). */
export function errorResponse(err: DockerApiError, headers = baseHeaders()): Response {
  if (err.contentType === "text/plain") {
    headers.set("Content-Type", "text/plain; charset=utf-8");
    return new Response(err.message + "\n", { status: err.status, headers });
  }
  headers.set("Content-Type", "application/json");
  return new Response(goJson({ message: err.message }), { status: err.status, headers });
}

function toResponse(reply: Reply): Response {
  if ("response" in reply) return reply.response;
  const headers = baseHeaders();
  if ("stream" in reply) {
    headers.set("Content-Type", "application/json");
    return new Response(reply.stream, { status: 200, headers });
  }
  if ("empty" in reply) return new Response(null, { status: reply.status ?? 200, headers });
  headers.set("Content-Type", "application/json");
  return new Response(goJson(reply.json), { status: reply.status ?? 200, headers });
}

/** Called after each answer (for logs). */
export type RequestLog = (method: string, path: string, status: number, ms: number) => void;

/**
 * Builds the request handler for `routes`: strips and checks the version prefix, matches
 * the route, runs it, and answers errors as dockerd does.
 */
export function createHandler(
  routes: readonly Route[],
  log?: RequestLog,
): (req: Request) => Promise<Response> {
  const compiled = routes.map((r) => ({ ...r, re: compile(r.pattern) }));
  return async (req) => {
    const started = performance.now();
    const url = new URL(req.url);
    const response = await route(req, url).catch((err) => errorResponse(toDockerError(err)));
    log?.(req.method, url.pathname + url.search, response.status, performance.now() - started);
    return response;
  };

  async function route(req: Request, url: URL): Promise<Response> {
    let path = url.pathname;
    let version = API_VERSION;
    const prefix = /^\/v([0-9.]+)(\/.*)$/.exec(path);
    if (prefix) {
      version = prefix[1];
      path = prefix[2];
      const refused = checkVersion(version);
      if (refused) return refused;
    }
    for (const r of compiled) {
      if (r.method !== req.method) continue;
      const m = r.re.exec(path);
      if (!m) continue;
      const params = { ...(m.groups ?? {}) };
      if (params.id !== undefined) params.id = decodeURIComponent(params.id);
      try {
        return toResponse(await r.handler({ req, url, version, params }));
      } catch (err) {
        return errorResponse(toDockerError(err));
      }
    }
    return pageNotFound();
  }
}

/** dockerd's answer to a version it does not speak (no `Docker-Experimental` header). */
function checkVersion(version: string): Response | undefined {
  const headers = baseHeaders();
  headers.delete("Docker-Experimental");
  if (compareVersions(version, API_VERSION) > 0) {
    return errorResponse(
      new DockerApiError(
        400,
        `client version ${version} is too new. Maximum supported API version is ${API_VERSION}`,
      ),
      headers,
    );
  }
  if (compareVersions(version, MIN_API_VERSION) < 0) {
    return errorResponse(
      new DockerApiError(
        400,
        `client version ${version} is too old. Minimum supported API version is ` +
          `${MIN_API_VERSION}, please upgrade your client to a newer version`,
        "text/plain",
      ),
      headers,
    );
  }
  return undefined;
}

/**
 * Reads a JSON request body as dockerd does: a body needs `Content-Type: application/json`
 * (parameters allowed); no body at all is `got EOF while reading request body`.
 *
 * @throws {DockerApiError} 400.
 */
export async function readJsonBody(req: Request): Promise<unknown> {
  const text = await req.text();
  const ct = req.headers.get("Content-Type") ?? "";
  if (text.length > 0 || ct !== "") {
    const media = ct.split(";")[0].trim().toLowerCase();
    if (media !== "application/json") {
      throw new DockerApiError(400, `Content-Type specified (${ct}) must be 'application/json'`);
    }
  }
  return parseBody(text);
}
