/**
 * Serves a controller over NATS request/reply (the API in `src/api/client.ts`). One subscription
 * on `<prefix>-api.<hostId>.*` in a queue group, so a second server for the same host
 * never runs a command twice. Before subscribing it pings the host's API: when anything
 * answers (another controller for the host, on another stream, or an impostor) it refuses to
 * start. Requests are handled concurrently; the controller's own locks order them per object.
 *
 * @module
 */

import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import type { Controller } from "../controller/mod.ts";
import { ConflictError, InvalidArgumentError, toErrorRecord } from "../errors.ts";
import { API_VERBS, ApiRequests, apiSubject, type ApiVerb, parseRequest } from "./client.ts";
import { borrowConnection, type NatsTarget } from "../journal/watch.ts";

/** Options of {@link serve}. */
export interface ServeOptions {
  /** Connect options (a connection of its own) or a connection to borrow. */
  nats: NatsTarget;
  /** Subject prefix. Default: the controller's. */
  prefix?: string;
  /** Host id in the subjects. Default: the controller's. */
  hostId?: string;
  /**
   * Called after each request with verb, milliseconds, the error if any, and the object it
   * named (`web`, `endpoint 3f2a…`, the new object's name), if any.
   */
  onRequest?: (verb: string, ms: number, error?: Error, object?: string) => void;
  /** Called when the server's own connection disconnects or reconnects. */
  onStatus?: (status: "disconnect" | "reconnect", server: string) => void;
  /** How long the start-up ping waits for another server's answer, in ms. Default 500. */
  probeTimeoutMs?: number;
}

/** A running server. */
export interface Server {
  /** The wildcard subject served. */
  readonly subject: string;
  /** Waits for in-flight requests, stops serving, closes its own connection. */
  close(): Promise<void>;
}

type Handler = (c: Controller, r: any) => unknown;

const handlers: Record<ApiVerb, Handler> = {
  ping: (c) => ({ hostId: c.hostId, stream: c.stream, prefix: c.prefix }),
  createNetwork: (c, r) => c.createNetwork(r.options),
  deleteNetwork: (c, r) => c.deleteNetwork(r.network),
  createSandbox: (c, r) => c.createSandbox(r.options),
  deleteSandbox: (c, r) => c.deleteSandbox(r.sandbox),
  createEndpoint: (c, r) => c.createEndpoint(r.network, r.options),
  deleteEndpoint: (c, r) => c.deleteEndpoint(r.endpoint, r.options),
  join: (c, r) => c.join(r.endpoint, r.sandbox),
  leave: (c, r) => c.leave(r.endpoint, r.sandbox),
  configureDriver: (c, r) => c.configureDriver(r.driver, r.options),
  network: (c, r) => c.network(r.network),
  networks: (c) => c.networks(),
  endpoint: (c, r) => c.endpoint(r.endpoint),
  endpoints: (c, r) => c.endpoints(r.network ? { network: r.network } : {}),
  sandbox: (c, r) => c.sandbox(r.sandbox),
  sandboxes: (c) => c.sandboxes(),
  networkPeers: (c, r) => c.networkPeers(r.network),
  reconcile: (c, r) => c.reconcile(r.dryRun === undefined ? {} : { dryRun: r.dryRun }),
};

const enc = new TextEncoder();

/**
 * Pings `<prefix>-api.<hostId>.ping` and says who answers: `undefined` when nobody does
 * (no subscriber, or only silent ones such as `nats sub '>'`), else what the answer says.
 *
 * @example
 * ```ts ignore
 * const other = await probeResponder(nc, "cnm", "h1");
 * if (other) console.log(`h1 is already served: ${other}`);
 * ```
 */
export async function probeResponder(
  nc: NatsConnection,
  prefix: string,
  hostId: string,
  timeoutMs = 500,
): Promise<string | undefined> {
  let text: string;
  try {
    const reply = await nc.request(apiSubject(prefix, hostId, "ping"), enc.encode("{}"), {
      timeout: timeoutMs,
    });
    text = reply.string();
  } catch {
    return undefined; // no responders, a timeout, or a permission error: nobody answers
  }
  try {
    const r = JSON.parse(text).result;
    if (typeof r?.hostId === "string") {
      return `a server answered ping: host ${r.hostId}, stream ${r.stream}, prefix ${r.prefix}`;
    }
  } catch { /* not our protocol */ }
  return `something answered ping with ${JSON.stringify(text.slice(0, 80))}`;
}

/**
 * Answers the API for `controller` until closed.
 *
 * @throws {NatsUnreachableError} when NATS cannot be reached.
 * @throws {ConflictError} when something already answers for the host.
 * @example
 * ```ts ignore
 * const cnm = await createController({ nats: { servers: "127.0.0.1:4222" }, hostId: "h1" });
 * const server = await serve(cnm, { nats: { servers: "127.0.0.1:4222" } });
 * // … later
 * await server.close();
 * await cnm.close();
 * ```
 */
export async function serve(controller: Controller, options: ServeOptions): Promise<Server> {
  const { nc, release } = await borrowConnection(options.nats);
  const prefix = options.prefix ?? controller.prefix;
  const hostId = options.hostId ?? controller.hostId;
  const subject = apiSubject(prefix, hostId, "*");
  const other = await probeResponder(nc, prefix, hostId, options.probeTimeoutMs);
  if (other) {
    await release();
    throw new ConflictError(
      `host ${hostId} is already served on ${subject} (${other}); stop that server first`,
    );
  }
  const sub = nc.subscribe(subject, { queue: `cnm-api-${hostId}` });
  if (options.onStatus) {
    const onStatus = options.onStatus;
    (async () => {
      for await (const st of nc.status()) {
        if (st.type === "disconnect" || st.type === "reconnect") {
          onStatus(st.type, String((st as { server?: string }).server ?? ""));
        }
      }
    })().catch(() => {});
  }
  const inFlight = new Set<Promise<void>>();
  const loop = (async () => {
    for await (const msg of sub) {
      const p = answer(controller, msg, options).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  })();
  await nc.flush();
  return {
    subject,
    async close() {
      await drain(sub, nc);
      await loop;
      await Promise.allSettled([...inFlight]);
      await release();
    },
  };
}

async function drain(sub: Subscription, nc: NatsConnection): Promise<void> {
  if (nc.isClosed()) return;
  await sub.drain().catch(() => sub.unsubscribe());
}

/** The object a request names, for the log. */
function describeRequest(r: Record<string, unknown>): string | undefined {
  const parts: string[] = [];
  for (const k of ["network", "endpoint", "sandbox"]) {
    if (typeof r[k] === "string") parts.push(`${k} ${r[k]}`);
  }
  const name = (r.options as { name?: unknown } | undefined)?.name;
  if (typeof name === "string") parts.push(`name ${name}`);
  if (r.dryRun === true) parts.push("dry run");
  return parts.length ? parts.join(", ") : undefined;
}

async function answer(controller: Controller, msg: Msg, options: ServeOptions): Promise<void> {
  const verb = msg.subject.slice(msg.subject.lastIndexOf(".") + 1);
  const started = performance.now();
  let reply: unknown;
  let error: Error | undefined;
  let object: string | undefined;
  try {
    if (!(API_VERBS as string[]).includes(verb) || !(verb in ApiRequests)) {
      throw new InvalidArgumentError(
        `unknown verb ${JSON.stringify(verb)} (one of ${API_VERBS.join(", ")})`,
      );
    }
    let body: unknown;
    try {
      body = msg.data.length ? JSON.parse(msg.string()) : {};
    } catch {
      throw new InvalidArgumentError(`invalid ${verb} request: not JSON`);
    }
    const request = parseRequest(verb as ApiVerb, body);
    object = describeRequest(request as Record<string, unknown>);
    const result = await handlers[verb as ApiVerb](controller, request);
    reply = { result: result ?? null };
  } catch (err) {
    error = err as Error;
    reply = { error: toErrorRecord(err) };
  }
  options.onRequest?.(verb, performance.now() - started, error, object);
  if (msg.reply) {
    try {
      msg.respond(enc.encode(JSON.stringify(reply)));
    } catch { /* the requester's connection is gone */ }
  }
}
