/**
 * Endpoint details of the overlay driver: the address check with libnetwork's words, the MAC
 * and host-side veth an endpoint uses, and this host's VTEP when none is configured.
 *
 * @module
 */

import type { DriverEndpoint, DriverNetwork } from "../driver.ts";
import { DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { addressOf, parseIp } from "../../src/ipam/cidr.ts";
import type { Kernel } from "../../src/kernel/types.ts";
import { hostVethName, macFromIp, type OverlayConfig, subnetOf } from "./_config.ts";

/** The endpoint's IPv4 address, checked against the network's subnets (libnetwork's words). */
export function checkAddress(
  cfg: OverlayConfig,
  network: DriverNetwork,
  ep: DriverEndpoint,
): string {
  if (!ep.ipv4Address) {
    throw new InvalidArgumentError("create endpoint was not passed interface IP address");
  }
  if (!subnetOf(cfg, ep.ipv4Address)) {
    throw new InvalidArgumentError(
      `no matching subnet for IP "${ep.ipv4Address}" in network "${network.id}"`,
    );
  }
  return addressOf(ep.ipv4Address);
}

/** The endpoint's MAC: given, decided at create (a fact), or `02:42:` + its IP. */
export function macOf(ep: DriverEndpoint, ip: string): string {
  const fact = ep.facts.macAddress;
  return (ep.macAddress ?? (typeof fact === "string" ? fact : macFromIp(ip))).toLowerCase();
}

/** The host-side veth of an endpoint: the name journaled at create, else the default. */
export function vethOf(ep: DriverEndpoint): string {
  return typeof ep.facts.hostVeth === "string" ? ep.facts.hostVeth : hostVethName(ep.id);
}

/** Whether `s` is an IPv4 address. */
export function isIPv4(s: string): boolean {
  try {
    return parseIp(s).family === 4;
  } catch {
    return false;
  }
}

/** The first IPv4 address of the device holding the host namespace's default route. */
export async function detectVtep(kernel: Kernel): Promise<string> {
  const route = (await kernel.listRoutes()).find((r) => r.dst === "default" && r.dev);
  const addr = route &&
    (await kernel.listAddrs()).find((a) => a.link === route.dev && !a.address.includes(":"));
  if (!addr) {
    throw new DriverError(
      "overlay: cannot tell this host's advertise address (no IPv4 default route in the host namespace); set advertiseAddress",
    );
  }
  return addressOf(addr.address);
}
