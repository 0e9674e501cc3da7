/**
 * The configuration of a remote (plugin) driver (driver.Config): how cnm's plugin client
 * talks to the plugin. Nothing of it is sent to the plugin: Docker's remote network driver
 * protocol has no configuration call (libnetwork's remote driver answers `Config` with "not
 * implemented": a plugin's own configuration is given to the plugin process out of band, e.g.
 * as command-line arguments). Per-network options and labels still reach the plugin, in
 * `CreateNetwork`'s `Options`, as in Docker.
 *
 * | key              | default                                  | what it does                        |
 * | ---------------- | ---------------------------------------- | ----------------------------------- |
 * | `callTimeoutMs`  | `pluginOptions.callTimeout` or 30000     | how long one call may take once connected |
 * | `retryTimeoutMs` | `pluginOptions.retryTimeout` or 30000    | how long connection failures are retried (the retry budget) |
 *
 * Both reach every later call, of the plugin's network and IPAM halves alike (they share one
 * client); a call already running keeps its bounds.
 *
 * @example
 * ```ts
 * import { remoteConfigSchema } from "./config.ts";
 * import assert from "node:assert/strict";
 * const schema = remoteConfigSchema({ callTimeout: 5000 });
 * assert.deepEqual(schema.parse({}), { callTimeoutMs: 5000, retryTimeoutMs: 30000 });
 * ```
 *
 * @module
 */

import { z } from "zod";
import type { PluginClientOptions } from "./_client.ts";

const Ms = z.number({ error: "must be a number of milliseconds" }).int({
  error: "must be an integer number of milliseconds",
})
  .min(1, { error: "must be at least 1 ms" }).max(3_600_000, { error: "must be at most 1 h" });

/** The schema of a remote driver's configuration, with the client's construction values as defaults. */
export function remoteConfigSchema(defaults: PluginClientOptions = {}) {
  return z.strictObject({
    callTimeoutMs: Ms.default(defaults.callTimeout ?? 30_000),
    retryTimeoutMs: Ms.default(defaults.retryTimeout ?? 30_000),
  });
}

/** A parsed remote driver configuration. */
export type RemoteDriverConfig = z.output<ReturnType<typeof remoteConfigSchema>>;
