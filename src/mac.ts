/**
 * MAC addresses an interface can have: what the user gives at `createEndpoint` and what a
 * remote plugin answers in `CreateEndpoint` are checked alike, before anything uses them.
 *
 * @example
 * ```ts
 * import { macProblem } from "./mac.ts";
 * import assert from "node:assert/strict";
 * assert.equal(macProblem("02:42:ac:11:00:02"), undefined);
 * assert.equal(macProblem("01:00:5e:00:00:01"), "01:00:5e:00:00:01 is a multicast address");
 * ```
 *
 * @module
 */

/**
 * What is wrong with a MAC address for an interface, if anything: the kernel refuses (with
 * EADDRNOTAVAIL, at join) multicast addresses — the broadcast address among them — and zero.
 */
export function macProblem(mac: string): string | undefined {
  if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac)) {
    return "must be a MAC address like 02:42:ac:11:00:02";
  }
  if (/^(ff:){5}ff$/i.test(mac)) return `${mac} is the broadcast address`;
  if (parseInt(mac.slice(0, 2), 16) & 1) return `${mac} is a multicast address`;
  if (/^(00:){5}00$/.test(mac)) return `${mac} is the zero address`;
  return undefined;
}
