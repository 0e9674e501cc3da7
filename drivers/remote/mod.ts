/**
 * The `remote` driver: networks, endpoints and IPAM served by an out-of-process plugin that
 * speaks Docker's plugin protocol (JSON over HTTP on a unix socket or TCP). Each call is one
 * effect the controller journals; the plugin's answers become facts, so replay never calls the
 * plugin again for completed work, and a transient state re-runs the same call (as Docker does).
 *
 * @example
 * ```ts ignore
 * import { createPluginResolver } from "./mod.ts";
 * const plugins = createPluginResolver({ pluginDirs: ["/run/docker/plugins"] });
 * const weave = await plugins.driver("weave"); // discovered, activated, capabilities read
 * console.log(weave?.capabilities());
 * plugins.close();
 * ```
 *
 * @module
 */

export { NotImplementedError } from "./_client.ts";
export type { PluginClientOptions } from "./_client.ts";
export { activatePlugin, DEFAULT_PLUGIN_DIRS, discoverPlugin } from "./discovery.ts";
export type { ActivatedPlugin, DiscoveredPlugin, DiscoverOptions } from "./discovery.ts";
export { createRemoteDriver, createRemoteIpamDriver } from "./_driver.ts";
export type { RemoteDriver, RemoteDriverOptions, RemoteIpamDriver } from "./_driver.ts";
export { createPluginResolver } from "./resolver.ts";
export type { PluginResolver, PluginResolverOptions } from "./resolver.ts";
