/**
 * Command inputs, parsed once at the API edge with zod. Unknown fields, empty names and
 * wrong types are refused with an error naming the field; nothing is journaled. Also the
 * check of the controller options' names (host id, stream, prefix) at `createController`.
 *
 * @module
 */

import { z } from "zod";
import { formatIssues } from "../journal/events.ts";
import { InvalidArgumentError } from "../errors.ts";
import { macProblem } from "../mac.ts";
import { LIMITS } from "./limits.ts";
import {
  AliasInput,
  ExtraHostInput,
  HostNameInput,
  NameserverInput,
  SearchDomainInput,
} from "./config_input.ts";
import { PortInputFields } from "./endpoint_ports.ts";

const StringMap = z.record(z.string(), z.string());
const Name = z.string({ error: "must be a string" });

/** One IPAM config entry: `{ subnet, ipRange?, gateway?, auxAddresses? }`. */
export const IpamConfigInput = z.strictObject({
  subnet: z.string().min(1),
  ipRange: z.string().min(1).optional(),
  gateway: z.string().min(1).optional(),
  auxAddresses: StringMap.optional(),
});

/** Input of `createNetwork`. */
export const CreateNetworkInput = z.strictObject({
  name: Name,
  driver: z.string().min(1).default("bridge"),
  options: StringMap.default({}),
  labels: StringMap.default({}),
  internal: z.boolean().default(false),
  enableIPv6: z.boolean().default(false),
  ipam: z.strictObject({
    driver: z.string().min(1).default("default"),
    config: z.array(IpamConfigInput).default([]),
    options: StringMap.default({}),
  }).optional(),
});
/** Parsed {@link CreateNetworkInput}. */
export type CreateNetworkOptions = z.input<typeof CreateNetworkInput>;

/** Input of `createEndpoint`. */
export const CreateEndpointInput = z.strictObject({
  name: Name,
  labels: StringMap.default({}),
  options: StringMap.default({}),
  ipv4Address: z.string().min(1).optional(),
  ipv6Address: z.string().min(1).optional(),
  macAddress: z.string().superRefine((mac, ctx) => {
    const problem = macProblem(mac);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  }).optional(),
  ...PortInputFields,
  /** Extra names of the endpoint's sandbox on this network (embedded DNS). */
  aliases: z.array(AliasInput).optional(),
});
/** Parsed {@link CreateEndpointInput}. */
export type CreateEndpointOptions = z.input<typeof CreateEndpointInput>;

/** Input of `createSandbox` (the file options are checked as config_input.ts says). */
export const CreateSandboxInput = z.strictObject({
  name: Name,
  key: z.string().min(1).optional(),
  labels: StringMap.default({}),
  hostname: HostNameInput.optional(),
  dns: z.array(NameserverInput).optional(),
  dnsSearch: z.array(SearchDomainInput).optional(),
  extraHosts: z.array(ExtraHostInput).optional(),
});
/** Parsed {@link CreateSandboxInput}. */
export type CreateSandboxOptions = z.input<typeof CreateSandboxInput>;

/** Options of `deleteEndpoint`. */
export const DeleteEndpointInput = z.strictObject({ force: z.boolean().default(false) });
/** Parsed {@link DeleteEndpointInput}. */
export type DeleteEndpointOptions = z.input<typeof DeleteEndpointInput>;

/** An id or name argument. */
export const Ref = z.string({ error: "must be a string" }).min(1, { error: "must not be empty" })
  .max(LIMITS.name, { error: `must be at most ${LIMITS.name} characters` });

/**
 * Parses `value` with `schema`, turning zod's issues into an {@link InvalidArgumentError}
 * whose message names every offending field.
 */
export function parseInput<T extends z.ZodType>(
  schema: T,
  value: unknown,
  what: string,
): z.output<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new InvalidArgumentError(`invalid ${what}: ${formatIssues(r.error)}`);
  return r.data;
}

/** Parses an id-or-name argument. */
export function parseRef(value: unknown, what: string): string {
  const r = Ref.safeParse(value);
  if (!r.success) throw new InvalidArgumentError(`invalid ${what}: ${formatIssues(r.error)}`);
  return r.data;
}

/**
 * Names that become subject tokens and KV keys: refused at the edge with the option named,
 * rather than as a raw NATS error (`invalid key: cnm.a b`). A host id may hold dots (a
 * machine's hostname does); the CLI's `--host` takes one token only.
 */
export function checkControllerNames(
  o: { hostId?: string; stream?: string; prefix?: string },
): void {
  const bad = (what: string, value: string, rule: string) =>
    new InvalidArgumentError(
      `invalid controller options: ${what}: ${JSON.stringify(value)} is not ${rule}`,
    );
  const host = o.hostId ?? Deno.hostname();
  if (!/^[A-Za-z0-9]([A-Za-z0-9_-]|\.(?=[A-Za-z0-9]))*$/.test(host) || host.length > 128) {
    throw bad("hostId", host, 'letters, digits, "-", "_" and single inner dots (at most 128)');
  }
  if (o.stream !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_-]{0,56}$/.test(o.stream)) {
    throw bad("stream", o.stream, 'letters, digits, "-" and "_" (1 to 57)');
  }
  if (
    o.prefix !== undefined && (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(o.prefix) ||
      o.prefix.length > 64)
  ) {
    throw bad("prefix", o.prefix, 'subject tokens of letters, digits, "-" and "_" (at most 64)');
  }
}
