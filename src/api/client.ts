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
import { borrowConnection, type NatsTarget } from "../journal/watch.ts";
import type { ReconcileReport } from "../controller/drift.ts";

const Ref = z.string({ error: "must be a string" }).min(1, { error: "must not be empty" });
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
  network: z.strictObject({ network: Ref }),
  networks: z.strictObject({}),
  endpoint: z.strictObject({ endpoint: Ref }),
  endpoints: z.strictObject({ network: Ref.optional() }),
  sandbox: z.strictObject({ sandbox: Ref }),
  sandboxes: z.strictObject({}),
  reconcile: z.strictObject({ dryRun: z.boolean().optional() }),
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
  network: NetworkInfoSchema.nullable(),
  networks: z.array(NetworkInfoSchema),
  endpoint: EndpointInfoSchema.nullable(),
  endpoints: z.array(EndpointInfoSchema),
  sandbox: SandboxInfoSchema.nullable(),
  sandboxes: z.array(SandboxInfoSchema),
  reconcile: ReconcileSchema,
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
  network(idOrName: string): Promise<NetworkInfo | undefined>;
  networks(): Promise<NetworkInfo[]>;
  endpoint(id: string): Promise<EndpointInfo | undefined>;
  endpoints(filter?: { network?: string }): Promise<EndpointInfo[]>;
  sandbox(idOrName: string): Promise<SandboxInfo | undefined>;
  sandboxes(): Promise<SandboxInfo[]>;
  /** Compares the journal's view with the kernel and, unless `dryRun`, repairs it. */
  reconcile(options?: { dryRun?: boolean }): Promise<ReconcileReport>;
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
  /** Milliseconds to wait for a reply. Default 35000 (a command may wait 30 s for its outcome). */
  timeoutMs?: number;
}

/**
 * Connects to a host's controller over NATS.
 *
 * @throws {NatsUnreachableError} when NATS cannot be reached.
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
    const subject = apiSubject(prefix, hostId, verb);
    let reply;
    try {
      reply = await nc.request(subject, enc.encode(JSON.stringify(body)), { timeout });
    } catch (err) {
      const e = err as { name?: string; isNoResponders?: () => boolean; cause?: { name?: string } };
      if (e.isNoResponders?.() || e.cause?.name === "NoResponders" || e.name === "NoResponders") {
        throw new NoControllerError(
          `no controller running for host ${hostId} (start one with \`cnm serve\`)`,
          { cause: err },
        );
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
    network: async (network) => orUndefined<NetworkInfo>(await call("network", { network })),
    networks: async () => await call("networks", {}) as NetworkInfo[],
    endpoint: async (endpoint) => orUndefined<EndpointInfo>(await call("endpoint", { endpoint })),
    endpoints: async (f) =>
      await call("endpoints", f?.network ? { network: f.network } : {}) as EndpointInfo[],
    sandbox: async (sandbox) => orUndefined<SandboxInfo>(await call("sandbox", { sandbox })),
    sandboxes: async () => await call("sandboxes", {}) as SandboxInfo[],
    reconcile: async (o) =>
      await call(
        "reconcile",
        o?.dryRun !== undefined ? { dryRun: o.dryRun } : {},
      ) as ReconcileReport,
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
