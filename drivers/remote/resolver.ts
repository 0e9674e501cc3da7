/**
 * Lazy plugin resolution for the controller: the first use of an unknown driver or IPAM name
 * discovers the plugin, activates it once (its network and IPAM halves share one client) and
 * caches the driver.
 *
 * @example
 * ```ts ignore
 * const plugins = createPluginResolver({ pluginDirs: ["/run/docker/plugins"] });
 * const driver = await plugins.driver("weave"); // undefined when there is no such plugin
 * plugins.close();
 * ```
 *
 * @module
 */

import type { Driver, IpamDriver } from "../driver.ts";
import type { PluginClient, PluginClientOptions } from "./_client.ts";
import {
  type ActivatedPlugin,
  activatePlugin,
  type DiscoverOptions,
  discoverPlugin,
} from "./discovery.ts";
import { createRemoteDriver, createRemoteIpamDriver } from "./_driver.ts";

/** Options of {@link createPluginResolver}. */
export type PluginResolverOptions = DiscoverOptions & PluginClientOptions;

/** Lazy plugin lookup for the controller: unknown driver names are tried as plugins. */
export interface PluginResolver {
  /** The network driver of plugin `name`, or `undefined` when there is no such plugin. */
  driver(name: string): Promise<Driver | undefined>;
  /** The IPAM driver of plugin `name`, or `undefined` when there is no such plugin. */
  ipam(name: string): Promise<IpamDriver | undefined>;
  /** Closes every plugin client. */
  close(): void;
}

/**
 * Creates a resolver that discovers, activates and caches plugins on first use of a name.
 * A name that is not found is looked up again next time (a plugin may be installed later);
 * a plugin that fails to activate is not cached either.
 */
export function createPluginResolver(options: PluginResolverOptions = {}): PluginResolver {
  const clients = new Set<PluginClient>();
  // One activation per plugin name, shared by its network and IPAM halves.
  const plugins = new Map<string, Promise<ActivatedPlugin | undefined>>();
  const made = new Map<string, Promise<Driver | IpamDriver | undefined>>();
  /** Caches `p` under `key` unless it rejects or resolves to nothing (looked up again). */
  const remember = <T>(
    map: Map<string, Promise<T | undefined>>,
    key: string,
    p: Promise<T | undefined>,
  ) => {
    map.set(key, p);
    p.then((v) => v === undefined && map.delete(key), () => map.delete(key));
    return p;
  };
  const activated = (name: string) =>
    plugins.get(name) ?? remember(
      plugins,
      name,
      discoverPlugin(name, options).then(async (found) => {
        if (!found) return undefined;
        const plugin = await activatePlugin(found, options);
        clients.add(plugin.client);
        return plugin;
      }),
    );
  const half = <T extends Driver | IpamDriver>(
    iface: "NetworkDriver" | "IpamDriver",
    name: string,
    make: (plugin: ActivatedPlugin) => Promise<T>,
  ) =>
    (made.get(`${iface}/${name}`) ?? remember(
      made,
      `${iface}/${name}`,
      activated(name).then((plugin) =>
        plugin?.implements.includes(iface) ? make(plugin) : undefined
      ),
    )) as Promise<T | undefined>;
  return {
    driver: (name) =>
      half("NetworkDriver", name, (plugin) => createRemoteDriver(name, { ...options, plugin })),
    ipam: (name) =>
      half("IpamDriver", name, (plugin) => createRemoteIpamDriver(name, { ...options, plugin })),
    close() {
      for (const client of clients) client.close();
      clients.clear();
      plugins.clear();
      made.clear();
    },
  };
}
