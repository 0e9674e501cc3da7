/**
 * Plugin discovery as Docker does it: by name, first a unix socket (`<name>.sock` or
 * `<name>/<name>.sock`) in any plugin directory, then spec files in directory order
 * (`<name>.spec`, `<name>/<name>.spec`, `<name>.json`, `<name>/<name>.json`), and the
 * `/Plugin.Activate` handshake that tells which interfaces a plugin implements.
 *
 * @example
 * ```ts ignore
 * const found = await discoverPlugin("weave");
 * if (found) {
 *   const { client, implements: ifaces } = await activatePlugin(found);
 *   console.log(ifaces); // ["NetworkDriver"]
 *   client.close();
 * }
 * ```
 *
 * @module
 */

import { z } from "zod";
import { DriverError, InvalidArgumentError } from "../../src/errors.ts";
import { formatIssues } from "../../src/journal/events.ts";
import {
  createPluginClient,
  type PluginAddress,
  type PluginClient,
  type PluginClientOptions,
  type PluginTls,
} from "./_client.ts";

/** Docker's plugin directories, in precedence order. */
export const DEFAULT_PLUGIN_DIRS: readonly string[] = [
  "/run/docker/plugins",
  "/etc/docker/plugins",
  "/usr/lib/docker/plugins",
];

/** Options of {@link discoverPlugin}. */
export interface DiscoverOptions {
  /** Directories searched, in order; default {@link DEFAULT_PLUGIN_DIRS}. */
  pluginDirs?: readonly string[];
}

/** A discovered plugin: its address and the file that declared it. */
export interface DiscoveredPlugin extends PluginAddress {
  /** The `.sock`, `.spec` or `.json` file. */
  source: string;
}

const PLUGIN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

const JsonSpec = z.looseObject({
  Name: z.string().nullish(),
  Addr: z.string().min(1),
  TLSConfig: z.looseObject({
    InsecureSkipVerify: z.boolean().nullish(),
    CAFile: z.string().nullish(),
    CertFile: z.string().nullish(),
    KeyFile: z.string().nullish(),
  }).nullish(),
});

async function statOf(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch {
    return undefined;
  }
}

function checkAddr(addr: string, source: string): string {
  const m = /^(unix|tcp|http|https):\/\/./.exec(addr);
  if (!m) {
    throw new DriverError(
      `plugin spec ${source}: address ${JSON.stringify(addr)} needs unix://, tcp:// or https://`,
    );
  }
  return addr;
}

async function readPem(path: string | null | undefined, source: string, field: string) {
  if (!path) return undefined;
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    throw new DriverError(`plugin spec ${source}: TLSConfig.${field} ${path}: ${err}`, {
      cause: err,
    });
  }
}

async function readSpec(name: string, source: string): Promise<DiscoveredPlugin> {
  const text = await Deno.readTextFile(source);
  if (source.endsWith(".spec")) {
    return { name, addr: checkAddr(text.trim(), source), source };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DriverError(`plugin spec ${source}: malformed JSON`, { cause: err });
  }
  const parsed = JsonSpec.safeParse(value);
  if (!parsed.success) {
    throw new DriverError(`plugin spec ${source}: ${formatIssues(parsed.error)}`);
  }
  const spec = parsed.data;
  const found: DiscoveredPlugin = { name, addr: checkAddr(spec.Addr.trim(), source), source };
  if (spec.TLSConfig) {
    const t = spec.TLSConfig;
    const tls: PluginTls = { insecureSkipVerify: t.InsecureSkipVerify ?? false };
    const ca = await readPem(t.CAFile, source, "CAFile");
    const cert = await readPem(t.CertFile, source, "CertFile");
    const key = await readPem(t.KeyFile, source, "KeyFile");
    if (ca) tls.caCert = ca;
    if (cert) tls.cert = cert;
    if (key) tls.key = key;
    found.tls = tls;
  }
  return found;
}

/**
 * Finds the plugin called `name` in the plugin directories, Docker's precedence.
 *
 * @returns the plugin's address, or `undefined` when no directory declares it.
 * @throws {InvalidArgumentError} when `name` could escape the directories.
 * @throws {DriverError} when the spec file that takes precedence is unreadable or invalid.
 */
export async function discoverPlugin(
  name: string,
  options: DiscoverOptions = {},
): Promise<DiscoveredPlugin | undefined> {
  if (!PLUGIN_NAME.test(name)) {
    throw new InvalidArgumentError(`invalid plugin name ${JSON.stringify(name)}`);
  }
  const dirs = options.pluginDirs ?? DEFAULT_PLUGIN_DIRS;
  const paths = (
    dir: string,
    ext: string,
  ) => [`${dir}/${name}${ext}`, `${dir}/${name}/${name}${ext}`];
  for (const dir of dirs) {
    for (const path of paths(dir, ".sock")) {
      if ((await statOf(path))?.isSocket) return { name, addr: `unix://${path}`, source: path };
    }
  }
  for (const dir of dirs) {
    for (const path of [...paths(dir, ".spec"), ...paths(dir, ".json")]) {
      if ((await statOf(path))?.isFile) return await readSpec(name, path);
    }
  }
  return undefined;
}

/** An activated plugin: its client and the interfaces it implements. */
export interface ActivatedPlugin {
  client: PluginClient;
  /** E.g. `["NetworkDriver", "IpamDriver"]`. */
  implements: string[];
}

const Activate = z.looseObject({ Implements: z.array(z.string()).nullish() });

/**
 * Connects to a discovered plugin and performs the `/Plugin.Activate` handshake (with the
 * client's retries: a plugin may come up after the controller).
 *
 * @throws {DriverError} when the plugin is unreachable or answers badly; the client is closed.
 */
export async function activatePlugin(
  plugin: PluginAddress,
  options: PluginClientOptions = {},
): Promise<ActivatedPlugin> {
  const client = createPluginClient(plugin, options);
  try {
    const res = await client.call("Plugin.Activate", {}, Activate);
    return { client, implements: res.Implements ?? [] };
  } catch (err) {
    client.close();
    throw err;
  }
}
