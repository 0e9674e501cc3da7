/**
 * The table of built-in drivers.
 *
 * @module
 */

import type { Driver } from "./driver.ts";
import { createBridgeDriver } from "./bridge/mod.ts";
import { createHostDriver } from "./host/mod.ts";
import { createNullDriver } from "./null/mod.ts";

/** Drivers that may have exactly one network, which cannot be deleted. */
export const SINGLETON_DRIVERS: ReadonlySet<string> = new Set(["null", "host"]);

/** Drivers whose networks get no IPAM (libnetwork gives them the `null` IPAM). */
export const NO_IPAM_DRIVERS: ReadonlySet<string> = new Set(["null", "host"]);

/** The built-in drivers, by name. */
export function builtinDrivers(): Map<string, Driver> {
  const drivers = [createNullDriver(), createHostDriver(), createBridgeDriver()];
  return new Map(drivers.map((d) => [d.name, d]));
}
