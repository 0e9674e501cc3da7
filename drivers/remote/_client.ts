/**
 * The HTTP client of Docker's plugin protocol, on the wire as Docker's (moby pkg/plugins):
 * `POST /<Interface>.<Method> HTTP/1.1` in origin form (not `POST http://plugin/… `, which
 * Deno's fetch over a unix socket sends and which servers other than Go's refuse), the header
 * `Accept: application/vnd.docker.plugins.v1.2+json`, a JSON body with its `Content-Length`
 * (and `Content-Type: application/json`, which Docker omits and some frameworks need), an empty
 * `Host` over a unix socket as Go sends it; over a unix socket or TCP (TLS for `https://`
 * addresses). It uses `node:http`, which writes exactly that. Connection failures are retried with backoff for a bounded time (a
 * plugin may start after the controller, as in Docker); every call has a timeout so a hanging
 * plugin cannot hang the controller. Answers are validated with zod: the plugin is outside
 * our process and its answers are input like any other.
 *
 * @module
 */

import http from "node:http";
import https from "node:https";
import { rootCertificates } from "node:tls";
import { z } from "zod";
import { DriverError } from "../../src/errors.ts";
import { formatIssues } from "../../src/journal/events.ts";

/** The `Accept` header Docker sends to plugins. */
export const PLUGIN_MIME = "application/vnd.docker.plugins.v1.2+json";

/** TLS settings of a `.json` plugin spec (Docker's `TLSConfig`), files already read. */
export interface PluginTls {
  /** Docker's `InsecureSkipVerify`: do not verify the plugin's certificate. */
  insecureSkipVerify: boolean;
  /** PEM of `CAFile`. */
  caCert?: string;
  /** PEM of `CertFile` (client certificate). */
  cert?: string;
  /** PEM of `KeyFile`. */
  key?: string;
}

/** Where a plugin listens: what discovery found. */
export interface PluginAddress {
  /** Plugin name (the spec file's name without extension). */
  name: string;
  /** `unix:///path.sock`, `tcp://host:port`, `http://…` or `https://…`. */
  addr: string;
  /** TLS settings, used for `https://` addresses (as Docker does). */
  tls?: PluginTls;
}

/** Options of {@link createPluginClient}. */
export interface PluginClientOptions {
  /** How long connection failures are retried, in ms; default 30 000 (Docker's 30 s). */
  retryTimeout?: number;
  /** How long one call may take once connected, in ms; default 30 000. */
  callTimeout?: number;
  /** First backoff delay between connection attempts, in ms (doubles each time); default 100. */
  backoffInitial?: number;
  /** Longest backoff delay, in ms; default 2 000. */
  backoffMax?: number;
}

/** The plugin answered 404: it does not implement the call (fine for optional calls). */
export class NotImplementedError extends DriverError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NotImplementedError";
  }
}

/** Which error field the interface uses: `Err` for network drivers, `Error` for IPAM. */
export type ErrorField = "Err" | "Error";

/** A connection to one plugin. */
export interface PluginClient {
  /** The plugin's name. */
  readonly name: string;
  /** The plugin's address as discovered. */
  readonly addr: string;
  /**
   * Calls `/<method>` with `body`, validates the answer with `schema`.
   * @throws {NotImplementedError} on HTTP 404.
   * @throws {DriverError} `remote: <plugin's message>` when the plugin reports an error, or a
   *   message naming the call (and the field) for timeouts, unreachable plugins, malformed
   *   JSON and wrong field types.
   */
  call<S extends z.ZodType>(
    method: string,
    body: unknown,
    schema: S,
    errorField?: ErrorField,
  ): Promise<z.infer<S>>;
  /** Closes the underlying HTTP client. */
  close(): void;
}

/** Empty answer (`{}`); extra fields are ignored as Docker does. */
export const Empty = z.looseObject({});

/** Where and how to send: the request options every call shares. */
interface Target {
  https: boolean;
  options: http.RequestOptions & https.RequestOptions;
}

function transport(address: PluginAddress): Target {
  const m = /^([a-z]+):\/\/(.*)$/.exec(address.addr);
  if (!m) throw new DriverError(`plugin "${address.name}": invalid address ${address.addr}`);
  const [, scheme, rest] = m;
  // A new connection per call (Connection: close): nothing lingers after close().
  const common = { agent: false as const, method: "POST" };
  if (scheme === "unix") {
    if (!rest.startsWith("/")) {
      throw new DriverError(`plugin "${address.name}": unix socket path must be absolute`);
    }
    // Go sends an empty Host for a unix socket (its path is no host name).
    return { https: false, options: { ...common, socketPath: rest, setHost: false } };
  }
  const host = rest.replace(/\/+$/, "");
  const hp = /^\[?([^\]]*?)\]?(?::(\d+))?$/.exec(host);
  if (!hp || !hp[1]) {
    throw new DriverError(`plugin "${address.name}": invalid address ${address.addr}`);
  }
  const where = { host: hp[1], ...(hp[2] ? { port: Number(hp[2]) } : {}) };
  if (scheme === "tcp" || scheme === "http") {
    return { https: false, options: { ...common, ...where, port: where.port ?? 80 } };
  }
  if (scheme === "https") {
    const tls = address.tls;
    return {
      https: true,
      options: {
        ...common,
        ...where,
        port: where.port ?? 443,
        // As Docker: the CA file is trusted in addition to the system's roots.
        ...(tls?.caCert ? { ca: [...rootCertificates, tls.caCert] } : {}),
        ...(tls?.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
        rejectUnauthorized: !tls?.insecureSkipVerify,
      },
    };
  }
  throw new DriverError(`plugin "${address.name}": unsupported address scheme ${scheme}://`);
}

/** One POST: the status and the body, or the transport's error. */
function request(
  target: Target,
  method: string,
  body: string,
  signal: AbortSignal,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const send = target.https ? https.request : http.request;
    const headers: Record<string, string | number> = {
      ...(target.options.socketPath ? { Host: "" } : {}),
      Accept: PLUGIN_MIME,
      "Content-Type": "application/json",
      "Content-Length": new TextEncoder().encode(body).length,
    };
    const req = send({ ...target.options, path: `/${method}`, headers }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let at = 0;
        for (const c of chunks) all.set(c, (at += c.length) - c.length);
        resolve({ status: res.statusCode ?? 0, text: new TextDecoder().decode(all) });
      });
    });
    const abort = () => req.destroy(new Error("aborted"));
    signal.addEventListener("abort", abort, { once: true });
    req.on("error", reject);
    req.on("close", () => signal.removeEventListener("abort", abort));
    req.end(body);
  });
}

/**
 * True when `err` says the connection could not be made (the only failures retried); a
 * certificate the client rejects will not get better by retrying.
 */
function isConnectFailure(err: unknown): boolean {
  const text = [err, (err as { cause?: unknown })?.cause].map((e) => String(e)).join(" ");
  if (/certificate/i.test(text)) return false;
  const code = String((err as { code?: unknown })?.code ?? "");
  return ["ECONNREFUSED", "ENOENT"].includes(code) ||
    /Connect|connection refused|No such file|ECONNREFUSED|ENOENT|os error 111|os error 2\b/
      .test(text);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Creates a client for the plugin at `address`. The first call connects.
 *
 * @example
 * ```ts ignore
 * const client = createPluginClient({ name: "weave", addr: "unix:///run/docker/plugins/weave.sock" });
 * const { Implements } = await client.call("Plugin.Activate", {}, z.object({ Implements: z.array(z.string()) }));
 * client.close();
 * ```
 */
export function createPluginClient(
  address: PluginAddress,
  options: PluginClientOptions = {},
): PluginClient {
  const retryTimeout = options.retryTimeout ?? 30_000;
  const callTimeout = options.callTimeout ?? 30_000;
  const backoffInitial = options.backoffInitial ?? 100;
  const backoffMax = options.backoffMax ?? 2_000;
  const target = transport(address);
  const who = `plugin "${address.name}"`;

  async function post(method: string, body: string): Promise<{ status: number; text: string }> {
    const started = Date.now();
    let delay = backoffInitial;
    for (let attempt = 1;; attempt++) {
      const signal = AbortSignal.timeout(callTimeout);
      try {
        return await request(target, method, body, signal);
      } catch (err) {
        if (signal.aborted) {
          throw new DriverError(
            `remote: ${method}: ${who} did not answer within ${callTimeout} ms`,
            { cause: err },
          );
        }
        const left = retryTimeout - (Date.now() - started);
        if (!isConnectFailure(err) || left <= 0) {
          const cause = String((err as Error)?.cause ?? (err as Error)?.message ?? err)
            .replace(/^Error: /, "");
          throw new DriverError(
            `remote: ${method}: ${who} at ${address.addr} is unreachable` +
              ` (${attempt} attempt(s) in ${Date.now() - started} ms): ${cause}`,
            { cause: err },
          );
        }
        await sleep(Math.min(delay, left));
        delay = Math.min(delay * 2, backoffMax);
      }
    }
  }

  return {
    name: address.name,
    addr: address.addr,
    async call(method, body, schema, errorField = "Err") {
      const { status, text } = await post(method, JSON.stringify(body ?? {}));
      if (status === 404) {
        throw new NotImplementedError(`remote: ${method}: not implemented by ${who}`);
      }
      let value: unknown;
      try {
        value = text.trim() === "" ? {} : JSON.parse(text);
      } catch (err) {
        const head = text.length > 80 ? `${text.slice(0, 80)}…` : text;
        throw new DriverError(
          `remote: ${method}: ${who} answered malformed JSON (HTTP ${status}): ${head}`,
          { cause: err },
        );
      }
      // Docker accepts the error field in 200 answers and in error statuses alike.
      const message = value && typeof value === "object"
        ? (value as Record<string, unknown>)[errorField]
        : undefined;
      if (typeof message === "string" && message !== "") {
        throw new DriverError(`remote: ${message}`);
      }
      if (status < 200 || status > 299) {
        throw new DriverError(`remote: ${method}: ${who} answered HTTP ${status}: ${text.trim()}`);
      }
      const parsed = schema.safeParse(value);
      if (!parsed.success) {
        throw new DriverError(
          `remote: ${method}: ${who} answered an invalid response: ${
            formatIssues(parsed.error, "response")
          }`,
        );
      }
      return parsed.data;
    },
    close() {
      // Nothing to close: every call has its own connection.
    },
  };
}
