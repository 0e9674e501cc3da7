/**
 * Port bindings: what a user asks to publish, in Docker's `-p` syntax or as data, and the
 * decided mappings (host address and port fixed) that cnm journals and drivers program.
 *
 * - A {@link PortBinding} is a request: `{ containerPort, proto?, hostIp?, hostPort?,
 *   hostPortEnd? }`. No `hostPort` means "cnm picks one from the ephemeral range"; a
 *   `hostPort`–`hostPortEnd` range means "cnm picks one of these".
 * - A {@link PortMapping} is a decision: one host address, one host port. A request with no
 *   `hostIp` becomes one mapping for `0.0.0.0` and, on IPv6 networks, one for `::`, both on
 *   the same port (Docker's default binding).
 *
 * @example
 * ```ts
 * import { parsePortSpec } from "./binding.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parsePortSpec("127.0.0.1:8080:80/udp"), [
 *   { containerPort: 80, proto: "udp", hostIp: "127.0.0.1", hostPort: 8080 },
 * ]);
 * ```
 *
 * @module
 */

import { z } from "zod";
import { InvalidArgumentError } from "../errors.ts";
import { formatIssues } from "../journal/events.ts";
import { ipToString, parseIp } from "../ipam/cidr.ts";

/** The transport protocols cnm publishes. */
export type PortProto = "tcp" | "udp";

/** A request to publish one container port (libnetwork's `PortBinding` before allocation). */
export interface PortBinding {
  containerPort: number;
  /** Default `tcp`. */
  proto?: PortProto;
  /** Host address to bind; default `0.0.0.0` (and `::` on IPv6 networks). */
  hostIp?: string;
  /** Host port, or the start of a range to choose from; default: chosen by cnm. */
  hostPort?: number;
  /** End (inclusive) of the host port range to choose from. */
  hostPortEnd?: number;
}

/** A port the container exposes (libnetwork's `TransportPort`), published by `-P`. */
export interface ExposedPort {
  port: number;
  /** Default `tcp`. */
  proto?: PortProto;
}

/** A decided mapping: what is journaled, held and programmed. */
export interface PortMapping {
  proto: PortProto;
  containerPort: number;
  /** A concrete address: `0.0.0.0`, `::` or a host address, canonical form. */
  hostIp: string;
  hostPort: number;
  /** Present when cnm chose `hostPort`: the range it chose from (restores the allocator). */
  chosenFrom?: { start: number; end: number };
}

const Port = z.number({ error: "must be a number" }).int({ error: "must be an integer" })
  .min(1, { error: "must be 1-65535" }).max(65535, { error: "must be 1-65535" });
const Proto = z.enum(["tcp", "udp"], { error: 'must be "tcp" or "udp"' });
const HostIp = z.string({ error: "must be a string" }).refine((s) => tryIp(s) !== undefined, {
  error: "must be an IP address",
});

/** Input schema of one port binding (for `createEndpoint`). */
export const PortBindingInput = z.strictObject({
  containerPort: Port,
  proto: Proto.default("tcp"),
  hostIp: HostIp.optional(),
  // 0 is Docker's "no host port": cnm chooses.
  hostPort: z.union([z.literal(0), Port]).optional(),
  hostPortEnd: Port.optional(),
});

/** Input schema of one exposed port. */
export const ExposedPortInput = z.strictObject({ port: Port, proto: Proto.default("tcp") });

/** Schema of a decided mapping as journaled. */
export const PortMappingSchema = z.strictObject({
  proto: Proto,
  containerPort: Port,
  hostIp: HostIp,
  hostPort: Port,
  chosenFrom: z.strictObject({ start: Port, end: Port }).optional(),
});

function tryIp(s: string): string | undefined {
  try {
    return ipToString(parseIp(s));
  } catch {
    return undefined;
  }
}

/** True for `0.0.0.0` and `::`. */
export function isUnspecified(ip: string): boolean {
  return ip === "0.0.0.0" || ip === "::";
}

/** The address family of a canonical address. */
export function familyOf(ip: string): 4 | 6 {
  return ip.includes(":") ? 6 : 4;
}

/** `0.0.0.0:8080` or `[::]:8080` (Go's netip.AddrPort form, as in Docker's messages). */
export function formatHostPort(ip: string, port: number): string {
  return familyOf(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** `0.0.0.0:8080->80/tcp`, the form `docker ps` prints. */
export function describeMapping(m: PortMapping): string {
  return `${formatHostPort(m.hostIp, m.hostPort)}->${m.containerPort}/${m.proto}`;
}

/**
 * Validates and normalises port binding requests: proto defaulted, host address canonical,
 * `hostPort: 0` dropped, ranges ordered. Nothing is decided yet.
 *
 * @throws {InvalidArgumentError} naming the binding and the field, e.g.
 *   `invalid port binding 0: hostPortEnd: must be 1-65535`, or Docker's
 *   `invalid port range: 8010-8000`.
 * @example
 * ```ts
 * import { validatePortBindings } from "./binding.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(validatePortBindings([{ containerPort: 80, hostIp: "::0" }]), [
 *   { containerPort: 80, proto: "tcp", hostIp: "::" },
 * ]);
 * ```
 */
export function validatePortBindings(input: unknown): PortBinding[] {
  if (!Array.isArray(input)) {
    throw new InvalidArgumentError("invalid port bindings: must be an array");
  }
  return input.map((raw, i) => {
    const r = PortBindingInput.safeParse(raw);
    if (!r.success) {
      throw new InvalidArgumentError(`invalid port binding ${i}: ${formatIssues(r.error)}`);
    }
    const b = r.data;
    const out: PortBinding = { containerPort: b.containerPort, proto: b.proto };
    if (b.hostIp !== undefined) {
      const ip = unmapped(tryIp(b.hostIp)!);
      if (ip === "::1") {
        throw new InvalidArgumentError(
          `invalid port binding ${i}: hostIp: ::1 cannot be published without a userland proxy ` +
            `(IPv6 loopback traffic cannot be forwarded to a container); use 127.0.0.1`,
        );
      }
      out.hostIp = ip;
    }
    const start = b.hostPort || undefined;
    if (b.hostPortEnd !== undefined) {
      if (start === undefined) {
        throw new InvalidArgumentError(
          `invalid port binding ${i}: hostPortEnd: needs hostPort (the start of the range)`,
        );
      }
      if (b.hostPortEnd < start) {
        throw new InvalidArgumentError(`invalid port range: ${start}-${b.hostPortEnd}`);
      }
    }
    if (start !== undefined) out.hostPort = start;
    if (b.hostPortEnd !== undefined && b.hostPortEnd !== start) out.hostPortEnd = b.hostPortEnd;
    return out;
  });
}

/** `::ffff:10.0.0.1` → `10.0.0.1` (as Docker's `Unmap`). */
function unmapped(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(ip);
  return m ? m[1] : ip;
}

/**
 * Bindings for `-P`: every exposed port that no binding publishes yet, on a port cnm
 * chooses (Docker's PublishAllPorts).
 *
 * @example
 * ```ts
 * import { publishAllExposed } from "./binding.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(publishAllExposed([{ port: 80 }, { port: 53, proto: "udp" }], [
 *   { containerPort: 80, hostPort: 8080 },
 * ]), [{ containerPort: 80, hostPort: 8080 }, { containerPort: 53, proto: "udp" }]);
 * ```
 */
export function publishAllExposed(exposed: ExposedPort[], bindings: PortBinding[]): PortBinding[] {
  const bound = new Set(bindings.map((b) => `${b.containerPort}/${b.proto ?? "tcp"}`));
  const extra = exposed.filter((e) => !bound.has(`${e.port}/${e.proto ?? "tcp"}`))
    .map((e): PortBinding => ({ containerPort: e.port, proto: e.proto ?? "tcp" }));
  return [...bindings, ...extra];
}

/** Parses `80` or `8000-8010` (Docker's ParsePortRange); undefined when malformed. */
function portRange(s: string, allowZero: boolean): [number, number] | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
  if (!m) return undefined;
  const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
  const min = allowZero && m[2] === undefined ? 0 : 1;
  if (a < min || b < min || a > 65535 || b > 65535 || b < a) return undefined;
  return [a, b];
}

/**
 * Parses Docker's `-p` syntax, `[hostIp:][hostPort[-end]:]containerPort[-end][/tcp|udp]`, into
 * binding requests. An IPv6 host address may be bracketed (`[::1]:8080:80`). A container
 * range maps one to one onto an equal host range (or onto ports cnm chooses when no host port
 * is given); a single container port with a host range takes one port of the range.
 *
 * @throws {InvalidArgumentError} with Docker's words: `invalid IP address: X`,
 *   `no port specified: X<empty>`, `invalid containerPort: X`, `invalid hostPort: X`,
 *   `invalid ranges specified for container and host Ports: X and Y`, `invalid proto: X`.
 * @example
 * ```ts
 * import { parsePortSpec } from "./binding.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parsePortSpec("8000-8010:80"), [
 *   { containerPort: 80, proto: "tcp", hostPort: 8000, hostPortEnd: 8010 },
 * ]);
 * ```
 */
export function parsePortSpec(spec: string): PortBinding[] {
  if (typeof spec !== "string") throw new InvalidArgumentError("invalid port spec: not a string");
  const parts = spec.split(":");
  let ip = "", host = "", container = parts[parts.length - 1];
  if (parts.length === 2) host = parts[0];
  else if (parts.length >= 3) {
    ip = parts.slice(0, parts.length - 2).join(":");
    host = parts[parts.length - 2];
  }
  let proto = "tcp";
  const slash = container.indexOf("/");
  if (slash >= 0) {
    proto = container.slice(slash + 1);
    container = container.slice(0, slash);
  }
  if (ip.startsWith("[")) {
    if (!ip.endsWith("]")) throw new InvalidArgumentError(`invalid IP address: ${ip}`);
    ip = ip.slice(1, -1);
  }
  let hostIp: string | undefined;
  if (ip !== "") {
    hostIp = tryIp(ip);
    if (hostIp === undefined) throw new InvalidArgumentError(`invalid IP address: ${ip}`);
  }
  if (container === "") throw new InvalidArgumentError(`no port specified: ${spec}<empty>`);
  const cr = portRange(container, false);
  if (!cr) throw new InvalidArgumentError(`invalid containerPort: ${container}`);
  const hr = host === "" ? undefined : portRange(host, true);
  if (host !== "" && !hr) throw new InvalidArgumentError(`invalid hostPort: ${host}`);
  const cLen = cr[1] - cr[0], hLen = hr ? hr[1] - hr[0] : 0;
  if (hr && cLen !== hLen && cLen !== 0) {
    throw new InvalidArgumentError(
      `invalid ranges specified for container and host Ports: ${container} and ${host}`,
    );
  }
  const p = proto.toLowerCase();
  if (p !== "tcp" && p !== "udp") {
    throw new InvalidArgumentError(
      `invalid proto: ${proto}${p === "sctp" ? " (cnm publishes tcp and udp)" : ""}`,
    );
  }
  const out: PortBinding[] = [];
  for (let i = 0; i <= cLen; i++) {
    const b: PortBinding = { containerPort: cr[0] + i, proto: p };
    if (hostIp !== undefined) b.hostIp = hostIp;
    if (hr && hr[0] !== 0) {
      if (cLen === 0 && hLen > 0) {
        b.hostPort = hr[0];
        b.hostPortEnd = hr[1];
      } else b.hostPort = hr[0] + i;
    }
    out.push(b);
  }
  return validatePortBindings(out);
}

/** libnetwork's `types.PortBinding` as remote plugins receive it (`Proto`: 6 tcp, 17 udp). */
export interface LibnetworkPortBinding {
  Proto: number;
  /** The container's address: always `""` (libnetwork's daemon never sets it). */
  IP: string;
  Port: number;
  /** `""` when none was asked (Go's nil `net.IP`). */
  HostIP: string;
  /** `0` when none was asked: the plugin chooses. */
  HostPort: number;
  /** The end of the asked range; `HostPort` for one port, `0` when none was asked. */
  HostPortEnd: number;
}

/** libnetwork's `types.TransportPort` on the wire. */
export interface LibnetworkTransportPort {
  Proto: number;
  Port: number;
}

/** The two port options of libnetwork, as remote plugins receive them. */
export interface LibnetworkPortOptions {
  "com.docker.network.portmap": LibnetworkPortBinding[];
  "com.docker.network.endpoint.exposedports": LibnetworkTransportPort[];
}

const protoNumber = { tcp: 6, udp: 17 } as const;

/**
 * The options through which libnetwork hands port bindings to a remote plugin (in
 * `CreateEndpoint`'s and `ProgramExternalConnectivity`'s `Options`):
 * `com.docker.network.portmap` — the bindings **as asked**, no host port decided (Docker's
 * daemon builds them from the container's `PortBindings`: `HostPort`–`HostPortEnd` the asked
 * range, both `0` when none was asked, `HostIP` `""` when none was asked, `IP` always `""`) —
 * and `com.docker.network.endpoint.exposedports` (`[{ Proto, Port }]`). The plugin publishes
 * and chooses host ports itself.
 *
 * @example
 * ```ts
 * import { libnetworkPortOptions } from "./binding.ts";
 * import assert from "node:assert/strict";
 * const asked = [
 *   { containerPort: 53, proto: "udp" as const, hostPort: 5353 },
 *   { containerPort: 80, hostIp: "127.0.0.1", hostPort: 8000, hostPortEnd: 8010 },
 *   { containerPort: 443 },
 * ];
 * assert.deepEqual(libnetworkPortOptions(asked, [{ port: 53, proto: "udp" }]), {
 *   "com.docker.network.portmap": [
 *     { Proto: 17, IP: "", Port: 53, HostIP: "", HostPort: 5353, HostPortEnd: 5353 },
 *     { Proto: 6, IP: "", Port: 80, HostIP: "127.0.0.1", HostPort: 8000, HostPortEnd: 8010 },
 *     { Proto: 6, IP: "", Port: 443, HostIP: "", HostPort: 0, HostPortEnd: 0 },
 *   ],
 *   "com.docker.network.endpoint.exposedports": [{ Proto: 17, Port: 53 }],
 * });
 * ```
 */
export function libnetworkPortOptions(
  bindings: PortBinding[],
  exposed: ExposedPort[] = [],
): LibnetworkPortOptions {
  return {
    "com.docker.network.portmap": bindings.map((b) => ({
      Proto: protoNumber[b.proto ?? "tcp"],
      IP: "",
      Port: b.containerPort,
      HostIP: b.hostIp ?? "",
      HostPort: b.hostPort ?? 0,
      HostPortEnd: b.hostPortEnd ?? b.hostPort ?? 0,
    })),
    "com.docker.network.endpoint.exposedports": exposed.map((e) => ({
      Proto: protoNumber[e.proto ?? "tcp"],
      Port: e.port,
    })),
  };
}
