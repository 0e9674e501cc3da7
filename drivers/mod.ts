/**
 * The table of built-in drivers.
 *
 * @module
 */

import type { Driver } from "./driver.ts";
import { createBridgeDriver } from "./bridge/mod.ts";
import { createHostDriver } from "./host/mod.ts";
import { createNullDriver } from "./null/mod.ts";
import { createOverlayDriver, type OverlayDriverOptions } from "./overlay/mod.ts";

/** Drivers that may have exactly one network, which cannot be deleted. */
export const SINGLETON_DRIVERS: ReadonlySet<string> = new Set(["null", "host"]);

/** Drivers whose networks get no IPAM (libnetwork gives them the `null` IPAM). */
export const NO_IPAM_DRIVERS: ReadonlySet<string> = new Set(["null", "host"]);

/** Options of the built-in drivers. */
export interface BuiltinDriverOptions {
  /** The overlay driver's (advertise address, owner mark, VXLAN port). */
  overlay?: OverlayDriverOptions;
}

/** The built-in drivers, by name. */
export function builtinDrivers(options: BuiltinDriverOptions = {}): Map<string, Driver> {
  const drivers = [
    createNullDriver(),
    createHostDriver(),
    createBridgeDriver(),
    createOverlayDriver(options.overlay),
  ];
  return new Map(drivers.map((d) => [d.name, d]));
}
