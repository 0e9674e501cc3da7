/**
 * The ephemeral port range host ports are chosen from: the host namespace's
 * `net.ipv4.ip_local_port_range`, less `net.ipv4.ip_local_reserved_ports` — read in the
 * controller's host namespace (both are per network namespace), as Docker reads them in its
 * own. Falls back to Docker's 49153-65535 when they cannot be read.
 *
 * @example
 * ```ts
 * import { parseLocalPortRange, parseReservedPorts } from "./range.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseLocalPortRange("32768\t60999\n"), { start: 32768, end: 60999 });
 * assert.deepEqual(parseReservedPorts("8080,9000-9002\n"), [8080, 9000, 9001, 9002]);
 * ```
 *
 * @module
 */

import { InvalidArgumentError } from "../errors.ts";
import type { Kernel } from "../kernel/types.ts";
import type { PortRange } from "./allocator.ts";

/** Docker's fallback range (`portallocator_unix.go`). */
export const FALLBACK_RANGE: PortRange = { start: 49153, end: 65535 };

const RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range";
const RESERVED_FILE = "/proc/sys/net/ipv4/ip_local_reserved_ports";

/**
 * Parses `ip_local_port_range` (`"32768\t60999"`).
 *
 * @throws {InvalidArgumentError} when it is not two ordered ports.
 */
export function parseLocalPortRange(text: string): PortRange {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  const start = Number(m?.[1]), end = Number(m?.[2]);
  if (!m || start < 1 || end > 65535 || end < start) {
    throw new InvalidArgumentError(`invalid ip_local_port_range: ${JSON.stringify(text)}`);
  }
  return { start, end };
}

/**
 * Parses `ip_local_reserved_ports` (`"8080,9000-9010"`, possibly empty).
 *
 * @throws {InvalidArgumentError} when malformed.
 */
export function parseReservedPorts(text: string): number[] {
  const out: number[] = [];
  for (const part of text.trim().split(",").filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    const a = Number(m?.[1]), b = m?.[2] === undefined ? a : Number(m[2]);
    if (!m || b < a || b > 65535) {
      throw new InvalidArgumentError(`invalid ip_local_reserved_ports: ${JSON.stringify(text)}`);
    }
    for (let p = a; p <= b; p++) out.push(p);
  }
  return out;
}

/** The ephemeral range and the reserved ports of a host namespace. */
export interface EphemeralPorts {
  range: PortRange;
  reserved: number[];
  /** Why the fallback range is used, when it is. */
  fallback?: string;
}

/**
 * Reads the ephemeral range of the kernel's host namespace (one `cat` run there).
 * Never throws: an unreadable or malformed range gives {@link FALLBACK_RANGE}.
 */
export async function readEphemeralPorts(kernel: Pick<Kernel, "exec">): Promise<EphemeralPorts> {
  try {
    const [range, reserved = ""] = (await kernel.exec(["cat", RANGE_FILE, RESERVED_FILE]))
      .split("\n");
    return { range: parseLocalPortRange(range), reserved: parseReservedPorts(reserved) };
  } catch (err) {
    return { range: { ...FALLBACK_RANGE }, reserved: [], fallback: (err as Error).message };
  }
}
