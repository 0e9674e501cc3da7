/**
 * The wire contract: the event envelope and the event types, as zod schemas. Every event
 * is validated on write and on read. One event per state transition of one object.
 *
 * Subject: `<prefix>.<kind>.<objectId>`. Payload: JSON of {@link CnmEvent}. Headers:
 * `Nats-Msg-Id` (= eventId), `Cnm-Type`, `Cnm-Kind`.
 *
 * @module
 */

import { z } from "zod";

/** Envelope version written by this code. */
export const EVENT_VERSION = 1;

/** Object kinds that have subjects of their own and a state machine. */
export const Kinds = ["network", "endpoint", "sandbox"] as const;
/** One of {@link Kinds}. */
export type Kind = typeof Kinds[number];

/**
 * The kind of driver configurations: subject `<prefix>.driver.<hostId>.<driver>` (objectId
 * `<hostId>.<driver>`), one `driver.configured` event per change, no state machine.
 */
export const DRIVER_KIND = "driver";

const ErrorRecordSchema = z.object({ name: z.string(), code: z.string(), message: z.string() });
const StringMap = z.record(z.string(), z.string());

/** The envelope every event shares. `data` is checked per type by {@link DataSchemas}. */
export const EnvelopeSchema = z.object({
  v: z.number().int().positive(),
  eventId: z.string().min(1),
  kind: z.string().min(1),
  objectId: z.string().min(1),
  type: z.string().regex(/^[a-z]+(\.[a-z]+)+$/),
  from: z.string().nullable(),
  to: z.string().min(1),
  at: z.iso.datetime({ offset: true }),
  host: z.string().min(1),
  data: z.record(z.string(), z.unknown()),
  effectId: z.string().optional(),
  /** eventId of the intent this outcome answers, or of the command that caused it. */
  cause: z.string().optional(),
});

/** A validated event as it travels on the wire. */
export type CnmEvent = z.infer<typeof EnvelopeSchema>;

/** A validated event with the stream sequence it was stored at. */
export type RecordedEvent = CnmEvent & { seq: number };

const IpamConfigSchema = z.object({
  subnet: z.string(),
  ipRange: z.string().optional(),
  gateway: z.string().optional(),
  auxAddresses: StringMap.optional(),
});

/** Decided IPAM facts of a network (filled by drivers that use IPAM). */
const NetworkIpamFacts = z.object({
  driver: z.string(),
  options: StringMap.optional(),
  ipv4: z.array(z.object({
    poolId: z.string(),
    addressSpace: z.string().optional(),
    pool: z.string(),
    subPool: z.string().optional(),
    gateway: z.string().optional(),
    auxAddresses: StringMap,
  })),
  ipv6: z.array(z.object({
    poolId: z.string(),
    addressSpace: z.string().optional(),
    pool: z.string(),
    subPool: z.string().optional(),
    gateway: z.string().optional(),
    auxAddresses: StringMap,
  })),
  config: z.array(IpamConfigSchema).optional(),
}).partial({ config: true });

/** A failed outcome; `facts`: what the driver had already made (e.g. `{ made: [...] }`). */
const failed = z.object({
  error: ErrorRecordSchema,
  facts: z.record(z.string(), z.unknown()).optional(),
}).loose();
const empty = z.object({}).loose();
const facts = z.object({ facts: z.record(z.string(), z.unknown()).optional() }).loose();

/** A port binding as requested (src/ports/binding.ts, validated and normalised). */
const PortBindingData = z.object({
  containerPort: z.number().int(),
  proto: z.enum(["tcp", "udp"]).optional(),
  hostIp: z.string().optional(),
  hostPort: z.number().int().optional(),
  hostPortEnd: z.number().int().optional(),
}).loose();
/** A decided port mapping: host address and port fixed (`chosenFrom`: cnm chose the port). */
const PortMappingData = z.object({
  proto: z.enum(["tcp", "udp"]),
  containerPort: z.number().int(),
  hostIp: z.string(),
  hostPort: z.number().int(),
  chosenFrom: z.object({ start: z.number().int(), end: z.number().int() }).optional(),
}).loose();

const reconciled = z.object({
  findings: z.array(
    z.object({
      resource: z.string(),
      name: z.string(),
      problem: z.enum(["missing", "unexpected", "different"]),
      expected: z.string().optional(),
      actual: z.string().optional(),
    }).loose(),
  ),
  repaired: z.boolean(),
  error: ErrorRecordSchema.optional(),
}).loose();

/** `data` schemas per known event type. Unknown types pass with only the envelope checked. */
export const DataSchemas: Record<string, z.ZodType> = {
  "network.create.requested": z.object({
    name: z.string().min(1),
    driver: z.string().min(1),
    scope: z.enum(["local", "global"]),
    internal: z.boolean(),
    enableIPv6: z.boolean().default(false),
    labels: StringMap,
    options: StringMap,
    ipam: NetworkIpamFacts.optional(),
    predefined: z.boolean().optional(),
    /** The driver configuration in force when the network was created (see driver.configured). */
    driverConfig: z.record(z.string(), z.unknown()).optional(),
  }).loose(),
  "network.created": facts,
  "network.create.failed": failed,
  "network.delete.requested": empty,
  "network.deleted": empty,
  "network.delete.failed": failed,

  "endpoint.create.requested": z.object({
    networkId: z.string().min(1),
    name: z.string().min(1),
    labels: StringMap,
    options: StringMap,
    ipv4Address: z.string().optional(),
    ipv6Address: z.string().optional(),
    macAddress: z.string().optional(),
    /** The port bindings asked for (published while the endpoint is joined). */
    portBindings: z.array(PortBindingData).optional(),
    /** Ports the endpoint exposes (libnetwork's exposedports). */
    exposedPorts: z.array(
      z.object({ port: z.number().int(), proto: z.enum(["tcp", "udp"]) })
        .loose(),
    ).optional(),
    /** The host ports decided for `portBindings`, before anything was journaled. */
    ports: z.array(PortMappingData).optional(),
    /** Extra names of the endpoint's sandbox on its network (embedded DNS). */
    aliases: z.array(z.string()).optional(),
  }).loose(),
  "endpoint.created": facts,
  "endpoint.create.failed": failed,
  "endpoint.join.requested": z.object({ sandboxId: z.string().min(1), ifname: z.string() }).loose(),
  "endpoint.joined": facts,
  "endpoint.join.failed": failed,
  "endpoint.leave.requested": z.object({ sandboxId: z.string().min(1) }).loose(),
  "endpoint.left": empty,
  "endpoint.leave.failed": failed,
  "endpoint.delete.requested": z.object({ force: z.boolean() }).loose(),
  "endpoint.deleted": empty,
  "endpoint.delete.failed": failed,

  "sandbox.create.requested": z.object({
    name: z.string().min(1),
    key: z.string().min(1),
    owned: z.boolean(),
    labels: StringMap,
    /** Directory of the sandbox's hosts and resolv.conf (absent in older events). */
    stateDir: z.string().optional(),
    config: z.object({
      hostname: z.string().optional(),
      dns: z.array(z.string()).optional(),
      dnsSearch: z.array(z.string()).optional(),
      extraHosts: z.array(z.string()).optional(),
    }).optional(),
  }).loose(),
  "sandbox.created": facts,
  "sandbox.create.failed": failed,
  "sandbox.delete.requested": empty,
  "sandbox.deleted": empty,
  "sandbox.delete.failed": failed,

  "driver.configured": z.object({
    /** The driver's name. */
    driver: z.string().min(1),
    /** The full configuration in force from this event on (defaults filled). */
    config: z.record(z.string(), z.unknown()),
    /** What changed: per key the value before (null on the driver's first event) and after. */
    changed: z.record(
      z.string(),
      z.object({
        from: z.unknown(),
        to: z.unknown(),
        appliesTo: z.enum(["all networks", "new networks", "next joins"]).optional(),
      }).loose(),
    ),
    /** Human-readable notes, e.g. that existing networks keep their value. */
    warnings: z.array(z.string()).optional(),
  }).loose(),

  "network.reconciled": reconciled,
  "endpoint.reconciled": reconciled,
  "sandbox.reconciled": reconciled,
  "host.reconciled": reconciled.describe(
    "Kind host, subject <prefix>.host.<hostId> (objectId: the host id): what reconcile repaired " +
      "that belongs to no object (orphans carrying the controller's ownership mark, removed). " +
      'The host has one state, "active": its first event has from null, later ones from "active"; ' +
      'to is always "active".',
  ),
};

/** Thrown when a payload does not match the contract. */
export class EventValidationError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "EventValidationError";
  }
}

/**
 * Validates an event (envelope, then `data` when the type is known).
 *
 * @throws {EventValidationError} naming the offending field.
 */
export function validateEvent(value: unknown): CnmEvent {
  const env = EnvelopeSchema.safeParse(value);
  if (!env.success) throw new EventValidationError(`invalid event: ${formatIssues(env.error)}`);
  const schema = DataSchemas[env.data.type];
  if (schema) {
    const data = schema.safeParse(env.data.data);
    if (!data.success) {
      throw new EventValidationError(
        `invalid ${env.data.type} event data: ${formatIssues(data.error, "data")}`,
      );
    }
    return { ...env.data, data: data.data as Record<string, unknown> };
  }
  return env.data;
}

/** Formats zod issues as `field: message; field: message`. */
export function formatIssues(error: z.ZodError, root?: string): string {
  return error.issues.flatMap((i) => {
    const at = (extra: string[]) =>
      [root, ...i.path.map(String), ...extra].filter((p) => p !== undefined).join(".");
    if (i.code === "unrecognized_keys") return i.keys.map((k) => `${at([k])}: unknown field`);
    const path = at([]);
    return [path ? `${path}: ${i.message}` : i.message];
  }).join("; ");
}

/** Subject of an object's events. */
export function subjectOf(prefix: string, kind: string, objectId: string): string {
  return `${prefix}.${kind}.${objectId}`;
}

/**
 * The inverse of {@link subjectOf}: `<prefix>.<kind>.<objectId>` → kind and objectId (which
 * may contain dots, as the driver kind's `<hostId>.<driver>` does).
 */
export function splitSubject(subject: string, prefix: string): { kind: string; id: string } {
  const rest = subject.startsWith(`${prefix}.`) ? subject.slice(prefix.length + 1) : subject;
  const dot = rest.indexOf(".");
  return dot < 0 ? { kind: rest, id: "" } : { kind: rest.slice(0, dot), id: rest.slice(dot + 1) };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a validated event as the wire payload. */
export function encodeEvent(event: CnmEvent): Uint8Array {
  return encoder.encode(JSON.stringify(validateEvent(event)));
}

/** Decodes and validates a wire payload. */
export function decodeEvent(payload: Uint8Array): CnmEvent {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch (err) {
    throw new EventValidationError("invalid event: payload is not JSON", { cause: err });
  }
  return upcast(validateEvent(value));
}

/** Upgrades older envelope versions on read. Version 1 is current. */
function upcast(event: CnmEvent): CnmEvent {
  return event;
}
