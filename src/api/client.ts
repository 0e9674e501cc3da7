/**
 * The controller's NATS API: request/reply on `<prefix>-api.<hostId>.<verb>`, one verb per
 * controller method. (Not `<prefix>.api.…`: the journal's stream captures `<prefix>.>`, and
 * JetStream would store every request and answer it with a PubAck.) Requests and replies are JSON validated with zod on both sides; a
 * failure travels as `{ error: { name, code, message } }` and is rebuilt into the same
 * typed error on the client.
 *
 * @module
 */

import { z } from "zod";
import { formatIssues } from "../journal/events.ts";
import {
  type CnmError,
  ForbiddenError,
  fromErrorRecord,
  InvalidArgumentError,
  UnavailableError,
} from "../errors.ts";
import type { EndpointInfo, NetworkInfo, SandboxInfo } from "../info.ts";
import type {
  CreateEndpointOptions,
  CreateNetworkOptions,
  CreateSandboxOptions,
  DeleteEndpointOptions,
} from "../controller/inputs.ts";
import type { ConfigureDriverResult } from "../controller/driver_config.ts";
import { borrowConnection, type NatsTarget } from "../journal/watch.ts";
import type { ReconcileReport } from "../controller/drift.ts";
import type { PeerState } from "../../drivers/overlay/mod.ts";
import { noControllerMessage, readLease } from "../controller/lease.ts";
import { checkLimits, LIMITS } from "../controller/limits.ts";

const Ref = z.string({ error: "must be a string" }).min(1, { error: "must not be empty" })
  .max(LIMITS.name, { error: `must be at most ${LIMITS.name} characters` });
/** What each verb's `options` are called in errors (checked against the limits before sending). */
const OPTIONS_OF: Partial<Record<string, string>> = {
  createNetwork: "network options",
  createSandbox: "sandbox options",
  createEndpoint: "endpoint options",
};
const Options = z.record(z.string(), z.unknown());

/** Request schema of every verb (the controller parses the `options` contents itself). */
export const ApiRequests = {
  ping: z.strictObject({}),
  createNetwork: z.strictObject({ options: Options }),
  deleteNetwork: z.strictObject({ network: Ref }),
  createSandbox: z.strictObject({ options: Options }),
  deleteSandbox: z.strictObject({ sandbox: Ref }),
  createEndpoint: z.strictObject({ network: Ref, options: Options }),
  deleteEndpoint: z.strictObject({ endpoint: Ref, options: Options.optional() }),
  join: z.strictObject({ endpoint: Ref, sandbox: Ref }),
  leave: z.strictObject({ endpoint: Ref, sandbox: Ref }),
  configureDriver: z.strictObject({ driver: Ref, options: Options }),
  network: z.strictObject({ network: Ref }),
  networks: z.strictObject({}),
  endpoint: z.strictObject({ endpoint: Ref }),
  endpoints: z.strictObject({ network: Ref.optional() }),
  sandbox: z.strictObject({ sandbox: Ref }),
  sandboxes: z.strictObject({}),
  reconcile: z.strictObject({ dryRun: z.boolean().optional() }),
  networkPeers: z.strictObject({ network: Ref }),
} as const;

/** One of the API's verbs. */
export type ApiVerb = keyof typeof ApiRequests;
/** Every verb, in documentation order. */
export const API_VERBS = Object.keys(ApiRequests) as ApiVerb[];

const StringMap = z.record(z.string(), z.string());
const ErrorRecordSchema = z.object({ name: z.string(), code: z.string(), message: z.string() });
const NetworkInfoSchema = z.object({
  id: z.string(),
  name: z.string(),
  driver: z.string(),
  state: z.string(),
  labels: StringMap,
  options: StringMap,
}).loose();
const EndpointInfoSchema = z.object({
  id: z.string(),
  name: z.string(),
  networkId: z.string(),
  sandboxId: z.string().nullable(),
  state: z.string(),
}).loose();
const SandboxInfoSchema = z.object({
  id: z.string(),
  name: z.string(),
  key: z.string(),
  state: z.string(),
  endpointIds: z.array(z.string()),
}).loose();
const ReconcileSchema = z.object({
  dryRun: z.boolean(),
  findings: z.array(
    z.object({ kind: z.string(), resource: z.string(), repaired: z.boolean() }).loose(),
  ),
  ms: z.number(),
}).loose();
const PingSchema = z.object({ hostId: z.string(), stream: z.string(), prefix: z.string() });
const ConfigureDriverSchema = z.object({
  driver: z.string(),
  host: z.string(),
  config: z.record(z.string(), z.unknown()),
  changed: z.record(z.string(), z.object({ from: z.unknown(), to: z.unknown() }).loose()),
  warnings: z.array(z.string()),
  journaled: z.boolean(),
  seq: z.number(),
}).loose();

/** Result schema of every verb (`null` for commands that return nothing or lookups that miss). */
export const ApiResults: Record<ApiVerb, z.ZodType> = {
  ping: PingSchema,
  createNetwork: NetworkInfoSchema,
  deleteNetwork: z.null(),
  createSandbox: SandboxInfoSchema,
  deleteSandbox: z.null(),
  createEndpoint: EndpointInfoSchema,
  deleteEndpoint: z.null(),
  join: EndpointInfoSchema,
  leave: z.null(),
  configureDriver: ConfigureDriverSchema,
  network: NetworkInfoSchema.nullable(),
  networks: z.array(NetworkInfoSchema),
  endpoint: EndpointInfoSchema.nullable(),
  endpoints: z.array(EndpointInfoSchema),
  sandbox: SandboxInfoSchema.nullable(),
  sandboxes: z.array(SandboxInfoSchema),
  reconcile: ReconcileSchema,
  networkPeers: z.object({ networkId: z.string() }).loose().nullable(),
};

/** A reply: exactly one of `result` and `error`. */
export const ReplySchema = z.union([
  z.strictObject({ result: z.unknown() }),
  z.strictObject({ error: ErrorRecordSchema }),
]);

/** Subject of one verb of one host's controller: `<prefix>-api.<hostId>.<verb>`. */
export function apiSubject(prefix: string, hostId: string, verb: string): string {
  return `${prefix}-api.${hostId}.${verb}`;
}

/**
 * Parses a verb's request.
 *
 * @throws {InvalidArgumentError} naming every offending field.
 */
export function parseRequest<V extends ApiVerb>(
  verb: V,
  value: unknown,
): z.output<typeof ApiRequests[V]> {
  const r = ApiRequests[verb].safeParse(value);
  if (!r.success) {
    throw new InvalidArgumentError(`invalid ${verb} request: ${formatIssues(r.error)}`);
  }
  return r.data as z.output<typeof ApiRequests[V]>;
}

/** Nobody answers on a host's API subjects (the CLI exits with 4). */
export class NoControllerError extends UnavailableError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "NoControllerError";
  }
}

/** What `ping` answers. */
export type PingResult = z.infer<typeof PingSchema>;

/** A remote controller: the controller's methods, over NATS, all asynchronous. */
export interface ApiClient {
  readonly hostId: string;
  ping(): Promise<PingResult>;
  createNetwork(options: CreateNetworkOptions): Promise<NetworkInfo>;
  deleteNetwork(idOrName: string): Promise<void>;
  createSandbox(options: CreateSandboxOptions): Promise<SandboxInfo>;
  deleteSandbox(idOrName: string): Promise<void>;
  createEndpoint(network: string, options: CreateEndpointOptions): Promise<EndpointInfo>;
  deleteEndpoint(endpointId: string, options?: DeleteEndpointOptions): Promise<void>;
  join(endpointId: string, sandbox: string): Promise<EndpointInfo>;
  leave(endpointId: string, sandbox: string): Promise<void>;
  configureDriver(name: string, options: Record<string, unknown>): Promise<ConfigureDriverResult>;
  network(idOrName: string): Promise<NetworkInfo | undefined>;
  networks(): Promise<NetworkInfo[]>;
  endpoint(id: string): Promise<EndpointInfo | undefined>;
  endpoints(filter?: { network?: string }): Promise<EndpointInfo[]>;
  sandbox(idOrName: string): Promise<SandboxInfo | undefined>;
  sandboxes(): Promise<SandboxInfo[]>;
  /** Compares the journal with the kernel and, unless `dryRun`, repairs (journaled). */
  reconcile(options?: { dryRun?: boolean }): Promise<ReconcileReport>;
  /** The peer entries this host programmed for a global network (see the Controller's). */
  networkPeers(network: string): Promise<PeerState | undefined>;
  /** Closes the connection the client opened (a borrowed one stays open). */
  close(): Promise<void>;
}

/** Options of {@link createApiClient}. */
export interface ApiClientOptions {
  /** Connect options (own connection) or a connection to borrow. */
  nats: NatsTarget;
  /** Subject prefix. Default `cnm`. */
  prefix?: string;
  /** The host whose controller answers. Default: this machine's hostname. */
  hostId?: string;
  /**
   * The controller's stream. Default `CNM`. Only read when nobody answers, to say why from
   * the host's lease (a controller starting, or a dead one whose lease has not lapsed yet).
   */
  stream?: string;
  /** Milliseconds to wait for a reply. Default 35000 (a command may wait 30 s for its outcome). */
  timeoutMs?: number;
}

/**
 * Connects to a host's controller over NATS.
 *
 * @throws {NatsUnreachableError} when NATS cannot be reached. Calls throw
 *   {@link NoControllerError} when no controller answers, and `ForbiddenError` when NATS does
 *   not let the user publish the request.
 * @example
 * ```ts ignore
 * const api = await createApiClient({ nats: { servers: "127.0.0.1:4222" }, hostId: "h1" });
 * const net = await api.createNetwork({ name: "web", driver: "bridge" });
 * await api.close();
 * ```
 */
export async function createApiClient(options: ApiClientOptions): Promise<ApiClient> {
  const { nc, release } = await borrowConnection(options.nats);
  const prefix = options.prefix ?? "cnm";
  const hostId = options.hostId ?? Deno.hostname();
  const timeout = options.timeoutMs ?? 35_000;
  const enc = new TextEncoder();
  async function call<V extends ApiVerb>(verb: V, request: z.input<typeof ApiRequests[V]>) {
    const body = parseRequest(verb, request);
    const what = OPTIONS_OF[verb];
    if (what) checkLimits((body as { options?: unknown }).options, what);
    const payload = enc.encode(JSON.stringify(body));
    const max = nc.info?.max_payload;
    if (max && payload.length > max) {
      throw new InvalidArgumentError(
        `invalid ${verb} request: ${payload.length} bytes, more than the NATS server's ` +
          `max_payload (${max})`,
      );
    }
    const subject = apiSubject(prefix, hostId, verb);
    let reply;
    try {
      reply = await nc.request(subject, payload, { timeout });
    } catch (err) {
      const e = err as { name?: string; isNoResponders?: () => boolean; cause?: { name?: string } };
      if (e.name === "PermissionViolationError" || e.cause?.name === "PermissionViolationError") {
        throw new ForbiddenError(
          `${verb} on host ${hostId}: NATS does not let this user publish to ${subject} ` +
            "(see docs/nats-permissions.conf)",
          { cause: err },
        );
      }
      if (e.isNoResponders?.() || e.cause?.name === "NoResponders" || e.name === "NoResponders") {
        const lease = await readLease(nc, { stream: options.stream ?? "CNM", prefix, hostId })
          .catch(() => undefined);
        throw new NoControllerError(noControllerMessage(hostId, lease), { cause: err });
      }
      throw new UnavailableError(
        `${verb} on host ${hostId} got no reply: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    return decodeReply(verb, reply.string());
  }
  const orUndefined = <T>(v: unknown) => (v === null ? undefined : v as T);
  return {
    hostId,
    ping: async () => await call("ping", {}) as PingResult,
    createNetwork: async (o) => await call("createNetwork", { options: o }) as NetworkInfo,
    deleteNetwork: async (network) => void await call("deleteNetwork", { network }),
    createSandbox: async (o) => await call("createSandbox", { options: o }) as SandboxInfo,
    deleteSandbox: async (sandbox) => void await call("deleteSandbox", { sandbox }),
    createEndpoint: async (network, o) =>
      await call("createEndpoint", { network, options: o }) as EndpointInfo,
    deleteEndpoint: async (endpoint, o) =>
      void await call("deleteEndpoint", { endpoint, ...(o ? { options: o } : {}) }),
    join: async (endpoint, sandbox) => await call("join", { endpoint, sandbox }) as EndpointInfo,
    leave: async (endpoint, sandbox) => void await call("leave", { endpoint, sandbox }),
    configureDriver: async (driver, o) =>
      await call("configureDriver", { driver, options: o }) as ConfigureDriverResult,
    network: async (network) => orUndefined<NetworkInfo>(await call("network", { network })),
    networks: async () => await call("networks", {}) as NetworkInfo[],
    networkPeers: async (network) =>
      orUndefined<PeerState>(await call("networkPeers", { network })),
    reconcile: async (o) =>
      await call(
        "reconcile",
        o?.dryRun === undefined ? {} : { dryRun: o.dryRun },
      ) as ReconcileReport,
    endpoint: async (endpoint) => orUndefined<EndpointInfo>(await call("endpoint", { endpoint })),
    endpoints: async (f) =>
      await call("endpoints", f?.network ? { network: f.network } : {}) as EndpointInfo[],
    sandbox: async (sandbox) => orUndefined<SandboxInfo>(await call("sandbox", { sandbox })),
    sandboxes: async () => await call("sandboxes", {}) as SandboxInfo[],
    close: release,
  };
}

/**
 * Validates a reply and returns its result, or throws the typed error it carries.
 *
 * @throws {CnmError} the controller's error, rebuilt by class name.
 * @throws {UnavailableError} when the reply does not match the contract.
 */
export function decodeReply(verb: ApiVerb, text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UnavailableError(`${verb}: the controller's reply is not JSON`, { cause: err });
  }
  const reply = ReplySchema.safeParse(value);
  if (!reply.success) {
    throw new UnavailableError(
      `${verb}: invalid reply: ${formatIssues(reply.error)}: ${text.slice(0, 200)}`,
    );
  }
  if ("error" in reply.data) throw fromErrorRecord(reply.data.error) as CnmError;
  const result = ApiResults[verb].safeParse(reply.data.result);
  if (!result.success) {
    throw new UnavailableError(`${verb}: invalid result: ${formatIssues(result.error, "result")}`);
  }
  return result.data;
}
