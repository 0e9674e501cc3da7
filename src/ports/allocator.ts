/**
 * The host port allocator: decides host ports for port bindings, as Docker's portallocator
 * does, and rebuilds itself from journaled decisions without deciding again. Pure (no I/O):
 * the ephemeral range is read elsewhere (`range.ts`) and passed in.
 *
 * Rules (moby `portallocator/portallocator.go`):
 * - Ports are tracked per host address, per protocol. A port on `0.0.0.0` (`::`) must be
 *   free on every IPv4 (IPv6) address; a port on a specific address must be free on that
 *   address and on `0.0.0.0` (`::`). The two families never conflict (IPV6_V6ONLY).
 * - A request without a host port takes one from the ephemeral range, skipping
 *   `ip_local_reserved_ports`; a host range takes one from the range. Both scan from the port
 *   after the last one handed out from that range, wrapping — `last` starts at the range's
 *   end, so the first choice is the range's first port. Not random.
 * - A request without a host address binds `0.0.0.0` and, on IPv6 networks, `::` — one port
 *   free on both.
 * - All bindings of one call are decided together or not at all.
 *
 * Errors (Docker's words): `Bind for 0.0.0.0:8080 failed: port is already allocated`
 * ({@link ConflictError}), `all ports are allocated` ({@link UnavailableError}).
 *
 * @example
 * ```ts
 * import { createPortAllocator } from "./allocator.ts";
 * import assert from "node:assert/strict";
 * const ports = createPortAllocator({ range: { start: 32768, end: 60999 } });
 * const [m] = ports.allocate("ep1", [{ containerPort: 80 }]);
 * assert.deepEqual(m.hostPort, 32768);
 * assert.throws(() => ports.allocate("ep2", [{ containerPort: 80, hostPort: 32768 }]), {
 *   message: "Bind for 0.0.0.0:32768 failed: port is already allocated",
 * });
 * ```
 *
 * @module
 */

import { ConflictError, InvalidArgumentError, UnavailableError } from "../errors.ts";
import {
  familyOf,
  isUnspecified,
  type PortBinding,
  type PortMapping,
  type PortProto,
  validatePortBindings,
} from "./binding.ts";

/** An inclusive port range. */
export interface PortRange {
  start: number;
  end: number;
}

/** Options of {@link createPortAllocator}. */
export interface PortAllocatorOptions {
  /** The ephemeral range (the host's `ip_local_port_range`). */
  range: PortRange;
  /** Ports automatic choices skip (the host's `ip_local_reserved_ports`). Default none. */
  reserved?: Iterable<number>;
}

/** Options of one {@link PortAllocator.allocate} call. */
export interface AllocateOptions {
  /** Whether the endpoint's network has IPv6: a binding without `hostIp` also binds `::`. */
  ipv6?: boolean;
  /** Host address of bindings without one (`host_binding_ipv4`). Default `0.0.0.0`. */
  defaultHostIp?: string;
}

/** The allocator. */
export interface PortAllocator {
  /** The ephemeral range it chooses from. */
  readonly range: PortRange;
  /**
   * Decides host ports for `owner`'s bindings, all or none, and holds them for `owner`.
   *
   * @throws {InvalidArgumentError} for a malformed binding or `::` on an IPv4-only network;
   *   {@link ConflictError} `Bind for X:P failed: port is already allocated`;
   *   {@link UnavailableError} `all ports are allocated`.
   */
  allocate(owner: string, bindings: PortBinding[], options?: AllocateOptions): PortMapping[];
  /**
   * Takes journaled decisions back (restart, replay) without deciding again. Call it in
   * journal order: the scan position of each range is restored with the decisions.
   *
   * @throws {ConflictError} when a decision clashes with another owner's (a corrupt journal).
   */
  restore(owner: string, mappings: PortMapping[]): void;
  /** Frees everything `owner` holds. */
  release(owner: string): void;
  /** What each owner holds. */
  allocated(): Map<string, PortMapping[]>;
}

const keyOf = (proto: PortProto, ip: string, port: number) => `${proto} ${ip} ${port}`;

/**
 * Creates a port allocator over an ephemeral range.
 *
 * @throws {InvalidArgumentError} for a malformed range.
 */
export function createPortAllocator(options: PortAllocatorOptions): PortAllocator {
  const range = { ...options.range };
  checkRange(range, "ephemeral port range");
  const reserved = new Set(options.reserved ?? []);
  /** `proto ip port` → owner. */
  const taken = new Map<string, string>();
  /** Per proto and family: address → how many ports are taken on it (unspecified checks). */
  const addrs = new Map<string, Map<string, number>>();
  /** `proto ip start-end` → the last port handed out from that range. */
  const last = new Map<string, number>();
  const byOwner = new Map<string, PortMapping[]>();

  const addrsOf = (proto: PortProto, fam: 4 | 6) => {
    const k = `${proto}${fam}`;
    let s = addrs.get(k);
    if (!s) addrs.set(k, s = new Map());
    return s;
  };

  /** The first address on which `port` is taken, given the addresses to bind. */
  const clash = (proto: PortProto, ips: string[], port: number, pending: Set<string>) => {
    for (const ip of ips) {
      const fam = familyOf(ip);
      const others = isUnspecified(ip)
        ? [...addrsOf(proto, fam).keys()]
        : [ip, fam === 4 ? "0.0.0.0" : "::"];
      for (const other of [ip, ...others]) {
        const k = keyOf(proto, other, port);
        if (taken.has(k) || pending.has(k)) return other;
      }
      // Pending decisions of this same call on other addresses of the family.
      for (const k of pending) {
        const [p, other, n] = k.split(" ");
        if (p !== proto || Number(n) !== port || familyOf(other) !== fam) continue;
        if (isUnspecified(ip) || isUnspecified(other)) return other;
      }
    }
    return undefined;
  };

  const take = (owner: string, m: PortMapping) => {
    taken.set(keyOf(m.proto, m.hostIp, m.hostPort), owner);
    const counts = addrsOf(m.proto, familyOf(m.hostIp));
    counts.set(m.hostIp, (counts.get(m.hostIp) ?? 0) + 1);
  };

  const rangeKey = (proto: PortProto, ip: string, r: PortRange) =>
    `${proto} ${ip} ${r.start}-${r.end}`;

  return {
    range,
    allocate(owner, input, opts = {}) {
      const bindings = validatePortBindings(input);
      const v4 = opts.defaultHostIp ?? "0.0.0.0";
      if (familyOf(v4) !== 4) {
        throw new InvalidArgumentError(`invalid default host address ${v4}: not IPv4`);
      }
      const out: PortMapping[] = [];
      const pending = new Set<string>();
      const lastUpdates: [string, number][] = [];
      for (const b of bindings) {
        const proto = b.proto ?? "tcp";
        const ips = b.hostIp !== undefined ? [b.hostIp] : opts.ipv6 ? [v4, "::"] : [v4];
        if (!opts.ipv6 && ips.some((ip) => familyOf(ip) === 6)) {
          throw new InvalidArgumentError(
            `invalid port binding ${b.containerPort}/${proto}: hostIp ${b.hostIp}: ` +
              `the network has no IPv6`,
          );
        }
        let port: number;
        let chosenFrom: PortRange | undefined;
        if (b.hostPort !== undefined && b.hostPortEnd === undefined) {
          port = b.hostPort;
          const other = clash(proto, ips, port, pending);
          if (other !== undefined) {
            throw new ConflictError(`Bind for ${other}:${port} failed: port is already allocated`);
          }
        } else {
          const r = b.hostPort !== undefined ? { start: b.hostPort, end: b.hostPortEnd! } : range;
          const skipReserved = b.hostPort === undefined;
          const rk = rangeKey(proto, ips[0], r);
          let p = last.get(rk) ?? r.end;
          let found: number | undefined;
          for (let i = r.start; i <= r.end; i++) {
            p = p >= r.end ? r.start : p + 1;
            if (skipReserved && reserved.has(p)) continue;
            if (clash(proto, ips, p, pending) === undefined) {
              found = p;
              break;
            }
          }
          if (found === undefined) throw new UnavailableError("all ports are allocated");
          port = found;
          chosenFrom = r;
          for (const ip of ips) lastUpdates.push([rangeKey(proto, ip, r), port]);
        }
        for (const ip of ips) {
          pending.add(keyOf(proto, ip, port));
          out.push({
            proto,
            containerPort: b.containerPort,
            hostIp: ip,
            hostPort: port,
            ...(chosenFrom ? { chosenFrom: { ...chosenFrom } } : {}),
          });
        }
      }
      for (const m of out) take(owner, m);
      for (const [k, p] of lastUpdates) last.set(k, p);
      byOwner.set(owner, [...(byOwner.get(owner) ?? []), ...out]);
      return out.map((m) => ({ ...m }));
    },
    restore(owner, mappings) {
      for (const m of mappings) {
        const holder = taken.get(keyOf(m.proto, m.hostIp, m.hostPort));
        if (holder !== undefined && holder !== owner) {
          throw new ConflictError(
            `Bind for ${m.hostIp}:${m.hostPort} failed: port is already allocated`,
          );
        }
      }
      const mine = byOwner.get(owner) ?? [];
      for (const m of mappings) {
        const k = keyOf(m.proto, m.hostIp, m.hostPort);
        if (taken.get(k) === owner) continue;
        take(owner, m);
        mine.push({ ...m });
        if (m.chosenFrom) last.set(rangeKey(m.proto, m.hostIp, m.chosenFrom), m.hostPort);
      }
      byOwner.set(owner, mine);
    },
    release(owner) {
      for (const m of byOwner.get(owner) ?? []) {
        const k = keyOf(m.proto, m.hostIp, m.hostPort);
        if (taken.get(k) !== owner) continue;
        taken.delete(k);
        const counts = addrsOf(m.proto, familyOf(m.hostIp));
        const n = (counts.get(m.hostIp) ?? 1) - 1;
        if (n > 0) counts.set(m.hostIp, n);
        else counts.delete(m.hostIp);
      }
      byOwner.delete(owner);
    },
    allocated: () => new Map([...byOwner].map(([o, ms]) => [o, ms.map((m) => ({ ...m }))])),
  };
}

function checkRange(r: PortRange, what: string): void {
  const ok = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
  if (!ok(r.start) || !ok(r.end) || r.end < r.start) {
    throw new InvalidArgumentError(`invalid ${what}: ${r.start}-${r.end}`);
  }
}
