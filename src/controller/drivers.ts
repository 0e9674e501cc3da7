/**
 * The controller's drivers: the built-ins, the ones given in the options, and remote plugins
 * discovered on first use of an unknown name (Docker's plugin directories).
 *
 * @module
 */

import type { Driver, IpamDriver } from "../../drivers/driver.ts";
import { type BuiltinDriverOptions, builtinDrivers } from "../../drivers/mod.ts";
import { createPluginResolver, type PluginClientOptions } from "../../drivers/remote/mod.ts";
import { NotFoundError } from "../errors.ts";

/** Options of {@link createDriverRegistry}. */
export interface DriverRegistryOptions {
  /** Extra drivers, added to the built-ins (by name). */
  drivers?: Driver[];
  /** Extra IPAM drivers, besides `default`. */
  ipamDrivers?: IpamDriver[];
  /** Plugin directories, in order. Default: Docker's. */
  pluginDirs?: string[];
  /** Timeouts of plugin calls. */
  pluginOptions?: PluginClientOptions;
  /** Options of the built-in drivers. */
  builtin?: BuiltinDriverOptions;
}

/** Drivers by name. */
export interface DriverRegistry {
  /** A driver already known (effects run only with resolved drivers). */
  driver(name: string): Driver | undefined;
  /** A non-default IPAM driver already known. */
  ipamDriver(name: string): IpamDriver | undefined;
  /** The known non-default IPAM drivers. */
  ipamDrivers(): Iterable<[string, IpamDriver]>;
  /**
   * A driver by name: built-in, given, or a plugin discovered now.
   *
   * @throws {NotFoundError} `unknown driver "X"`.
   */
  resolve(name: string): Promise<Driver>;
  /**
   * A non-default IPAM driver by name: given, or a plugin discovered now.
   *
   * @throws {NotFoundError} `unknown IPAM driver "X"`.
   */
  resolveIpam(name: string): Promise<IpamDriver>;
  /** Closes plugin connections. */
  close(): void;
}

/** Creates the registry. */
export function createDriverRegistry(options: DriverRegistryOptions = {}): DriverRegistry {
  const drivers = builtinDrivers(options.builtin);
  for (const d of options.drivers ?? []) drivers.set(d.name, d);
  const ipams = new Map<string, IpamDriver>();
  for (const d of options.ipamDrivers ?? []) ipams.set(d.name, d);
  const plugins = createPluginResolver({
    ...(options.pluginDirs ? { pluginDirs: options.pluginDirs } : {}),
    ...(options.pluginOptions ?? {}),
  });
  return {
    driver: (name) => drivers.get(name),
    ipamDriver: (name) => ipams.get(name),
    ipamDrivers: () => ipams.entries(),
    async resolve(name) {
      const known = drivers.get(name);
      if (known) return known;
      const plugin = await plugins.driver(name);
      if (!plugin) throw new NotFoundError(`unknown driver "${name}"`);
      drivers.set(name, plugin);
      return plugin;
    },
    async resolveIpam(name) {
      const known = ipams.get(name);
      if (known) return known;
      const plugin = await plugins.ipam(name);
      if (!plugin) throw new NotFoundError(`unknown IPAM driver "${name}"`);
      ipams.set(name, plugin);
      return plugin;
    },
    close: () => plugins.close(),
  };
}
