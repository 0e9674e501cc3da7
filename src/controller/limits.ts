/**
 * Size limits of command input, checked at the edge — by the controller before anything is
 * parsed or journaled, and by the API client before a request is sent — so that every
 * command's events stay far below NATS's `max_payload` (1 MB by default) and an oversized
 * input is an {@link InvalidArgumentError} naming the field, not a journal error.
 *
 * @module
 */

import { InvalidArgumentError } from "../errors.ts";

/** The limits (characters, entries, bytes). */
export const LIMITS = {
  /** A network, endpoint or sandbox name, a driver name, an id or name argument. */
  name: 255,
  /** A label, option or aux-address key. */
  key: 255,
  /** A label, option or aux-address value. */
  value: 4096,
  /** Entries of one map (labels, options, IPAM options, aux addresses). */
  entries: 128,
  /** Entries of one list (dns, dnsSearch, extraHosts, aliases, IPAM config). */
  list: 128,
  /** One list entry, an address, a MAC, a subnet. */
  short: 255,
  /** A sandbox key (a namespace path). */
  path: 4096,
  /** A command's options, as JSON, in all. */
  bytes: 64 * 1024,
} as const;

const shownKey = (k: string) => JSON.stringify(k.length > 40 ? `${k.slice(0, 40)}…` : k);
const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The first limit `value` exceeds, as `field: what`, or undefined. Other problems pass. */
function problem(value: unknown): string | undefined {
  if (!isRecord(value)) return undefined;
  const string = (field: string, v: unknown, max: number) =>
    typeof v === "string" && v.length > max
      ? `${field}: ${v.length} characters, at most ${max}`
      : undefined;
  const map = (field: string, v: unknown) => {
    if (!isRecord(v)) return undefined;
    const entries = Object.entries(v);
    if (entries.length > LIMITS.entries) {
      return `${field}: ${entries.length} entries, at most ${LIMITS.entries}`;
    }
    for (const [k, x] of entries) {
      if (k.length > LIMITS.key) {
        return `${field}: a key of ${k.length} characters (${shownKey(k)}), at most ${LIMITS.key}`;
      }
      const p = string(`${field}.${k}`, x, LIMITS.value);
      if (p) return p;
    }
  };
  const list = (field: string, v: unknown, each: (f: string, x: unknown) => string | undefined) => {
    if (!Array.isArray(v)) return undefined;
    if (v.length > LIMITS.list) return `${field}: ${v.length} entries, at most ${LIMITS.list}`;
    for (let i = 0; i < v.length; i++) {
      const p = each(`${field}.${i}`, v[i]);
      if (p) return p;
    }
  };
  const short = (f: string, x: unknown) => string(f, x, LIMITS.short);
  const ipam = isRecord(value.ipam) ? value.ipam : {};
  return string("name", value.name, LIMITS.name) ??
    string("driver", value.driver, LIMITS.name) ??
    string("key", value.key, LIMITS.path) ??
    map("labels", value.labels) ??
    map("options", value.options) ??
    string("ipam.driver", ipam.driver, LIMITS.name) ??
    map("ipam.options", ipam.options) ??
    list("ipam.config", ipam.config, (f, c) => {
      if (!isRecord(c)) return undefined;
      return short(`${f}.subnet`, c.subnet) ?? short(`${f}.ipRange`, c.ipRange) ??
        short(`${f}.gateway`, c.gateway) ?? map(`${f}.auxAddresses`, c.auxAddresses);
    }) ??
    short("hostname", value.hostname) ??
    list("dns", value.dns, short) ??
    list("dnsSearch", value.dnsSearch, short) ??
    list("extraHosts", value.extraHosts, short) ??
    list("aliases", value.aliases, short) ??
    short("ipv4Address", value.ipv4Address) ??
    short("ipv6Address", value.ipv6Address) ??
    short("macAddress", value.macAddress);
}

/**
 * Checks a command's options against {@link LIMITS}.
 *
 * @param what names the input in the message (`network options`, …).
 * @throws {InvalidArgumentError} e.g. `invalid network options: labels.big: 2097152
 *   characters, at most 4096`, or `… 70000 bytes in all, at most 65536`.
 */
export function checkLimits(value: unknown, what: string): void {
  const p = problem(value);
  if (p) throw new InvalidArgumentError(`invalid ${what}: ${p}`);
  let bytes = 0;
  try {
    bytes = new TextEncoder().encode(JSON.stringify(value) ?? "").length;
  } catch {
    return; // not JSON (a cycle, a BigInt): the schema says what is wrong
  }
  if (bytes > LIMITS.bytes) {
    throw new InvalidArgumentError(
      `invalid ${what}: ${bytes} bytes in all, at most ${LIMITS.bytes}`,
    );
  }
}
